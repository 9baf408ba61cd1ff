"""Observability shared by every long-running mnp process: logs (and later metrics and health)."""

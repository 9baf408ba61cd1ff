"""Log set-up for mnp processes: one line per record, with the record's `extra` fields kept.

Code logs with `log.info("pod started", extra={"pod": "ns/name", "sandbox_ms": 120})`; the text form
appends ` pod=ns/name sandbox_ms=120`, the JSON form writes one object per line for log shippers.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """`time level logger: message k=v ...`, values quoted when they contain spaces."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={_text(v)}" for k, v in extras(record).items())
        return f"{line} {fields}" if fields else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **extras(record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: str = "INFO", *, json_format: bool = False, component: str = "") -> None:
    """Configure the root logger for a process (stderr); quiets per-request client logs."""
    handler = logging.StreamHandler(sys.stderr)
    prefix = f"{component} " if component else ""
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else TextFormatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text


__all__ = ["JsonFormatter", "TextFormatter", "extras", "setup"]

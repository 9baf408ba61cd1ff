#!/usr/bin/env bash
# The test command of README.md: installs what it needs, then runs the whole suite as root.
# Extra arguments go to pytest (e.g. hack/test.sh tests/compiler -k except).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: hack/test.sh needs root (real network namespaces and nftables)" >&2
  exit 1
fi
bash hack/setup.sh
echo "== mypy --strict mnp/" >&2
.venv/bin/mypy
echo "== ruff" >&2
.venv/bin/ruff check mnp tests bench
echo "== pytest" >&2
exec .venv/bin/python -m pytest "$@"

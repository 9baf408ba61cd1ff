#!/usr/bin/env bash
# Installs what mnp's tests, demo and benchmarks need on a fresh Debian machine (as root):
# Debian packages for the data plane and a virtualenv at .venv with mnp and its test extras.
# Idempotent and quiet when everything is already there. Source it or run it.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(nftables libnftables1 iproute2 containernetworking-plugins socat iperf3 iputils-ping
              conntrack netsniff-ng procps util-linux containerd runc busybox-static)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing Debian packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.mnp-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: pip install -e .[test]" >&2
  log=$(mktemp)
  if ! .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "error: pip install failed (output above)" >&2
    exit 1
  fi
  # This machine's pip configuration names local indexes that may be absent: not worth a screenful.
  grep -v "is ignored: it is neither a file nor a directory" "$log" >&2 || true
  rm -f "$log"
  touch "$stamp"
fi

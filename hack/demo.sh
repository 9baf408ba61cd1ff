#!/usr/bin/env bash
# The README's demo command: real pods on a real macvlan network, the connectivity matrix before
# and after a MultiNetworkPolicy, enforced by mnp with nftables. Needs root; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: hack/demo.sh needs root (it creates network namespaces and nftables tables)" >&2
  exit 1
fi
bash hack/setup.sh
exec .venv/bin/python hack/demo.py "$@"

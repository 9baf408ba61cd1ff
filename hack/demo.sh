#!/usr/bin/env bash
# The README's demo command: `mnp demo` on a fresh 2-node local cluster running mnp (controller and
# agents as pods), a sample app on a macvlan network, its connectivity matrix before and after a
# MultiNetworkPolicy; torn down at the end (--keep leaves it running). Needs root; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: hack/demo.sh needs root (it runs a local cluster: network namespaces, containerd, nftables)" >&2
  exit 1
fi
bash hack/setup.sh
exec .venv/bin/mnp demo "$@"

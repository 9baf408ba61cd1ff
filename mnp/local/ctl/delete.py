"""`mnp local delete -f`: delete manifests' objects in reverse apply order, then wait until each is
gone from the API. On the local cluster a pod leaves the API only after the kubelet released its netns,
links and addresses, and a namespace only once it is empty, so "gone" means "released".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from mnp.api.errors import ApiError, NotFound
from mnp.local.ctl.api import ClusterApi, get_or_none
from mnp.local.ctl.kinds import Kind, UnknownKind
from mnp.local.ctl.manifests import Manifest, delete_order, with_namespace

DEFAULT_TIMEOUT_S = 120.0
POLL_S = 0.2
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class Deleting:
    kind: Kind
    namespace: str
    name: str
    uid: str  # a new object under the same name (a controller recreated it) is not the one deleted

    def __str__(self) -> str:
        ns = f" -n {self.namespace}" if self.namespace else ""
        return f"{self.kind.display}/{self.name}{ns}"


async def _still_there(api: ClusterApi, d: Deleting) -> bool:
    obj = await get_or_none(api, d.kind, d.namespace, d.name)
    return obj is not None and (obj.get("metadata") or {}).get("uid") == d.uid


async def delete_manifests(
    api: ClusterApi,
    manifests: Sequence[Manifest],
    out: TextIO,
    err: TextIO,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Delete, then wait until gone; NotFound counts as deleted. 0, or 1 on a refusal or timeout."""
    failed = 0
    pending: list[Deleting] = []
    for m in delete_order(manifests):
        try:
            kind = await api.kind_for(m.api_version, m.kind)
        except UnknownKind:
            # Its CRD is not served, so no such object can exist.
            print(f"{m.display()} already gone (kind {m.kind} not served)", file=out, flush=True)
            continue
        m = with_namespace(m, kind.namespaced)
        current = await get_or_none(api, kind, m.namespace, m.name)
        if current is None:
            print(f"{kind.display}/{m.name} already gone", file=out, flush=True)
            continue
        try:
            await api.delete(kind, m.namespace, m.name)
        except NotFound:
            print(f"{kind.display}/{m.name} already gone", file=out, flush=True)
            continue
        except ApiError as e:
            print(f"error: {m.source}: {kind.display}/{m.name}: {e}", file=err)
            failed += 1
            continue
        print(f"{kind.display}/{m.name} deleted", file=out, flush=True)
        pending.append(Deleting(kind, m.namespace, m.name, str((current.get("metadata") or {}).get("uid"))))
    if not await _wait_gone(api, pending, err, timeout):
        failed += 1
    return 1 if failed else 0


async def _wait_gone(api: ClusterApi, pending: list[Deleting], err: TextIO, timeout: float) -> bool:
    started = time.monotonic()
    last_progress = started
    while True:
        pending = [d for d in pending if await _still_there(api, d)]
        if not pending:
            return True
        now = time.monotonic()
        if now - started > timeout:
            names = ", ".join(str(d) for d in pending)
            print(
                f"error: still there after {timeout:g}s: {names}; their finalizers or the node releasing "
                f"them hold them (see `mnp local status` and DIR/logs/)",
                file=err,
            )
            return False
        if now - last_progress >= PROGRESS_EVERY_S:
            last_progress = now
            shown = ", ".join(str(d) for d in pending[:5]) + (" ..." if len(pending) > 5 else "")
            print(f"waiting for {len(pending)} to be gone: {shown}", file=err, flush=True)
        await asyncio.sleep(POLL_S)


__all__ = ["DEFAULT_TIMEOUT_S", "delete_manifests"]

"""`mnp local apply -f`: server-side apply of manifests, CRDs first and served before their objects.

Like `kubectl apply --server-side --force-conflicts` with one field manager, so a field or label removed
from a manifest is removed from the object. Every object is tried; failures are printed with the object
and the server's message, and make the exit status 1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from mnp.api.errors import ApiError
from mnp.local.ctl.api import ClusterApi
from mnp.local.ctl.kinds import Kind, UnknownKind
from mnp.local.ctl.manifests import Manifest, apply_order, with_namespace

CRD_SERVED_TIMEOUT_S = 30.0
POLL_S = 0.1

Sleep = Callable[[float], Awaitable[None]]


async def _served_kind(
    api: ClusterApi, m: Manifest, defined_here: set[tuple[str, str]], sleep: Sleep
) -> Kind:
    """The manifest's resource; for a kind a CRD of this invocation defines, waits until it is served."""
    deadline = time.monotonic() + CRD_SERVED_TIMEOUT_S
    while True:
        try:
            return await api.kind_for(m.api_version, m.kind)
        except UnknownKind:
            if (m.group, m.kind) not in defined_here or time.monotonic() > deadline:
                raise
        await sleep(POLL_S)


async def apply_manifests(
    api: ClusterApi, manifests: Sequence[Manifest], out: TextIO, err: TextIO, sleep: Sleep = asyncio.sleep
) -> int:
    """Apply every manifest in apply order; 0 if all were applied, 1 otherwise."""
    ordered = apply_order(manifests)
    defined_here = {m.crd_defines() for m in ordered if m.is_crd}
    failed = 0
    for m in ordered:
        try:
            kind = await _served_kind(api, m, defined_here, sleep)
        except UnknownKind:
            print(
                f"error: {m.source}: {m.display()}: the server does not serve kind {m.kind!r} in "
                f"{m.api_version!r}; apply its CustomResourceDefinition first (or in the same apply)",
                file=err,
            )
            failed += 1
            continue
        m = with_namespace(m, kind.namespaced)
        try:
            await api.apply(kind, m.obj)
        except ApiError as e:
            print(f"error: {m.source}: {kind.display}/{m.name}: {e}", file=err)
            failed += 1
            continue
        print(f"{kind.display}/{m.name} serverside-applied", file=out, flush=True)
    return 1 if failed else 0


__all__ = ["apply_manifests"]

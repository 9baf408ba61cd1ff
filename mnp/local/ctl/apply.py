"""`mnp local apply -f`: server-side apply of manifests, CRDs first and served before their objects.

Like `kubectl apply --server-side --force-conflicts` with one field manager, so a field or label removed
from a manifest is removed from the object. Every object is tried; failures are printed with the object
and the server's message, and make the exit status 1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TextIO

from mnp.api.errors import ApiError
from mnp.local.ctl.api import ClusterApi
from mnp.local.ctl.kinds import Kind, UnknownKind
from mnp.local.ctl.manifests import Manifest, apply_order, with_namespace

CRD_SERVED_TIMEOUT_S = 30.0
POLL_S = 0.1


async def _served_kind(api: ClusterApi, m: Manifest, coming: set[tuple[str, str]]) -> Kind:
    """The manifest's resource; for one a CRD just applied defines (`coming`), waits until it is served.

    The API server serves a custom resource, in discovery and on its paths, once its CRD is Established.
    """
    deadline = time.monotonic() + CRD_SERVED_TIMEOUT_S
    while True:
        try:
            return await api.kind_for(m.api_version, m.kind)
        except UnknownKind:
            if (m.api_version, m.kind) not in coming or time.monotonic() > deadline:
                raise
        await asyncio.sleep(POLL_S)


async def apply_manifests(api: ClusterApi, manifests: Sequence[Manifest], out: TextIO, err: TextIO) -> int:
    """Apply every manifest in apply order; 0 if all were applied, 1 otherwise."""
    coming: set[tuple[str, str]] = set()  # (apiVersion, kind) of the CRDs applied so far
    failed = 0
    for m in apply_order(manifests):
        try:
            kind = await _served_kind(api, m, coming)
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
        if m.is_crd:
            coming |= m.crd_serves()
    return 1 if failed else 0


__all__ = ["apply_manifests"]

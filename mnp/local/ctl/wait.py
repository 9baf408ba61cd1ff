"""`mnp local wait`: poll the API until `converge.decide` says converged, or name what is not on timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TextIO

from mnp.local.ctl.api import ClusterApi
from mnp.local.ctl.converge import Convergence, Unconverged, decide
from mnp.local.ctl.kinds import MULTI_NETWORK_POLICY, POD, POD_NETWORK_RULESET, Kind, UnknownKind

DEFAULT_TIMEOUT_S = 300.0
POLL_S = 0.5
PROGRESS_EVERY_S = 10.0


async def _list_if_served(api: ClusterApi, kind: Kind) -> list[dict[str, Any]] | None:
    try:
        served = await api.kind_for(kind.api_version, kind.kind)
    except UnknownKind:
        return None
    return await api.list(served, None)


async def observe(api: ClusterApi) -> Convergence:
    """The convergence of the cluster as the API shows it now."""
    pods = await api.list(POD, None)
    policies = await _list_if_served(api, MULTI_NETWORK_POLICY)
    rulesets = await _list_if_served(api, POD_NETWORK_RULESET)
    return decide(pods, policies, rulesets)


async def wait_converged(
    api: ClusterApi,
    out: TextIO,
    err: TextIO,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> int:
    """0 once converged (pods the user must fix named on stderr), 1 naming the rest on timeout."""
    started = time.monotonic()
    last_progress = started
    named: set[Unconverged] = set()
    while True:
        state = await observe(api)
        for u in state.user_must_fix:
            if u not in named:
                named.add(u)
                print(f"not waiting for {u}", file=err, flush=True)
        if state.converged:
            print("converged", file=out, flush=True)
            return 0
        now = time.monotonic()
        if now - started > timeout:
            print(f"error: not converged after {timeout:g}s:", file=err)
            for u in state.waiting:
                print(f"  {u}", file=err)
            return 1
        if now - last_progress >= PROGRESS_EVERY_S:
            last_progress = now
            print(f"waiting for {len(state.waiting)}: {state.waiting[0]}", file=err, flush=True)
        await asyncio.sleep(POLL_S)


__all__ = ["DEFAULT_TIMEOUT_S", "observe", "wait_converged"]

"""Leader election and node heartbeats on coordination.k8s.io/v1 Leases, as client-go and the kubelet do.

A lease is held while `renewTime + leaseDurationSeconds` lies ahead; writes carry the resourceVersion
read, so of two candidates racing for a free lease exactly one wins (the other gets 409 Conflict).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mnp.kube.client import Client
from mnp.kube.errors import AlreadyExists, KubeApiError, KubeConflict, KubeNotFound
from mnp.kube.resources import LEASES

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"


def micro_time(at: datetime.datetime | None = None) -> str:
    """A MicroTime: `2026-11-25T15:40:00.123456Z` (UTC, six fractional digits)."""
    moment = at or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime.datetime:
    """A Time or MicroTime as written by any server (`Z` or an offset, with or without a fraction)."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def lease_expired(lease: dict[str, Any], now: datetime.datetime) -> bool:
    """True when nobody holds the lease: no holder, no renewTime, or renewTime + duration has passed."""
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity") or not spec.get("renewTime"):
        return True
    duration = datetime.timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
    return parse_time(str(spec["renewTime"])) + duration < now


async def renew_lease(
    client: Client,
    namespace: str,
    name: str,
    holder: str,
    duration: int,
    *,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Heartbeat: set holder, duration and renewTime now (creating the lease if needed); the lease.

    The kubelet keeps one such lease per node in kube-node-lease (owner: its Node object).
    """
    spec = {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": micro_time()}
    for _ in range(2):
        try:
            return await client.patch(LEASES, name, {"spec": spec}, namespace)
        except KubeNotFound:
            pass
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if owner:
            meta["ownerReferences"] = [owner]
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}
        try:
            return await client.create(LEASES, body)
        except AlreadyExists:
            continue  # created by someone else in between: patch it
    raise KubeConflict(409, "Conflict", "lease keeps appearing and disappearing", f"Lease {namespace}/{name}")


class LeaderElector:
    """client-go's leader election on one Lease: acquire, renew every `retry_period`, step down when
    renewal has not succeeded for `renew_deadline` seconds or someone else holds the lease.

    `lease_duration` > `renew_deadline` > `retry_period`, as client-go requires, so a leader steps down
    before any other candidate may consider the lease expired.
    """

    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: int = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        *,
        release_on_cancel: bool = True,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = int(lease_duration)
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.leading = asyncio.Event()
        self._what = f"Lease {namespace}/{name}"
        self._last_failure = ""

    async def run(
        self,
        on_started_leading: Callable[[], Coroutine[Any, Any, None]],
        on_stopped_leading: Callable[[], Awaitable[None]],
    ) -> None:
        """Wait to acquire the lease, run `on_started_leading` as a task while leading, and return after
        `on_stopped_leading` once leadership is lost (the work task is cancelled first).

        On cancellation a leader releases the lease (unless `release_on_cancel` is False) so another
        candidate need not wait for it to expire. An exception from the work task ends leadership too
        and is raised here after `on_stopped_leading`.
        """
        await self._acquire()
        log.info("leadership acquired", extra={"object": self._what, "identity": self.identity})
        self.leading.set()
        work = asyncio.create_task(on_started_leading())
        try:
            reason = await self._keep(work)
        except asyncio.CancelledError:
            await self._stop(work)
            if self.release_on_cancel:
                await self._release()
            await on_stopped_leading()
            raise
        log.warning(
            "leadership lost", extra={"object": self._what, "identity": self.identity, "reason": reason}
        )
        await self._stop(work)
        await on_stopped_leading()
        failure = work.exception() if work.done() and not work.cancelled() else None
        if failure is not None:
            raise failure

    def _log_failure(self, what: str, e: KubeApiError) -> None:
        """A lost race (409) is routine; anything else (no namespace, no RBAC) is said out loud, once."""
        if e.code == 409:
            log.debug(what, extra={"object": self._what, "error": str(e)})
            return
        if self._last_failure != str(e):
            self._last_failure = str(e)
            log.warning(what, extra={"object": self._what, "error": str(e)})

    async def _acquire(self) -> None:
        while not await self._try_acquire_or_renew():
            await asyncio.sleep(self.retry_period)

    async def _keep(self, work: asyncio.Task[None]) -> str:
        """Renew until renewal fails for renew_deadline; the reason leadership ended."""
        while True:
            if work.done():
                await asyncio.sleep(self.retry_period)  # the work ended by itself: keep leading
            else:
                await asyncio.wait({work}, timeout=self.retry_period)
            if work.done() and not work.cancelled() and work.exception() is not None:
                return f"leader work failed: {work.exception()!r}"
            try:
                async with asyncio.timeout(self.renew_deadline):
                    while not await self._try_acquire_or_renew():
                        await asyncio.sleep(self.retry_period)
            except TimeoutError:
                return f"lease not renewed within {self.renew_deadline}s"

    async def _try_acquire_or_renew(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except KubeNotFound:
            return await self._create(now)
        except KubeApiError as e:
            self._log_failure("lease read failed", e)
            return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder != self.identity and not lease_expired(lease, now):
            return False
        taking_over = holder != self.identity
        new_spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_duration,
            "renewTime": micro_time(now),
        }
        if taking_over or not spec.get("acquireTime"):
            new_spec["acquireTime"] = micro_time(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        try:
            await self.client.replace(LEASES, {**lease, "spec": new_spec})
        except KubeApiError as e:  # 409: another candidate wrote first
            self._log_failure("lease write failed", e)
            return False
        return True

    async def _create(self, now: datetime.datetime) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_duration,
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            await self.client.create(LEASES, body)
        except KubeApiError as e:
            self._log_failure("lease create failed", e)
            return False
        return True

    async def _release(self) -> None:
        """Give the lease up at once (client-go's ReleaseOnCancel): empty holder, 1 s duration."""
        with contextlib.suppress(KubeApiError, TimeoutError):
            async with asyncio.timeout(self.renew_deadline):
                lease = await self.client.get(LEASES, self.name, self.namespace)
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    return
                released = {
                    **spec,
                    "holderIdentity": "",
                    "leaseDurationSeconds": 1,
                    "renewTime": micro_time(),
                }
                await self.client.replace(LEASES, {**lease, "spec": released})
                log.info("leadership released", extra={"object": self._what, "identity": self.identity})

    async def _stop(self, work: asyncio.Task[None]) -> None:
        self.leading.clear()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work

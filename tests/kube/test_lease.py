"""Leader election and node heartbeats (mnp.kube.lease) on the local API server's Leases, with short
durations: one leader among two candidates, takeover only after the lease expired, release on
cancellation, stepping down when the lease is taken, and the kubelet-style heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Any

import pytest

from mnp.kube.client import LEASES, Client
from mnp.kube.lease import LeaderElector, lease_expired, micro_time, parse_time, renew_lease
from tests.kube.conftest import LocalServer, faults, run

SHORT: dict[str, Any] = {"lease_duration": 2, "renew_deadline": 1.5, "retry_period": 0.2}


class Candidate:
    """An elector run as a task, recording its callbacks."""

    def __init__(self, client: Client, ns: str, identity: str, **options: Any) -> None:
        self.elector = LeaderElector(client, ns, "controller", identity, **(SHORT | options))
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.work_cancelled = asyncio.Event()
        self.task = asyncio.create_task(self.elector.run(self._lead, self._stop))

    async def _lead(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled.set()
            raise

    async def _stop(self) -> None:
        self.stopped.set()

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def first_leader(a: Candidate, b: Candidate) -> tuple[Candidate, Candidate]:
    done, _ = await asyncio.wait(
        [asyncio.create_task(a.started.wait()), asyncio.create_task(b.started.wait())],
        timeout=10,
        return_when=asyncio.FIRST_COMPLETED,
    )
    assert done, "nobody became leader"
    return (a, b) if a.started.is_set() else (b, a)


async def holder(client: Client, ns: str) -> str:
    return str((await client.get(LEASES, "controller", ns))["spec"].get("holderIdentity") or "")


def test_of_two_candidates_one_leads_and_the_other_takes_over_only_after_the_lease_expired(
    server: LocalServer,
) -> None:
    async def body(client: Client, ns: str) -> None:
        a = Candidate(client, ns, "a", release_on_cancel=False)
        b = Candidate(client, ns, "b", release_on_cancel=False)
        try:
            leader, follower = await first_leader(a, b)
            await asyncio.sleep(
                SHORT["lease_duration"] * 0.75
            )  # several renewals: the follower keeps waiting
            assert not follower.started.is_set()
            assert await holder(client, ns) == leader.elector.identity
            before = await client.get(LEASES, "controller", ns)

            await leader.cancel()  # a crash: no release, the lease runs out by itself
            assert leader.stopped.is_set() and leader.work_cancelled.is_set()
            await asyncio.wait_for(follower.started.wait(), 10)
            taken_at = datetime.datetime.now(datetime.UTC)
            expires = parse_time(before["spec"]["renewTime"]) + datetime.timedelta(seconds=2)
            assert taken_at >= expires, "took over a lease that had not expired"
            after = await client.get(LEASES, "controller", ns)
            assert after["spec"]["holderIdentity"] == follower.elector.identity
            assert after["spec"]["leaseTransitions"] == before["spec"]["leaseTransitions"] + 1
            assert after["spec"]["leaseDurationSeconds"] == 2
        finally:
            await a.cancel()
            await b.cancel()

    run(server, body)


def test_a_cancelled_leader_releases_the_lease_for_the_next_candidate(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        a = Candidate(client, ns, "a", lease_duration=30, renew_deadline=5, retry_period=0.2)
        try:
            await asyncio.wait_for(a.started.wait(), 10)
            await a.cancel()
            assert await holder(client, ns) == ""
            b = Candidate(client, ns, "b", lease_duration=30, renew_deadline=5, retry_period=0.2)
            try:
                # Well before the 30 s lease could have run out.
                await asyncio.wait_for(b.started.wait(), 10)
                assert await holder(client, ns) == "b"
            finally:
                await b.cancel()
        finally:
            await a.cancel()

    run(server, body)


def test_a_leader_whose_lease_is_taken_steps_down_and_its_work_is_cancelled(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        a = Candidate(client, ns, "a")
        try:
            await asyncio.wait_for(a.started.wait(), 10)
            lease = await client.get(LEASES, "controller", ns)
            lease["spec"] |= {
                "holderIdentity": "intruder",
                "leaseDurationSeconds": 60,
                "renewTime": micro_time(),
            }
            await client.replace(LEASES, lease)
            await asyncio.wait_for(a.task, 10)  # run() returns after stepping down
            assert a.stopped.is_set() and a.work_cancelled.is_set()
            assert not a.elector.leading.is_set()
            assert await holder(client, ns) == "intruder"
        finally:
            await a.cancel()

    run(server, body)


def test_a_leader_that_cannot_renew_within_the_renew_deadline_steps_down(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        a = Candidate(client, ns, "a")
        try:
            await asyncio.wait_for(a.started.wait(), 10)
            leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
            await faults(client, {"failNext": {"count": 100000, "code": 503, "pathPrefix": leases}})
            await asyncio.wait_for(a.task, 10)
            assert a.stopped.is_set() and a.work_cancelled.is_set()
        finally:
            await faults(client, {"reset": True})
            await a.cancel()

    run(server, body)


def test_an_exception_in_the_leaders_work_ends_leadership_and_is_raised(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        stopped = asyncio.Event()

        async def lead() -> None:
            raise RuntimeError("controller crashed")

        async def stop() -> None:
            stopped.set()

        elector = LeaderElector(client, ns, "controller", "a", **SHORT)
        with pytest.raises(RuntimeError, match="controller crashed"):
            await asyncio.wait_for(elector.run(lead, stop), 10)
        assert stopped.is_set()
        assert await holder(client, ns) == "a"  # not released: the process is expected to exit

    run(server, body)


def test_the_node_heartbeat_creates_then_renews_one_lease(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        owner = {
            "apiVersion": "v1",
            "kind": "Node",
            "name": "node-1",
            "uid": "3f0c7a4e-0000-4000-8000-000000000001",
        }
        first = await renew_lease(client, ns, "node-1", "node-1", 40, owner=owner)
        assert first["spec"]["holderIdentity"] == "node-1" and first["spec"]["leaseDurationSeconds"] == 40
        assert first["metadata"]["ownerReferences"][0]["name"] == "node-1"
        await asyncio.sleep(0.01)
        second = await renew_lease(client, ns, "node-1", "node-1", 40)
        assert parse_time(second["spec"]["renewTime"]) > parse_time(first["spec"]["renewTime"])
        assert second["metadata"]["uid"] == first["metadata"]["uid"]
        assert len((await client.list(LEASES, ns)).items) == 1
        assert not lease_expired(second, datetime.datetime.now(datetime.UTC))
        later = parse_time(second["spec"]["renewTime"]) + datetime.timedelta(seconds=41)
        assert lease_expired(second, later)

    run(server, body)


def test_micro_time_has_six_fractional_digits_and_parses_back() -> None:
    at = datetime.datetime(2026, 11, 25, 15, 40, 0, 123456, tzinfo=datetime.UTC)
    assert micro_time(at) == "2026-11-25T15:40:00.123456Z"
    assert parse_time(micro_time(at)) == at
    assert parse_time("2026-11-25T15:40:00Z") == at.replace(microsecond=0)
    assert parse_time("2026-11-25T16:40:00+01:00") == at.replace(microsecond=0)

"""The I/O shell of the workload controllers: informers feed a work queue, one worker reconciles.

Level-triggered: any change to a Deployment, ReplicaSet, DaemonSet, Pod or Node enqueues the objects
it can affect, and a reconcile always starts from the informers' caches. Writes carry the
resourceVersion they were computed from; a Conflict simply reconciles again. Expectations (as
client-go's ControllerExpectations) hold an owner's next pod changes until the informer has shown the
creates and deletes it already sent, so a burst of events never creates duplicate pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnp.kube import resources as kr
from mnp.kube.client import Client
from mnp.kube.errors import AlreadyExists, KubeApiError, KubeConflict, KubeNotFound
from mnp.kube.events import NORMAL, WARNING, EventRecorder
from mnp.kube.watch import Informer, WatchEvent
from mnp.local.workloads.daemonsets import reconcile_daemonset
from mnp.local.workloads.deployments import reconcile_deployment
from mnp.local.workloads.objects import (
    Action,
    Bind,
    Create,
    Delete,
    Patch,
    Raw,
    Record,
    controller_uid,
    name,
    namespace,
    spec,
    terminating,
    uid,
)
from mnp.local.workloads.podgc import collect_orphans
from mnp.local.workloads.replicasets import reconcile_replicaset
from mnp.local.workloads.scheduler import needs_scheduling, schedule

log = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]
Key = tuple[str, str, str]  # (kind, namespace, name); kind "Scheduler"/"PodGC" for the global loops
SCHEDULER: Key = ("Scheduler", "", "")
PODGC: Key = ("PodGC", "", "")
EXPECTATION_TTL = 30.0  # seconds before unobserved creates/deletes are given up (client-go: 5 min)
RETRY_DELAY = 0.2
ERROR_DELAY = 1.0
MAX_ERROR_DELAY = 60.0
RESYNC_SECONDS = 300.0


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Expectation:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)  # pod uids
    deadline: float = 0.0

    def satisfied(self, now: float) -> bool:
        return (self.adds <= 0 and not self.deletes) or now > self.deadline


class Controllers:
    """The scheduler and the workload controllers over one client; `run()` until cancelled."""

    def __init__(self, client: Client, clock: Clock = utc_now) -> None:
        self.client = client
        self.clock = clock
        self.pods = Informer(client, kr.PODS)
        self.nodes = Informer(client, kr.NODES)
        self.replicasets = Informer(client, kr.REPLICASETS)
        self.deployments = Informer(client, kr.DEPLOYMENTS)
        self.daemonsets = Informer(client, kr.DAEMONSETS)
        self.queue: asyncio.Queue[Key] = asyncio.Queue()
        self.queued: set[Key] = set()
        self.expectations: dict[str, Expectation] = {}
        self.assumed: dict[str, str] = {}  # pod uid → node it was bound to, until the cache shows it
        self.owners: dict[str, Key] = {}  # controller uid → its key (to route pod events)
        self.recorders: dict[str, EventRecorder] = {}
        self.failures: dict[Key, int] = {}  # consecutive failed reconciles, for the backoff
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)
        self.replicasets.add_handler(self._on_replicaset)
        self.deployments.add_handler(self._on_owner("Deployment"))
        self.daemonsets.add_handler(self._on_owner("DaemonSet"))

    def informers(self) -> list[Informer]:
        return [self.nodes, self.deployments, self.replicasets, self.daemonsets, self.pods]

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for informer in self.informers():
                tasks.create_task(informer.run())
            for informer in self.informers():
                await informer.synced.wait()
            log.info("workload controllers started", extra={"server": self.client.server})
            tasks.create_task(self._work())
            tasks.create_task(self._resync())

    async def _resync(self) -> None:
        """Every object again now and then: a safety net under the level-triggered events."""
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for kind, informer in (
                ("Deployment", self.deployments),
                ("ReplicaSet", self.replicasets),
                ("DaemonSet", self.daemonsets),
            ):
                for obj in informer.items():
                    self.enqueue((kind, namespace(obj), name(obj)))
            self.enqueue(SCHEDULER)
            self.enqueue(PODGC)

    # --- events → keys --------------------------------------------------------------------------
    def enqueue(self, key: Key) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)

    def _later(self, key: Key, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)

    def _on_owner(self, kind: str) -> Callable[[WatchEvent], Any]:
        async def handler(event: WatchEvent) -> None:
            if event.type == "DELETED":
                self.owners.pop(uid(event.obj), None)
                self.expectations.pop(uid(event.obj), None)
                self.failures.pop((kind, namespace(event.obj), name(event.obj)), None)
            else:
                self.owners[uid(event.obj)] = (kind, namespace(event.obj), name(event.obj))
            self.enqueue((kind, namespace(event.obj), name(event.obj)))

        return handler

    async def _on_replicaset(self, event: WatchEvent) -> None:
        await self._on_owner("ReplicaSet")(event)
        self._enqueue_owner(event.obj)

    async def _on_node(self, event: WatchEvent) -> None:
        for ds in self.daemonsets.items():
            self.enqueue(("DaemonSet", namespace(ds), name(ds)))
        self.enqueue(SCHEDULER)
        self.enqueue(PODGC)

    async def _on_pod(self, event: WatchEvent) -> None:
        pod, old = event.obj, event.old
        owner = controller_uid(pod)
        exp = self.expectations.get(owner)
        if exp is not None:
            if old is None and event.type == "ADDED":
                exp.adds -= 1
            if event.type == "DELETED" or terminating(pod):
                exp.deletes.discard(uid(pod))
        if event.type == "DELETED" or spec(pod).get("nodeName"):
            self.assumed.pop(uid(pod), None)
        self._enqueue_owner(pod)
        if needs_scheduling(pod) or event.type == "DELETED":
            self.enqueue(SCHEDULER)
        if terminating(pod) and spec(pod).get("nodeName"):
            self.enqueue(PODGC)

    def _enqueue_owner(self, obj: Raw) -> None:
        key = self.owners.get(controller_uid(obj))
        if key is not None:
            self.enqueue(key)

    # --- the worker ------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            try:
                await self._reconcile(key)
                self.failures.pop(key, None)
            except KubeConflict:
                self._later(key, RETRY_DELAY)
            except KubeApiError as e:
                failures = self.failures[key] = self.failures.get(key, 0) + 1
                delay = min(ERROR_DELAY * 2 ** (failures - 1), MAX_ERROR_DELAY)
                log.warning(
                    "reconcile failed, retrying",
                    extra={"object": "/".join(filter(None, key)), "error": str(e), "attempt": failures},
                )
                self._later(key, delay)

    async def _reconcile(self, key: Key) -> None:
        kind, ns, obj_name = key
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        pods = self.pods.items()
        if key == SCHEDULER:
            pods = [self._assume(p) for p in pods]
            await self._execute(schedule(pods, self.nodes.items(), now))
            return
        if key == PODGC:
            await self._execute(collect_orphans(pods, self.nodes.items()))
            return
        informer = {
            "Deployment": self.deployments,
            "ReplicaSet": self.replicasets,
            "DaemonSet": self.daemonsets,
        }
        obj = informer[kind].get(ns, obj_name)
        if obj is None:
            return
        in_ns = [p for p in pods if namespace(p) == ns]
        if kind == "Deployment":
            replicasets = [r for r in self.replicasets.items() if namespace(r) == ns]
            await self._execute(reconcile_deployment(obj, replicasets, in_ns, now))
            return
        if kind == "ReplicaSet":
            actions = reconcile_replicaset(obj, in_ns)
        else:
            actions = reconcile_daemonset(obj, self.nodes.items(), in_ns)
        exp = self.expectations.get(uid(obj))
        loop_now = asyncio.get_running_loop().time()
        if exp is not None and not exp.satisfied(loop_now):
            # The informer has not shown our last creates/deletes yet: its events re-enqueue us, and so
            # does the expiry, should an event never come (a pod created and deleted during a relist).
            self._later(key, exp.deadline - loop_now + RETRY_DELAY)
            return
        self.expectations.pop(uid(obj), None)
        await self._execute(actions)

    def _assume(self, pod: Raw) -> Raw:
        node = self.assumed.get(uid(pod))
        if node is None or spec(pod).get("nodeName"):
            return pod
        return {**pod, "spec": {**spec(pod), "nodeName": node}}

    def _expect(self, owner: str) -> Expectation:
        exp = self.expectations.setdefault(owner, Expectation())
        exp.deadline = asyncio.get_running_loop().time() + EXPECTATION_TTL
        return exp

    async def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Create | Delete) and action.owner:
                exp = self._expect(action.owner)
                if isinstance(action, Create):
                    exp.adds += 1
                else:
                    exp.deletes.add(action.uid)
        for i, action in enumerate(actions):
            try:
                await self._perform(action)
            except (KubeNotFound, AlreadyExists) as e:
                log.debug("skipped", extra={"action": type(action).__name__, "error": str(e)})
                self._unexpect(action)
            except KubeApiError as e:
                for unsent in actions[i:]:
                    self._unexpect(unsent)
                if isinstance(action, Create) and action.owner and not isinstance(e, KubeConflict):
                    # "Error creating: ..." as `kubectl describe rs` shows it on a real cluster.
                    await self._owner_event(
                        action.owner, "FailedCreate", f"Error creating: {e.message}", WARNING
                    )
                raise

    def _unexpect(self, action: Action) -> None:
        if isinstance(action, Create | Delete) and action.owner in self.expectations:
            exp = self.expectations[action.owner]
            if isinstance(action, Create):
                exp.adds -= 1
            else:
                exp.deletes.discard(action.uid)

    async def _perform(self, action: Action) -> None:
        if isinstance(action, Create):
            made = await self.client.create(action.resource, action.body, action.namespace)
            log.info("created", extra={"object": _ref(made), "kind": action.resource.kind})
            await self._owner_event(action.owner, "SuccessfulCreate", f"Created pod: {name(made)}")
        elif isinstance(action, Delete):
            await self.client.delete(
                action.resource,
                action.name,
                action.namespace,
                uid=action.uid or None,
                grace_period_seconds=action.grace_seconds,
            )
            log.info(
                "deleted", extra={"object": f"{action.namespace}/{action.name}", "kind": action.resource.kind}
            )
            await self._owner_event(action.owner, "SuccessfulDelete", f"Deleted pod: {action.name}")
        elif isinstance(action, Record):
            await self._recorder(action.component).record(
                action.about, action.type, action.reason, action.message
            )
        elif isinstance(action, Patch):
            metadata = {**(action.patch.get("metadata") or {}), "resourceVersion": action.resource_version}
            body = {**action.patch, "metadata": metadata}
            await self.client.patch(
                action.resource, action.name, body, action.namespace, subresource=action.sub or None
            )
            log.debug("patched", extra={"object": f"{action.namespace}/{action.name}", "sub": action.sub})
        else:
            await self._bind(action)

    def _recorder(self, component: str) -> EventRecorder:
        if component not in self.recorders:
            self.recorders[component] = EventRecorder(self.client, component)
        return self.recorders[component]

    async def _owner_event(self, owner_uid: str, reason: str, message: str, type: str = NORMAL) -> None:
        """The Event a ReplicaSet or DaemonSet controller writes on its object for each pod it makes."""
        key = self.owners.get(owner_uid)
        if key is None or key[0] not in ("ReplicaSet", "DaemonSet"):
            return
        informer = self.replicasets if key[0] == "ReplicaSet" else self.daemonsets
        owner = informer.get(key[1], key[2])
        if owner is not None:
            await self._recorder(f"{key[0].lower()}-controller").record(owner, type, reason, message)

    async def _bind(self, action: Bind) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": action.name, "namespace": action.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": action.node},
        }
        pod = self.pods.get(action.namespace, action.name)
        try:
            await self.client.create_subresource(kr.PODS, action.name, "binding", binding, action.namespace)
        except KubeConflict:
            return  # already bound by someone else: the informer will show where
        if pod is not None:
            self.assumed[uid(pod)] = action.node
        log.info("bound", extra={"object": f"{action.namespace}/{action.name}", "node": action.node})


def _ref(obj: Raw) -> str:
    return "/".join(filter(None, (namespace(obj), name(obj))))


async def run_controllers(kubeconfig: Path, stop: asyncio.Event) -> None:
    """Run the scheduler and the workload controllers against the cluster of `kubeconfig` until `stop`."""
    client = await Client.from_kubeconfig(kubeconfig)
    try:
        task = asyncio.create_task(Controllers(client).run())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises what ended the controllers, if it was not the stop
    finally:
        await client.close()

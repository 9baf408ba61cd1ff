"""The controller's loop: policies, pods, namespaces and NADs in; PodNetworkRulesets and status out.

Every watch event marks what it touches: a change to a policy, pod, namespace or NAD re-parses that one
object (the parsed cache is kept per object) and schedules a compile; a change to a ruleset (the
agents' status) schedules only a policy status pass. Changes arriving together are coalesced (a short
debounce), so a burst costs one compile. The writes are only real differences (`plan_writes`), so a
no-op resync makes zero API writes; policy status is patched only when it changes, and an invalid
policy raises one Event per new problem, not one per pass.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mnp.api.cluster import Namespace, Network, Pod, parse_namespace, parse_network, parse_pod
from mnp.api.policy import KIND as POLICY_KIND
from mnp.api.policy import Policy, parse_policy
from mnp.api.refs import Diagnostic, ObjRef
from mnp.api.ruleset import RulesetSpec
from mnp.api.status import same_status
from mnp.compiler.affected import Change, affected
from mnp.compiler.compile import CompileOptions, CompileResult, Snapshot
from mnp.compiler.incremental import Compiled
from mnp.controller.plan import (
    Action,
    Key,
    Write,
    desired_rulesets,
    plan_writes,
    policy_status,
    problem_messages,
)
from mnp.kube.client import Client, PatchType
from mnp.kube.errors import KubeApiError, KubeConflict, KubeNotFound
from mnp.kube.events import WARNING, EventRecorder, now_timestamp
from mnp.kube.resources import MNPS, NADS, NAMESPACES, PODS, RULESETS
from mnp.kube.watch import Informer, WatchEvent, object_key

log = logging.getLogger(__name__)
DEBOUNCE_S = 0.05
# Ruleset writes in flight at once: enough to keep the API server busy, few enough that a burst of
# hundreds reuses a handful of kept-alive connections instead of opening (and TLS-handshaking) one each.
WRITE_CONCURRENCY = 8
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 60.0


def retry_delay(failures: int) -> float:
    """Seconds before writing again a ruleset whose write failed `failures` times in a row."""
    return min(RETRY_MAX_S, RETRY_FIRST_S * float(2 ** min(failures - 1, 16)))
FIELD_MANAGER = "mnp-controller"


class Metrics(Protocol):
    def observe_compile(self, seconds: float) -> None: ...

    def ruleset_written(self, action: str, count: int = 1) -> None: ...

    def set_queue_depth(self, depth: int) -> None: ...

    def api_error(self, verb: str) -> None: ...


@dataclass
class ControllerConfig:
    options: CompileOptions = field(default_factory=CompileOptions)
    resync_period: float = 300.0


def _ref(obj: Any) -> ObjRef:
    return ObjRef("", obj.name, "Namespace") if isinstance(obj, Namespace) else obj.ref


class Parsed:
    """The compiler's view of the cluster, re-parsed one object at a time as events arrive."""

    def __init__(self) -> None:
        self.policies: dict[Key, Policy] = {}
        self.pods: dict[str, dict[str, Pod]] = {}  # by namespace, then name
        self.namespaces: dict[str, Namespace] = {}
        self.networks: dict[Key, Network] = {}
        # The pods by namespace, each in name order, rebuilt only for namespaces whose pods changed:
        # a pass after one change neither sorts nor walks every pod.
        self._pod_index: dict[str, tuple[Pod, ...]] = {}
        self._stale: set[str] = set()

    def apply(self, kind: str, event: WatchEvent) -> Change:
        """Re-parse the one object of `event`; the change as the compiler sees it (old and new)."""
        key, gone = object_key(event.obj), event.type == "DELETED"
        if kind == "policy":
            return self._set(self.policies, key, None if gone else parse_policy(event.obj)[0])
        if kind == "pod":
            self._stale.add(key[0])
            pod = None if gone else parse_pod(event.obj)[0]
            return self._set(self.pods.setdefault(key[0], {}), key[1], pod)
        if kind == "namespace":
            return self._set(self.namespaces, key[1], None if gone else parse_namespace(event.obj))
        return self._set(self.networks, key, None if gone else parse_network(event.obj))

    @staticmethod
    def _set(table: dict[Any, Any], key: Any, value: Any) -> Change:
        old = table.pop(key, None) if value is None else table.get(key)
        if value is not None:
            table[key] = value
        return Change(old, value)

    def namespace_labels(self) -> dict[str, Mapping[str, str]]:
        return {name: ns.labels for name, ns in self.namespaces.items()}

    def snapshot(self) -> Snapshot:
        for ns in self._stale:
            members = self.pods.get(ns) or {}
            if members:
                self._pod_index[ns] = tuple(members[name] for name in sorted(members))
            else:
                self._pod_index.pop(ns, None)
                self.pods.pop(ns, None)
        if self._stale:
            self._stale = set()
            self._pod_index = dict(sorted(self._pod_index.items()))
        return Snapshot(
            tuple(self.policies[k] for k in sorted(self.policies)),
            tuple(itertools.chain.from_iterable(self._pod_index.values())),
            tuple(self.namespaces[k] for k in sorted(self.namespaces)),
            tuple(self.networks[k] for k in sorted(self.networks)),
            pod_index=dict(self._pod_index),
        )


class Controller:
    def __init__(self, client: Client, config: ControllerConfig, metrics: Metrics) -> None:
        self.client = client
        self.config = config
        self.metrics = metrics
        self.informers = {
            "policy": Informer(client, MNPS),
            "pod": Informer(client, PODS),
            "namespace": Informer(client, NAMESPACES),
            "network": Informer(client, NADS),
        }
        self.rulesets = Informer(client, RULESETS)
        self.parsed = Parsed()
        self.events = EventRecorder(client, "mnp-controller")
        self.compiled: Compiled | None = None
        self.result: CompileResult | None = None
        self._changes: list[Change] = []
        self._objects: dict[ObjRef, tuple[RulesetSpec, str, dict[str, Any]]] = {}
        self._full_needed = True
        self.ready = asyncio.Event()
        self._compile_needed = asyncio.Event()
        self._status_needed = asyncio.Event()
        self._wake = asyncio.Event()
        self._status_subresource = True
        self._reported: dict[str, tuple[int, tuple[str, ...]]] = {}  # policy uid -> (generation, problems)
        self._pod_problems: set[Diagnostic] = set()  # logged once each while they last
        self._failures: dict[Key, int] = {}  # ruleset writes failing in a row, by ruleset
        self._retry: asyncio.TimerHandle | None = None

    # ---- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch and reconcile until cancelled (call while leading)."""
        for kind, informer in self.informers.items():
            informer.add_handler(self._handler(kind))
        self.rulesets.add_handler(self._on_ruleset)
        tasks = [asyncio.create_task(i.run()) for i in (*self.informers.values(), self.rulesets)]
        try:
            for informer in (*self.informers.values(), self.rulesets):
                await informer.synced.wait()
            log.info(
                "controller synced its watches", extra={k: len(i.items()) for k, i in self.informers.items()}
            )
            self._compile_needed.set()
            self._wake.set()
            tasks.append(asyncio.create_task(self._resync()))
            await self._loop()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _handler(self, kind: str) -> Any:
        async def on_event(event: WatchEvent) -> None:
            self._changes.append(self.parsed.apply(kind, event))
            self.metrics.set_queue_depth(len(self._changes))
            self._compile_needed.set()
            self._wake.set()

        return on_event

    async def _on_ruleset(self, event: WatchEvent) -> None:
        self._status_needed.set()
        old_generation = ((event.old or {}).get("metadata") or {}).get("generation")
        new_generation = (event.obj.get("metadata") or {}).get("generation")
        if (
            event.type == "DELETED"
            or object_key(event.obj) not in self._desired_keys()
            or old_generation != new_generation  # a spec write (ours, or someone's hand edit)
        ):
            self._compile_needed.set()  # restore what should be; nothing is written if it already is
        self._wake.set()

    def _desired_keys(self) -> set[Key]:
        if self.result is None:
            return set()
        return {(r.namespace, r.name) for r in self.result.rulesets}

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_period)
            self._full_needed = True
            self._compile_needed.set()
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(DEBOUNCE_S)  # let a burst of events land first
            self._wake.clear()
            try:
                if self._compile_needed.is_set():
                    self._compile_needed.clear()
                    await self.reconcile()
                    self._status_needed.set()
                if self._status_needed.is_set():
                    self._status_needed.clear()
                    await self.update_policy_status()
                if not self.ready.is_set():
                    self.ready.set()
            except Exception as e:  # a pass that fails is retried; the controller never stops over it
                log.warning(
                    "reconcile failed, retrying",
                    extra={"error": repr(e)},
                    exc_info=not isinstance(e, KubeApiError),
                )
                self._compile_needed.set()
                await asyncio.sleep(1.0)
                self._wake.set()

    # ---- rulesets --------------------------------------------------------------------------------

    async def reconcile(self) -> list[Write]:
        """Compile (incrementally when only some objects changed), then write the differences."""
        snapshot = self.parsed.snapshot()
        changes, self._changes = self._changes, []
        self.metrics.set_queue_depth(0)
        full = self._full_needed or self.compiled is None
        self._full_needed = False
        started = time.monotonic()
        try:
            if full or self.compiled is None:
                self.compiled = await asyncio.to_thread(Compiled.full, snapshot, self.config.options)
            else:
                touched, peers_changed = affected(
                    [*self.parsed.policies.values(), *(c.old for c in changes if isinstance(c.old, Policy))],
                    changes,
                    self.parsed.namespace_labels(),
                )
                changed = [_ref(o) for c in changes for o in (c.old, c.new) if o is not None]
                await asyncio.to_thread(
                    self.compiled.update, snapshot, self.config.options, touched, changed, peers_changed
                )
        except BaseException:
            self._full_needed = True  # a failed pass leaves the state unknown: the next one is full
            raise
        self.metrics.observe_compile(time.monotonic() - started)
        result = self.compiled.result()
        self.result = result
        # A pod's own problems (network-status unreadable, ruleset compacted or over the size limit)
        # are no policy's: they are logged, naming pod and field, once each while they last.
        pod_problems = {d for d in result.diagnostics if d.obj.kind != POLICY_KIND}
        for d in sorted(pod_problems - self._pod_problems):
            log.warning("pod problem", extra={"pod": str(d.obj), "field": d.field, "problem": d.message})
        self._pod_problems = pod_problems
        desired = desired_rulesets(result.rulesets, snapshot.pods, self._objects)
        existing = {object_key(r): r for r in self.rulesets.items()}
        writes = plan_writes(desired, existing)
        unchanged = len(desired) - sum(1 for w in writes if w.action is not Action.DELETE)
        self.metrics.ruleset_written("unchanged", max(0, unchanged))
        # A bounded number at once: the client keeps that many connections alive between bursts
        # instead of opening (and TLS-handshaking) one per write of a burst.
        slots = asyncio.Semaphore(WRITE_CONCURRENCY)

        async def write(w: Write) -> None:
            async with slots:
                await self._write(w)

        await asyncio.gather(*(write(w) for w in writes))
        if writes:
            counts = {f"rulesets_{a.value}": sum(1 for w in writes if w.action is a) for a in Action}
            log.info("rulesets written", extra={**counts, "rulesets_unchanged": unchanged})
        return writes

    async def _write(self, w: Write) -> None:
        ns, name = w.key
        try:
            if w.action is Action.CREATE and w.body is not None:
                await self.client.create(RULESETS, w.body, ns, field_manager=FIELD_MANAGER)
            elif w.action is Action.UPDATE and w.body is not None:
                await self.client.replace(RULESETS, w.body, field_manager=FIELD_MANAGER)
            elif w.action is Action.DELETE:
                await self.client.delete(RULESETS, name, ns, uid=w.uid or None)
            self.metrics.ruleset_written(w.action.value)
        except KubeNotFound:
            if w.action is not Action.DELETE:  # the pod (owner) or namespace went meanwhile
                self._compile_needed.set()
        except KubeConflict:
            self._compile_needed.set()  # someone else wrote it first: the next pass sees their version
            self._wake.set()
        except KubeApiError as e:
            # Refused or failed: retried with backoff, not at once (a write the API server keeps
            # refusing would otherwise be sent again every pass, 20 times a second).
            self.metrics.api_error(w.action.value)
            failures = self._failures[w.key] = self._failures.get(w.key, 0) + 1
            delay = retry_delay(failures)
            log.warning(
                "ruleset write failed",
                extra={
                    "ruleset": f"{ns}/{name}",
                    "action": w.action.value,
                    "error": str(e),
                    "failures": failures,
                    "retry_in_s": delay,
                },
            )
            self._pass_after(delay)
        else:
            self._failures.pop(w.key, None)

    def _pass_after(self, delay: float) -> None:
        """Ask for a compile pass in `delay` seconds (an earlier one already asked for is kept)."""
        loop = asyncio.get_running_loop()
        if self._retry is not None and self._retry.when() <= loop.time() + delay:
            return
        if self._retry is not None:
            self._retry.cancel()

        def fire() -> None:
            self._retry = None
            self._compile_needed.set()
            self._wake.set()

        self._retry = loop.call_later(delay, fire)

    # ---- policy status ---------------------------------------------------------------------------

    async def update_policy_status(self) -> None:
        if self.result is None:
            return
        rulesets = {object_key(r): r for r in self.rulesets.items()}
        problems: dict[str, list[Diagnostic]] = {}
        for d in self.result.diagnostics:
            if d.obj.kind == POLICY_KIND:  # not a same-named pod's problem (its network-status, compaction)
                problems.setdefault(str(d.obj), []).append(d)
        stamp = now_timestamp()
        for raw in self.informers["policy"].items():
            meta = raw.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            policy = self.parsed.policies.get(object_key(raw))
            own = [*(policy.problems if policy else ()), *problems.get(key, [])]
            own = list(dict.fromkeys(own))
            status = policy_status(raw, self.result.selected.get(key, ()), own, rulesets, stamp)
            await self._report_problems(raw, own)
            if self._status_subresource and not same_status(raw.get("status"), status):
                await self._patch_policy_status(raw, status)

    async def _patch_policy_status(self, raw: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = raw.get("metadata") or {}
        try:
            await self.client.patch_status(
                MNPS,
                str(meta.get("name")),
                {"status": status},
                str(meta.get("namespace")),
                type=PatchType.MERGE,
            )
        except KubeNotFound as e:
            if "status" in str(e) or self.informers["policy"].get(
                str(meta.get("namespace")), str(meta.get("name"))
            ):
                # The upstream CRD has no status subresource: enforce anyway, say so once.
                self._status_subresource = False
                log.warning(
                    "the MultiNetworkPolicy CRD has no status subresource: policy status is not written "
                    "(mnp's crds/ add it)"
                )
        except KubeApiError as e:
            self.metrics.api_error("patch-status")
            log.warning(
                "policy status not written",
                extra={"policy": f"{meta.get('namespace')}/{meta.get('name')}", "error": str(e)},
            )

    async def _report_problems(self, raw: Mapping[str, Any], problems: list[Diagnostic]) -> None:
        meta = raw.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        messages = tuple(problem_messages(problems))
        generation = int(meta.get("generation") or 0)
        if not messages:
            self._reported.pop(uid, None)
            return
        if self._reported.get(uid) == (generation, messages):
            return
        old = {c.get("type"): c for c in (raw.get("status") or {}).get("conditions") or []}
        accepted = old.get("Accepted") or {}
        self._reported[uid] = (generation, messages)
        if (
            accepted.get("status") == "False"
            and accepted.get("message") == "; ".join(messages)
            and accepted.get("observedGeneration") == generation
        ):
            return  # reported before this controller started
        await self.events.record(dict(raw), WARNING, "InvalidPolicy", "; ".join(messages))


__all__ = ["Controller", "ControllerConfig", "Parsed"]

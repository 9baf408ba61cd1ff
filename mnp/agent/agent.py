"""The node agent's loop: this node's rulesets and pods in, one nft table per policed pod out.

Every change to a ruleset or to a pod of this node puts the pod's key (namespace, name) on a queue;
bursts coalesce, a bounded number of workers take keys, and one key is never worked on twice at once,
so no apply blocks the watches. A sync makes the pod's netns hold exactly what its ruleset says:

- the ruleset must be for this pod (its uid) and this node, else PodMismatch and nothing is touched;
- the netns comes from the finder (CRI sandbox, procfs fallback); a new sandbox means a new netns;
- an invalid ruleset keeps the table last applied for the pod, or isolates its interfaces if none;
- a table already right (its listing digest equals that of the rendered table) is left alone, so
  an agent restart rewrites nothing; a different one is changed in one transaction and read back:
  when only peers changed and nothing else committed in the netns since the agent's last apply, by
  deleting and adding those map elements alone; otherwise replaced, keeping base chains hooked;
- status is written through the status subresource only when it changes.

A ruleset that goes while its pod lives takes the pod's table with it. At start, tables in pods of
this node that no ruleset asks for are removed. Every resync period each table is compared with what
was applied and repaired on a difference (counted, and an Event on the pod).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mnp.agent import status as st
from mnp.agent.queue import KeyQueue
from mnp.agent.scratch import Scratch
from mnp.api.errors import InvalidRuleset, NetnsError, NftError
from mnp.api.ruleset import NODE_LABEL, RulesetSpec, spec_from_object
from mnp.kube.client import Client, PatchType
from mnp.kube.errors import KubeApiError, KubeNotFound
from mnp.kube.events import WARNING, EventRecorder, now_timestamp
from mnp.kube.resources import PODS, RULESETS
from mnp.kube.watch import Informer, WatchEvent, object_key
from mnp.nft.apply import NetnsNft
from mnp.nft.model import Table, TableShape
from mnp.nft.render import (
    RenderOptions,
    build_table,
    render_table_body,
    render_table_replace,
    render_table_swap,
    render_update,
)

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, pod name) = (namespace, ruleset name)
DRIFT = "drift"
POD_CHANGED = "pod"  # the pod object changed: its sandbox (and so its netns) may be a new one
RETRY_S = 2.0
# Why the runtime (or /proc) was asked for a pod's netns: ahead of any ruleset (at start, or when a
# running pod without one changed); or on demand, when a ruleset had to be applied or checked.
NETNS_AHEAD, NETNS_ON_DEMAND = "ahead", "on-demand"


class NetnsLike(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def inode(self) -> int: ...

    @property
    def dev(self) -> int: ...


class Finder(Protocol):
    def find(self, pod_uid: str) -> NetnsLike | None: ...


class Metrics(Protocol):
    def observe_apply(self, seconds: float, ok: bool) -> None: ...

    def failure(self, reason: str) -> None: ...

    def drift_repaired(self) -> None: ...

    def set_rulesets(self, count: int) -> None: ...

    def netns_lookup(self, when: str) -> None: ...


class NoMetrics:
    def observe_apply(self, seconds: float, ok: bool) -> None:
        pass

    def failure(self, reason: str) -> None:
        pass

    def drift_repaired(self) -> None:
        pass

    def set_rulesets(self, count: int) -> None:
        pass

    def netns_lookup(self, when: str) -> None:
        pass


@dataclass
class PodTable:
    """What the agent holds for one pod: its netns (by identity), an nft context, what it applied."""

    uid: str
    netns: tuple[int, int]  # (dev, inode) of the netns file
    nft: NetnsNft
    path: str = ""  # the netns file the finder gave
    shape: TableShape | None = None  # of the table as read back after the agent's last apply
    table: Table | None = None  # what the agent last applied or verified there, for element-only updates
    digest: str | None = None  # listing digest of the table, once it was needed (drift check, adoption)
    applied_hash: str = ""
    applied_at: str | None = None
    counts: tuple[int, int] = (0, 0)
    fallback: bool = False  # the table is the isolation-only fallback for an invalid ruleset
    generation: int = -1  # of the ruleset the table was last made to match
    nft_generation: int = -1  # the netns's nftables generation when the table was last verified

    @property
    def known(self) -> bool:
        """The table holds what `applied_hash` renders: applied, or verified, by this agent."""
        return bool(self.applied_hash)


@dataclass(frozen=True, slots=True)
class KnownNetns:
    """Where the runtime said a pod (by uid) has its netns, and the identity of that netns then."""

    uid: str
    path: str
    dev: int
    inode: int


@dataclass
class AgentConfig:
    node: str
    options: RenderOptions = field(default_factory=RenderOptions)
    resync_period: float = 60.0
    workers: int = 16


class BadCustomRules(NftError):
    """A custom rule nft refuses: the agent does not start (it would fail on every pod)."""

    def __init__(self, bad: list[tuple[str, str, str]]) -> None:
        self.bad = bad
        lines = "; ".join(f"{slot.replace('_', ' ')} rule {rule!r}: {why}" for slot, rule, why in bad)
        super().__init__(f"custom rules refused by nft: {lines}")


class Agent:
    def __init__(
        self,
        client: Client,
        config: AgentConfig,
        finder: Finder,
        metrics: Metrics | None = None,
        scratch: Scratch | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.node = config.node
        self.table_name = config.options.table
        self.finder = finder
        self.metrics: Metrics = metrics or NoMetrics()
        self.rulesets = Informer(client, RULESETS, label_selector=f"{NODE_LABEL}={config.node}")
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={config.node}")
        self.queue: KeyQueue[Key] = KeyQueue()
        self.tables: dict[Key, PodTable] = {}
        self.events = EventRecorder(client, "mnp-agent", config.node)
        self.scratch = scratch or Scratch()
        self.ready = asyncio.Event()
        self._initial: set[Key] = set()
        self._known: dict[Key, KnownNetns] = {}  # netns of pods without a table, learnt ahead

    # ---- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        self.rulesets.add_handler(self._on_change)
        self.pods.add_handler(self._on_pod_change)
        tasks = [asyncio.create_task(self.rulesets.run()), asyncio.create_task(self.pods.run())]
        try:
            await self.rulesets.synced.wait()
            await self.pods.synced.wait()
            # Every pod without a ruleset is looked at before the agent is ready: its stale table is
            # removed and its netns kept, so a policy that comes next pays no runtime lookups.
            self._known.update(await asyncio.to_thread(self._remove_unasked_tables))
            self._initial = {object_key(r) for r in self.rulesets.items()}
            for key in sorted(self._initial):
                self.queue.add(key)
            if not self._initial:
                self.ready.set()
            log.info(
                "agent synced its watches",
                extra={"node": self.node, "rulesets": len(self._initial), "netns_learnt": len(self._known)},
            )
            tasks += [asyncio.create_task(self._worker(i)) for i in range(self.config.workers)]
            tasks.append(asyncio.create_task(self._resync()))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for table in self.tables.values():
                table.nft.close()
            self.scratch.close()

    async def _on_change(self, event: WatchEvent) -> None:
        self.queue.add(object_key(event.obj))

    async def _on_pod_change(self, event: WatchEvent) -> None:
        self.queue.add(object_key(event.obj), POD_CHANGED)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_period)
            for key in {*self.tables, *(object_key(r) for r in self.rulesets.items())}:
                self.queue.add(key, DRIFT)

    async def _worker(self, number: int) -> None:
        while True:
            key, flags = await self.queue.get()
            try:
                await self.sync(key, drift_check=DRIFT in flags, pod_changed=POD_CHANGED in flags)
            except Exception:  # one pod never stops the others
                log.exception("sync failed", extra={"pod": f"{key[0]}/{key[1]}"})
                self.queue.add_after(key, RETRY_S)
            finally:
                self.queue.done(key)
                self._initial.discard(key)
                if not self._initial and not self.ready.is_set():
                    self.ready.set()
                    log.info("first sync of every ruleset and pod done", extra={"node": self.node})
                self.metrics.set_rulesets(len(self.rulesets.items()))

    def _remove_unasked_tables(self) -> dict[Key, KnownNetns]:
        """At start: a table in a pod of this node that no ruleset asks for is stale; remove it.
        Returns the netns found for those pods (learnt ahead of any ruleset)."""
        asked = {object_key(r) for r in self.rulesets.items()}
        found: dict[Key, KnownNetns] = {}
        for pod in self.pods.items():
            key = object_key(pod)
            if key in asked or not _running(pod):
                continue
            uid = str(pod["metadata"].get("uid", ""))
            self.metrics.netns_lookup(NETNS_AHEAD)
            ref = self._find(uid)
            if ref is None:
                continue
            found[key] = KnownNetns(uid, ref.path, ref.dev, ref.inode)
            try:
                with NetnsNft(ref.path) as nft:
                    if (
                        nft.table_shape(self.table_name) is not None
                        or nft.list_table(self.table_name) is not None
                    ):
                        nft.delete_table(self.table_name)
                        log.info("stale table removed", extra={"pod": f"{key[0]}/{key[1]}"})
            except (NetnsError, NftError) as e:
                log.warning("stale table not removed", extra={"pod": f"{key[0]}/{key[1]}", "error": str(e)})
        return found

    # ---- one pod ---------------------------------------------------------------------------------

    async def sync(self, key: Key, *, drift_check: bool = False, pod_changed: bool = True) -> None:
        ruleset = self.rulesets.get(*key)
        pod = self.pods.get(*key)
        held = self.tables.get(key)
        where = f"{key[0]}/{key[1]}"
        if pod is None or not _running(pod):
            self._forget(key)
            self._known.pop(key, None)
            if ruleset is not None:
                await self._report(
                    ruleset,
                    st.Outcome(
                        False, st.R_NETNS_NOT_FOUND, f"pod {where} is not running on node {self.node}"
                    ),
                )
            return
        uid = str(pod["metadata"].get("uid", ""))
        if held is not None and held.uid != uid:
            self._forget(key)  # a new pod with the same name: the old netns is gone with the old pod
            held = None
        if ruleset is None:
            if held is not None:
                await asyncio.to_thread(held.nft.delete_table, self.table_name)
                log.info("table removed: no ruleset for the pod any more", extra={"pod": where})
                self._forget(key)
                self._known[key] = KnownNetns(uid, held.path, *held.netns)
            elif pod_changed and _phase(pod) == "Running" and self._known_netns(key, uid) is None:
                await self._learn_netns(key, uid)
            return
        spec_raw: Mapping[str, Any] = ruleset["spec"] if isinstance(ruleset.get("spec"), Mapping) else {}
        want_uid, want_node = spec_raw.get("podUID"), spec_raw.get("node")
        if want_uid != uid or want_node != self.node:
            await self._report(
                ruleset,
                st.Outcome(
                    False,
                    st.R_POD_MISMATCH,
                    f"the ruleset is for pod uid {want_uid} on node {want_node}, but pod {where} on node "
                    f"{self.node} has uid {uid}; nothing applied (the controller rewrites the ruleset)",
                ),
            )
            return
        if held is not None and not pod_changed and _same_file(held.path, held.netns):
            # The ruleset changed, or a drift check is due, and the netns file is still the one the table
            # lives in: no need to ask the runtime again. A new sandbox changes the pod object (which
            # sets pod_changed), and the runtime removes the old sandbox's netns file when it stops it,
            # so a sandbox replaced without a pod change is still found at the next drift check.
            await self._enforce(key, ruleset, held, drift_check)
            return
        ref = self._known_netns(key, uid) if held is None and not (pod_changed or drift_check) else None
        if ref is None:
            self.metrics.netns_lookup(NETNS_ON_DEMAND)
            ref = await asyncio.to_thread(self._find, uid)
        if ref is None:
            self._forget(key)
            await self._report(
                ruleset,
                st.Outcome(
                    False, st.R_NETNS_NOT_FOUND, f"pod {where} has no running sandbox on node {self.node} yet"
                ),
            )
            self.queue.add_after(key, RETRY_S)
            return
        identity = (ref.dev, ref.inode)
        if held is not None and held.netns != identity:
            self._forget(key)  # the sandbox was re-created: a new netns, its old table went with it
            held = None
        elif held is not None:
            held.path = ref.path
        if held is None:
            try:
                held = PodTable(uid, identity, await asyncio.to_thread(NetnsNft, ref.path), ref.path)
            except NetnsError as e:
                await self._report(ruleset, st.Outcome(False, st.R_NETNS_NOT_FOUND, f"pod {where}: {e}"))
                self.queue.add_after(key, RETRY_S)
                return
            self.tables[key] = held
            self._known.pop(key, None)  # the table holds it now
        await self._enforce(key, ruleset, held, drift_check)

    async def _enforce(self, key: Key, ruleset: dict[str, Any], held: PodTable, drift_check: bool) -> None:
        where = f"{key[0]}/{key[1]}"
        generation = _generation(ruleset)
        current = held.generation == generation and held.known and not held.fallback
        if current and drift_check:
            # No commit in the netns since the table was verified: it cannot have drifted.
            try:
                unchanged = await asyncio.to_thread(held.nft.generation) == held.nft_generation
            except NftError:
                unchanged = False
            drift_check = not unchanged
        if current and not drift_check:
            # Only the status or labels changed (our own status write comes back this way): the table
            # is what this generation asks for; nothing to render.
            await self._report(ruleset, self._outcome(held))
            return
        try:
            spec = spec_from_object(ruleset)
            problem = ""
        except InvalidRuleset as e:
            problem = e.describe()
            self.metrics.failure(st.R_INVALID)
            if held.known and not held.fallback:
                await self._report(
                    ruleset,
                    st.Outcome(
                        False,
                        st.R_INVALID,
                        f"{problem}; still enforcing the last valid ruleset ({held.applied_hash})",
                    ),
                )
                return
            fallback = st.isolation_only(ruleset, held.uid, self.node)
            if fallback is None:
                await self._report(
                    ruleset,
                    st.Outcome(
                        False, st.R_INVALID, f"{problem}; no interface could be read, nothing applied"
                    ),
                )
                return
            spec = fallback
        try:
            outcome = await asyncio.to_thread(self._apply, key, spec, held, drift_check)
        except (NftError, NetnsError) as e:
            self.metrics.failure(st.R_NFT_ERROR)
            await self._report(ruleset, st.Outcome(False, st.R_NFT_ERROR, f"pod {where}: {e}"))
            self.queue.add_after(key, RETRY_S)
            return
        held.fallback = bool(problem)
        held.generation = generation
        if outcome == "repaired":
            self.metrics.drift_repaired()
            pod = self.pods.get(*key)
            if pod is not None:
                await self.events.record(
                    pod,
                    WARNING,
                    "DriftRepaired",
                    f"table inet {self.table_name} differed from ruleset generation "
                    f"{_generation(ruleset)} and was restored",
                )
        held.applied_at = (
            held.applied_at or (ruleset.get("status") or {}).get("lastApplied") or now_timestamp()
        )
        isolated = ", ".join(sorted(set(spec.ingress.isolated if spec.ingress else ())))
        result = self._outcome(
            held, f"{problem}; applied isolation only: all traffic denied on {isolated}" if problem else ""
        )
        await self._report(ruleset, result)

    def _outcome(self, held: PodTable, problem: str = "") -> st.Outcome:
        """The status of what `held` enforces: Applied, or InvalidRuleset with the fallback applied."""
        rules, elements = held.counts
        ok = not problem
        message = problem or f"{rules} rules and {elements} set elements in table inet {self.table_name}"
        reason = st.R_APPLIED if ok else st.R_INVALID
        return st.Outcome(ok, reason, message, held.applied_hash, rules, elements, held.applied_at)

    def _apply(self, key: Key, spec: RulesetSpec, held: PodTable, drift_check: bool) -> str:
        """Make the pod's table match `spec` (blocking); returns "unchanged", "applied" or "repaired".

        Listing a whole table is the expensive part (every element is read), so it is done only when
        something may have changed it: at start for a table the agent has no memory of, and in a drift
        check when the netns's nftables generation moved since the table was last verified. After an
        apply, the table's declarations are read back (cheap: no elements) and compared.
        """
        table = build_table(spec, self.config.options)
        body = render_table_body(table)  # once, for the hash and for the swap
        applied_hash = st.transaction_hash(render_table_replace(table, body=body))
        known = held.known and held.applied_hash == applied_hash
        want: str | None = None
        if known:
            if not drift_check:
                return "unchanged"
            generation = held.nft.generation()
            if generation == held.nft_generation:
                return "unchanged"  # nothing was committed in the netns: the table cannot have changed
            want = held.digest or self.scratch.digest(table, applied_hash)
            if held.nft.table_digest(self.table_name) == want:
                held.digest, held.nft_generation = want, generation
                return "unchanged"
        elif not held.known and held.nft.table_shape(self.table_name) is not None:
            # A table we have no memory of (an agent restart): if it is already right, adopt it.
            want = self.scratch.digest(table, applied_hash)
            generation = held.nft.generation()
            if held.nft.table_digest(self.table_name) == want:
                self._held(held, table, applied_hash, want)
                held.nft_generation = generation
                return "unchanged"
        repaired = known and drift_check
        started = time.monotonic()
        untouched = held.nft.generation() == held.nft_generation  # no commit since our read-back
        # Only map elements changed (peers came or went) and the table is still the one we applied:
        # those elements alone are deleted and added, in one transaction.
        text = render_update(held.table, table) if untouched and held.table and not repaired else None
        how = "elements"
        if text is None:
            shape = held.shape if untouched else None
            if shape is None:
                shape = held.nft.table_shape(self.table_name)  # someone else committed since our read-back
            text, how = render_table_swap(table, shape, body=body), "swap"
        try:
            held.nft.apply(text)
        except NftError:
            self.metrics.observe_apply(time.monotonic() - started, False)
            raise
        self.metrics.observe_apply(time.monotonic() - started, True)
        generation = held.nft.generation()
        shape = held.nft.table_shape(self.table_name)
        if shape != table.shape():
            held.shape, held.table = None, None
            raise NftError(f"table inet {self.table_name} read back differs from what was applied")
        held.nft_generation, held.shape = generation, shape
        held.applied_at = now_timestamp()
        self._held(held, table, applied_hash, want if repaired else None)
        log.info(
            "table repaired" if repaired else "table applied",
            extra={
                "pod": f"{key[0]}/{key[1]}",
                "transaction": how,
                "hash": applied_hash,
                "rules": held.counts[0],
                "elements": held.counts[1],
            },
        )
        return "repaired" if repaired else "applied"

    @staticmethod
    def _held(held: PodTable, table: Table, applied_hash: str, digest: str | None) -> None:
        held.applied_hash, held.digest, held.counts = applied_hash, digest, table.counts()
        held.table = table

    async def _learn_netns(self, key: Key, uid: str) -> None:
        """Ask the runtime where a running pod without a ruleset has its netns, and keep the answer:
        the pod's first ruleset (a new policy selecting it) is then applied without a runtime round
        trip on its way, and a burst of new rulesets does not become a burst of runtime calls. Asked
        only when the netns kept for the pod is gone (a new sandbox removes the old one's file)."""
        self.metrics.netns_lookup(NETNS_AHEAD)
        ref = await asyncio.to_thread(self._find, uid)
        if ref is None:
            self._known.pop(key, None)
        else:
            self._known[key] = KnownNetns(uid, ref.path, ref.dev, ref.inode)

    def _known_netns(self, key: Key, uid: str) -> NetnsLike | None:
        """The netns learnt for this pod, if it is the same pod and its file still names that netns.

        A new sandbox gets a new netns (its file at a new path, or a new namespace behind the path),
        and the runtime removes the old one's file: either way the identity check fails and the
        runtime is asked again.
        """
        known = self._known.get(key)
        if known is None or known.uid != uid or not _same_file(known.path, (known.dev, known.inode)):
            return None
        return known

    def _find(self, uid: str) -> NetnsLike | None:
        try:
            return self.finder.find(uid)
        except NetnsError as e:
            log.warning("netns lookup failed", extra={"uid": uid, "error": str(e)})
            return None

    def _forget(self, key: Key) -> None:
        held = self.tables.pop(key, None)
        if held is not None:
            held.nft.close()

    async def _report(self, ruleset: dict[str, Any], outcome: st.Outcome) -> None:
        meta = ruleset.get("metadata") or {}
        old = ruleset.get("status") or {}
        new = st.ruleset_status(_generation(ruleset), outcome, now_timestamp(), old)
        if st.same_status(old, new):
            return
        try:
            await self.client.patch_status(
                RULESETS,
                str(meta.get("name")),
                {"status": new},
                str(meta.get("namespace")),
                type=PatchType.MERGE,
            )
        except KubeNotFound:
            return
        except KubeApiError as e:
            log.warning(
                "status not written",
                extra={"ruleset": f"{meta.get('namespace')}/{meta.get('name')}", "error": str(e)},
            )
            return
        if not outcome.ok:
            log.warning(
                "ruleset not applied",
                extra={
                    "ruleset": f"{meta.get('namespace')}/{meta.get('name')}",
                    "generation": _generation(ruleset),
                    "reason": outcome.reason,
                    "detail": outcome.message,
                },
            )


def _same_file(path: str, identity: tuple[int, int]) -> bool:
    """`path` still names the namespace with this (st_dev, st_ino)."""
    try:
        st_ = os.stat(path)
    except OSError:
        return False
    return (st_.st_dev, st_.st_ino) == identity


def _generation(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _running(pod: Mapping[str, Any]) -> bool:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    return not (pod.get("spec") or {}).get("hostNetwork") and bool(meta.get("uid"))


__all__ = ["Agent", "AgentConfig", "BadCustomRules", "Finder", "Metrics", "NoMetrics", "PodTable"]

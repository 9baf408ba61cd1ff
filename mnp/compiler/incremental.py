"""Recompute only what a change can alter (pure): the rulesets of the pods the affected policies
select, before and after, compiled with every policy that selects those pods.

    A = the affected policies (affected.py)
    P = the pods A selected before or selects now
    B = A plus every other policy that selects a pod of P
    compile(B) gives the complete ruleset of every pod in P; nothing outside P can have changed.

`Compiled` keeps the last result in a form that can be updated this way; `result()` is what a full
compile of the same snapshot returns (the controller's tests check exactly that).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from mnp.api.policy import KIND as POLICY_KIND
from mnp.api.policy import Policy
from mnp.api.refs import Diagnostic, ObjRef
from mnp.api.ruleset import RulesetSpec
from mnp.compiler.compile import (
    CompileOptions,
    CompileResult,
    PolicyPeers,
    Snapshot,
    compile_rulesets,
    index_pods,
    selected_pods,
)


@dataclass
class Compiled:
    rulesets: dict[ObjRef, RulesetSpec] = field(default_factory=dict)
    selected: dict[str, tuple[ObjRef, ...]] = field(default_factory=dict)
    diagnostics: dict[ObjRef, tuple[Diagnostic, ...]] = field(default_factory=dict)
    # The resolved peers of each policy that selects a pod: valid until a change affects the policy.
    peers: dict[str, PolicyPeers] = field(default_factory=dict)
    # pod → the policies selecting it (`selected` inverted).
    selecting: dict[ObjRef, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, targets in self.selected.items():
            for ref in targets:
                self.selecting.setdefault(ref, set()).add(key)

    def _select(self, key: str, targets: tuple[ObjRef, ...] | None) -> None:
        """Record what policy `key` selects now (None: the policy is gone)."""
        for ref in self.selected.get(key, ()):
            holders = self.selecting.get(ref)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self.selecting[ref]
        if targets is None:
            self.selected.pop(key, None)
            return
        self.selected[key] = targets
        for ref in targets:
            self.selecting.setdefault(ref, set()).add(key)

    @staticmethod
    def full(snapshot: Snapshot, options: CompileOptions) -> Compiled:
        result = compile_rulesets(snapshot, options)
        by_obj: dict[ObjRef, list[Diagnostic]] = {}
        for d in result.diagnostics:
            by_obj.setdefault(d.obj, []).append(d)
        return Compiled(
            dict(result.rulesets),
            dict(result.selected),
            {k: tuple(v) for k, v in by_obj.items()},
            dict(result.peers),
        )

    def result(self) -> CompileResult:
        diagnostics = sorted({d for ds in self.diagnostics.values() for d in ds})
        rulesets = {ref: self.rulesets[ref] for ref in sorted(self.rulesets)}
        return CompileResult(rulesets, tuple(diagnostics), dict(sorted(self.selected.items())))

    def update(
        self,
        snapshot: Snapshot,
        options: CompileOptions,
        affected: set[str],
        changed_objects: Iterable[ObjRef] = (),
        peers_changed: set[str] | None = None,
    ) -> set[ObjRef]:
        """Bring this up to date with `snapshot` after changes that can touch only `affected`
        policies; `changed_objects` are the refs of every changed object (their own problems are
        refreshed); `peers_changed`, the affected policies whose peers can have changed (None: all).
        Returns the pods whose rulesets were recomputed (created, changed or removed)."""
        policies = {p.key: p for p in snapshot.policies}
        present = sorted(k for k in affected if k in policies)
        if snapshot.pod_index is None:
            snapshot = replace(snapshot, pod_index=index_pods(snapshot.pods))
        now = selected_pods(snapshot, options, [policies[k] for k in present])
        changed = set(changed_objects)
        pods: set[ObjRef] = set()
        for key in affected:
            before, after = set(self.selected.get(key, ())), set(now.get(key, ()))
            if peers_changed is None or key in peers_changed:
                pods |= before | after  # its rules changed: every pod it selects gets new ones
            else:
                # Same rules: only pods entering or leaving it, or changed themselves, are touched.
                pods |= (before ^ after) | ((before | after) & changed)
        # Policies no change touched keep what they select and their peers; they are compiled again
        # only for the pods of P they select, so that those pods' rulesets come out whole.
        others = {
            k for ref in pods for k in self.selecting.get(ref, ()) if k in policies and k not in affected
        }
        group = sorted({*present, *others})
        for key in affected if peers_changed is None else peers_changed:
            self.peers.pop(key, None)  # what it selects as peers may have changed
        second = compile_rulesets(
            _with(snapshot, [policies[k] for k in group]),
            options,
            only=pods,
            known_peers=self.peers,
            known_selected={**{k: self.selected[k] for k in others}, **now},
        )
        self.peers.update(second.peers)
        for ref in pods:
            if ref in second.rulesets:
                self.rulesets[ref] = second.rulesets[ref]
            else:
                self.rulesets.pop(ref, None)
        for key in affected:
            if key not in policies:
                self._select(key, None)
        for key in group:
            self._select(key, second.selected[key])
        fresh: dict[ObjRef, list[Diagnostic]] = {}
        for d in second.diagnostics:
            fresh.setdefault(d.obj, []).append(d)
        refresh = {policies[k].ref for k in group} | pods | changed
        refresh |= {r for r in self.diagnostics if r.kind == "MultiNetworkPolicy" and str(r) in affected}
        own = _own_problems(snapshot, policies, refresh)
        for ref in refresh:
            found = fresh.get(ref) if ref in pods or ref in {policies[k].ref for k in group} else None
            problems = tuple(dict.fromkeys([*(found or ()), *own.get(ref, ())]))
            if problems:
                self.diagnostics[ref] = problems
            else:
                self.diagnostics.pop(ref, None)
        return pods


def _with(snapshot: Snapshot, policies: list[Policy]) -> Snapshot:
    return replace(snapshot, policies=tuple(policies))


def _own_problems(
    snapshot: Snapshot, policies: dict[str, Policy], refs: set[ObjRef]
) -> dict[ObjRef, tuple[Diagnostic, ...]]:
    """Parsing problems that travel with the objects themselves (pods and policies)."""
    out: dict[ObjRef, tuple[Diagnostic, ...]] = {}
    by_ns = snapshot.pods_by_namespace()
    for ns in sorted({r.namespace for r in refs if r.kind != POLICY_KIND}):
        for pod in by_ns.get(ns, ()):
            if pod.problems and pod.ref in refs:
                out[pod.ref] = tuple(pod.problems)
    for ref in refs:
        policy = policies.get(str(ref)) if ref.kind == POLICY_KIND else None
        if policy is not None and policy.ref == ref and policy.problems:
            out[ref] = tuple(policy.problems)
    return out


__all__ = ["Compiled"]

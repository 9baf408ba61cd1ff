"""Pod garbage collection for nodes that are gone: a Terminating pod bound to a node that no longer
exists has no kubelet to finish its deletion, so it is force-deleted (grace 0), as the real pod GC
controller does for orphaned pods. Pods that are not being deleted are left alone: a node may register
after pods were bound to it by name."""

from __future__ import annotations

from collections.abc import Iterable

from mnp.kube import resources as kr
from mnp.local.workloads import objects as ob
from mnp.local.workloads.objects import Action, Delete, Raw


def collect_orphans(pods: Iterable[Raw], nodes: Iterable[Raw]) -> list[Action]:
    """Grace-0 deletes for Terminating pods bound to nodes that do not exist."""
    known = {ob.name(n) for n in nodes}
    return [
        Delete(kr.PODS, ob.namespace(p), ob.name(p), ob.uid(p), grace_seconds=0)
        for p in sorted(pods, key=lambda p: (ob.namespace(p), ob.name(p)))
        if ob.terminating(p) and ob.spec(p).get("nodeName") and ob.spec(p)["nodeName"] not in known
    ]

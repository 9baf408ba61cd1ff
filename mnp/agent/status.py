"""What the agent writes into a PodNetworkRuleset's status, and the fallback for invalid rulesets (pure).

Status is the agent's account of what is enforced: the generation it acted on, the hash of the
transaction in the pod's netns, its size, and one `Applied` condition whose reason and message say
what a person should do when it is False.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mnp.api.ruleset import DirectionRules, RulesetSpec, is_valid_ifname
from mnp.api.status import same_status

APPLIED = "Applied"
# Reasons of the Applied condition.
R_APPLIED = "Applied"
R_NETNS_NOT_FOUND = "NetnsNotFound"
R_POD_MISMATCH = "PodMismatch"
R_INVALID = "InvalidRuleset"
R_NFT_ERROR = "NftError"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one sync of a ruleset, as it goes into status."""

    ok: bool
    reason: str
    message: str
    applied_hash: str = ""
    rules: int = 0
    elements: int = 0
    # When the table in the netns was (re)written; kept from the previous status when unchanged.
    applied_at: str | None = None


def transaction_hash(text: str) -> str:
    """`appliedHash`: of the canonical (whole-table) transaction, so equal tables hash equal."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def ruleset_status(
    generation: int, outcome: Outcome, now: str, old: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The whole status; the condition keeps its lastTransitionTime while its status is unchanged."""
    old = old or {}
    previous: Mapping[str, Any] = next(
        (c for c in old.get("conditions") or [] if c.get("type") == APPLIED), {}
    )
    status = "True" if outcome.ok else "False"
    since = previous.get("lastTransitionTime") if previous.get("status") == status else None
    condition = {
        "type": APPLIED,
        "status": status,
        "reason": outcome.reason,
        "message": outcome.message,
        "observedGeneration": generation,
        "lastTransitionTime": since or now,
    }
    out: dict[str, Any] = {"observedGeneration": generation, "conditions": [condition]}
    if outcome.applied_hash:
        out["appliedHash"] = outcome.applied_hash
        out["rules"] = outcome.rules
        out["elements"] = outcome.elements
    elif old.get("appliedHash") and not outcome.ok:
        # Still enforcing what was applied before (an invalid update keeps the last valid table).
        for key in ("appliedHash", "rules", "elements"):
            if key in old:
                out[key] = old[key]
    last = outcome.applied_at or old.get("lastApplied")
    if last and "appliedHash" in out:
        out["lastApplied"] = last
    return out


def isolation_only(raw: Any, pod_uid: str, node: str) -> RulesetSpec | None:
    """For an invalid ruleset: deny both directions on every interface it names validly, allow nothing.

    Fail-closed: the interfaces the ruleset lists (isolated lists and interfaces[].name) are what the
    controller meant to police; with none readable there is nothing safe to isolate (None).
    """
    spec = raw.get("spec") if isinstance(raw, Mapping) else None
    if not isinstance(spec, Mapping):
        return None
    names: set[str] = set()
    for direction in ("ingress", "egress"):
        section = spec.get(direction)
        if isinstance(section, Mapping) and isinstance(section.get("isolated"), list):
            names.update(n for n in section["isolated"] if isinstance(n, str) and is_valid_ifname(n))
    interfaces = spec.get("interfaces")
    if isinstance(interfaces, list):
        names.update(
            i["name"]
            for i in interfaces
            if isinstance(i, Mapping) and isinstance(i.get("name"), str) and is_valid_ifname(i["name"])
        )
    if not names:
        return None
    isolated = tuple(sorted(names))
    deny = DirectionRules(isolated=isolated, rules=())
    return RulesetSpec(pod_uid=pod_uid, node=node, ingress=deny, egress=deny)


__all__ = [
    "APPLIED",
    "Outcome",
    "R_APPLIED",
    "R_INVALID",
    "R_NETNS_NOT_FOUND",
    "R_NFT_ERROR",
    "R_POD_MISMATCH",
    "isolation_only",
    "ruleset_status",
    "same_status",
    "transaction_hash",
]

"""Keeping a ruleset under the object size limit: drop provenance and collapse addresses."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

from mnp.api.ruleset import DirectionRules, IPNetwork, Peer, Rule, RulesetSpec, spec_to_raw

# Measured: a peer entry with pod provenance takes ~100 bytes of JSON, ~40 without; a rule's own
# fields ~80, a port entry ~40. Over-estimates are fine: they only cost one exact measurement.
_BYTES_PER_PEER = 100
_BYTES_PER_RULE = 100
_BYTES_PER_PORT = 50


def ruleset_size(spec: RulesetSpec) -> int:
    return len(json.dumps(spec_to_raw(spec), separators=(",", ":")))


def compact_if_needed(spec: RulesetSpec, limit: int) -> tuple[RulesetSpec, str | None]:
    """The spec, or a compacted one (compacted=True) if it would exceed `limit` bytes as JSON.

    The second value is a message when compaction happened or could not get under the limit.
    """
    rules = [r for d in (spec.ingress, spec.egress) if d for r in d.rules]
    estimate = sum(
        _BYTES_PER_RULE + _BYTES_PER_PEER * len(r.peers or ()) + _BYTES_PER_PORT * len(r.ports or ())
        for r in rules
    )
    if estimate < limit // 2 or ruleset_size(spec) <= limit:
        return spec, None
    compacted = replace(spec, compacted=True, ingress=_compact(spec.ingress), egress=_compact(spec.egress))
    size = ruleset_size(compacted)
    if size > limit:
        # An object this big is refused by the API server, which would leave the pod on its previous
        # ruleset or none (open). Fail closed: the interfaces stay isolated and nothing is allowed.
        closed = replace(compacted, ingress=_deny(compacted.ingress), egress=_deny(compacted.egress))
        return closed, (
            f"ruleset is {size} bytes even compacted (limit {limit}): the pod's policed interfaces "
            "allow nothing until its policies shrink"
        )
    return (
        compacted,
        "ruleset compacted: pod provenance dropped, addresses collapsed and rules that allow nothing or "
        "repeat another dropped to fit the size limit",
    )


def _compact(rules: DirectionRules | None) -> DirectionRules | None:
    """Provenance-free rules; a rule that allows nothing, or the same as an earlier one, is dropped
    (isolation does not depend on rules: `isolated` keeps every interface policed)."""
    if rules is None:
        return None
    kept: dict[tuple[object, ...], Rule] = {}
    for rule in (_compact_rule(r) for r in rules.rules):
        if rule.peers == () or rule.ports == ():
            continue
        kept.setdefault((rule.interface, rule.peers, rule.ports), rule)
    return replace(rules, rules=tuple(kept.values()))


def _deny(rules: DirectionRules | None) -> DirectionRules | None:
    return None if rules is None else replace(rules, rules=())


def _compact_rule(rule: Rule) -> Rule:
    if rule.peers is None:
        return rule
    plain: dict[int, list[IPNetwork]] = {4: [], 6: []}
    with_except: list[Peer] = []
    for p in rule.peers:
        if p.excepts:
            with_except.append(Peer(p.cidr, p.excepts))
        else:
            plain[p.cidr.version].append(p.cidr)
    collapsed = [Peer(n) for v in (4, 6) for n in ipaddress.collapse_addresses(plain[v])]  # type: ignore[type-var]
    merged = {(p.cidr, p.excepts): p for p in collapsed + with_except}
    return replace(rule, peers=tuple(sorted(merged.values(), key=Peer.sort_key)))

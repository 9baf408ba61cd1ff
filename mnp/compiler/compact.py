"""Keeping a ruleset under the object size limit: drop provenance and collapse addresses."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

from mnp.api.ruleset import DirectionRules, IPNetwork, Peer, Rule, RulesetSpec, spec_to_raw

# Measured: a peer entry with pod provenance takes ~100 bytes of JSON, ~40 without.
_BYTES_PER_PEER = 100


def ruleset_size(spec: RulesetSpec) -> int:
    return len(json.dumps(spec_to_raw(spec), separators=(",", ":")))


def compact_if_needed(spec: RulesetSpec, limit: int) -> tuple[RulesetSpec, str | None]:
    """The spec, or a compacted one (compacted=True) if it would exceed `limit` bytes as JSON.

    The second value is a message when compaction happened or could not get under the limit.
    """
    peers = sum(len(r.peers or ()) for d in (spec.ingress, spec.egress) if d for r in d.rules)
    if peers * _BYTES_PER_PEER < limit // 2 or ruleset_size(spec) <= limit:
        return spec, None
    compacted = replace(spec, compacted=True, ingress=_compact(spec.ingress), egress=_compact(spec.egress))
    size = ruleset_size(compacted)
    if size > limit:
        return compacted, f"ruleset is {size} bytes even without provenance (limit {limit})"
    return (
        compacted,
        "ruleset compacted: pod provenance dropped and addresses collapsed to fit the size limit",
    )


def _compact(rules: DirectionRules | None) -> DirectionRules | None:
    if rules is None:
        return None
    return replace(rules, rules=tuple(_compact_rule(r) for r in rules.rules))


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

"""Kubernetes label selectors (matchLabels + matchExpressions) as values, and their matching."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is Operator.IN:
            return labels.get(self.key) in self.values
        if self.operator is Operator.NOT_IN:
            # "NotIn": the key is absent, or its value is not listed.
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """All requirements must hold; an empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False
    # Worked out once (compiles match every selector against many pods): the requirements that are
    # one `key: value` each, as a dict, and the others.
    _equal: dict[str, str] = field(init=False, repr=False, compare=False)
    _rest: tuple[Requirement, ...] = field(init=False, repr=False, compare=False)
    _only: tuple[str, str] | None = field(init=False, repr=False, compare=False)  # the one key: value

    def __post_init__(self) -> None:
        equal: dict[str, str] = {}
        rest: list[Requirement] = []
        for r in self.requirements:
            if r.operator is Operator.IN and len(r.values) == 1 and r.key not in equal:
                equal[r.key] = next(iter(r.values))
            else:
                rest.append(r)
        object.__setattr__(self, "_equal", equal)
        object.__setattr__(self, "_rest", tuple(rest))
        single = len(equal) == 1 and not rest and not self.matches_nothing
        object.__setattr__(self, "_only", next(iter(equal.items())) if single else None)

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(matches_nothing=True)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self._only is not None:
            return labels.get(self._only[0]) == self._only[1]
        if self.matches_nothing or not labels.items() >= self._equal.items():
            return False
        return all(r.matches(labels) for r in self._rest)


Report = Callable[[str, str], None]


def parse_selector(raw: Any, path: str, report: Report) -> LabelSelector | None:
    """A selector from its JSON form; None (and a report naming the field) when it is invalid."""
    if raw is None:
        return LabelSelector()
    if not isinstance(raw, Mapping):
        report(path, f"expected a label selector object, got {type(raw).__name__}")
        return None
    reqs: list[Requirement] = []
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        report(f"{path}.matchLabels", "expected a map of label to value")
        return None
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            report(f"{path}.matchLabels", f"{k!r}: {v!r} is not a string label")
            return None
        reqs.append(Requirement(k, Operator.IN, frozenset({v})))
    exprs = raw.get("matchExpressions") or []
    if not isinstance(exprs, list):
        report(f"{path}.matchExpressions", "expected a list")
        return None
    for i, e in enumerate(exprs):
        req = _parse_requirement(e, f"{path}.matchExpressions[{i}]", report)
        if req is None:
            return None
        reqs.append(req)
    return LabelSelector(tuple(sorted(reqs, key=lambda r: (r.key, r.operator, sorted(r.values)))))


def _parse_requirement(raw: Any, path: str, report: Report) -> Requirement | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("key"), str):
        report(path, "expected an object with a key")
        return None
    op = raw.get("operator")
    if op not in {o.value for o in Operator}:
        report(f"{path}.operator", f"{op!r} is not In, NotIn, Exists or DoesNotExist")
        return None
    values = raw.get("values") or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        report(f"{path}.values", "expected a list of strings")
        return None
    operator = Operator(op)
    if operator in (Operator.IN, Operator.NOT_IN) and not values:
        report(f"{path}.values", f"{op} needs at least one value")
        return None
    if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
        report(f"{path}.values", f"{op} takes no values")
        return None
    return Requirement(raw["key"], operator, frozenset(values))

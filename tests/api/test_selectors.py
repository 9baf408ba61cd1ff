"""Label selector matching: the precomputed `key: value` fast path agrees with the requirements."""

from __future__ import annotations

import random

import pytest

from mnp.api.selectors import LabelSelector, Operator, Requirement, parse_selector


def _naive(selector: LabelSelector, labels: dict[str, str]) -> bool:
    return not selector.matches_nothing and all(r.matches(labels) for r in selector.requirements)


def _parse(raw: object) -> LabelSelector:
    problems: list[tuple[str, str]] = []
    selector = parse_selector(raw, "spec.podSelector", lambda f, m: problems.append((f, m)))
    assert selector is not None and not problems, problems
    return selector


@pytest.mark.parametrize(
    ("raw", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "a", "x": "y"}, True),
        ({"matchLabels": {"app": "a"}}, {"app": "b"}, False),
        ({"matchLabels": {"app": "a"}}, {}, False),
        # The same key as matchLabels and as an In expression with another value: nothing matches.
        (
            {
                "matchLabels": {"app": "a"},
                "matchExpressions": [{"key": "app", "operator": "In", "values": ["b"]}],
            },
            {"app": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}, {"app": "b"}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {"app": ""}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": "a"}, False),
    ],
)
def test_a_selector_matches_exactly_the_labels_its_requirements_allow(
    raw: object, labels: dict[str, str], expected: bool
) -> None:
    selector = _parse(raw)
    assert selector.matches(labels) is expected
    assert _naive(selector, labels) is expected


def test_the_fast_path_agrees_with_every_requirement_on_random_selectors() -> None:
    rng = random.Random(7)
    keys, values = ["a", "b", "c"], ["1", "2", "3"]
    for _ in range(3000):
        reqs = []
        for _ in range(rng.randrange(4)):
            op = rng.choice(list(Operator))
            vals = (
                frozenset(rng.sample(values, rng.randrange(1, 3)))
                if op in (Operator.IN, Operator.NOT_IN)
                else frozenset()
            )
            reqs.append(Requirement(rng.choice(keys), op, vals))
        selector = LabelSelector(tuple(reqs))
        labels = {k: rng.choice(values) for k in keys if rng.random() < 0.6}
        assert selector.matches(labels) is _naive(selector, labels), (reqs, labels)


def test_a_selector_that_matches_nothing_matches_no_labels() -> None:
    assert not LabelSelector.nothing().matches({})

"""Operator-supplied extra rules (`--custom-v4-ingress-rule-file` and friends).

They are spliced into every interface chain of their direction and family, so a line must not be able
to end its rule or its chain: such lines are refused here with `path:line`, before anything is applied.
Whether the rule itself is valid nft is checked by nft when the agent starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnp.api.errors import InvalidInput
from mnp.nft.names import rule_text_problem


@dataclass(frozen=True, slots=True)
class CustomRules:
    """Verbatim rule lines per family and direction, as parsed by `parse_custom_rules`."""

    v4_ingress: tuple[str, ...] = ()
    v4_egress: tuple[str, ...] = ()
    v6_ingress: tuple[str, ...] = ()
    v6_egress: tuple[str, ...] = ()


def parse_custom_rules(text: str, path: str) -> tuple[str, ...]:
    """One rule per line; blank lines and lines starting with `#` are skipped.

    Raises InvalidInput with field `path:line` for a line that could break out of its chain.
    """
    rules: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        problem = rule_text_problem(stripped)
        if problem is None and not stripped.isprintable():
            problem = "control characters are not allowed"
        if problem:
            raise InvalidInput(f"{path}:{number}", problem)
        rules.append(stripped)
    return tuple(rules)

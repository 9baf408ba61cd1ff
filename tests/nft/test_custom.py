"""Operator custom rule files."""

from __future__ import annotations

import pytest

from mnp.api.errors import InvalidInput
from mnp.nft.custom import parse_custom_rules


def test_one_rule_per_line_with_comments_and_blank_lines_skipped() -> None:
    text = "# allow ssh from the jump host\n\n  ip saddr 192.0.2.1 tcp dport 22 accept  \n\t# x\nip saddr { 192.0.2.2, 192.0.2.3 } accept\n"
    assert parse_custom_rules(text, "/etc/mnp/v4-ingress") == (
        "ip saddr 192.0.2.1 tcp dport 22 accept",
        "ip saddr { 192.0.2.2, 192.0.2.3 } accept",
    )


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("accept; flush ruleset", "';'"),
        ("accept }", "unbalanced '}'"),
        ("} chain evil { accept", "unbalanced '}'"),
        ("ip saddr { 1.2.3.4", "unbalanced '{'"),
        ('meta comment "x', "unbalanced"),
        ("accept # trailing", "'#'"),
        ("accept\x00", "control"),
    ],
)
def test_lines_that_could_leave_their_chain_are_refused_with_path_and_line(line: str, why: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_custom_rules(f"# header\nip saddr 192.0.2.1 accept\n{line}\n", "rules.nft")
    assert e.value.field == "rules.nft:3"
    assert why in e.value.message

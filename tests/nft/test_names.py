"""Names that enter nft syntax."""

from __future__ import annotations

import pytest

from mnp.api.errors import InvalidInput
from mnp.api.ruleset import Direction
from mnp.nft import names


@pytest.mark.parametrize("name", ["mnp", "M", "mnp_table_2", "a" * 32])
def test_valid_table_names_are_kept(name: str) -> None:
    assert names.table_name(name) == name


@pytest.mark.parametrize("name", ["", "1mnp", "mnp-x", "a" * 33, "mnp\n", "mnp;", "mnp }", "mnp.x"])
def test_invalid_table_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as e:
        names.table_name(name)
    assert e.value.field == "table"


def test_fixed_chain_and_map_names() -> None:
    assert names.base_chain(Direction.INGRESS) == "ingress"
    assert names.base_chain(Direction.EGRESS) == "egress"
    assert names.interface_chain(Direction.INGRESS, "net1") == "ingress-net1"
    assert names.ports_chain(Direction.EGRESS, "net1", 3) == "egress-net1-p3"
    assert names.address_map(Direction.INGRESS, "net1", 4) == "ingress-net1-v4-addr"
    assert names.network_map(Direction.EGRESS, "net_2", 6) == "egress-net_2-v6-net"


def test_interface_names_outside_the_plain_alphabet_get_a_sanitised_form_and_a_hash() -> None:
    tokens = {n: names.interface_token(n) for n in ["net.1", "net-1", "net_1", "net1\n"]}
    assert tokens["net_1"] == "net_1"
    assert tokens["net.1"].startswith("net_1-") and len(tokens["net.1"]) == len("net_1-") + 6
    assert len(set(tokens.values())) == 4


def test_comments_are_clamped_and_safe() -> None:
    text = names.comment('ns/name "; } \n drop' + "x" * 500)
    assert len(text) == names.COMMENT_MAX
    assert set(text) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ./:_,=+-")
    assert text.startswith("ns/name __ _   drop")

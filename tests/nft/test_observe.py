"""Reading a table's shape back from `nft -t list table` text, and the swap built from it."""

from __future__ import annotations

import dataclasses

import pytest

from mnp.nft.model import Hook, TableShape, base_chain_spec
from mnp.nft.observe import parse_shape
from mnp.nft.render import build_table, render_table_replace, render_table_swap
from tests.nft.cases import CASES

LISTED = """table inet mnp {
\tmap ingress-net1-v4 {
\t\ttype ipv4_addr : verdict
\t\tsize 64
\t}

\tchain ingress {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname "net1" jump ingress-net1
\t}

\tchain ingress-net1 {
\t\tcomment "ns/pol"
\t\tip saddr vmap @ingress-net1-v4
\t\tdrop
\t}
}"""


def test_shape_names_maps_chains_and_base_chain_declarations() -> None:
    assert parse_shape(LISTED) == TableShape(
        "mnp",
        maps=("ingress-net1-v4",),
        chains=(("ingress", base_chain_spec(Hook.INPUT)), ("ingress-net1", "")),
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "table ip mnp {\n}",  # not inet
        LISTED.replace("\tmap ingress-net1-v4 {", "\tflowtable ft {"),  # something we do not manage
        LISTED.replace("\tchain ingress-net1 {", '\tchain "x;flush ruleset" {'),  # not an identifier
        LISTED.replace("table inet mnp {", "table inet m;p {"),
        LISTED[:-1],  # cut short
        LISTED.replace("\t}\n\n\tchain ingress {", "\n\tchain ingress {"),  # a block never closed
    ],
)
def test_text_we_cannot_fully_account_for_has_no_shape(text: str) -> None:
    assert parse_shape(text) is None


def test_a_base_chain_declared_differently_is_recorded_as_declared() -> None:
    odd = LISTED.replace("priority filter; policy accept;", "priority 10; policy drop;")
    shape = parse_shape(odd)
    assert (
        shape is not None
        and dict(shape.chains)["ingress"] == "type filter hook input priority 10; policy drop;"
    )


def test_swap_from_nothing_known_is_the_whole_table_replace() -> None:
    table = build_table(*CASES["deny-all"])
    assert render_table_swap(table, None, "# h") == render_table_replace(table, "# h")
    other = TableShape("other")
    assert render_table_swap(table, other) == render_table_replace(table)


def test_swap_flushes_deletes_every_non_base_object_and_keeps_identical_base_chains() -> None:
    new = build_table(*CASES["egress"])
    old = dataclasses.replace(build_table(*CASES["dual-stack-two-interfaces"]).shape(), name=new.name)
    lines = render_table_swap(new, old).splitlines()
    assert lines[0] == f"flush table inet {new.name}"
    deletes = [line for line in lines if line.startswith("delete ")]
    assert {line.split()[-1] for line in deletes if line.startswith("delete map")} == set(old.maps)
    deleted_chains = {line.split()[-1] for line in deletes if line.startswith("delete chain")}
    kept = {n for n, s in old.chains if s and dict(new.shape().chains).get(n) == s}
    assert deleted_chains == {n for n, _ in old.chains} - kept
    assert "table inet" in "\n".join(lines[len(deletes) + 1 :])
    # Maps go before chains: a map's verdicts hold the chains they jump to.
    first_chain = next(i for i, line in enumerate(lines) if line.startswith("delete chain"))
    assert all(i < first_chain for i, line in enumerate(lines) if line.startswith("delete map"))


def test_a_base_chain_with_another_declaration_is_deleted_and_defined_anew() -> None:
    new = build_table(*CASES["deny-all"])
    old = TableShape(new.name, chains=(("ingress", "type filter hook input priority 10; policy drop;"),))
    assert f"delete chain inet {new.name} ingress" in render_table_swap(new, old)

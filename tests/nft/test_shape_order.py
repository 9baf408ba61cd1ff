"""A table read back after a swap lists its chains in another order than rendered; shapes compare by
content. (Found by the bad-input sweep, tests/kernel/test_bad_input.py: a pod isolated both ways whose
ruleset changed structure got Applied=False "read back differs" although its table was right.)"""

from __future__ import annotations

import dataclasses
import subprocess
import uuid

import pytest

from mnp.api.ruleset import DirectionRules
from mnp.nft.model import Table, TableShape
from mnp.nft.observe import parse_shape
from mnp.nft.render import build_table, render_table_swap
from tests.nft.cases import CASES


def both_ways(ingress_on: tuple[str, ...]) -> Table:
    """The egress case with ingress isolated too, on `ingress_on` (no ingress rule: deny)."""
    spec, options = CASES["egress"]
    return build_table(dataclasses.replace(spec, ingress=DirectionRules(ingress_on, ())), options)


def test_shapes_equal_in_content_are_equal_whatever_the_order_they_were_read_in() -> None:
    a = TableShape("mnp", maps=("b", "a"), chains=(("ingress", "x"), ("egress", "y"), ("ingress-net1", "")))
    b = TableShape("mnp", maps=("a", "b"), chains=(("ingress-net1", ""), ("egress", "y"), ("ingress", "x")))
    assert a == b
    assert a != TableShape("mnp", maps=("a",), chains=a.chains)


@pytest.mark.kernel
def test_a_swap_between_two_tables_isolating_both_ways_reads_back_as_rendered() -> None:
    netns = f"mnpshape{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)

    def nft(*args: str, text: str | None = None) -> str:
        argv = ["ip", "netns", "exec", netns, "nft", *args]
        return subprocess.run(argv, input=text, text=True, capture_output=True, check=True).stdout

    try:
        old = None
        # From the second table on, the swap keeps both base chains hooked and defines the rest anew.
        for table in (both_ways(("net1",)), both_ways(("net1", "net2")), both_ways(("net2",))):
            nft("-f", "-", text=render_table_swap(table, old))
            old = parse_shape(nft("-t", "list", "table", "inet", table.name))
            assert old == table.shape()
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)

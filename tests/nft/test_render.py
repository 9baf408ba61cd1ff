"""The rendered transaction: golden files, determinism, and what the table means."""

from __future__ import annotations

import dataclasses

import pytest

from mnp.api.errors import InvalidInput
from mnp.api.ruleset import Direction, Protocol
from mnp.nft import model
from mnp.nft.render import RenderOptions, build_table, render_delete, render_ruleset, render_update
from tests.conftest import GOLDEN_DIR
from tests.nft.cases import CASES, rule, spec
from tests.nft.evaluate import table_allows
from tests.oracle import direction_allows


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_transaction_matches_its_golden_file(case: str, update_golden: bool) -> None:
    text = render_ruleset(*CASES[case])
    path = GOLDEN_DIR / f"{case}.nft"
    if update_golden:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run pytest --update-golden and review the diff"
    assert text == path.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_twice_gives_byte_equal_text(case: str) -> None:
    s, options = CASES[case]
    assert render_ruleset(s, options) == render_ruleset(dataclasses.replace(s), dataclasses.replace(options))


def test_rule_order_in_the_ruleset_does_not_change_the_text() -> None:
    s, options = CASES["ipblock-except-overlapping"]
    assert s.ingress is not None
    shuffled = dataclasses.replace(s, ingress=dataclasses.replace(s.ingress, rules=s.ingress.rules[::-1]))
    assert render_ruleset(shuffled, options) == render_ruleset(s, options)


def test_transaction_replaces_the_whole_table_in_one_go() -> None:
    lines = render_ruleset(*CASES["allow-any"]).splitlines()
    body = [line for line in lines if not line.startswith("#")]
    assert body[:3] == ["table inet mnp {}", "delete table inet mnp", "table inet mnp {"]


def test_direction_without_isolated_interface_gets_no_base_chain() -> None:
    table = build_table(*CASES["dual-stack-two-interfaces"])
    assert [c.name for c in table.chains if c.hook is not None] == ["ingress"]
    assert all("net2" not in c.name for c in table.chains)


def test_nothing_isolated_renders_an_empty_table() -> None:
    assert build_table(*CASES["nothing-isolated"]) == model.Table("mnp")


def test_each_interface_chain_has_at_most_two_lookups_per_family_whatever_the_number_of_peers() -> None:
    peers = [{"cidr": f"192.0.2.{i}/32"} for i in range(1, 200)] + [
        {"cidr": f"10.{i}.0.0/16", "except": [f"10.{i}.1.0/24"]} for i in range(100)
    ]
    rules = [
        rule(f"default/p{i % 7}", i, peers=peers[i::13], ports=[{"protocol": "TCP", "port": 1000 + i % 3}])
        for i in range(40)
    ]
    table = build_table(spec(ingress={"isolated": ["net1"], "rules": rules}))
    chain = next(c for c in table.chains if c.name == "ingress-net1")
    lookups = [r for r in chain.rules if isinstance(r.statements[0], model.MapLookup)]
    assert len(lookups) == 2
    assert len(chain.rules) == 5  # ct, ND, two lookups, drop
    # one chain per distinct set of ports (three port numbers: at most 7 non-empty unions), not per
    # rule or peer
    assert 3 <= len([c for c in table.chains if c.name.startswith("ingress-net1-p")]) <= 7


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_tables_mean_what_the_ruleset_says(case: str) -> None:
    s, options = CASES[case]
    table = build_table(s, options)
    probes = [
        "192.0.2.21", "192.0.2.22", "192.0.2.30", "192.0.2.40", "192.0.2.99", "192.0.2.70",
        "203.0.113.1", "203.0.113.5", "203.0.113.9", "203.0.113.130", "203.0.113.200", "10.1.2.3", "8.8.8.8",
        "198.51.100.5", "198.51.100.21", "198.51.100.200",
        "2001:db8:a::21", "2001:db8:a::99", "2001:db8:a:1::5", "2001:db8:a:2::1", "2001:db8:b::1", "2001:db9::1",
    ]  # fmt: skip
    for direction in Direction:
        for iface in ("net1", "net2", "net-a.1"):
            for addr in probes:
                for proto, port in [(Protocol.TCP, 80), (Protocol.TCP, 443), (Protocol.TCP, 8081), (Protocol.UDP, 53),
                                    (Protocol.UDP, 5005), (Protocol.SCTP, 9), (Protocol.TCP, 9090), (Protocol.TCP, 5432)]:  # fmt: skip
                    want = direction_allows(s, direction, iface, addr, proto, port)
                    got = table_allows(table, direction, iface, addr, proto, port)
                    assert got == want, (direction, iface, addr, proto, port)


def test_bad_table_name_is_refused_before_any_text() -> None:
    with pytest.raises(InvalidInput, match="table"):
        render_ruleset(CASES["deny-all"][0], RenderOptions(table="mnp; flush ruleset"))
    with pytest.raises(InvalidInput, match="table"):
        render_delete("1abc")


def test_delete_works_whether_or_not_the_table_exists() -> None:
    assert render_delete("mnp") == "table inet mnp {}\ndelete table inet mnp\n"


# --- incremental updates ---------------------------------------------------------------------------


def _peers_table(addresses: list[str], blocks: list[str] = ()) -> model.Table:  # type: ignore[assignment]
    peers = [{"cidr": f"{a}/32"} for a in addresses] + [{"cidr": b} for b in blocks]
    return build_table(
        spec(
            ingress={
                "isolated": ["net1"],
                "rules": [rule("default/web", 0, peers=peers, ports=[{"protocol": "TCP", "port": 80}])],
            }
        )
    )


def test_one_peer_change_is_one_delete_and_one_add() -> None:
    old = _peers_table(["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    new = _peers_table(["192.0.2.1", "192.0.2.2", "192.0.2.4"])
    assert render_update(old, new) == (
        "delete element inet mnp ingress-net1-v4-addr { 192.0.2.3 }\n"
        "add element inet mnp ingress-net1-v4-addr {\n\t192.0.2.4 : jump ingress-net1-p0\n}\n"
    )


def test_changed_interval_map_is_flushed_and_refilled_in_the_same_transaction() -> None:
    old = _peers_table(["192.0.2.1"], ["203.0.113.0/25"])
    new = _peers_table(["192.0.2.1"], ["203.0.113.0/26", "203.0.113.128/26"])
    assert render_update(old, new) == (
        "flush map inet mnp ingress-net1-v4-net\n"
        "add element inet mnp ingress-net1-v4-net {\n"
        "\t203.0.113.0/26 : jump ingress-net1-p0,\n\t203.0.113.128/26 : jump ingress-net1-p0\n}\n"
    )


def test_a_changed_value_for_the_same_address_is_replaced() -> None:
    def web(rule0: list[str], rule1: list[str]) -> model.Table:
        return build_table(spec(ingress={"isolated": ["net1"], "rules": [
            rule("default/web", 0, peers=[{"cidr": f"{a}/32"} for a in rule0], ports=[{"protocol": "TCP", "port": 80}]),
            rule("default/web", 1, peers=[{"cidr": f"{a}/32"} for a in rule1]),  # any port
        ]}))  # fmt: skip

    update = render_update(
        web(["192.0.2.1", "192.0.2.2"], []), web(["192.0.2.1", "192.0.2.2", "192.0.2.99"], ["192.0.2.2"])
    )
    assert update == (
        "delete element inet mnp ingress-net1-v4-addr { 192.0.2.2 }\n"
        "add element inet mnp ingress-net1-v4-addr {\n\t192.0.2.2 : accept,\n\t192.0.2.99 : jump ingress-net1-p0\n}\n"
    )


def test_rule_provenance_is_in_the_interface_chain_comment_so_a_new_rule_is_a_full_replace() -> None:
    one = _peers_table(["192.0.2.1"])
    chain = next(c for c in one.chains if c.name == "ingress-net1")
    assert chain.comment == "default/web:0"
    two = build_table(spec(ingress={"isolated": ["net1"], "rules": [
        rule("default/web", 0, peers=[{"cidr": "192.0.2.1/32"}], ports=[{"protocol": "TCP", "port": 80}]),
        rule("default/web", 1, peers=[]),
    ]}))  # fmt: skip
    assert next(c for c in two.chains if c.name == "ingress-net1").comment == "default/web:0,1"
    assert render_update(one, two) is None


def test_structure_change_asks_for_a_full_replace() -> None:
    old = _peers_table(["192.0.2.1"])
    assert render_update(old, _peers_table(["192.0.2.1"], ["203.0.113.0/25"])) is None  # a new map
    other_ports = build_table(
        spec(
            ingress={
                "isolated": ["net1"],
                "rules": [
                    rule(
                        "default/web",
                        0,
                        peers=[{"cidr": "192.0.2.1/32"}],
                        ports=[{"protocol": "TCP", "port": 81}],
                    )
                ],
            }
        )
    )
    assert render_update(old, other_ports) is None  # a port chain changed
    assert render_update(old, dataclasses.replace(old, name="other")) is None


def test_equal_tables_need_no_update() -> None:
    assert render_update(_peers_table(["192.0.2.1"]), _peers_table(["192.0.2.1"])) == ""


def test_hash_maps_declare_a_power_of_two_size_with_room_to_double() -> None:
    from mnp.nft.render import hash_map_size

    assert [hash_map_size(n) for n in (0, 1, 32, 33, 1000, 50000)] == [64, 64, 64, 128, 2048, 131072]
    table = _peers_table([f"192.0.2.{i}" for i in range(1, 40)])
    assert [(m.name, m.size) for m in table.maps] == [("ingress-net1-v4-addr", 128)]


def test_growing_past_the_declared_size_asks_for_a_full_replace() -> None:
    at_limit = _peers_table([f"192.0.2.{i}" for i in range(1, 33)])  # 32 addresses: size 64
    one_more = _peers_table([f"192.0.2.{i}" for i in range(1, 34)])  # 33: size 128
    assert render_update(at_limit, one_more) is None


def test_a_map_cannot_hold_more_than_its_size() -> None:
    import ipaddress

    elements = tuple(model.Element(ipaddress.IPv4Address(i), model.ACCEPT) for i in range(3))
    with pytest.raises(ValueError, match="exceed size"):
        model.Map("m", model.KeyType.IPV4_ADDR, False, elements, size=2)

"""Enforcement proven with real packets: rendered rulesets applied in a real pod netns, real TCP/UDP.

One fabric per module (pods on two nodes, macvlan made by the real CNI plugin); each test applies its
ruleset to the pods it polices and the `enforce` fixture removes the tables afterwards. Address plan
(tests/conftest.py): srv .10 on A (net1) and B (net2), cli .20 on A and B with extra sources .31 .32
.47 .48 on net1 (boundaries of the except block .32/28), other .30 on A; same host numbers in v6.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from kernel_plan import (
    a4,
    a6,
    assert_verdicts,
    b4,
    b6,
    module_prefix,
    on_a,
    on_b,
    probe_verdicts,
    rule,
    ruleset_raw,
    sctp,
    tcp,
    udp,
)

from mnp.api.ruleset import spec_from_raw
from mnp.local.nodes.fabric import Fabric, PodNet
from mnp.local.nodes.netns import run_in_netns
from mnp.local.nodes.probe import Listener, Probe, UdpStream, ping, probe_all
from mnp.nft.apply import NetnsNft
from mnp.nft.render import CustomRules, RenderOptions, render_ruleset

pytestmark = pytest.mark.kernel

SRV, CLI, OTHER = 10, 20, 30
EXTRA = (31, 32, 47, 48)  # just below, first, last and just above 192.0.2.32/28 (and 2001:db8:a::20/124)
EXCEPT4, EXCEPT6 = "192.0.2.32/28", "2001:db8:a::20/124"
TIMEOUT = 0.3  # what a denied probe costs (allowed ones arrive in milliseconds; misses are re-checked)
PASS_TIMEOUT = 2.0  # for flows that must pass: returns as soon as they do


@dataclass
class Net:
    fabric: Fabric
    srv: PodNet
    cli: PodNet
    other: PodNet

    def pod(self, name: str) -> PodNet:
        return {"srv": self.srv, "cli": self.cli, "other": self.other}[name]


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    prefix = module_prefix()
    with Fabric(prefix, nodes=2) as fabric:
        srv = fabric.add_pod("srv", 1, [on_a(SRV), on_b(SRV)])
        cli = fabric.add_pod("cli", 2, [on_a(CLI), on_b(CLI)])
        other = fabric.add_pod("other", 1, [on_a(OTHER)])
        for host in EXTRA:
            fabric.add_address("cli", "net1", f"{a4(host)}/24")
            fabric.add_address("cli", "net1", f"{a6(host)}/64")
        yield Net(fabric, srv, cli, other)


Enforce = Callable[..., str]


@pytest.fixture
def enforce() -> Iterator[Enforce]:
    """enforce(pod, ingress=(isolated, rules), egress=..., options=...) renders and applies; undone after."""
    contexts: dict[str, tuple[NetnsNft, set[str]]] = {}

    def apply(
        pod: PodNet,
        ingress: tuple[list[str], list[dict[str, object]]] | None = None,
        egress: tuple[list[str], list[dict[str, object]]] | None = None,
        options: RenderOptions | None = None,
    ) -> str:
        opts = options or RenderOptions()
        spec = spec_from_raw(ruleset_raw(pod.network_status, ingress, egress))
        if pod.netns_path not in contexts:
            contexts[pod.netns_path] = (NetnsNft(pod.netns_path), set())
        nft, tables = contexts[pod.netns_path]
        script = render_ruleset(spec, opts, nft.table_shape(opts.table))
        tables.add(opts.table)
        nft.apply(script)
        assert nft.list_table(opts.table) is not None
        return script

    yield apply
    for nft, tables in contexts.values():
        try:
            for table in tables:
                nft.delete_table(table)
        finally:
            nft.close()


@dataclass(frozen=True)
class P:
    """A probe from `client` (from extra source host `src`) to srv's address on network `to`."""

    client: str
    family: int
    proto: str
    port: int
    expect: bool
    src: int | None = None
    to: str = "a"

    def build(self, net: Net) -> Probe:
        addr = {("a", 4): a4, ("a", 6): a6, ("b", 4): b4, ("b", 6): b6}[self.to, self.family]
        # Always an explicit source: with several addresses on one prefix, IPv6 source selection
        # would otherwise pick any of them.
        host = self.src if self.src is not None else {"cli": CLI, "other": OTHER, "srv": SRV}[self.client]
        src = (a4 if self.family == 4 else a6)(host)
        return Probe(
            net.pod(self.client).netns_name, net.srv.netns_name, addr(SRV), self.port, self.proto, src
        )

    def __str__(self) -> str:
        src = f" from .{self.src}" if self.src is not None else ""
        return f"{self.client}{src} -> srv/{self.to} v{self.family} {self.proto}/{self.port}"


def both(client: str, proto: str, port: int, expect: bool, **kw: object) -> list[P]:
    """The same probe over IPv4 and IPv6."""
    return [P(client, f, proto, port, expect, **kw) for f in (4, 6)]  # type: ignore[arg-type]


def check(net: Net, probes: list[P], timeout: float = TIMEOUT) -> None:
    verdicts = probe_verdicts([p.build(net) for p in probes], [p.expect for p in probes], timeout)
    wrong = [f"{p}: expected {'pass' if p.expect else 'drop'}, got {'pass' if v else 'drop'}"
             for p, v in zip(probes, verdicts, strict=True) if v != p.expect]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def cli_peers() -> list[str]:
    return [f"{a4(CLI)}/32", f"{a6(CLI)}/128"]


# --- ingress semantics on srv/net1, table-driven ------------------------------------------------------

# (id, rules on net1 with net1 isolated for ingress, probes)
INGRESS_CASES: list[tuple[str, list[dict[str, object]], list[P]]] = [
    (
        "isolated_interface_without_rules_drops_tcp_and_udp_over_both_families",
        [],
        both("cli", "tcp", 80, False) + both("cli", "udp", 53, False) + both("other", "tcp", 80, False),
    ),
    (
        "only_listed_peers_are_allowed_dual_stack",
        [rule(peers=cli_peers())],
        both("cli", "tcp", 80, True)
        + both("cli", "udp", 53, True)
        + both("other", "tcp", 80, False)
        + both("other", "udp", 53, False)
        + both("cli", "tcp", 80, False, src=31),
    ),
    (
        "peers_of_one_family_do_not_allow_the_other_family",
        [rule(peers=[f"{a4(CLI)}/32"])],
        [P("cli", 4, "tcp", 80, True), P("cli", 6, "tcp", 80, False), P("cli", 6, "udp", 80, False)],
    ),
    (
        "a_port_allows_that_port_and_protocol_only",
        [rule(ports=[tcp(8080)])],
        both("cli", "tcp", 8080, True)
        + both("cli", "tcp", 8081, False)
        + both("cli", "tcp", 8079, False)
        + both("cli", "udp", 8080, False),
    ),
    (
        "a_port_range_includes_both_ends_and_nothing_one_past_them",
        [rule(ports=[udp(5000, 5010), tcp(6000, 6001)])],
        both("cli", "udp", 4999, False)
        + both("cli", "udp", 5000, True)
        + both("cli", "udp", 5005, True)
        + both("cli", "udp", 5010, True)
        + both("cli", "udp", 5011, False)
        + both("cli", "tcp", 5005, False)
        + both("cli", "tcp", 5999, False)
        + both("cli", "tcp", 6000, True)
        + both("cli", "tcp", 6001, True)
        + both("cli", "tcp", 6002, False),
    ),
    (
        "ranges_at_the_ends_of_the_port_space",
        [rule(ports=[tcp(65534, 65535), udp(1, 2)])],
        both("cli", "tcp", 65533, False)
        + both("cli", "tcp", 65534, True)
        + both("cli", "tcp", 65535, True)
        + both("cli", "udp", 1, True)
        + both("cli", "udp", 2, True)
        + both("cli", "udp", 3, False),
    ),
    (
        "protocol_only_allows_every_port_of_that_protocol_and_no_other_protocol",
        [rule(ports=[udp()])],
        both("cli", "udp", 1, True)
        + both("cli", "udp", 65535, True)
        + both("cli", "udp", 4242, True)
        + both("cli", "tcp", 4242, False),
    ),
    (
        "sctp_only_does_not_open_tcp_or_udp",
        [rule(ports=[sctp()])],
        both("cli", "tcp", 80, False) + both("cli", "udp", 80, False),
    ),
    (
        "ports_and_peers_must_both_match",
        [rule(peers=cli_peers(), ports=[tcp(80)])],
        both("cli", "tcp", 80, True) + both("cli", "tcp", 81, False) + both("other", "tcp", 80, False),
    ),
    (
        "except_boundaries_first_and_last_are_denied_just_outside_is_allowed",
        [
            rule(
                peers=[
                    {"cidr": "192.0.2.0/24", "except": [EXCEPT4]},
                    {"cidr": "2001:db8:a::/64", "except": [EXCEPT6]},
                ]
            )
        ],  # fmt: skip
        both("cli", "tcp", 80, True, src=31)
        + both("cli", "tcp", 80, False, src=32)
        + both("cli", "tcp", 80, False, src=47)
        + both("cli", "tcp", 80, True, src=48)
        + both("cli", "udp", 53, False, src=32)
        + both("cli", "udp", 53, True, src=48)
        + both("cli", "tcp", 80, True),
    ),
    (
        "except_block_does_not_deny_what_another_rule_allows",
        [
            rule(
                peers=[
                    {"cidr": "192.0.2.0/24", "except": [EXCEPT4]},
                    {"cidr": "2001:db8:a::/64", "except": [EXCEPT6]},
                ]
            ),
            rule(peers=["192.0.2.40/29", "2001:db8:a::28/125"], index=1),
        ],  # fmt: skip
        both("cli", "tcp", 80, False, src=32)
        + both("cli", "tcp", 80, True, src=47)
        + both("cli", "tcp", 80, True, src=31),
    ),
    (
        "except_block_does_not_deny_what_another_peer_of_the_same_rule_allows",
        [
            rule(
                peers=[
                    {"cidr": "192.0.2.0/24", "except": [EXCEPT4]},
                    f"{a4(32)}/32",
                    {"cidr": "2001:db8:a::/64", "except": [EXCEPT6]},
                    f"{a6(32)}/128",
                ]
            )
        ],  # fmt: skip
        both("cli", "tcp", 80, True, src=32) + both("cli", "tcp", 80, False, src=47),
    ),
    (
        "except_block_does_not_deny_what_another_rule_allows_on_other_ports_only",
        [
            rule(
                peers=[
                    {"cidr": "192.0.2.0/24", "except": [EXCEPT4]},
                    {"cidr": "2001:db8:a::/64", "except": [EXCEPT6]},
                ],
                ports=[tcp(80)],
            ),
            rule(peers=[EXCEPT4, EXCEPT6], ports=[tcp(81)], index=1),
        ],  # fmt: skip
        both("cli", "tcp", 80, False, src=32)
        + both("cli", "tcp", 81, True, src=32)
        + both("cli", "tcp", 81, False, src=48)
        + both("cli", "tcp", 80, True, src=48),
    ),
    (
        "empty_peers_match_nothing_but_still_isolate",
        [rule(peers=[])],
        both("cli", "tcp", 80, False) + both("other", "udp", 53, False),
    ),
    (
        "empty_ports_match_nothing_even_for_allowed_peers",
        [rule(peers=cli_peers(), ports=[])],
        both("cli", "tcp", 80, False) + both("cli", "udp", 53, False),
    ),
    (
        "empty_rule_next_to_an_allowing_rule_takes_nothing_away",
        [rule(peers=[], ports=[tcp(80)]), rule(peers=cli_peers(), ports=[tcp(80)], index=1)],
        both("cli", "tcp", 80, True) + both("other", "tcp", 80, False),
    ),
    (
        "omitted_peers_and_ports_allow_everything_on_the_interface",
        [rule()],
        both("cli", "tcp", 80, True) + both("other", "udp", 9, True) + both("cli", "tcp", 80, True, src=32),
    ),
    (
        "a_rule_for_another_interface_does_not_open_this_one",
        [rule(iface="net2")],
        both("cli", "tcp", 80, False) + both("cli", "tcp", 80, True, to="b"),
    ),
    (
        "interface_not_isolated_is_untouched",
        [rule(peers=[])],
        both("cli", "tcp", 80, False)
        + both("cli", "tcp", 80, True, to="b")
        + both("cli", "udp", 53, True, to="b"),
    ),
]


@pytest.mark.parametrize(
    ("rules", "probes"), [c[1:] for c in INGRESS_CASES], ids=[c[0] for c in INGRESS_CASES]
)
def test_ingress(net: Net, enforce: Enforce, rules: list[dict[str, object]], probes: list[P]) -> None:
    enforce(net.srv, ingress=(["net1"], rules))
    check(net, probes)


def test_table_removed_restores_traffic(net: Net, enforce: Enforce) -> None:
    enforce(net.srv, ingress=(["net1", "net2"], []))
    check(net, both("cli", "tcp", 80, False) + both("cli", "tcp", 80, False, to="b"))
    with NetnsNft(net.srv.netns_path) as nft:
        nft.delete_table("mnp")
    check(net, both("cli", "tcp", 80, True) + both("cli", "tcp", 80, True, to="b"))


# --- egress ------------------------------------------------------------------------------------------


def test_egress_isolation_allows_only_listed_destinations_and_ports(net: Net, enforce: Enforce) -> None:
    enforce(
        net.cli,
        egress=(["net1"], [rule(peers=[f"{a4(SRV)}/32", f"{a6(SRV)}/128"], ports=[tcp(80), udp(53)])]),
    )
    srv, oth = net.srv.netns_name, net.other.netns_name
    cases = [
        (Probe(net.cli.netns_name, srv, a4(SRV), 80), True),
        (Probe(net.cli.netns_name, srv, a6(SRV), 80), True),
        (Probe(net.cli.netns_name, srv, a4(SRV), 53, "udp"), True),
        (Probe(net.cli.netns_name, srv, a6(SRV), 53, "udp"), True),
        (Probe(net.cli.netns_name, srv, a4(SRV), 81), False),
        (Probe(net.cli.netns_name, srv, a6(SRV), 53), False),
        (Probe(net.cli.netns_name, oth, a4(OTHER), 80), False),
        (Probe(net.cli.netns_name, oth, a6(OTHER), 53, "udp"), False),
        (Probe(net.cli.netns_name, srv, b4(SRV), 81), True),  # net2 is not isolated
    ]
    assert_verdicts(cases, TIMEOUT)


def test_egress_except_boundaries(net: Net, enforce: Enforce) -> None:
    # srv sends to cli's extra addresses; the except block covers .32-.47 of 192.0.2.0/24.
    enforce(net.srv, egress=(["net1"], [rule(peers=[{"cidr": "192.0.2.0/24", "except": [EXCEPT4]},
                                                    {"cidr": "2001:db8:a::/64", "except": [EXCEPT6]}])]))  # fmt: skip
    cases = [
        (Probe(net.srv.netns_name, net.cli.netns_name, addr(host), 80, proto), host not in (32, 47))
        for host in EXTRA
        for addr in (a4, a6)
        for proto in ("tcp", "udp")
    ]
    assert_verdicts(cases, TIMEOUT)


# --- replies of allowed connections -------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("family", [4, 6])
def test_replies_reach_an_egress_isolated_client_that_is_also_ingress_isolated(
    net: Net, enforce: Enforce, proto: str, family: int
) -> None:
    dst = (a4 if family == 4 else a6)(SRV)
    port = 7000 + family
    enforce(net.cli, ingress=(["net1"], []), egress=(["net1"], [rule(peers=[f"{dst}/{32 if family == 4 else 128}"],
                                                                      ports=[tcp(port), udp(port)])]))  # fmt: skip
    with Listener(net.srv.netns_name, dst, port, proto) as listener:
        flow = listener.connect(net.cli.netns_name)
        assert all(flow.roundtrip(PASS_TIMEOUT) for _ in range(5))
    # ...while a new connection towards cli is still refused.
    assert probe_all([Probe(net.srv.netns_name, net.cli.netns_name, (a4 if family == 4 else a6)(CLI), port, proto)],
                     TIMEOUT) == [False]  # fmt: skip


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("family", [4, 6])
def test_ingress_isolated_server_can_answer_even_when_egress_isolated(
    net: Net, enforce: Enforce, proto: str, family: int
) -> None:
    src = (a4 if family == 4 else a6)(CLI)
    dst = (a4 if family == 4 else a6)(SRV)
    port = 7100 + family
    peer = f"{src}/{32 if family == 4 else 128}"
    enforce(
        net.srv, ingress=(["net1"], [rule(peers=[peer], ports=[tcp(port), udp(port)])]), egress=(["net1"], [])
    )
    with Listener(net.srv.netns_name, dst, port, proto) as listener:
        flow = listener.connect(net.cli.netns_name, src=src)
        assert all(flow.roundtrip(PASS_TIMEOUT) for _ in range(5))
    # srv's own new connections are dropped by its egress isolation.
    assert probe_all([Probe(net.srv.netns_name, net.cli.netns_name, src, port, proto)], TIMEOUT) == [False]


# --- ICMP, neighbour discovery, custom rules ----------------------------------------------------------


def flush_neighbours(pod: PodNet) -> None:
    for family in ("-4", "-6"):
        run_in_netns(pod.netns_path, ["ip", family, "neigh", "flush", "all"], check=True, capture_output=True)


def test_ipv6_neighbour_discovery_passes_while_isolated_without_accept_icmpv6(
    net: Net, enforce: Enforce
) -> None:
    allow = (
        [rule(peers=[f"{a6(CLI)}/128"], ports=[tcp(80)])],
        [rule(peers=[f"{a6(SRV)}/128"], ports=[tcp(80)])],
    )
    enforce(net.srv, ingress=(["net1"], allow[0]), egress=(["net1"], []))
    enforce(net.cli, ingress=(["net1"], []), egress=(["net1"], allow[1]))
    for _ in range(3):
        flush_neighbours(net.srv)
        flush_neighbours(net.cli)
        check(net, [P("cli", 6, "tcp", 80, True)], timeout=2.0)
    # ND passing is not ICMPv6 passing: echo stays dropped.
    assert not ping(net.cli.netns_name, a6(SRV), timeout=0.3)


@pytest.mark.parametrize(
    ("accept_icmp", "accept_icmpv6"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_ping_passes_only_with_its_accept_flag(
    net: Net, enforce: Enforce, accept_icmp: bool, accept_icmpv6: bool
) -> None:
    options = RenderOptions(accept_icmp=accept_icmp, accept_icmpv6=accept_icmpv6)
    enforce(net.srv, ingress=(["net1"], [rule(ports=[tcp(), udp()])]), options=options)
    # A reply is proof; only a miss waits for its (short) timeout.
    assert ping(net.cli.netns_name, a4(SRV), timeout=PASS_TIMEOUT if accept_icmp else TIMEOUT) is accept_icmp
    assert (
        ping(net.cli.netns_name, a6(SRV), timeout=PASS_TIMEOUT if accept_icmpv6 else TIMEOUT) is accept_icmpv6
    )
    assert ping(net.cli.netns_name, b4(SRV), timeout=PASS_TIMEOUT)  # net2 untouched
    check(net, both("cli", "tcp", 80, True))


def test_ping_from_an_egress_isolated_pod_needs_accept_icmp(net: Net, enforce: Enforce) -> None:
    enforce(net.cli, egress=(["net1"], [rule(peers=[f"{a4(SRV)}/32", f"{a6(SRV)}/128"])]))
    # peers with any port: ICMP is not a port protocol, so it still needs the flag.
    assert not ping(net.cli.netns_name, a4(OTHER), timeout=0.3)
    enforce(net.cli, egress=(["net1"], []), options=RenderOptions(accept_icmp=True, accept_icmpv6=True))
    assert ping(net.cli.netns_name, a4(OTHER), timeout=PASS_TIMEOUT)
    assert ping(net.cli.netns_name, a6(OTHER), timeout=PASS_TIMEOUT)


def test_custom_rule_line_is_enforced_in_its_family_and_direction(net: Net, enforce: Enforce) -> None:
    custom = CustomRules(v4_ingress=("tcp dport 9999 accept",), v6_egress=("udp dport 9998 accept",))
    enforce(net.srv, ingress=(["net1"], []), egress=(["net1"], []), options=RenderOptions(custom=custom))
    check(net, [P("cli", 4, "tcp", 9999, True), P("other", 4, "tcp", 9999, True), P("cli", 6, "tcp", 9999, False),
                P("cli", 4, "tcp", 9998, False), P("cli", 4, "udp", 9999, False)])  # fmt: skip
    out = [
        (Probe(net.srv.netns_name, net.cli.netns_name, a6(CLI), 9998, "udp"), True),
        (Probe(net.srv.netns_name, net.cli.netns_name, a4(CLI), 9998, "udp"), False),
        (Probe(net.srv.netns_name, net.cli.netns_name, a6(CLI), 9997, "udp"), False),
    ]
    assert_verdicts(out, TIMEOUT)


# --- families on their own ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_single_stack_pods_are_policed(net: Net, enforce: Enforce, family: int) -> None:
    v4, v6 = family == 4, family == 6
    name = f"s{family}"
    pod = net.fabric.add_pod(name, 2, [on_a(60 + family, v4=v4, v6=v6)])
    try:
        addr = a4 if v4 else a6
        enforce(pod, ingress=(["net1"], [rule(peers=[f"{addr(CLI)}/{32 if v4 else 128}"], ports=[udp(53)])]))
        probes = [
            (Probe(net.cli.netns_name, pod.netns_name, addr(60 + family), 53, "udp", addr(CLI)), True),
            (Probe(net.cli.netns_name, pod.netns_name, addr(60 + family), 54, "udp", addr(CLI)), False),
            (Probe(net.other.netns_name, pod.netns_name, addr(60 + family), 53, "udp"), False),
            (Probe(net.cli.netns_name, pod.netns_name, addr(60 + family), 53, "tcp", addr(CLI)), False),
        ]
        assert_verdicts(probes, TIMEOUT)
    finally:
        net.fabric.remove_pod(name)


@pytest.mark.parametrize("ifname", ["a.b-c_d", "net-123456789ab"])
def test_unusual_but_valid_interface_names_are_policed(net: Net, enforce: Enforce, ifname: str) -> None:
    name = f"i{len(ifname)}"
    pod = net.fabric.add_pod(name, 1, [on_a(70 + len(ifname), ifname=ifname), on_b(70 + len(ifname))])
    try:
        host = 70 + len(ifname)
        enforce(pod, ingress=([ifname], [rule(iface=ifname, peers=cli_peers(), ports=[tcp(80)])]))
        probes = [
            (Probe(net.cli.netns_name, pod.netns_name, a4(host), 80, "tcp", a4(CLI)), True),
            (Probe(net.cli.netns_name, pod.netns_name, a6(host), 80, "tcp", a6(CLI)), True),
            (Probe(net.cli.netns_name, pod.netns_name, a4(host), 81, "tcp", a4(CLI)), False),
            (Probe(net.other.netns_name, pod.netns_name, a6(host), 80, "tcp"), False),
            (Probe(net.cli.netns_name, pod.netns_name, b4(host), 81, "tcp"), True),  # net2 untouched
        ]
        assert_verdicts(probes, TIMEOUT)
    finally:
        net.fabric.remove_pod(name)


# --- atomic replace -----------------------------------------------------------------------------------


def test_atomic_replace_keeps_allowed_connection_and_never_opens_a_denied_flow(
    net: Net, enforce: Enforce
) -> None:
    cli4, cli6 = f"{a4(CLI)}/32", f"{a6(CLI)}/128"
    variants = [
        [rule(peers=[cli4, cli6], ports=[tcp(7200)])],
        [rule(peers=[cli4, cli6], ports=[tcp(7200), udp(1, 100)]), rule(peers=["203.0.113.0/24"], index=1)],
        [rule(peers=[{"cidr": "192.0.2.0/24", "except": ["192.0.2.0/28"]}], ports=[tcp(7200, 7201)])],
    ]
    enforce(net.srv, ingress=(["net1"], variants[0]))
    denied_tcp: list[bool] = []
    stop = threading.Event()

    def probe_denied() -> None:
        while not stop.is_set():
            denied_tcp.extend(
                probe_all([Probe(net.other.netns_name, net.srv.netns_name, a4(SRV), 7300)], 0.05)
            )

    with Listener(net.srv.netns_name, a4(SRV), 7200) as listener, \
            UdpStream(net.other.netns_name, net.srv.netns_name, a4(SRV), 7301, interval=0.0001) as stream:  # fmt: skip
        flow = listener.connect(net.cli.netns_name)
        prober = threading.Thread(target=probe_denied)
        prober.start()
        try:
            started = time.monotonic()
            for i in range(50):
                enforce(net.srv, ingress=(["net1"], variants[i % len(variants)]))
                assert flow.roundtrip(PASS_TIMEOUT), f"the allowed connection broke after replace {i + 1}"
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            prober.join()
        sent, received = stream.stop()
    assert received == 0, f"{received} of {sent} denied datagrams got through during replaces"
    assert sent >= 50, (
        f"only {sent} datagrams were sent in {elapsed:.2f}s: the stream did not overlap the replaces"
    )
    assert denied_tcp and not any(denied_tcp)


def test_enforcement_leaves_the_root_netns_alone(net: Net, enforce: Enforce) -> None:
    before = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    enforce(net.srv, ingress=(["net1"], []))
    after = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert after == before


def test_another_table_in_the_pod_netns_is_left_alone(net: Net, enforce: Enforce) -> None:
    foreign = "table inet other { chain c { type filter hook input priority 10; counter; }; }"
    with NetnsNft(net.srv.netns_path) as nft:
        nft.apply(foreign)
        try:
            enforce(
                net.srv, ingress=(["net1"], [rule(peers=cli_peers())]), options=RenderOptions(table="pol")
            )
            check(net, both("cli", "tcp", 80, True) + both("other", "tcp", 80, False))
            enforce(net.srv, ingress=(["net1"], []), options=RenderOptions(table="pol"))
            nft.delete_table("pol")
            listed = nft.list_table("other")
            assert listed is not None and "counter packets" in listed
            check(net, both("other", "tcp", 80, True))
        finally:
            nft.delete_table("other")

"""Random rulesets, real packets: the kernel's verdict must equal DESIGN §2 computed by a small oracle.

Hypothesis draws rulesets over a small address space (so CIDRs, excepts and probe sources collide at
their boundaries) and ports around the listening ones (so ranges end on, before and after them). Each
example applies the rendered table in a real server pod netns and sends real TCP/UDP from client pods,
from every address of the pool: ingress from the clients to the server, egress from the server to the
clients. One fabric serves every example.

Address plan: srv .1 on A (net1) and B (net2); source pool on A .32-.63 (c1 .32-.47, c2 .48-.63) and
on B .32-.47 (c1 .32-.39, c2 .40-.47), the same host numbers in IPv6. Peers are drawn inside
192.0.2.32/27, 2001:db8:a::20/123, 198.51.100.32/28, 2001:db8:b::20/124, or are whole networks.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kernel_plan import a4, a6, b4, b6, module_prefix, on_a, on_b, probe_verdicts, ruleset_raw

from mnp.api.ruleset import Direction, Peer, PortSpec, Protocol, RulesetSpec, spec_from_raw, spec_to_raw
from mnp.local.nodes.fabric import Fabric, PodNet
from mnp.local.nodes.probe import Probe
from mnp.nft.apply import NetnsNft
from mnp.nft.render import render_ruleset

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

TIMEOUT = 0.3
SERVICES = (("tcp", 1000), ("tcp", 1001), ("tcp", 1005), ("udp", 1000), ("udp", 1003))
PORT_LOW, PORT_HIGH = 998, 1007
# interface -> (v4 space, v6 space, address functions, pool hosts of c1, pool hosts of c2)
SPACES = {
    "net1": ("192.0.2.32/27", "2001:db8:a::20/123", (a4, a6), range(32, 48), range(48, 64)),
    "net2": ("198.51.100.32/28", "2001:db8:b::20/124", (b4, b6), range(32, 40), range(40, 48)),
}
WIDE = {"net1": ("192.0.2.0/24", "2001:db8:a::/64"), "net2": ("198.51.100.0/24", "2001:db8:b::/64")}


# --- the oracle: DESIGN §2, written from the text ---------------------------------------------------


def allowed(spec: RulesetSpec, direction: Direction, iface: str, addr: str, proto: str, port: int) -> bool:
    """Does a new connection pass `iface` in `direction`? `addr` is the remote end (source for ingress)."""
    rules = spec.direction(direction)
    if rules is None or iface not in rules.isolated:
        return True  # "Interfaces not listed are untouched."
    ip = ipaddress.ip_address(addr)

    def peer_matches(peer: Peer) -> bool:
        return ip in peer.cidr and not any(ip in e for e in peer.excepts)  # other family: never `in`

    def port_matches(p: PortSpec) -> bool:
        if p.protocol.value.lower() != proto:
            return False
        return p.port is None or p.port <= port <= (p.end_port if p.end_port is not None else p.port)

    return any(
        r.interface == iface
        and (r.peers is None or any(peer_matches(p) for p in r.peers))  # omitted = any, [] = nothing
        and (r.ports is None or any(port_matches(p) for p in r.ports))
        for r in rules.rules
    )


def test_oracle_reads_design_section_2() -> None:
    raw = ruleset_raw(
        [
            {"interface": "net1", "name": "default/net-a", "ips": [a4(1)]},
            {"interface": "net2", "name": "default/net-b", "ips": [b4(1)]},
        ],  # fmt: skip
        ingress=(
            ["net1"],
            [
                {
                    "policy": "default/p",
                    "rule": 0,
                    "interface": "net1",
                    "peers": [{"cidr": "192.0.2.0/24", "except": ["192.0.2.32/28"]}],
                    "ports": [{"protocol": "TCP", "port": 80, "endPort": 81}],
                },
                {"policy": "default/p", "rule": 1, "interface": "net1", "peers": []},
                {
                    "policy": "default/p",
                    "rule": 2,
                    "interface": "net1",
                    "peers": [{"cidr": "192.0.2.40/32"}],
                    "ports": [{"protocol": "UDP"}],
                },
            ],  # fmt: skip
        ),
    )
    spec = spec_from_raw(raw)
    ing = Direction.INGRESS
    assert allowed(spec, ing, "net1", "192.0.2.31", "tcp", 81)
    assert not allowed(spec, ing, "net1", "192.0.2.32", "tcp", 80)
    assert not allowed(spec, ing, "net1", "192.0.2.31", "tcp", 82)
    assert not allowed(spec, ing, "net1", "192.0.2.31", "udp", 80)
    assert allowed(spec, ing, "net1", "192.0.2.40", "udp", 9)  # another rule, inside the except
    assert not allowed(spec, ing, "net1", "2001:db8:a::1", "tcp", 80)
    assert allowed(spec, ing, "net2", "192.0.2.32", "tcp", 80)  # not isolated
    assert allowed(spec, Direction.EGRESS, "net1", "192.0.2.32", "tcp", 80)  # direction omitted


# --- strategies ----------------------------------------------------------------------------------------


@st.composite
def cidrs(draw: st.DrawFn, iface: str) -> dict[str, object]:
    """A peer inside the interface's probe space (sometimes a whole network), with 0-2 excepts."""
    v4, v6, *_ = SPACES[iface]
    base = ipaddress.ip_network(draw(st.sampled_from([v4, v6])))
    if draw(st.integers(0, 9)) == 0:
        wide = WIDE[iface][0 if base.version == 4 else 1]
        net = ipaddress.ip_network(
            draw(st.sampled_from([wide, "0.0.0.0/0" if base.version == 4 else "::/0"]))
        )
    else:
        net = draw(st.sampled_from(_subnets(base)))
    excepts: list[str] = []
    # Excepts inside the peer, nested or not, sometimes the whole peer (which then allows nothing).
    inner = [s for s in _subnets(base) if s != net and s.subnet_of(net)]  # type: ignore[arg-type]
    weighted = inner + inner + [net]
    for ex in draw(st.lists(st.sampled_from(weighted), max_size=2, unique=True)):
        excepts.append(str(ex))
    peer: dict[str, object] = {"cidr": str(net)}
    if excepts:
        peer["except"] = excepts
    return peer


def _subnets(
    base: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        s for plen in range(base.prefixlen, base.max_prefixlen + 1) for s in base.subnets(new_prefix=plen)
    ]


@st.composite
def port_specs(draw: st.DrawFn) -> dict[str, object]:
    proto = draw(st.sampled_from(["TCP", "TCP", "UDP", "UDP", "SCTP"]))
    out: dict[str, object] = {"protocol": proto}
    if draw(st.integers(0, 4)) > 0:
        port = draw(st.integers(PORT_LOW, PORT_HIGH))
        out["port"] = port
        if draw(st.booleans()):
            out["endPort"] = draw(st.integers(port, PORT_HIGH))
    return out


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, object]:
    iface = draw(st.sampled_from(["net1", "net1", "net2"]))
    out: dict[str, object] = {"policy": "default/p", "rule": index, "interface": iface}
    shape = draw(st.sampled_from(["none", "empty", "list", "list", "list"]))
    if shape != "none":
        out["peers"] = draw(st.lists(cidrs(iface), min_size=1, max_size=3)) if shape == "list" else []
    shape = draw(st.sampled_from(["none", "empty", "list", "list", "list"]))
    if shape != "none":
        out["ports"] = draw(st.lists(port_specs(), min_size=1, max_size=3)) if shape == "list" else []
    return out


@st.composite
def directions(draw: st.DrawFn) -> tuple[list[str], list[dict[str, object]]] | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    isolated = draw(st.sampled_from([["net1"], ["net1"], ["net2"], ["net1", "net2"], []]))
    count = draw(st.integers(0, 3))
    return isolated, [draw(rules(i)) for i in range(count)]


# --- the fabric shared by all examples -------------------------------------------------------------------


@dataclass
class Bed:
    srv: PodNet
    owner: dict[str, PodNet]  # pool address -> client pod holding it
    nft: NetnsNft
    stats: dict[str, float]


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    with Fabric(module_prefix(), nodes=2) as fabric:
        srv = fabric.add_pod("srv", 1, [on_a(1), on_b(1)])
        c1 = fabric.add_pod("c1", 2, [on_a(2), on_b(2)])
        c2 = fabric.add_pod("c2", 1, [on_a(3), on_b(3)])
        owner: dict[str, PodNet] = {}
        for iface, (_, _, fns, hosts1, hosts2) in SPACES.items():
            for pod, hosts in ((c1, hosts1), (c2, hosts2)):
                for host in hosts:
                    for fn, plen in zip(fns, (24, 64), strict=True):
                        fabric.add_address(pod.name, iface, f"{fn(host)}/{plen}")
                        owner[fn(host)] = pod
        with NetnsNft(srv.netns_path) as nft:
            stats = {"examples": 0.0, "probes": 0.0, "denied": 0.0, "seconds": 0.0}
            yield Bed(srv, owner, nft, stats)
            nft.delete_table("mnp")
            print(f"\nproperty: {stats['examples']:.0f} examples, {stats['probes']:.0f} probes "
                  f"({stats['denied']:.0f} denied), {stats['seconds']:.1f}s of probing")  # fmt: skip


def iface_of(addr: str) -> str:
    return "net1" if addr.startswith(("192.0.2.", "2001:db8:a:")) else "net2"


def srv_addr(iface: str, version: int) -> str:
    return {("net1", 4): a4(1), ("net1", 6): a6(1), ("net2", 4): b4(1), ("net2", 6): b6(1)}[iface, version]


@settings(
    max_examples=80,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: the report names every mismatch
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ingress=directions(), egress=directions(), seed=st.integers(0, 2**32 - 1))
def test_kernel_verdicts_equal_the_design_oracle(
    bed: Bed,
    ingress: tuple[list[str], list[dict[str, object]]] | None,
    egress: tuple[list[str], list[dict[str, object]]] | None,
    seed: int,
) -> None:
    spec = spec_from_raw(ruleset_raw(bed.srv.network_status, ingress, egress))
    rnd = random.Random(seed)
    probes: list[Probe] = []
    expected: list[bool] = []
    for addr, pod in bed.owner.items():
        iface, version = iface_of(addr), ipaddress.ip_address(addr).version
        # Ingress: from this pool address to the server.
        proto, port = rnd.choice(SERVICES)
        probes.append(Probe(pod.netns_name, bed.srv.netns_name, srv_addr(iface, version), port, proto, addr))
        expected.append(allowed(spec, Direction.INGRESS, iface, addr, proto, port))
        # Egress: from the server to this pool address.
        proto, port = rnd.choice(SERVICES)
        probes.append(Probe(bed.srv.netns_name, pod.netns_name, addr, port, proto))
        expected.append(allowed(spec, Direction.EGRESS, iface, addr, proto, port))
    bed.nft.apply(render_ruleset(spec))
    started = time.monotonic()
    try:
        got = probe_verdicts(probes, expected, TIMEOUT)
    finally:
        bed.nft.delete_table("mnp")
    bed.stats["examples"] += 1
    bed.stats["probes"] += len(probes)
    bed.stats["denied"] += expected.count(False)
    bed.stats["seconds"] += time.monotonic() - started
    wrong = [
        f"{'ingress' if p.server == bed.srv.netns_name else 'egress'} "
        f"{p.src or p.dst} {p.proto}/{p.port}: oracle {'pass' if e else 'drop'}, kernel {'pass' if g else 'drop'}"
        for p, e, g in zip(probes, expected, got, strict=True)
        if e != g
    ]
    assert not wrong, f"ruleset {json.dumps(spec_to_raw(spec))}\n" + "\n".join(wrong[:30])


def test_protocol_enum_covers_the_probe_protocols() -> None:
    assert {p.lower() for p in Protocol} >= {proto for proto, _ in SERVICES}

"""The renderer's text and NetnsNft on the real kernel, each test in its own fresh network namespace."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.api.errors import NetnsError, NftError
from mnp.nft.apply import NetnsNft, apply_nft_exec
from mnp.nft.model import Table
from mnp.nft.render import RenderOptions, build_table, render_ruleset, render_table_swap, render_update
from mnp.nft.render import render_table_replace as replace_text
from tests.conftest import GOLDEN_DIR
from tests.nft.cases import CASES, rule, spec

pytestmark = pytest.mark.kernel


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@pytest.fixture
def netns(unique_prefix: str) -> Iterator[str]:
    """A fresh network namespace, removed even when the test fails; yields its /run/netns path."""
    name = f"{unique_prefix}-x"
    _sh("ip", "netns", "add", name)
    try:
        yield f"/run/netns/{name}"
    finally:
        _sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def other_netns(unique_prefix: str) -> Iterator[str]:
    name = f"{unique_prefix}-y"
    _sh("ip", "netns", "add", name)
    try:
        yield f"/run/netns/{name}"
    finally:
        _sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def nft(netns: str) -> Iterator[NetnsNft]:
    with NetnsNft(netns) as ctx:
        yield ctx


def _ruleset_in(path: str) -> str:
    return _sh("nsenter", f"--net={path}", "nft", "list", "ruleset").stdout


def test_context_lands_in_its_netns_and_never_in_the_root_netns(
    nft: NetnsNft, netns: str, unique_prefix: str
) -> None:
    table = unique_prefix.replace("-", "_")
    nft.apply(render_ruleset(CASES["deny-all"][0], RenderOptions(table=table)))
    assert f"table inet {table}" in _ruleset_in(netns)
    assert table not in _sh("nft", "list", "tables").stdout


def test_context_works_from_other_threads_and_stays_in_its_netns(nft: NetnsNft, netns: str) -> None:
    import threading

    errors: list[BaseException] = []

    def apply_some() -> None:
        try:
            for _ in range(20):
                nft.apply(render_ruleset(*CASES["allow-any"]))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=apply_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert "jump ingress-net1" in _ruleset_in(netns)


@pytest.mark.parametrize("golden", sorted(p.name for p in GOLDEN_DIR.glob("*.nft")))
def test_every_golden_file_loads_and_replaces_itself(nft: NetnsNft, golden: str) -> None:
    text = (GOLDEN_DIR / golden).read_text()
    nft.apply(text)
    table = text.split("delete table inet ", 1)[1].split()[0]
    first = nft.list_table(table)
    assert first is not None
    nft.apply(text)  # an atomic replace on top of itself
    assert nft.list_table(table) == first


def test_listing_back_shows_what_was_rendered(nft: NetnsNft) -> None:
    nft.apply(render_ruleset(*CASES["ipblock-except-overlapping"]))
    listed = nft.list_table("mnp")
    assert listed is not None
    for fragment in (
        "203.0.113.128/26 : jump ingress-net1-p1",
        "11.0.0.0-203.0.112.255 : jump ingress-net1-p0",
        "ip saddr vmap @ingress-net1-v4-net",
        'iifname "net1" jump ingress-net1',
    ):
        assert fragment in listed


def test_failed_transaction_leaves_the_old_table_untouched(nft: NetnsNft) -> None:
    nft.apply(render_ruleset(*CASES["ports-ranges-protocol-only"]))
    before = nft.list_table("mnp")
    broken = render_ruleset(*CASES["allow-any"]).replace(
        "\tchain ingress-net1 {", "\tchain ingress-net1 {\n\t\tjump nowhere"
    )
    with pytest.raises(NftError, match="nowhere|No such file"):
        nft.apply(broken)
    assert nft.list_table("mnp") == before


def _table_with(addresses: list[str], blocks: list[str], ports: list[int]):  # type: ignore[no-untyped-def]
    peers = [{"cidr": f"{a}/32"} for a in addresses] + [{"cidr": b} for b in blocks]
    return build_table(
        spec(
            ingress={
                "isolated": ["net1"],
                "rules": [
                    rule("default/a", 0, peers=peers, ports=[{"protocol": "TCP", "port": p} for p in ports]),
                    rule("default/b", 0, peers=peers[::3]),
                ],
            }
        )
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            (["192.0.2.1", "192.0.2.2", "192.0.2.3"], [], [80]),
            (["192.0.2.1", "192.0.2.4", "192.0.2.3"], [], [80]),
        ),
        (
            ([f"192.0.2.{i}" for i in range(1, 200)], ["203.0.113.0/25", "10.0.0.0/8"], [80]),
            ([f"192.0.2.{i}" for i in range(2, 201)], ["203.0.113.0/26", "10.0.0.0/9"], [80]),
        ),
        (
            (["192.0.2.1", "192.0.2.2"], ["203.0.113.0/25"], [80, 443]),
            (["192.0.2.2"], ["203.0.113.0/24"], [80, 443]),
        ),
    ],
    ids=["hash-only", "hash-and-interval", "values-change"],
)
def test_incremental_update_gives_the_same_table_as_a_full_replace(
    nft: NetnsNft,
    other_netns: str,
    old: tuple[list[str], list[str], list[int]],
    new: tuple[list[str], list[str], list[int]],
) -> None:
    before, after = _table_with(*old), _table_with(*new)
    update = render_update(before, after)
    assert update, "the structure should be equal, so an update exists"
    nft.apply(replace_text(before))
    nft.apply(update)
    with NetnsNft(other_netns) as fresh:
        fresh.apply(replace_text(after))
        assert nft.list_table("mnp") == fresh.list_table("mnp")


def test_delete_is_idempotent(nft: NetnsNft) -> None:
    nft.delete_table("mnp")
    nft.apply(render_ruleset(*CASES["allow-any"]))
    nft.delete_table("mnp")
    assert nft.list_table("mnp") is None
    nft.delete_table("mnp")


def test_context_sees_changes_made_by_others(nft: NetnsNft, netns: str) -> None:
    nft.apply(render_ruleset(*CASES["allow-any"]))
    assert nft.list_table("mnp") is not None
    _sh("nsenter", f"--net={netns}", "nft", "delete", "table", "inet", "mnp")
    assert nft.list_table("mnp") is None
    _sh("nsenter", f"--net={netns}", "nft", "add", "table", "inet", "mnp")
    _sh("nsenter", f"--net={netns}", "nft", "add", "chain", "inet", "mnp", "other")
    listed = nft.list_table("mnp")
    assert listed is not None and "chain other" in listed
    nft.apply(render_ruleset(*CASES["allow-any"]))  # a replace over the foreign version
    listed = nft.list_table("mnp")
    assert listed is not None and "chain other" not in listed


def test_nft_errors_carry_nfts_message(nft: NetnsNft) -> None:
    with pytest.raises(NftError, match="syntax error"):
        nft.apply("table inet mnp { chain x { bogus } }")


def test_closed_context_refuses_work_and_close_is_idempotent(netns: str) -> None:
    ctx = NetnsNft(netns)
    ctx.close()
    ctx.close()
    with pytest.raises(NftError, match="closed"):
        ctx.apply(render_ruleset(*CASES["allow-any"]))


def test_missing_or_wrong_netns_raises_netns_error(unique_prefix: str) -> None:
    with pytest.raises(NetnsError):
        NetnsNft(f"/run/netns/{unique_prefix}-absent")
    with pytest.raises(NetnsError):
        NetnsNft("/proc/self/ns/uts")  # a namespace, but not a network namespace


def test_proc_pid_netns_path_works(netns: str) -> None:
    holder = subprocess.Popen(["nsenter", f"--net={netns}", "sleep", "30"])
    try:
        # Until nsenter has called setns, /proc/PID/ns/net is still the root netns: wait for it.
        path, want = f"/proc/{holder.pid}/ns/net", os.stat(netns).st_ino
        deadline = time.monotonic() + 5
        while os.stat(path).st_ino != want:
            assert time.monotonic() < deadline, "nsenter never entered the netns"
            time.sleep(0.01)
        with NetnsNft(path) as ctx:
            ctx.apply(render_ruleset(*CASES["deny-all"]))
        assert "chain ingress-net1" in _ruleset_in(netns)
    finally:
        holder.kill()
        holder.wait()


def test_exec_apply_lands_in_the_netns(netns: str) -> None:
    apply_nft_exec(netns, render_ruleset(*CASES["egress"]))
    assert "table inet mnp_egress" in _ruleset_in(netns)
    with pytest.raises(NftError):
        apply_nft_exec(netns, "table inet x { bogus }")
    with pytest.raises(NetnsError):
        apply_nft_exec(netns + "-absent", "")


# --- real packets ----------------------------------------------------------------------------------

_SERVER = textwrap.dedent(
    """
    import socket, sys
    socks = []
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for port in (80, 443, 8080):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port)); s.listen(64); socks.append(s)
    print("ready", flush=True)
    sys.stdin.read()
    """
)

_CLIENT = textwrap.dedent(
    """
    import json, socket, sys
    from concurrent.futures import ThreadPoolExecutor

    def connects(probe):
        src, dst, port = probe
        fam = socket.AF_INET6 if ":" in src else socket.AF_INET
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.bind((src, 0))
            try:
                s.connect((dst, port))
                return True
            except OSError:
                return False

    with ThreadPoolExecutor(32) as pool:
        print(json.dumps(list(pool.map(connects, json.loads(sys.argv[1])))))
    """
)


def test_real_packets_get_the_verdict_the_ruleset_gives(netns: str, other_netns: str) -> None:
    from mnp.api.ruleset import Direction, Protocol
    from tests.oracle import direction_allows

    srv, cli = netns, other_netns
    _sh(
        "ip",
        "link",
        "add",
        "net1",
        "netns",
        Path(srv).name,
        "type",
        "veth",
        "peer",
        "name",
        "eth1",
        "netns",
        Path(cli).name,
    )
    clients = [
        "192.0.2.21",
        "192.0.2.22",
        "203.0.113.5",
        "203.0.113.130",
        "203.0.113.200",
        "2001:db8:a::21",
        "2001:db8:a::22",
    ]
    for ns, dev, addrs in (
        (srv, "net1", ["192.0.2.10/24", "2001:db8:a::10/64"]),
        (cli, "eth1", [f"{a}/{64 if ':' in a else 24}" for a in clients]),
    ):
        run = ["nsenter", f"--net={ns}", "ip"]
        for a in addrs:
            _sh(*run, "addr", "add", a, "dev", dev, *(["nodad"] if ":" in a else []))
        _sh(*run, "link", "set", dev, "up")
        _sh(*run, "link", "set", "lo", "up")
    _sh("nsenter", f"--net={srv}", "ip", "route", "add", "203.0.113.0/24", "dev", "net1")
    ruleset = spec(
        ingress={
            "isolated": ["net1"],
            "rules": [
                rule(
                    "default/web",
                    0,
                    peers=[{"cidr": "192.0.2.21/32"}],
                    ports=[{"protocol": "TCP", "port": 80}],
                ),
                rule(
                    "default/blk",
                    0,
                    peers=[{"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}],
                    ports=[{"protocol": "TCP", "port": 443}],
                ),
                rule("default/blk", 1, peers=[{"cidr": "203.0.113.128/26"}]),
                rule(
                    "default/web",
                    1,
                    peers=[{"cidr": "2001:db8:a::21/128"}],
                    ports=[{"protocol": "TCP", "port": 8080}],
                ),
            ],
        },
        # Egress isolated with no rule at all: replies must still leave (established) and ND must work.
        egress={"isolated": ["net1"], "rules": []},
    )
    server = subprocess.Popen(
        ["nsenter", f"--net={srv}", sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        with NetnsNft(srv) as ctx:
            ctx.apply(render_ruleset(ruleset))
        probes = [
            (c, "2001:db8:a::10" if ":" in c else "192.0.2.10", port)
            for c in clients
            for port in (80, 443, 8080)
        ]
        got = json.loads(
            _sh("nsenter", f"--net={cli}", sys.executable, "-c", _CLIENT, json.dumps(probes)).stdout
        )
        want = [
            direction_allows(ruleset, Direction.INGRESS, "net1", src, Protocol.TCP, port)
            for src, _, port in probes
        ]
        assert dict(zip(map(tuple, probes), got, strict=True)) == dict(
            zip(map(tuple, probes), want, strict=True)
        )
        assert any(want) and not all(want)
    finally:
        server.kill()
        server.wait()


def test_open_context_pins_the_netns_and_close_releases_it(unique_prefix: str, other_netns: str) -> None:
    pod = f"{unique_prefix}-p"
    _sh("ip", "netns", "add", pod)
    try:
        # A veth pair across the two netns: its peer lives exactly as long as the pod netns does.
        _sh(
            "ip",
            "link",
            "add",
            "net1",
            "netns",
            pod,
            "type",
            "veth",
            "peer",
            "name",
            "eth1",
            "netns",
            Path(other_netns).name,
        )
        ctx = NetnsNft(f"/run/netns/{pod}")
    finally:
        _sh("ip", "netns", "del", pod, check=False)

    def peer_exists() -> bool:
        return (
            _sh("nsenter", f"--net={other_netns}", "ip", "link", "show", "eth1", check=False).returncode == 0
        )

    try:
        time.sleep(0.5)
        assert peer_exists(), "the netns should still be alive while the context is open"
    finally:
        ctx.close()
    deadline = time.monotonic() + 10
    while peer_exists():
        assert time.monotonic() < deadline, "closing the context should let the netns go"
        time.sleep(0.05)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shape_read_back_from_the_kernel_equals_the_shape_rendered(nft: NetnsNft, case: str) -> None:
    table = build_table(*CASES[case])
    nft.apply(replace_text(table))
    assert nft.table_shape(table.name) == table.shape()


def test_no_table_has_no_shape(nft: NetnsNft) -> None:
    assert nft.table_shape("absent") is None


def _handles(nft: NetnsNft, table: str) -> dict[str, int]:
    out = _sh("nsenter", f"--net={nft.netns_path}", "nft", "-a", "list", "table", "inet", table).stdout
    found = re.findall(r"^\tchain (\S+) \{ # handle (\d+)$", out, flags=re.M)
    return {name: int(handle) for name, handle in found}


def test_swap_keeps_base_chains_registered_and_redefines_everything_else(nft: NetnsNft) -> None:
    first = build_table(*CASES["ipblock-except-overlapping"])
    nft.apply(replace_text(first))
    before = _handles(nft, first.name)
    second = build_table(*CASES["dual-stack-two-interfaces"])
    nft.apply(render_table_swap(second, nft.table_shape(first.name)))
    after = _handles(nft, second.name)
    assert nft.table_shape(second.name) == second.shape()
    kept = {name for name, spec in second.shape().chains if spec} & set(before)
    assert kept and all(after[b] == before[b] for b in kept), "a base chain was unhooked and re-created"
    listed = nft.list_table(second.name)
    assert listed is not None and listed == _fresh_listing(nft, second)


def _fresh_listing(nft: NetnsNft, table: Table) -> str:
    nft.delete_table(table.name)
    nft.apply(replace_text(table))
    listed = nft.list_table(table.name)
    assert listed is not None
    return listed


def test_swap_repairs_a_table_someone_flushed_or_extended(nft: NetnsNft) -> None:
    table = build_table(*CASES["ipblock-except-overlapping"])
    nft.apply(replace_text(table))
    want = nft.list_table(table.name)
    nft.run(f"flush table inet {table.name}")
    nft.run(f"add set inet {table.name} stray {{ type ipv4_addr; }}")
    nft.run(f"add chain inet {table.name} extra")
    nft.apply(render_table_swap(table, nft.table_shape(table.name)))
    assert nft.list_table(table.name) == want


def test_a_table_with_objects_we_do_not_manage_is_replaced_whole(nft: NetnsNft) -> None:
    table = build_table(*CASES["deny-all"])
    nft.apply(replace_text(table))
    want = nft.list_table(table.name)
    nft.run(f"add counter inet {table.name} c1")
    assert nft.table_shape(table.name) is None
    nft.apply(render_table_swap(table, None))
    assert nft.list_table(table.name) == want


def _big_table() -> Table:
    peers = [{"cidr": f"10.{i // 250}.{i % 250}.1/32"} for i in range(600)] + [{"cidr": "203.0.113.0/25"}]
    return build_table(spec(ingress={"isolated": ["net1"], "rules": [rule("default/big", 0, peers=peers)]}))


def test_equal_tables_in_two_netns_have_equal_digests_and_any_change_shows(
    nft: NetnsNft, other_netns: str
) -> None:
    table = _big_table()
    with NetnsNft(other_netns) as other:
        other.apply(render_table_swap(table, None))
        nft.apply(render_table_swap(table, None))
        digest = nft.table_digest(table.name)
        assert digest is not None and digest == other.table_digest(table.name)
        assert nft.table_digest("absent") is None
        nft.run(f"delete element inet {table.name} ingress-net1-v4-addr {{ 10.0.0.1 }}")
        assert nft.table_digest(table.name) != digest
        nft.apply(render_table_swap(table, nft.table_shape(table.name)))
        assert nft.table_digest(table.name) == digest
        nft.run(f"flush chain inet {table.name} ingress")
        assert nft.table_digest(table.name) != digest


def test_the_ruleset_generation_moves_with_every_commit_in_the_netns_and_only_then(
    nft: NetnsNft, netns: str
) -> None:
    first = nft.generation()
    assert nft.generation() == first
    nft.apply(render_table_swap(build_table(*CASES["deny-all"]), None))
    second = nft.generation()
    assert second != first
    _sh("nsenter", f"--net={netns}", "nft", "add", "table", "inet", "someone_else")
    assert nft.generation() != second

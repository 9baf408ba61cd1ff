"""The test bed itself: real netns, macvlan links made by the real CNI plugin, real traffic, no leaks."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest
from kernel_plan import NET_A, NET_B, a4, a6, assert_no_netns, b4, b6, on_a, on_b

from mnp.local.nodes.cni import CniError, cni_add, cni_del, network_status_entry
from mnp.local.nodes.fabric import Attachment, Fabric, remove_leftovers
from mnp.local.nodes.netns import get_sysctl, run_in_netns
from mnp.local.nodes.probe import Listener, Probe, Target, connectivity_matrix, ping, probe, probe_all

pytestmark = pytest.mark.kernel


def links(netns: str) -> list[dict[str, object]]:
    out = run_in_netns(netns, ["ip", "-j", "-d", "link", "show"], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def addrs(netns: str) -> list[dict[str, object]]:
    out = run_in_netns(netns, ["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def root_links() -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return sorted(str(link["ifname"]) for link in json.loads(out.stdout))


def test_pods_on_two_nodes_reach_each_other_over_v4_and_v6(fabric: Fabric) -> None:
    a = fabric.add_pod("a", 1, [on_a(5)])
    b = fabric.add_pod("b", 1, [on_a(6)])
    c = fabric.add_pod("c", 2, [on_a(7)])
    probes = [
        Probe(cl.netns_name, sv.netns_name, dst, 80, proto)
        for cl, sv, host in ((a, b, 6), (a, c, 7), (c, a, 5), (c, b, 6))
        for dst in (a4(host), a6(host))
        for proto in ("tcp", "udp")
    ]
    assert probe_all(probes, timeout=2.0) == [True] * len(probes)
    assert ping(a.netns_name, a4(7), timeout=2) and ping(c.netns_name, a6(5), timeout=2)


def test_ipv6_only_pods_reach_each_other_across_nodes(fabric: Fabric) -> None:
    a = fabric.add_pod("a", 1, [on_a(5, v4=False)])
    c = fabric.add_pod("c", 2, [on_a(7, v4=False)])
    assert a.ips("net1") == (a6(5),)
    assert probe(a.netns_name, c.netns_name, a6(7), 8080, "tcp", timeout=2)
    assert probe(c.netns_name, a.netns_name, a6(5), 8080, "udp", timeout=2)


def test_ipv4_only_pod_and_dual_stack_pod_on_two_networks(fabric: Fabric) -> None:
    a = fabric.add_pod("a", 1, [on_a(5, v6=False), on_b(5)])
    c = fabric.add_pod("c", 2, [on_a(7), on_b(7)])
    assert probe(a.netns_name, c.netns_name, a4(7), 80, timeout=2)
    assert probe(a.netns_name, c.netns_name, b4(7), 80, timeout=2)
    assert probe(c.netns_name, a.netns_name, b6(5), 80, timeout=2)
    assert a.ips("net1") == (a4(5),) and a.ips("net2") == (b4(5), b6(5))


def test_network_status_is_what_multus_writes(fabric: Fabric) -> None:
    a = fabric.add_pod("a", 2, [on_a(5), on_b(5, v6=False)])
    by_name = {str(link["ifname"]): link for link in links(a.netns_name)}
    assert a.network_status == [
        {
            "name": NET_A,
            "interface": "net1",
            "ips": [a4(5), a6(5)],
            "mac": by_name["net1"]["address"],
            "dns": {},
        },
        {"name": NET_B, "interface": "net2", "ips": [b4(5)], "mac": by_name["net2"]["address"], "dns": {}},
    ]


def test_macvlan_links_are_made_by_cni_in_the_node_netns_and_the_root_netns_is_untouched(
    unique_prefix: str,
) -> None:
    before = root_links()
    with Fabric(unique_prefix, nodes=2) as fabric:
        a = fabric.add_pod("a", 2, [on_a(5)])
        (net1,) = [link for link in links(a.netns_name) if link["ifname"] == "net1"]
        info = net1["linkinfo"]
        assert isinstance(info, dict)
        assert info["info_kind"] == "macvlan" and info["info_data"]["mode"] == "bridge"
        assert net1.get("link_netnsid") is not None  # its master lives in another netns: the node's
        assert root_links() == before
    assert root_links() == before
    assert_no_netns(unique_prefix)


def test_pod_netns_gets_arp_and_dad_sysctls_so_addresses_are_usable_at_once(fabric: Fabric) -> None:
    a = fabric.add_pod("a", 1, [on_a(5)])
    assert get_sysctl(a.netns_path, "net.ipv4.conf.all.arp_ignore") == "1"
    assert get_sysctl(a.netns_path, "net.ipv4.conf.all.arp_announce") == "2"
    assert get_sysctl(a.netns_path, "net.ipv6.conf.all.accept_dad") == "0"
    assert get_sysctl(a.netns_path, "net.ipv6.conf.net1.accept_dad") == "0"
    flags = [
        info.get("tentative", False)
        for link in addrs(a.netns_name)
        for info in link["addr_info"]  # type: ignore[union-attr]
        if info.get("local") == a6(5)
    ]
    assert flags == [False]


def test_networks_sharing_one_segment_answer_arp_only_on_their_own_interface(fabric: Fabric) -> None:
    # a has net1 (A) and net2 (B) on the same L2 segment; c, on A only, resolves a's A address and must
    # learn net1's MAC, not net2's (arp_ignore=1), else its traffic would enter a on the wrong interface.
    a = fabric.add_pod("a", 1, [on_a(5), on_b(5)])
    c = fabric.add_pod("c", 2, [on_a(7)])
    assert ping(c.netns_name, a4(5), timeout=2)
    out = run_in_netns(c.netns_name, ["ip", "-j", "neigh", "show", a4(5)], capture_output=True, text=True)
    (entry,) = json.loads(out.stdout)
    assert entry["lladdr"] == a.network_status[0]["mac"]


def test_remove_pod_deletes_its_netns_and_links(fabric: Fabric) -> None:
    a = fabric.add_pod("a", 1, [on_a(5)])
    c = fabric.add_pod("c", 2, [on_a(7)])
    fabric.remove_pod("a")
    assert not os.path.exists(a.netns_path)
    assert not ping(c.netns_name, a4(5), timeout=0.3)
    fabric.remove_pod("a")  # a second remove is a no-op


def test_close_removes_everything_even_when_the_test_fails_midway(unique_prefix: str) -> None:
    with pytest.raises(RuntimeError, match="midway"), Fabric(unique_prefix, nodes=2) as fabric:
        fabric.add_pod("a", 1, [on_a(5)])
        fabric.add_pod("c", 2, [on_a(7)])
        raise RuntimeError("the test failed midway")
    assert_no_netns(unique_prefix)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert unique_prefix not in listed
    fabric.close()  # twice is fine
    assert_no_netns(unique_prefix)


def test_a_failing_cni_add_leaves_nothing_behind(unique_prefix: str) -> None:
    with Fabric(unique_prefix, nodes=1) as fabric:
        fabric.add_pod("a", 1, [on_a(5)])
        with pytest.raises(CniError):
            # The same interface name twice: the second ADD fails inside the plugin.
            fabric.add_pod("b", 1, [on_a(6), Attachment(NET_B, "net1", (f"{b4(6)}/24",))])
        assert "b" not in fabric.pods
        assert not os.path.exists(f"/run/netns/{unique_prefix}-b")
    assert_no_netns(unique_prefix)


def test_cni_error_carries_the_plugin_code_and_message(fabric: Fabric) -> None:
    pod = fabric.add_pod("a", 1, [])
    config = {"cniVersion": "0.4.0", "name": "bad", "type": "macvlan", "master": "nosuchdev",
              "ipam": {"type": "static", "addresses": [{"address": "192.0.2.9/24"}]}}  # fmt: skip
    kwargs = dict(netns=pod.netns_path, ifname="net1", container_id="cid", pod_namespace="default",
                  pod_name="a", node_netns=fabric.node_netns(1))  # fmt: skip
    with pytest.raises(CniError) as err:
        cni_add(config, **kwargs)  # type: ignore[arg-type]
    assert (err.value.code, err.value.msg) == (999, "Link not found")
    assert "macvlan ADD default/a net1" in str(err.value)
    assert [link["ifname"] for link in links(pod.netns_path)] == ["lo"]  # a failed ADD leaks no link
    good = {**config, "master": "eth0"}
    cni_del(good, **kwargs)  # type: ignore[arg-type]  # DEL of what never got added is fine


def test_runtime_config_reaches_the_plugin_only_when_the_config_declares_the_capability(
    fabric: Fabric,
) -> None:
    pod = fabric.add_pod("a", 1, [])
    base = {"cniVersion": "0.4.0", "name": "net-a", "type": "macvlan", "mode": "bridge", "master": "eth0"}
    common = dict(netns=pod.netns_path, container_id="cid", pod_namespace="default", pod_name="a",
                  node_netns=fabric.node_netns(1), runtime_config={"ips": [f"{a4(9)}/24"]})  # fmt: skip
    without = {**base, "ipam": {"type": "static", "addresses": [{"address": f"{a4(8)}/24"}]}}
    result = cni_add(without, ifname="net1", **common)  # type: ignore[arg-type]
    assert [ip["address"] for ip in result["ips"]] == [f"{a4(8)}/24"]
    with_cap = {**base, "capabilities": {"ips": True}, "ipam": {"type": "static"}}
    result = cni_add(with_cap, ifname="net2", **common)  # type: ignore[arg-type]
    assert [ip["address"] for ip in result["ips"]] == [f"{a4(9)}/24"]


def test_probes_tell_allowed_from_unreachable_and_leave_nothing_running(fabric: Fabric) -> None:
    a = fabric.add_pod("a", 1, [on_a(5)])
    c = fabric.add_pod("c", 2, [on_a(7)])
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    targets = [Target("c:80", c.netns_name, a4(7), 80), Target("c6:53/udp", c.netns_name, a6(7), 53, "udp")]
    for _ in range(20):
        assert connectivity_matrix({"a": a.netns_name}, targets) == {
            ("a", "c:80"): True,
            ("a", "c6:53/udp"): True,
        }
    # d is on network B only, so it has no route to c's A address: that probe says no within its timeout.
    d = fabric.add_pod("d", 1, [on_b(8)])
    verdicts = probe_all(
        [Probe(a.netns_name, c.netns_name, a4(7), 81), Probe(d.netns_name, c.netns_name, a4(7), 81)]
    )
    assert verdicts == [True, False]
    with Listener(c.netns_name, a6(7), 5000) as listener:
        flow = listener.connect(a.netns_name)
        assert all(flow.roundtrip() for _ in range(10))
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/fd")) == fds
    children = subprocess.run(
        ["pgrep", "-P", str(os.getpid())], capture_output=True, text=True
    ).stdout.split()
    assert children == []


def test_leftovers_of_a_crashed_fabric_are_found_and_removed(unique_prefix: str) -> None:
    fabric = Fabric(unique_prefix, nodes=2)
    try:
        fabric.add_pod("a", 1, [on_a(5)])
        fabric.add_pod("c", 2, [on_a(7)])
        # The process "crashes": nothing is closed. A later run cleans up by prefix alone.
        removed = remove_leftovers(unique_prefix)
        assert removed[-3:] == [f"{unique_prefix}-n1", f"{unique_prefix}-n2", f"{unique_prefix}-fab"]
        assert sorted(removed[:2]) == [f"{unique_prefix}-a", f"{unique_prefix}-c"]
        assert_no_netns(unique_prefix)
    finally:
        fabric.close()


def test_network_status_entry_takes_the_sandbox_interface_and_its_ips_only() -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "br-host", "mac": "aa:aa:aa:aa:aa:aa"},  # host side, as the bridge plugin lists it
            {"name": "net1", "mac": "02:00:00:00:00:05", "sandbox": "/run/netns/x"},
        ],
        "ips": [
            {"interface": 1, "address": "192.0.2.5/24", "gateway": "192.0.2.1"},
            {"interface": 0, "address": "192.0.2.1/24"},
            {"interface": 1, "address": "2001:db8:a::5/64"},
        ],
        "dns": {"nameservers": ["192.0.2.53"]},
    }
    assert network_status_entry("ns1/net-a", result, "net1") == {
        "name": "ns1/net-a",
        "interface": "net1",
        "ips": ["192.0.2.5", "2001:db8:a::5"],
        "mac": "02:00:00:00:00:05",
        "dns": {"nameservers": ["192.0.2.53"]},
    }
    legacy = {"cniVersion": "0.2.0", "ip4": {"ip": "192.0.2.6/24"}, "ip6": {"ip": "2001:db8:a::6/64"}}
    assert network_status_entry("ns1/net-a", legacy, "net1")["ips"] == ["192.0.2.6", "2001:db8:a::6"]


def test_a_conflist_runs_its_plugins_in_order_and_a_failing_one_undoes_the_rest(fabric: Fabric) -> None:
    pod = fabric.add_pod("a", 1, [])
    conflist = {
        "cniVersion": "0.4.0",
        "name": "net-a",
        "plugins": [
            {"type": "macvlan", "mode": "bridge", "master": "eth0",
             "ipam": {"type": "static", "addresses": [{"address": f"{a4(5)}/24"}]}},
            {"type": "tuning", "mtu": 1400},
        ],
    }  # fmt: skip
    common = dict(netns=pod.netns_path, container_id="cid", pod_namespace="default", pod_name="a",
                  node_netns=fabric.node_netns(1))  # fmt: skip
    result = cni_add(conflist, ifname="net1", **common)  # type: ignore[arg-type]
    assert [ip["address"] for ip in result["ips"]] == [f"{a4(5)}/24"]  # the last plugin passed prevResult on
    (net1,) = [link for link in links(pod.netns_path) if link["ifname"] == "net1"]
    assert net1["mtu"] == 1400
    cni_del(conflist, ifname="net1", prev_result=result, **common)  # type: ignore[arg-type]
    assert [link["ifname"] for link in links(pod.netns_path)] == ["lo"]

    broken = {
        **conflist,
        "plugins": [conflist["plugins"][0], {"type": "tuning", "sysctl": {"net.nope": "1"}}],
    }
    with pytest.raises(CniError, match="tuning ADD default/a net1"):
        cni_add(broken, ifname="net1", **common)  # type: ignore[arg-type]
    assert [link["ifname"] for link in links(pod.netns_path)] == ["lo"]  # macvlan was deleted again

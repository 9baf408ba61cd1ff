"""`mnp compile` and `mnp render` as users run them: the real entry point in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.builders import nad, namespace, pod, policy

A = "default/net-a"


def mnp(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mnp", *args], capture_output=True, text=True, input=stdin, check=False)


def write_manifests(tmp: Path, extra_policy: dict[str, Any] | None = None) -> Path:
    d = tmp / "manifests"
    d.mkdir()
    (d / "net.yaml").write_text(yaml.safe_dump_all([nad("net-a"), namespace("default")]))
    pods = [
        pod("server", labels={"app": "server"}, nets={A: ("net1", ["192.0.2.10", "2001:db8:a::10"])}, ports=[("http", 80, "TCP")]),
        pod("client", labels={"app": "client"}, nets={A: ("net1", ["192.0.2.11"])}),
    ]
    (d / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    policies = [policy("web", {"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}]})]
    if extra_policy:
        policies.append(extra_policy)
    (d / "sub").mkdir()
    (d / "sub" / "policies.yml").write_text(yaml.safe_dump_all(policies))
    return d


def test_compile_prints_a_list_of_rulesets_owned_by_their_pods(tmp_path: Path) -> None:
    d = write_manifests(tmp_path)
    done = mnp("compile", "-f", str(d))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = yaml.safe_load(done.stdout)
    assert out["kind"] == "List"
    [item] = out["items"]
    assert item["apiVersion"] == "mnp.dev/v1alpha1" and item["kind"] == "PodNetworkRuleset"
    assert item["metadata"]["labels"] == {"mnp.dev/node": "node-1"}
    assert item["metadata"]["ownerReferences"][0]["uid"] == "uid-default-server"
    rule = item["spec"]["ingress"]["rules"][0]
    assert rule["peers"] == [{"cidr": "192.0.2.11/32", "pod": "default/client"}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 80}]


def test_compile_is_byte_equal_whatever_the_order_of_files_and_documents(tmp_path: Path) -> None:
    d = write_manifests(tmp_path)
    first = mnp("compile", "-f", str(d)).stdout
    files = sorted(p for p in d.rglob("*") if p.is_file())
    reordered = mnp("compile", *[a for f in reversed(files) for a in ("-f", str(f))]).stdout
    assert first == reordered
    assert first == mnp("compile", "-f", str(d)).stdout
    as_json = json.loads(mnp("compile", "-f", str(d), "-o", "json").stdout)
    assert as_json == yaml.safe_load(first)


def test_policy_problems_are_warnings_naming_file_object_and_field(tmp_path: Path) -> None:
    bad = policy("bad", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "nope"}}]}]})
    d = write_manifests(tmp_path, bad)
    done = mnp("compile", "-f", str(d))
    assert done.returncode == 0
    source = str(d / "sub" / "policies.yml")
    assert f"warning: {source}#2: default/bad: spec.ingress[0].from[0].ipBlock.cidr: 'nope' is not a CIDR" in done.stderr
    assert mnp("compile", "--strict", "-f", str(d)).returncode == 1


def test_unreadable_input_exits_1_naming_the_file(tmp_path: Path) -> None:
    missing = mnp("compile", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr and missing.stderr.startswith("error:")
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Pod\nmetadata: {name: [\n")
    done = mnp("compile", "-f", str(broken))
    assert done.returncode == 1 and f"{broken}" in done.stderr and "line" in done.stderr
    nokind = tmp_path / "nokind.yaml"
    nokind.write_text("a: 1\n---\nkind: Pod\nmetadata: {}\n")
    done = mnp("compile", "-f", str(nokind))
    assert done.returncode == 1 and f"{nokind}#1" in done.stderr


def test_compile_from_stdin_and_nft_output(tmp_path: Path) -> None:
    d = write_manifests(tmp_path)
    text = "\n---\n".join(p.read_text() if p.suffix != ".json" else yaml.safe_dump(json.loads(p.read_text())) for p in sorted(d.rglob("*.*")))
    done = mnp("compile", "-f", "-", "-o", "nft", stdin=text)
    assert done.returncode == 0, done.stderr
    assert "# default/server" in done.stdout
    assert "table inet mnp" in done.stdout
    assert "192.0.2.11" in done.stdout


def test_render_takes_a_ruleset_as_kubectl_prints_it(tmp_path: Path) -> None:
    d = write_manifests(tmp_path)
    item = yaml.safe_load(mnp("compile", "-f", str(d)).stdout)["items"][0]
    item["metadata"].update({"resourceVersion": "42", "uid": "abc", "creationTimestamp": "2026-01-01T00:00:00Z"})
    item["status"] = {"observedGeneration": 1}
    f = tmp_path / "pnr.yaml"
    f.write_text(yaml.safe_dump(item))
    done = mnp("render", "-f", str(f), "--accept-icmp", "--table-name", "mytable")
    assert done.returncode == 0, done.stderr
    assert "table inet mytable" in done.stdout
    assert "icmp" in done.stdout


def test_render_refuses_a_hostile_ruleset_naming_the_field(tmp_path: Path) -> None:
    d = write_manifests(tmp_path)
    item = yaml.safe_load(mnp("compile", "-f", str(d)).stdout)["items"][0]
    item["spec"]["ingress"]["rules"][0]["interface"] = 'net1" accept; #'
    f = tmp_path / "evil.yaml"
    f.write_text(yaml.safe_dump(item))
    done = mnp("render", "-f", str(f))
    assert done.returncode == 1
    assert "spec.ingress.rules[0].interface" in done.stderr
    assert done.stdout == ""


def test_unknown_network_plugins_are_refused() -> None:
    done = mnp("compile", "-f", "-", "--network-plugins", "macvlan,bogus", stdin="")
    assert done.returncode == 2 and "bogus" in done.stderr

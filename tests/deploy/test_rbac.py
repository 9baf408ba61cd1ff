"""deploy/'s RBAC against a real API server (mnp's local one, in this process): the manifests are applied
with kubectl as an admin would, tokens of the two ServiceAccounts are minted with the TokenRequest API
(`kubectl create token`), and kubectl then acts with each token. What a role allows must succeed and
what it leaves out must be refused with 403, so the roles are neither short of what the agent and the
controller do (mnp/agent, mnp/kube/events.py, mnp/kube/lease.py) nor wider."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mnp.local.apiserver import server as apiserver
from tests.apiserver.conftest import ApiServer, applied_status, pod, policy, ruleset
from tests.apiserver.test_semantics_support import Http
from tests.deploy.manifests import CRDS, DEPLOY, KUBECTL

NAD_CRD = Path(apiserver.__file__).parents[1] / "manifests" / "network-attachment-definitions.yaml"
NS = "app"  # the namespace of the users' pods, policies and rulesets
PNR = "podnetworkrulesets.mnp.dev"
MNP = "multi-networkpolicies.k8s.cni.cncf.io"
PNR_PATH = f"/apis/mnp.dev/v1alpha1/namespaces/{NS}/podnetworkrulesets"
MNP_PATH = f"/apis/k8s.cni.cncf.io/v1beta1/namespaces/{NS}/multi-networkpolicies"
EVENTS_PATH = f"/api/v1/namespaces/{NS}/events"
MERGE = "application/merge-patch+json"


@dataclass
class Kubectl:
    """The pinned kubectl aimed at one server: as its admin, or with `token` as someone else."""

    kubeconfig: Path
    home: Path
    token: str = ""

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        auth = [f"--token={self.token}"] if self.token else []
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)}
        return subprocess.run(
            [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", *auth, *args],
            input=input,
            env=env | {"KUBECACHEDIR": str(self.home / "cache")},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def ok(self, *args: str, input: str | None = None) -> str:
        proc = self(*args, input=input)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def refused(self, verb: str, resource: str, group: str, *args: str, input: str | None = None) -> None:
        """The request is Forbidden (403) for this verb on this resource, in the API server's words."""
        proc = self(*args, input=input)
        assert proc.returncode != 0, f"kubectl {' '.join(args)} was allowed"
        assert "Error from server (Forbidden)" in proc.stderr, proc.stderr
        assert f'cannot {verb} resource "{resource}" in API group "{group}"' in proc.stderr, proc.stderr

    def as_service_account(self, name: str) -> Kubectl:
        """kubectl with a token of mnp-system/NAME from the TokenRequest API."""
        token = self.ok("create", "token", name, "-n", "mnp-system", "--duration=1h").strip()
        return Kubectl(self.kubeconfig, self.home, token)

    def names(self, *args: str) -> list[str]:
        return self.ok("get", *args, "-o", "jsonpath={.items[*].metadata.name}").split()

    def patch(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """A merge PATCH with this token and nothing before it, as mnp/kube sends one (kubectl GETs first)."""
        status, got, _ = Http(ApiServer(self.kubeconfig.parent, 0), self.token or None).call(
            "PATCH", path, body, ctype=MERGE
        )
        return status, got

    def patched(self, path: str, body: dict[str, Any]) -> None:
        status, got = self.patch(path, body)
        assert status == 200, (path, status, got)

    def patch_refused(self, verb: str, resource: str, group: str, path: str, body: dict[str, Any]) -> None:
        status, got = self.patch(path, body)
        assert status == 403, (path, status, got)
        assert f'cannot {verb} resource "{resource}" in API group "{group}"' in got["message"]


@dataclass
class Installed:
    admin: Kubectl
    agent: Kubectl
    controller: Kubectl


@pytest.fixture(scope="module")
def mnp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    state = tmp_path_factory.mktemp("api")
    running = apiserver.start(state)
    try:
        admin = Kubectl(state / "kubeconfig", tmp_path_factory.mktemp("home"))
        admin.ok("apply", "-f", str(CRDS), "-f", str(NAD_CRD), "-f", str(DEPLOY))
        admin.ok("wait", "--for=condition=Established", "--timeout=20s", f"crd/{PNR}", f"crd/{MNP}")
        admin.ok("create", "namespace", NS)
        objects = [pod("web-1", NS), ruleset("web-1", NS), policy("web-policy", NS)]
        admin.ok("create", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))
        yield Installed(
            admin, admin.as_service_account("mnp-agent"), admin.as_service_account("mnp-controller")
        )
    finally:
        running.stop()


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


def _event(name: str) -> str:
    return _json(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": NS},
            "involvedObject": {"kind": "Pod", "namespace": NS, "name": "web-1"},
            "type": "Normal",
            "reason": "Test",
            "message": "m",
            "count": 1,
        }
    )


def _watch(k: Kubectl, path: str) -> str:
    return k.ok("get", "--raw", f"{path}?watch=true&timeoutSeconds=1&resourceVersion=0")


def test_the_agent_lists_and_watches_its_nodes_rulesets_and_pods(mnp: Installed) -> None:
    a = mnp.agent
    assert a.names(PNR, "-A", "-l", "mnp.dev/node=node-1") == ["web-1"]
    assert a.names(PNR, "-A", "-l", "mnp.dev/node=node-2") == []
    a.ok("get", PNR, "web-1", "-n", NS)
    assert '"type":"ADDED"' in _watch(a, "/apis/mnp.dev/v1alpha1/podnetworkrulesets").replace(" ", "")
    assert a.names("pods", "-A", "--field-selector=spec.nodeName=node-1") == ["web-1"]
    assert '"type":"ADDED"' in _watch(a, "/api/v1/pods").replace(" ", "")


def test_the_agent_writes_a_rulesets_status_and_nothing_else_of_it(mnp: Installed) -> None:
    a = mnp.agent
    a.patched(f"{PNR_PATH}/web-1/status", applied_status())
    stored = json.loads(mnp.admin.ok("get", PNR, "web-1", "-n", NS, "-o", "json"))
    assert stored["status"]["conditions"][0]["reason"] == "Applied"
    a.patch_refused(
        "patch", "podnetworkrulesets", "mnp.dev", f"{PNR_PATH}/web-1", {"spec": {"node": "node-2"}}
    )
    a.refused("update", "podnetworkrulesets", "mnp.dev", "replace", "-f", "-", input=_json(stored))
    a.refused(
        "create", "podnetworkrulesets", "mnp.dev", "create", "-f", "-", input=_json(ruleset("web-2", NS))
    )
    a.refused("delete", "podnetworkrulesets", "mnp.dev", "delete", PNR, "web-1", "-n", NS)


def test_the_agent_records_events_and_touches_no_pods_policies_leases_or_secrets(mnp: Installed) -> None:
    a = mnp.agent
    a.ok("create", "-f", "-", input=_event("by-agent"))
    a.patched(f"{EVENTS_PATH}/by-agent", {"count": 2})
    a.refused("delete", "pods", "", "delete", "pod", "web-1", "-n", NS)
    a.patch_refused(
        "patch", "pods", "", f"/api/v1/namespaces/{NS}/pods/web-1", {"metadata": {"labels": {"a": "b"}}}
    )
    a.refused("list", "multi-networkpolicies", "k8s.cni.cncf.io", "get", MNP, "-A")
    a.refused("get", "leases", "coordination.k8s.io", "get", "lease", "mnp-controller", "-n", "mnp-system")
    a.refused("list", "secrets", "", "get", "secrets", "-n", "mnp-system")
    a.refused("list", "events", "events.k8s.io", "get", "events.events.k8s.io", "-n", NS)


def test_the_controller_reads_policies_pods_namespaces_and_networks(mnp: Installed) -> None:
    c = mnp.controller
    assert c.names(MNP, "-A") == ["web-policy"]
    assert c.names("pods", "-A") == ["web-1"]
    assert NS in c.names("namespaces")
    assert c.names("network-attachment-definitions", "-A") == []
    for path in (
        "/apis/k8s.cni.cncf.io/v1beta1/multi-networkpolicies",
        "/api/v1/pods",
        "/api/v1/namespaces",
        "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
        "/apis/mnp.dev/v1alpha1/podnetworkrulesets",
    ):
        _watch(c, path)


def test_the_controller_owns_rulesets_but_not_their_status(mnp: Installed) -> None:
    c = mnp.controller
    c.ok("create", "-f", "-", input=_json(ruleset("web-9", NS)))
    c.patched(f"{PNR_PATH}/web-9", {"spec": {"policies": ["app/other"]}})
    stored = json.loads(c.ok("get", PNR, "web-9", "-n", NS, "-o", "json"))
    assert stored["spec"]["policies"] == ["app/other"]
    c.ok("replace", "-f", "-", input=_json({**stored, "spec": {**stored["spec"], "node": "node-2"}}))
    c.patch_refused(
        "patch", "podnetworkrulesets/status", "mnp.dev", f"{PNR_PATH}/web-9/status", applied_status()
    )
    c.ok("delete", PNR, "web-9", "-n", NS)


def test_the_controller_writes_policy_status_and_events_but_never_a_policy(mnp: Installed) -> None:
    c = mnp.controller
    c.patched(f"{MNP_PATH}/web-policy/status", {"status": {"observedGeneration": 1, "selectedPods": 1}})
    stored = json.loads(mnp.admin.ok("get", MNP, "web-policy", "-n", NS, "-o", "json"))
    assert stored["status"]["selectedPods"] == 1
    c.patch_refused(
        "patch",
        "multi-networkpolicies",
        "k8s.cni.cncf.io",
        f"{MNP_PATH}/web-policy",
        {"metadata": {"labels": {"a": "b"}}},
    )
    c.refused("delete", "pods", "", "delete", "pod", "web-1", "-n", NS)
    c.ok("create", "-f", "-", input=_event("by-controller"))
    c.patched(f"{EVENTS_PATH}/by-controller", {"count": 2})


def test_the_controller_holds_its_lease_in_mnp_system_only(mnp: Installed) -> None:
    c = mnp.controller
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "mnp-controller", "namespace": "mnp-system"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }
    c.ok("create", "-f", "-", input=_json(lease))
    stored = json.loads(c.ok("get", "lease", "mnp-controller", "-n", "mnp-system", "-o", "json"))
    c.ok("replace", "-f", "-", input=_json({**stored, "spec": {**stored["spec"], "holderIdentity": "b"}}))
    c.patched(
        "/apis/coordination.k8s.io/v1/namespaces/mnp-system/leases/mnp-controller",
        {"spec": {"holderIdentity": "c"}},
    )
    c.refused(
        "delete", "leases", "coordination.k8s.io", "delete", "lease", "mnp-controller", "-n", "mnp-system"
    )
    c.refused("list", "leases", "coordination.k8s.io", "get", "leases", "-n", "mnp-system")
    elsewhere = {**lease, "metadata": {"name": "mnp-controller", "namespace": NS}}
    c.refused("create", "leases", "coordination.k8s.io", "create", "-f", "-", input=_json(elsewhere))


def test_neither_service_account_can_read_secrets(mnp: Installed) -> None:
    mnp.admin.ok("create", "secret", "generic", "s", "-n", NS, "--from-literal=k=v")
    for k in (mnp.agent, mnp.controller):
        k.refused("get", "secrets", "", "get", "secret", "s", "-n", NS)
        k.refused("list", "secrets", "", "get", "secrets", "-A")

"""The CRDs the project ships (crds/) and the upstream NetworkAttachmentDefinition and
MultiNetworkPolicy CRDs load unchanged, and every sample object validates against them."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.apiserver.conftest import CRDS_DIR, MANIFESTS, ApiServer
from tests.apiserver.test_semantics_support import CRDS, Http

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def docs(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def plural_path(h: Http, obj: dict[str, object]) -> str:
    api, kind = str(obj["apiVersion"]), obj["kind"]
    root = f"/apis/{api}" if "/" in api else f"/api/{api}"
    res = next(r for r in h.get(root)["resources"] if r["kind"] == kind and "/" not in r["name"])
    ns = (obj.get("metadata") or {}).get("namespace", "default")  # type: ignore[union-attr]
    return f"{root}/namespaces/{ns}/{res['name']}" if res["namespaced"] else f"{root}/{res['name']}"


def test_upstream_crds_then_the_projects_crds_load_unchanged_and_samples_validate(apiserver: ApiServer) -> None:
    h = Http(apiserver)
    upstream = sorted((MANIFESTS / "upstream").glob("*.yaml"))
    assert upstream, "upstream CRD copies missing"
    for path in upstream:
        for crd in docs(path):
            h.create(CRDS, crd)
    for path in sorted(CRDS_DIR.glob("*.yaml")):
        for crd in docs(path):
            name = crd["metadata"]["name"]  # type: ignore[index]
            status, live, _ = h.call("GET", f"{CRDS}/{name}")
            if status == 200:  # the upstream MultiNetworkPolicy CRD: replaced in place, as kubectl apply does
                crd["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]  # type: ignore[index]
                h.ok("PUT", f"{CRDS}/{name}", crd)
            else:
                h.create(CRDS, crd)
    served = {r["name"] for r in h.get("/apis/k8s.cni.cncf.io/v1beta1")["resources"]}
    assert {"multi-networkpolicies", "multi-networkpolicies/status"} <= served
    assert "network-attachment-definitions" in {r["name"] for r in h.get("/apis/k8s.cni.cncf.io/v1")["resources"]}
    objects = [d for p in sorted(SAMPLES.glob("*.yaml")) for d in docs(p)]
    assert objects
    for ns in sorted({str((o.get("metadata") or {}).get("namespace", "default")) for o in objects}):  # type: ignore[union-attr]
        if h.call("GET", f"/api/v1/namespaces/{ns}")[0] == 404:
            h.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    for obj in objects:
        status, body, headers = h.call("POST", plural_path(h, obj), obj, params={"fieldValidation": "Strict"})
        assert status == 201, (obj["metadata"], body)

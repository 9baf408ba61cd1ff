"""The CRDs in crds/ against Kubernetes' rules, the samples in tests/samples/, and mnp.api.ruleset.

A real API server is not available here, so three of its behaviours are emulated on the CRD schemas:
validation (jsonschema, with `x-kubernetes-int-or-string` spelled as anyOf and unknown fields refused,
as `kubectl apply` does with fieldValidation=Strict), the structural-schema rules the API server checks
when a CRD is created, and what it stores (unknown fields pruned, nulls of non-nullable fields dropped,
defaults applied). The PodNetworkRuleset schema must accept what mnp.api.ruleset accepts and refuse the
bad values it refuses, so the controller never writes what the agent would reject, nor the reverse.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes.client
import pytest
import yaml

from mnp.api.errors import InvalidRuleset
from mnp.api.policy import parse_policy
from mnp.api.ruleset import (
    PodRef,
    is_valid_ifname,
    ruleset_object,
    spec_from_object,
    spec_from_raw,
    spec_to_raw,
)

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
SAMPLES_DIR = ROOT / "tests" / "samples"

MNP_CRD = "multi-networkpolicies.k8s.cni.cncf.io"
PNR_CRD = "podnetworkrulesets.mnp.dev"

# --- loading -------------------------------------------------------------------------------------------


def _documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _crd_files() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml"))


def _crds() -> dict[str, dict[str, Any]]:
    out = {}
    for path in _crd_files():
        for doc in _documents(path):
            out[doc["metadata"]["name"]] = doc
    return out


def _samples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        for i, doc in enumerate(_documents(path)):
            out.append((f"{path.name}#{i}" if i else path.name, doc))
    return out


def _version(crd_name: str, version: str) -> dict[str, Any]:
    (v,) = [v for v in _crds()[crd_name]["spec"]["versions"] if v["name"] == version]
    return v


def _schema(crd_name: str, version: str) -> dict[str, Any]:
    return _version(crd_name, version)["schema"]["openAPIV3Schema"]


def _crd_for(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The CRD name and version entry serving `obj` (by apiVersion and kind)."""
    group, _, version = obj["apiVersion"].partition("/")
    for name, crd in _crds().items():
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == obj["kind"]:
            for v in crd["spec"]["versions"]:
                if v["name"] == version:
                    return name, v
    raise AssertionError(f"no CRD in crds/ serves {obj['apiVersion']} {obj['kind']}")


PNR_SAMPLES = [(n, o) for n, o in _samples() if o["kind"] == "PodNetworkRuleset"]
MNP_SAMPLES = [(n, o) for n, o in _samples() if o["kind"] == "MultiNetworkPolicy"]

# --- the API server's view of a schema ----------------------------------------------------------------


def to_json_schema(node: Any) -> Any:
    """A structural schema as a JSON schema with the API server's strict field validation."""
    if isinstance(node, list):
        return [to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if (
        isinstance(node.get("pattern"), str)
        and node["pattern"].endswith("$")
        and not node["pattern"].endswith("\\$")
    ):
        # RE2 (the API server) reads $ as the end of the text; Python's $ also matches before a final "\n".
        out["pattern"] = node["pattern"][:-1] + r"\Z"
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable"):
        out.pop("nullable")
        if "type" in out:
            out["type"] = [out["type"], "null"]
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(to_json_schema(schema))


def errors(schema: dict[str, Any], obj: Any) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator(schema).iter_errors(obj)
    ]


def stored(schema: dict[str, Any], value: Any) -> Any:
    """What the API server stores for a valid `value`: unknown fields pruned, nulls of non-nullable
    fields dropped, defaults applied (apiextensions-apiserver pruning and defaulting)."""
    if isinstance(value, list):
        items = schema.get("items", {})
        return [stored(items, v) for v in value]
    if not isinstance(value, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return copy.deepcopy(value)
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    out = {}
    for key, v in value.items():
        sub = props.get(key) if props is not None else (extra if isinstance(extra, dict) else None)
        if sub is None and not (props is None and extra is None):
            continue  # pruned
        if v is None and not (sub or {}).get("nullable"):
            continue  # a null for a non-nullable field is dropped
        out[key] = stored(sub or {}, v)
    for key, sub in (props or {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
    return out


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties by name, items as [], junctors by keyword)."""
    if not isinstance(node, dict):
        return
    yield path, node
    for key, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{*}}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    for junctor in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(node.get(junctor) or []):
            yield from _walk(sub, f"{path}/{junctor}[{i}]")
    if isinstance(node.get("not"), dict):
        yield from _walk(node["not"], f"{path}/not")


_JUNCTOR = re.compile(r"/(allOf|anyOf|oneOf)\[\d+\]|/not")
# Go's RE2 (which the API server uses for `pattern`) has no lookaround and no backreferences.
_NOT_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]|\(\?P=")


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """Violations of the rules the API server applies to a CRD's openAPIV3Schema (structural schema)."""
    problems = []
    if schema.get("type") != "object":
        problems.append("root: type must be object")
    for path, node in _walk(schema):
        where = path or "root"
        in_junctor = bool(_JUNCTOR.search(path))
        int_or_string = node.get("x-kubernetes-int-or-string") is True
        if in_junctor:
            banned = {"description", "type", "default", "additionalProperties", "nullable"}
            banned |= {k for k in node if k.startswith("x-kubernetes-")}
            int_or_string_branch = node in ({"type": "integer"}, {"type": "string"})
            for key in sorted(banned & node.keys()):
                if not (key == "type" and int_or_string_branch):
                    problems.append(f"{where}: {key} is not allowed inside a junctor")
            continue
        if "type" not in node and not int_or_string and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{where}: no type")
        if int_or_string:
            if "type" in node:
                problems.append(f"{where}: x-kubernetes-int-or-string must not have a type")
            if node.get("anyOf") not in (None, [{"type": "integer"}, {"type": "string"}]):
                problems.append(f"{where}: x-kubernetes-int-or-string allows only anyOf [integer, string]")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{where}: array without one items schema")
        if "properties" in node and isinstance(node.get("additionalProperties"), dict):
            problems.append(f"{where}: properties and additionalProperties are exclusive")
        if "properties" in node and node.get("type") != "object":
            problems.append(f"{where}: properties on a non-object")
        for key in node.get("required") or []:
            if key not in (node.get("properties") or {}):
                problems.append(f"{where}: required {key!r} is not a property")
        if "pattern" in node:
            if _NOT_RE2.search(node["pattern"]):
                problems.append(f"{where}: pattern is not RE2 (lookaround or backreference)")
            re.compile(node["pattern"])
        if node.get("x-kubernetes-list-type") == "map":
            for key in node.get("x-kubernetes-list-map-keys") or []:
                if key not in (node["items"].get("required") or []):
                    problems.append(f"{where}: list-map key {key!r} must be required in the items")
        if path == ".metadata" and set(node) - {"type"}:
            problems.append(f"{where}: only type: object is allowed here (plus name/generateName limits)")
    return problems


# --- the CRD files --------------------------------------------------------------------------------------


def test_each_crd_file_holds_one_apiextensions_v1_crd_named_plural_dot_group() -> None:
    assert _crd_files(), "crds/ holds no CRD"
    for path in _crd_files():
        docs = _documents(path)
        assert len(docs) == 1, f"{path.name}: {len(docs)} documents"
        (crd,) = docs
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1", path.name
        assert crd["kind"] == "CustomResourceDefinition", path.name
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}", path.name
    assert set(_crds()) == {MNP_CRD, PNR_CRD}


@pytest.mark.parametrize("name", [MNP_CRD, PNR_CRD])
def test_crd_deserializes_into_the_kubernetes_models_without_unknown_or_lost_fields(name: str) -> None:
    crd = _crds()[name]
    client = kubernetes.client.ApiClient()
    try:
        # The private deserializer takes a dict; the public one's signature differs between releases.
        model = client._ApiClient__deserialize(copy.deepcopy(crd), "V1CustomResourceDefinition")
        # The models drop keys they do not know; a misspelt field shows up as a difference here.
        back = client.sanitize_for_serialization(model)
    finally:
        client.close()
    assert isinstance(model, kubernetes.client.V1CustomResourceDefinition)
    assert back == crd


@pytest.mark.parametrize("name", [MNP_CRD, PNR_CRD])
def test_every_version_schema_is_a_valid_json_schema(name: str) -> None:
    for v in _crds()[name]["spec"]["versions"]:
        jsonschema.Draft7Validator.check_schema(v["schema"]["openAPIV3Schema"])
        jsonschema.Draft7Validator.check_schema(to_json_schema(v["schema"]["openAPIV3Schema"]))


@pytest.mark.parametrize("name", [MNP_CRD, PNR_CRD])
def test_every_version_schema_is_structural(name: str) -> None:
    for v in _crds()[name]["spec"]["versions"]:
        assert structural_problems(v["schema"]["openAPIV3Schema"]) == [], v["name"]


def test_structural_check_finds_the_usual_mistakes() -> None:
    bad = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "a": {"description": "no type"},
            "b": {"type": "array"},
            "c": {"type": "string", "pattern": "^(?!x)"},
            "d": {"type": "object", "anyOf": [{"type": "object", "required": ["e"]}], "required": ["e"]},
        },
    }
    found = "\n".join(structural_problems(bad))
    for expected in (
        ".metadata: only type",
        ".a: no type",
        ".b: array without",
        ".c: pattern is not RE2",
        ".d/anyOf[0]: type is not allowed",
        ".d: required 'e'",
    ):
        assert expected in found


def test_multinetworkpolicy_crd_has_the_upstream_names_and_versions() -> None:
    spec = _crds()[MNP_CRD]["spec"]
    assert spec["group"] == "k8s.cni.cncf.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (
        "MultiNetworkPolicy",
        "multi-networkpolicies",
        "multi-networkpolicy",
    )
    assert names["shortNames"] == ["multi-policy"]
    served = {v["name"]: (v["served"], v["storage"]) for v in spec["versions"]}
    assert served == {"v1beta1": (True, True), "v1beta2": (False, False)}
    assert _version(MNP_CRD, "v1beta1")["subresources"] == {"status": {}}


def test_multinetworkpolicy_v1beta1_and_v1beta2_schemas_are_the_same() -> None:
    assert _schema(MNP_CRD, "v1beta1") == _schema(MNP_CRD, "v1beta2")


# Every spec field of upstream's scheme.yml (NetworkPolicy's spec; endPort as in upstream v1beta2 and
# the v1.0.1 Go types of v1beta1). Nothing may be missing: the API server would prune it silently.
_SELECTOR_FIELDS = [
    "matchLabels",
    "matchExpressions[].key",
    "matchExpressions[].operator",
    "matchExpressions[].values[]",
]
_PEER_FIELDS = ["ipBlock.cidr", "ipBlock.except[]"] + [
    f"{sel}.{f}" for sel in ("namespaceSelector", "podSelector") for f in _SELECTOR_FIELDS
]
_PORT_FIELDS = ["protocol", "port", "endPort"]
UPSTREAM_SPEC_FIELDS = (
    [f"podSelector.{f}" for f in _SELECTOR_FIELDS]
    + ["policyTypes[]"]
    + [f"ingress[].from[].{f}" for f in _PEER_FIELDS]
    + [f"ingress[].ports[].{f}" for f in _PORT_FIELDS]
    + [f"egress[].to[].{f}" for f in _PEER_FIELDS]
    + [f"egress[].ports[].{f}" for f in _PORT_FIELDS]
)
UPSTREAM_REQUIRED = {
    ".spec": ["podSelector"],
    ".ipBlock": ["cidr"],
    ".matchExpressions[]": ["key", "operator"],
}


def _schema_at(schema: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in dotted.strip(".").split("."):
        name, arrays = part.rstrip("[]"), part.count("[]")
        node = (node or {}).get("properties", {}).get(name)
        for _ in range(arrays):
            node = (node or {}).get("items")
    return node


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
def test_multinetworkpolicy_schema_has_every_upstream_field_without_extra_validation(version: str) -> None:
    schema = _schema(MNP_CRD, version)
    spec = schema["properties"]["spec"]
    missing = [f for f in UPSTREAM_SPEC_FIELDS if _schema_at(spec, f) is None]
    assert missing == []
    port = _schema_at(spec, "ingress[].ports[].port")
    assert port is not None and port.get("x-kubernetes-int-or-string") is True
    # As permissive as upstream: mnp reports bad values through status, the API server must store them.
    strict = {
        "enum",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "x-kubernetes-validations",
    }
    for path, node in _walk(spec, ".spec"):
        extra = strict & node.keys() - ({"anyOf"} if node.get("x-kubernetes-int-or-string") else set())
        assert not extra, f"{path}: {sorted(extra)} (upstream has no such validation)"
        if "required" in node:
            assert node["required"] == UPSTREAM_REQUIRED[path[path.rfind(".") :]], path


@pytest.mark.parametrize(
    "spec",
    [
        {"podSelector": {}, "policyTypes": ["ingress", "Sideways"]},
        {"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP", "port": 70000, "endPort": 1}]}]},
        {"podSelector": {}, "ingress": [{"ports": [{"port": "no-such-name-is-too-long"}]}]},
        {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/33", "except": ["x"]}}]}]},
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Sometimes"}]}},
        {
            "podSelector": {},
            "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}, "podSelector": {}}]}],
        },
    ],
    ids=["policy-types", "protocol-and-ports", "port-name", "cidrs", "operator", "ipblock-with-selector"],
)
def test_multinetworkpolicy_schema_stores_values_that_mnp_reports_itself(spec: dict[str, Any]) -> None:
    obj = {
        "apiVersion": "k8s.cni.cncf.io/v1beta1",
        "kind": "MultiNetworkPolicy",
        "metadata": {},
        "spec": spec,
    }
    assert errors(_schema(MNP_CRD, "v1beta1"), obj) == []


@pytest.mark.parametrize(
    "spec",
    [
        {"ingress": []},
        {"podSelector": {}, "ingress": [{"form": [{}]}]},
        {"podSelector": {}, "ingress": [{"ports": [{"port": True}]}]},
        {"podSelector": {}, "ingress": [{"ports": [{"port": 1.5}]}]},
        {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"except": ["10.0.0.0/8"]}}]}]},
        {"podSelector": {"matchLabels": {"app": 1}}},
        {"podSelector": {}, "policyTypes": "Ingress"},
    ],
    ids=[
        "no-pod-selector",
        "misspelt-from",
        "boolean-port",
        "fraction-port",
        "ipblock-without-cidr",
        "label-value-not-a-string",
        "policy-types-not-a-list",
    ],
)
def test_multinetworkpolicy_schema_refuses_what_upstream_refuses(spec: dict[str, Any]) -> None:
    obj = {
        "apiVersion": "k8s.cni.cncf.io/v1beta1",
        "kind": "MultiNetworkPolicy",
        "metadata": {},
        "spec": spec,
    }
    assert errors(_schema(MNP_CRD, "v1beta1"), obj) != []


def test_podnetworkruleset_crd_has_the_design_names_and_version() -> None:
    spec = _crds()[PNR_CRD]["spec"]
    assert spec["group"] == "mnp.dev"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "PodNetworkRuleset",
        "podnetworkrulesets",
        ["pnr"],
    )
    assert "mnp" in names.get("categories", [])
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [("v1alpha1", True, True)]
    assert _version(PNR_CRD, "v1alpha1")["subresources"] == {"status": {}}


def test_podnetworkruleset_printer_columns_show_node_policies_rules_applied_age() -> None:
    columns = _version(PNR_CRD, "v1alpha1")["additionalPrinterColumns"]
    shown = [(c["name"], c["jsonPath"]) for c in columns if not c.get("priority")]
    assert shown == [
        ("Node", ".spec.node"),
        ("Policies", ".spec.policies"),
        ("Rules", ".status.rules"),
        ("Applied", '.status.conditions[?(@.type=="Applied")].status'),
        ("Age", ".metadata.creationTimestamp"),
    ]


_COLUMN_TYPES = {
    "integer": {"integer"},
    "number": {"integer", "number"},
    "boolean": {"boolean"},
    "date": {"string"},
    "string": {"string", "array"},
}


@pytest.mark.parametrize("name", [MNP_CRD, PNR_CRD])
def test_printer_columns_point_at_fields_of_the_schema_with_a_matching_type(name: str) -> None:
    for v in _crds()[name]["spec"]["versions"]:
        schema = v["schema"]["openAPIV3Schema"]
        for column in v.get("additionalPrinterColumns", []):
            path = column["jsonPath"]
            if path == ".metadata.creationTimestamp":
                assert column["type"] == "date"
                continue
            # .a.b, or .a[?(@.k=="v")].b: a filter selects items of the array a.
            m = re.fullmatch(r"((?:\.\w+)+)(?:\[\?\(@\.(\w+)==\"\w+\"\)\]((?:\.\w+)+))?", path)
            assert m, f"{v['name']} {column['name']}: unsupported jsonPath {path}"
            node = _schema_at(schema, m.group(1))
            if m.group(2):
                assert node is not None and node["type"] == "array", path
                assert m.group(2) in node["items"]["properties"], path
                node = _schema_at(node["items"], m.group(3))
            assert node is not None, f"{v['name']} {column['name']}: {path} is not in the schema"
            assert node["type"] in _COLUMN_TYPES[column["type"]], f"{column['name']}: {node['type']}"


@pytest.mark.parametrize("name", [MNP_CRD, PNR_CRD])
def test_status_conditions_have_the_metav1_condition_shape(name: str) -> None:
    for v in _crds()[name]["spec"]["versions"]:
        conditions = v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
        item = conditions["items"]
        assert set(item["properties"]) == {
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        }
        assert set(item["required"]) == {"type", "status", "reason", "message", "lastTransitionTime"}
        assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_status_fields_are_the_ones_the_design_names() -> None:
    # A status field missing from the schema is pruned silently: the controller and agent must write these.
    mnp = _schema(MNP_CRD, "v1beta1")["properties"]["status"]["properties"]
    assert set(mnp) == {"observedGeneration", "selectedPods", "enforcedPods", "failedPods", "conditions"}
    pnr = _schema(PNR_CRD, "v1alpha1")["properties"]["status"]["properties"]
    assert set(pnr) == {"observedGeneration", "appliedHash", "rules", "elements", "lastApplied", "conditions"}


def test_podnetworkruleset_schema_has_no_defaults_so_omitted_fields_stay_omitted() -> None:
    # A default on peers or ports would turn "any" into "nothing".
    assert [p for p, node in _walk(_schema(PNR_CRD, "v1alpha1")) if "default" in node] == []


# --- samples -------------------------------------------------------------------------------------------


def test_there_are_samples_of_both_kinds() -> None:
    assert len(MNP_SAMPLES) >= 5 and len(PNR_SAMPLES) >= 3
    assert "pnr-design-example.yaml" in dict(PNR_SAMPLES)


@pytest.mark.parametrize(("name", "obj"), _samples(), ids=[n for n, _ in _samples()])
def test_sample_validates_against_a_served_version_of_its_crd(name: str, obj: dict[str, Any]) -> None:
    _, version = _crd_for(obj)
    assert version["served"], f"{name}: {obj['apiVersion']} is not served"
    assert errors(version["schema"]["openAPIV3Schema"], obj) == []


@pytest.mark.parametrize(("name", "obj"), _samples(), ids=[n for n, _ in _samples()])
def test_sample_is_stored_unchanged_by_pruning_and_null_dropping(name: str, obj: dict[str, Any]) -> None:
    _, version = _crd_for(obj)
    assert stored(version["schema"]["openAPIV3Schema"], obj) == obj


def test_stored_emulation_prunes_unknown_fields_and_nulls_and_keeps_empty_lists() -> None:
    schema = _schema(PNR_CRD, "v1alpha1")
    _, obj = PNR_SAMPLES[0]
    obj = copy.deepcopy(obj)
    rule = obj["spec"]["ingress"]["rules"][0]
    rule.update(peers=[], ports=None, bogus=1)
    out = stored(schema, obj)["spec"]["ingress"]["rules"][0]
    assert out["peers"] == [] and "ports" not in out and "bogus" not in out


@pytest.mark.parametrize(("name", "obj"), MNP_SAMPLES, ids=[n for n, _ in MNP_SAMPLES])
def test_sample_policy_is_understood_by_mnp_unless_meant_to_be_invalid(
    name: str, obj: dict[str, Any]
) -> None:
    _, problems = parse_policy(obj)
    if "invalid" in name:
        assert problems and all(p.field.startswith("spec.") for p in problems), problems
    else:
        assert problems == []


@pytest.mark.parametrize(("name", "obj"), PNR_SAMPLES, ids=[n for n, _ in PNR_SAMPLES])
def test_sample_ruleset_is_accepted_by_the_agent_and_round_trips_unchanged(
    name: str, obj: dict[str, Any]
) -> None:
    spec = spec_from_object(obj)
    raw = spec_to_raw(spec)
    assert raw == obj["spec"]
    # Same key order too: the samples are written as the controller writes them.
    assert json.dumps(raw) == json.dumps(obj["spec"])


@pytest.mark.parametrize(("name", "obj"), PNR_SAMPLES, ids=[n for n, _ in PNR_SAMPLES])
def test_sample_ruleset_metadata_is_what_the_controller_writes(name: str, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    pod = PodRef(namespace=meta["namespace"], name=meta["name"], uid=obj["spec"]["podUID"])
    expected = ruleset_object(pod, spec_from_object(obj))
    got = {k: v for k, v in obj.items() if k != "status"}
    got["metadata"] = {k: v for k, v in meta.items() if k != "generation"}
    assert got == expected


def test_design_example_sample_is_the_design_text() -> None:
    # The ingress part of DESIGN.md section 2, as printed there (its podUID and egress are placeholders).
    spec = dict(PNR_SAMPLES)["pnr-design-example.yaml"]["spec"]
    assert spec["podUID"].startswith("4f1c")
    assert {k: spec[k] for k in ("node", "policies", "compacted", "interfaces")} == {
        "node": "node-1",
        "policies": ["default/web-policy"],
        "compacted": False,
        "interfaces": [{"name": "net1", "network": "default/macvlan1", "ips": ["10.1.1.5", "fd00:1::5"]}],
    }
    assert spec["ingress"] == {
        "isolated": ["net1"],
        "rules": [
            {
                "policy": "default/web-policy",
                "rule": 0,
                "interface": "net1",
                "peers": [
                    {"cidr": "10.1.1.7/32", "pod": "default/frontend-1"},
                    {"cidr": "10.0.0.0/8", "except": ["10.0.1.0/24"]},
                ],
                "ports": [
                    {"protocol": "TCP", "port": 8080},
                    {"protocol": "UDP", "port": 5000, "endPort": 5010},
                    {"protocol": "SCTP"},
                ],
            }
        ],
    }


# --- the ruleset schema and mnp.api.ruleset agree -----------------------------------------------------


def _base() -> dict[str, Any]:
    return copy.deepcopy(dict(PNR_SAMPLES)["pnr-design-example.yaml"])


def _ports(obj: dict[str, Any]) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = obj["spec"]["ingress"]["rules"][0]["ports"]
    return ports


def _rule(obj: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = obj["spec"]["ingress"]["rules"][0]
    return rule


def _set_ifname(obj: dict[str, Any], name: str) -> None:
    obj["spec"]["interfaces"][0]["name"] = name
    obj["spec"]["ingress"]["isolated"] = [name]
    obj["spec"]["egress"]["isolated"] = [name]
    for d in ("ingress", "egress"):
        for rule in obj["spec"][d]["rules"]:
            rule["interface"] = name


Mutation = Callable[[dict[str, Any]], None]

BAD_RULESETS: dict[str, Mutation] = {
    "protocol ICMP": lambda o: _ports(o)[0].update(protocol="ICMP"),
    "protocol in lower case": lambda o: _ports(o)[0].update(protocol="tcp"),
    "port 70000": lambda o: _ports(o)[0].update(port=70000),
    "port 0": lambda o: _ports(o)[0].update(port=0),
    "port as a string": lambda o: _ports(o)[0].update(port="8080"),
    "endPort without port": lambda o: _ports(o)[2].update(endPort=80),
    "endPort 65536": lambda o: _ports(o)[1].update(endPort=65536),
    "port without protocol": lambda o: _ports(o)[0].pop("protocol"),
    "interface name with a quote": lambda o: _set_ifname(o, 'net1"'),
    "interface name with a space": lambda o: _set_ifname(o, "net 1"),
    "interface name of 16 characters": lambda o: _set_ifname(o, "a" * 16),
    "empty interface name": lambda o: _set_ifname(o, ""),
    "interface name ..": lambda o: _set_ifname(o, ".."),
    "policy without namespace": lambda o: _rule(o).update(policy="web-policy"),
    "policy with upper case": lambda o: _rule(o).update(policy="default/Web"),
    "negative rule index": lambda o: _rule(o).update(rule=-1),
    "rule index as a string": lambda o: _rule(o).update(rule="0"),
    "rule without interface": lambda o: _rule(o).pop("interface"),
    "peer without cidr": lambda o: _rule(o)["peers"][1].pop("cidr"),
    "cidr that is no CIDR": lambda o: _rule(o)["peers"][0].update(cidr="frontend"),
    "except that is no CIDR": lambda o: _rule(o)["peers"][1].update({"except": ["10.0.1.0/24; drop"]}),
    "peer pod without namespace": lambda o: _rule(o)["peers"][0].update(pod="frontend-1"),
    "peers not a list": lambda o: _rule(o).update(peers={"cidr": "10.0.0.0/8"}),
    "no podUID": lambda o: o["spec"].pop("podUID"),
    "podUID with a slash": lambda o: o["spec"].update(podUID="4f1c/x"),
    "no node": lambda o: o["spec"].pop("node"),
    "node in upper case": lambda o: o["spec"].update(node="Node-1"),
    "compacted as a string": lambda o: o["spec"].update(compacted="false"),
    "network without namespace": lambda o: o["spec"]["interfaces"][0].update(network="macvlan1"),
    "ip that is no address": lambda o: o["spec"]["interfaces"][0].update(ips=["web-1"]),
    "isolated name with a brace": lambda o: o["spec"]["ingress"].update(isolated=["net1}"]),
}


def _python_rejects(obj: dict[str, Any]) -> bool:
    try:
        spec_from_object(obj)
    except InvalidRuleset:
        return True
    return False


@pytest.mark.parametrize("mutate", BAD_RULESETS.values(), ids=list(BAD_RULESETS))
def test_bad_ruleset_value_is_refused_by_both_the_crd_schema_and_the_agent(mutate: Mutation) -> None:
    obj = _base()
    mutate(obj)
    assert errors(_schema(PNR_CRD, "v1alpha1"), obj) != [], "the CRD schema accepts it"
    assert _python_rejects(obj), "mnp.api.ruleset accepts it"


GOOD_RULESETS: dict[str, Mutation] = {
    "port 1 and 65535": lambda o: _ports(o)[:2].__setitem__(
        slice(None), [{"protocol": "TCP", "port": 1}, {"protocol": "UDP", "port": 65535}]
    ),
    "endPort equal to port": lambda o: _ports(o)[1].update(endPort=5000),
    "endPort 65535": lambda o: _ports(o)[1].update(endPort=65535),
    "interface name of 15 characters": lambda o: _set_ifname(o, "a" * 15),
    "interface name with dot, dash, underscore": lambda o: _set_ifname(o, "eth0.100-a_b"),
    "interface name starting with a dot": lambda o: _set_ifname(o, ".x"),
    "empty peers and ports": lambda o: _rule(o).update(peers=[], ports=[]),
    "omitted peers and ports": lambda o: [_rule(o).pop("peers"), _rule(o).pop("ports")],
    "IPv6 peers": lambda o: _rule(o).update(peers=[{"cidr": "2001:db8::/32", "except": ["2001:db8:a::/48"]}]),
    "IPv4-mapped IPv6 address": lambda o: o["spec"]["interfaces"][0].update(ips=["::ffff:192.0.2.1"]),
    "no egress": lambda o: o["spec"].pop("egress"),
    "no policies, interfaces or compacted": lambda o: [
        o["spec"].pop(k) for k in ("policies", "compacted", "interfaces", "ingress", "egress")
    ],
    "dotted names": lambda o: _rule(o).update(policy="kube-system/a.b"),
}


@pytest.mark.parametrize("mutate", GOOD_RULESETS.values(), ids=list(GOOD_RULESETS))
def test_edge_ruleset_value_is_accepted_by_both_the_crd_schema_and_the_agent(mutate: Mutation) -> None:
    obj = _base()
    mutate(obj)
    assert errors(_schema(PNR_CRD, "v1alpha1"), obj) == []
    assert not _python_rejects(obj)


def _pattern(dotted: str) -> re.Pattern[str]:
    node = _schema_at(to_json_schema(_schema(PNR_CRD, "v1alpha1")), dotted)
    assert node is not None
    return re.compile(node["pattern"])


def _strings(alphabet: str, max_len: int) -> Iterator[str]:
    """Every string up to 3 characters over `alphabet`, plus lengths around the limits."""
    yield ""
    level = [""]
    for _ in range(3):
        level = [s + c for s in level for c in alphabet]
        yield from level
    for n in (max_len - 1, max_len, max_len + 1):
        for c in alphabet:
            yield c * n
            yield "a" * (n - 1) + c
            yield c + "a" * (n - 1)


def test_interface_name_pattern_is_exactly_is_valid_ifname() -> None:
    pattern = _pattern("spec.interfaces[].name")
    disagree = [s for s in _strings('a.Z9_-/ "', 15) if bool(pattern.match(s)) != is_valid_ifname(s)]
    assert disagree == []


@pytest.mark.parametrize(
    ("dotted", "field"),
    [("spec.node", "node"), ("spec.podUID", "podUID"), ("spec.policies[]", "policies")],
)
def test_name_patterns_accept_exactly_what_the_agent_accepts(dotted: str, field: str) -> None:
    pattern = _pattern(dotted)
    alphabet = "a-.9/A_" if field != "policies" else "a-./"
    limit = {"node": 253, "podUID": 64, "policies": 253}[field]
    disagree = []
    for s in _strings(alphabet, limit):
        raw = spec_to_raw(spec_from_raw({"podUID": "u", "node": "n"}))
        raw[field] = [s] if field == "policies" else s
        try:
            spec_from_raw(raw)
            python = True
        except InvalidRuleset:
            python = False
        if bool(pattern.match(s)) != python:
            disagree.append(s)
    assert disagree == []


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0.0/0",
        "192.0.2.0/24",
        "255.255.255.255/32",
        "::/0",
        "2001:db8::/32",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        "::ffff:0:0/96",
    ],
)
def test_cidr_pattern_accepts_every_canonical_cidr(text: str) -> None:
    # The schema only screens CIDRs (host bits and except-inside-cidr are the agent's to check); it must
    # never refuse one the controller writes, which is str() of an ipaddress network.
    assert str(ipaddress.ip_network(text)) == text
    assert _pattern("spec.ingress.rules[].peers[].cidr").match(text)
    assert _pattern("spec.interfaces[].ips[]").match(text.partition("/")[0])


def test_a_null_peers_list_means_what_the_api_server_stores() -> None:
    obj = _base()
    _rule(obj)["peers"] = None
    as_stored = stored(_schema(PNR_CRD, "v1alpha1"), obj)
    assert _python_rejects(obj) or spec_from_object(obj) == spec_from_object(as_stored)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: _set_ifname(o, "net1\n"),
        lambda o: o["spec"].update(node="node-1\n"),
        lambda o: o["spec"].update(podUID=o["spec"]["podUID"] + "\n"),
        lambda o: _rule(o).update(policy="default/web-policy\n"),
    ],
    ids=["interface", "node", "podUID", "policy"],
)
def test_a_trailing_newline_is_refused_by_both_the_crd_schema_and_the_agent(mutate: Mutation) -> None:
    obj = _base()
    mutate(obj)
    assert errors(_schema(PNR_CRD, "v1alpha1"), obj) != [], "the CRD schema accepts it"
    assert _python_rejects(obj), "mnp.api.ruleset accepts it"

"""The schema check remembers flat objects that validated clean; it must not change any verdict."""

from __future__ import annotations

import json
import sys
from typing import Any

from mnp.local.apiserver.schema import check
from tests.apiserver.test_values import all_keys

PORT = {
    "type": "object",
    "required": ["protocol"],
    "properties": {
        "protocol": {"type": "string", "enum": ["TCP", "UDP"]},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"spec": {"type": "object", "properties": {"ports": {"type": "array", "items": PORT}}}},
}


def _ports(*ports: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"ports": list(ports)}}


def test_a_value_equal_to_a_remembered_clean_one_but_of_another_type_is_still_refused() -> None:
    out, found = check(SCHEMA, _ports({"protocol": "TCP", "port": 1}))
    assert not found.errors and out["spec"]["ports"] == [{"protocol": "TCP", "port": 1}]
    for wrong in (True, 1.0):  # equal to 1 and hashing alike, but not integers
        _, found = check(SCHEMA, _ports({"protocol": "TCP", "port": wrong}))
        assert [path for path, _ in found.errors] == ["spec.ports[0].port"], (wrong, found.errors)


def test_an_invalid_flat_object_is_reported_every_time_at_its_own_path() -> None:
    for _ in range(2):
        _, found = check(SCHEMA, _ports({"protocol": "TCP", "port": 80}, {"protocol": "SCTP", "port": 80}))
        assert [path for path, _ in found.errors] == ["spec.ports[1].protocol"]


def test_unknown_fields_of_a_flat_object_are_pruned_every_time() -> None:
    for _ in range(2):
        out, found = check(SCHEMA, _ports({"protocol": "UDP", "port": 53, "extra": "x"}))
        assert found.unknown == ["spec.ports[0].extra"]
        assert out["spec"]["ports"] == [{"protocol": "UDP", "port": 53}]


def test_remembered_objects_come_back_as_copies() -> None:
    first, _ = check(SCHEMA, _ports({"protocol": "TCP", "port": 443}))
    first["spec"]["ports"][0]["port"] = 8443
    second, found = check(SCHEMA, _ports({"protocol": "TCP", "port": 443}))
    assert not found.errors and second["spec"]["ports"] == [{"protocol": "TCP", "port": 443}]


def test_a_field_as_validated_is_taken_over_and_any_other_is_judged() -> None:
    stored, found = check(SCHEMA, _ports({"protocol": "TCP", "port": 80}))
    assert not found.errors
    same, found = check(SCHEMA, _ports({"protocol": "TCP", "port": 80}), validated=stored)
    assert not found.errors and same["spec"] is stored["spec"]
    for changed in ({"protocol": "TCP", "port": 80.0}, {"protocol": "TCP", "port": 0}, {"protocol": "SCTP"}):
        _, found = check(SCHEMA, _ports(changed), validated=stored)
        assert found.errors, changed


def test_what_the_check_keeps_has_interned_keys_at_every_level() -> None:
    schema = {
        **SCHEMA,
        "properties": {
            **SCHEMA["properties"],
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    text = '{"metadata": {"name": "a", "labels": {"k1": "v"}}, "spec": {"ports": [{"protocol": "TCP", "port": 1}]}, "free": {"deep": [{"k2": 1}]}}'
    out, found = check(schema, json.loads(text))
    assert not found.errors and not found.unknown
    assert out == json.loads(text)
    assert all(k is sys.intern(k) for k in all_keys(out))

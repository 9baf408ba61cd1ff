"""Container specs of local-cluster pods: $(VAR) expansion, env with downward fields, mounts, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mnp.api.errors import InvalidInput
from mnp.local.nodes.podspec import (
    IMAGE_PATH,
    SERVICE_ACCOUNT_MOUNT,
    ContainerSpec,
    InvalidContainer,
    Mount,
    PodContext,
    SourceCheck,
    SourceType,
    container_spec,
    expand,
    pod_container_specs,
)

SA = Path("/state/pods/ns1_web_u1/serviceaccount")
EMPTY = Path("/state/pods/ns1_web_u1/volumes")
CTX = PodContext(
    host_ips=("198.18.0.1", "fd00:18::1"),
    pod_ips=("198.18.1.5", "fd00:18:1::5"),
    host_path=lambda p: Path("/state/hostpath") / p.lstrip("/"),
    empty_dir_root=EMPTY,
    service_account_dir=SA,
    extra_env=(("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("KUBERNETES_SERVICE_PORT", "443")),
)


def pod(
    container: dict[str, Any], volumes: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "ns1",
            "uid": "u1",
            "labels": {"app": "web"},
            "annotations": {"note": "hi"},
        },
        "spec": {
            "nodeName": "node-1",
            "serviceAccountName": "builder",
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "busybox", "command": ["sh"], **container}],
            "volumes": volumes or [],
            **spec,
        },
    }


def spec_of(
    container: dict[str, Any], volumes: list[dict[str, Any]] | None = None, **spec: Any
) -> ContainerSpec:
    return container_spec(pod(container, volumes, **spec), "c", CTX)


def error_of(
    container: dict[str, Any], volumes: list[dict[str, Any]] | None = None, **spec: Any
) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        spec_of(container, volumes, **spec)
    return info.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)z", "x1y2z"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("cost $", "cost $"),
        ("$$", "$"),
        ("$()", "$()"),
        ("$(A)$(A)", "11"),
    ],
    ids=lambda v: repr(v),
)
def test_variable_references_expand_like_kubernetes(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}.get) == expected


def test_argv_is_command_then_args_expanded_with_the_container_env() -> None:
    s = spec_of(
        {
            "command": ["echo", "$(GREETING)"],
            "args": ["$(NAME)", "$$(NAME)", "$(NOPE)"],
            "env": [{"name": "GREETING", "value": "hello"}, {"name": "NAME", "value": "$(GREETING) world"}],
        }
    )
    assert s.argv == ("echo", "hello", "hello world", "$(NAME)", "$(NOPE)")


def test_a_container_without_command_is_refused_since_there_is_no_image_entrypoint() -> None:
    e = error_of({"command": [], "args": ["x"]})
    assert e.field == "spec.containers[0].command"
    assert e.obj == "ns1/web"
    assert "entrypoint" in e.message


def test_env_has_image_defaults_then_kubelet_env_then_container_env_in_order() -> None:
    s = spec_of(
        {
            "env": [
                {"name": "A", "value": "a"},
                {"name": "PATH", "value": "/opt/bin:$(PATH)"},
                {"name": "EMPTY"},
            ]
        }
    )
    assert s.env == (
        ("PATH", "/opt/bin:" + IMAGE_PATH),
        ("HOSTNAME", "web"),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("A", "a"),
        ("EMPTY", ""),
    )


def test_an_env_value_sees_earlier_entries_and_service_env_but_not_later_ones() -> None:
    s = spec_of(
        {
            "env": [
                {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST):$(PORT)"},
                {"name": "PORT", "value": "1"},
            ]
        }
    )
    assert dict(s.env)["URL"] == "https://10.96.0.1:$(PORT)"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "web"),
        ("metadata.namespace", "ns1"),
        ("metadata.uid", "u1"),
        ("metadata.labels['app']", "web"),
        ("metadata.labels['absent']", ""),
        ("metadata.annotations['note']", "hi"),
        ("spec.nodeName", "node-1"),
        ("spec.serviceAccountName", "builder"),
        ("status.hostIP", "198.18.0.1"),
        ("status.hostIPs", "198.18.0.1,fd00:18::1"),
        ("status.podIP", "198.18.1.5"),
        ("status.podIPs", "198.18.1.5,fd00:18:1::5"),
    ],
)
def test_downward_api_fields_fill_env(path: str, value: str) -> None:
    s = spec_of({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})
    assert dict(s.env)["V"] == value


def test_a_field_value_is_not_expanded_but_later_values_may_reference_it() -> None:
    p = pod(
        {
            "env": [
                {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
                {"name": "M", "value": "<$(N)>"},
            ]
        }
    )
    p["metadata"]["annotations"]["note"] = "$(HOSTNAME)"
    s = container_spec(p, "c", CTX)
    assert dict(s.env)["N"] == "$(HOSTNAME)"
    assert dict(s.env)["M"] == "<$(HOSTNAME)>"


@pytest.mark.parametrize(
    ("container", "field", "word"),
    [
        (
            {
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "2"},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ]
            },
            "spec.containers[0].env[2].valueFrom.secretKeyRef",
            "secretKeyRef",
        ),
        (
            {"env": [{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]},
            "spec.containers[0].env[0].valueFrom.configMapKeyRef",
            "configMapKeyRef",
        ),
        (
            {"env": [{"name": "R", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]},
            "spec.containers[0].env[0].valueFrom.resourceFieldRef",
            "resourceFieldRef",
        ),
        ({"envFrom": [{"configMapRef": {"name": "c"}}]}, "spec.containers[0].envFrom", "envFrom"),
        (
            {"env": [{"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "metadata.generation"}}}]},
            "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
            "metadata.generation",
        ),
        ({"env": [{"value": "x"}]}, "spec.containers[0].env[0].name", "required"),
    ],
    ids=[
        "secretKeyRef",
        "configMapKeyRef",
        "resourceFieldRef",
        "envFrom",
        "unknown fieldRef",
        "nameless env",
    ],
)
def test_env_the_local_cluster_cannot_provide_is_refused_naming_the_field(
    container: dict[str, Any], field: str, word: str
) -> None:
    e = error_of(container)
    assert e.field == field
    assert word in e.message
    assert e.obj == "ns1/web"


def test_unsupported_env_sources_say_they_are_unsupported_on_the_local_cluster() -> None:
    e = error_of({"env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]})
    assert (
        str(e)
        == "ns1/web: spec.containers[0].env[0].valueFrom.secretKeyRef: secretKeyRef is not supported on the local cluster"
    )


def test_working_dir_is_taken_as_written_and_absent_means_none() -> None:
    assert spec_of({"workingDir": "/srv"}).working_dir == "/srv"
    assert spec_of({}).working_dir is None


def test_a_host_path_volume_resolves_through_the_kubelet_and_carries_its_type_check() -> None:
    s = spec_of(
        {"volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}]},
        [{"name": "data", "hostPath": {"path": "/var/lib/x", "type": "DirectoryOrCreate"}}],
    )
    source = Path("/state/hostpath/var/lib/x")
    assert s.mounts == (
        Mount(
            source,
            "/data",
            True,
            (SourceCheck(source, SourceType.DIRECTORY_OR_CREATE, "spec.volumes[0].hostPath.path"),),
        ),
    )


@pytest.mark.parametrize("kind", [t.value for t in SourceType])
def test_every_host_path_type_is_reported_for_the_start_to_check(kind: str) -> None:
    s = spec_of(
        {"volumeMounts": [{"name": "v", "mountPath": "/v"}]},
        [{"name": "v", "hostPath": {"path": "/p", "type": kind}}],
    )
    assert s.mounts[0].checks[0].type == SourceType(kind)


def test_a_sub_path_is_a_directory_created_below_the_volume() -> None:
    s = spec_of(
        {"volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "a/b"}]},
        [{"name": "v", "hostPath": {"path": "/p", "type": "Directory"}}],
    )
    (m,) = s.mounts
    assert m.source == Path("/state/hostpath/p/a/b")
    assert [(c.path, c.type, c.field) for c in m.checks] == [
        (Path("/state/hostpath/p"), SourceType.DIRECTORY, "spec.volumes[0].hostPath.path"),
        (
            Path("/state/hostpath/p/a/b"),
            SourceType.DIRECTORY_OR_CREATE,
            "spec.containers[0].volumeMounts[0].subPath",
        ),
    ]


def test_a_sub_path_expression_expands_with_the_container_env() -> None:
    s = spec_of(
        {
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": "v", "mountPath": "/v", "subPathExpr": "logs/$(POD)"}],
        },
        [{"name": "v", "emptyDir": {}}],
    )
    assert s.mounts[0].source == EMPTY / "v" / "logs" / "web"


def test_an_empty_dir_is_a_directory_under_the_pod_dir_created_at_start() -> None:
    s = spec_of(
        {"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
        [{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
    )
    assert s.mounts == (
        Mount(
            EMPTY / "scratch",
            "/scratch",
            False,
            (SourceCheck(EMPTY / "scratch", SourceType.DIRECTORY_OR_CREATE, "spec.volumes[0].emptyDir"),),
        ),
    )


def test_the_service_account_token_is_mounted_read_only_unless_automount_is_false() -> None:
    s = spec_of({}, automountServiceAccountToken=None)
    assert s.mounts == (Mount(SA, SERVICE_ACCOUNT_MOUNT, True),)
    assert spec_of({}).mounts == ()


@pytest.mark.parametrize(
    "volume",
    [
        {
            "name": "kube-api-access-x7k2p",
            "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]},
        },
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
        {"name": "legacy", "secret": {"secretName": "builder-token-abcde"}},
    ],
    ids=["kube-api-access", "projected token", "legacy token secret"],
)
def test_an_explicit_token_volume_is_the_service_account_dir_read_only_and_not_mounted_twice(
    volume: dict[str, Any],
) -> None:
    s = spec_of(
        {"volumeMounts": [{"name": volume["name"], "mountPath": SERVICE_ACCOUNT_MOUNT}]},
        [volume],
        automountServiceAccountToken=True,
    )
    assert s.mounts == (Mount(SA, SERVICE_ACCOUNT_MOUNT, True),)


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ({"name": "v", "configMap": {"name": "c"}}, "spec.volumes[1].configMap"),
        ({"name": "v", "secret": {"secretName": "db-password"}}, "spec.volumes[1].secret"),
        ({"name": "v", "persistentVolumeClaim": {"claimName": "c"}}, "spec.volumes[1].persistentVolumeClaim"),
        (
            {"name": "v", "projected": {"sources": [{"configMap": {"name": "c"}}]}},
            "spec.volumes[1].projected",
        ),
        ({"name": "v", "hostPath": {"path": "/p", "type": "Weird"}}, "spec.volumes[1].hostPath.type"),
        ({"name": "v", "hostPath": {"path": "relative"}}, "spec.volumes[1].hostPath.path"),
        ({"name": "v"}, "spec.volumes[1]"),
    ],
    ids=[
        "configMap",
        "secret",
        "pvc",
        "projected configMap",
        "bad hostPath type",
        "relative hostPath",
        "no source",
    ],
)
def test_volumes_the_local_cluster_cannot_provide_are_refused_naming_the_field(
    volume: dict[str, Any], field: str
) -> None:
    e = error_of(
        {"volumeMounts": [{"name": "v", "mountPath": "/v"}]}, [{"name": "other", "emptyDir": {}}, volume]
    )
    assert e.field == field


def test_a_volume_no_container_mounts_is_not_refused() -> None:
    assert spec_of({}, [{"name": "v", "configMap": {"name": "c"}}]).mounts == ()


@pytest.mark.parametrize(
    ("mounts", "field"),
    [
        ([{"name": "nope", "mountPath": "/a"}], "spec.containers[0].volumeMounts[0].name"),
        ([{"name": "v", "mountPath": "rel"}], "spec.containers[0].volumeMounts[0].mountPath"),
        (
            [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/a/"}],
            "spec.containers[0].volumeMounts[1].mountPath",
        ),
        ([{"name": "v", "mountPath": "/a", "subPath": "../x"}], "spec.containers[0].volumeMounts[0].subPath"),
        ([{"name": "v", "mountPath": "/a", "subPath": "/x"}], "spec.containers[0].volumeMounts[0].subPath"),
        (
            [{"name": "v", "mountPath": "/a", "mountPropagation": "Bidirectional"}],
            "spec.containers[0].volumeMounts[0].mountPropagation",
        ),
    ],
    ids=[
        "unknown volume",
        "relative mountPath",
        "duplicate mountPath",
        "subPath escapes",
        "absolute subPath",
        "bidirectional",
    ],
)
def test_bad_volume_mounts_are_refused_naming_the_field(mounts: list[dict[str, Any]], field: str) -> None:
    assert error_of({"volumeMounts": mounts}, [{"name": "v", "emptyDir": {}}]).field == field


def test_init_containers_are_found_by_name_with_their_own_field_path() -> None:
    p = pod({})
    p["spec"]["initContainers"] = [{"name": "init", "image": "x", "args": ["a"]}]
    with pytest.raises(InvalidInput) as info:
        container_spec(p, "init", CTX)
    assert info.value.field == "spec.initContainers[0].command"


def test_every_container_gets_a_spec_or_the_reason_it_cannot_run() -> None:
    p = pod({})
    p["spec"]["containers"].append(
        {"name": "bad", "image": "img:1", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {}}}]}
    )
    good, bad = pod_container_specs(p, CTX)
    assert isinstance(good, ContainerSpec) and good.argv == ("sh",) and good.image == "busybox"
    assert bad == InvalidContainer(
        "bad",
        "ns1/web: spec.containers[1].env[0].valueFrom.secretKeyRef: secretKeyRef is not supported on the local cluster",
        "img:1",
    )


def test_init_containers_get_their_specs_when_asked_for() -> None:
    p = pod({})
    p["spec"]["initContainers"] = [{"name": "init", "image": "x", "command": ["true"]}]
    (init,) = pod_container_specs(p, CTX, "initContainers")
    assert isinstance(init, ContainerSpec) and (init.name, init.argv) == ("init", ("true",))

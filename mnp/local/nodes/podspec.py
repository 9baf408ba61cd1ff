"""What one container of a local-cluster pod runs: argv, environment, working dir and mounts.

Pure: a pod (raw JSON) and the paths the kubelet chose go in, a frozen `ContainerSpec` comes out,
with Kubernetes' `$(VAR)` expansion and downward-API fields resolved. What the local cluster cannot
run (configMap/secret env and volumes, envFrom, resource fields) is refused with `InvalidInput`
naming the field, so the kubelet reports it instead of starting something different.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from mnp.api.errors import InvalidInput
from mnp.local.layout import SERVICE_ACCOUNT_DIR as SERVICE_ACCOUNT_MOUNT

# The image is ignored, so the environment an image config would give comes from here (containerd's
# default PATH; containerd also sets HOSTNAME). The pod's own env overrides both.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNSUPPORTED = "not supported on the local cluster"


class SourceType(StrEnum):
    """hostPath.type: what must be at a mount source before the container starts."""

    ANY = ""
    DIRECTORY_OR_CREATE = "DirectoryOrCreate"
    DIRECTORY = "Directory"
    FILE_OR_CREATE = "FileOrCreate"
    FILE = "File"
    SOCKET = "Socket"
    CHAR_DEVICE = "CharDevice"
    BLOCK_DEVICE = "BlockDevice"


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """A path to create or check on the host before a start (I/O kept out of this module)."""

    path: Path
    type: SourceType
    field: str  # where the requirement comes from, for the error message


@dataclass(frozen=True, slots=True)
class Mount:
    """A bind mount of host path `source` at `target` inside the container's mount namespace."""

    source: Path
    target: str
    read_only: bool
    checks: tuple[SourceCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    working_dir: str | None
    mounts: tuple[Mount, ...]
    image: str = ""


@dataclass(frozen=True, slots=True)
class InvalidContainer:
    """A container that cannot run on the local cluster, and why (reported, never started)."""

    name: str
    message: str
    image: str = ""


@dataclass(frozen=True, slots=True)
class PodContext:
    """What the kubelet knows besides the pod object: addresses and where volumes live."""

    host_ips: tuple[str, ...]
    pod_ips: tuple[str, ...]
    host_path: Callable[[str], Path]  # hostPath.path -> where it is on this machine
    empty_dir_root: Path  # emptyDir volume NAME is empty_dir_root/NAME
    service_account_dir: Path  # token, ca.crt, namespace
    extra_env: tuple[tuple[str, str], ...] = ()  # KUBERNETES_SERVICE_HOST/PORT, ...


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` is `$`; unknown or unclosed references stay as written."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                value = lookup(name)
                out.append(f"$({name})" if value is None else value)
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def pod_container_specs(
    pod: Mapping[str, Any], ctx: PodContext, kind: Literal["containers", "initContainers"] = "containers"
) -> list[ContainerSpec | InvalidContainer]:
    """A spec, or the reason it cannot run, for every container (or init container) of `pod` in order."""
    result: list[ContainerSpec | InvalidContainer] = []
    for container in (pod.get("spec") or {}).get(kind) or []:
        name = str(container.get("name", ""))
        try:
            result.append(container_spec(pod, name, ctx))
        except InvalidInput as e:
            result.append(InvalidContainer(name, e.describe(), str(container.get("image", ""))))
    return result


def container_spec(pod: Mapping[str, Any], name: str, ctx: PodContext) -> ContainerSpec:
    """The spec of container (or init container) `name` of `pod`; InvalidInput names the bad field."""
    spec = pod.get("spec") or {}
    obj = _pod_ref(pod)
    for kind in ("containers", "initContainers"):
        for index, container in enumerate(spec.get(kind) or []):
            if container.get("name") == name:
                field = f"spec.{kind}[{index}]"
                try:
                    return _build(pod, container, field, ctx)
                except InvalidInput as e:
                    raise InvalidInput(e.field, e.message, obj) from None
    raise InvalidInput("spec.containers", f"no container named {name!r}", obj)


def _build(
    pod: Mapping[str, Any], container: Mapping[str, Any], field: str, ctx: PodContext
) -> ContainerSpec:
    if container.get("envFrom"):
        raise InvalidInput(f"{field}.envFrom", f"envFrom is {UNSUPPORTED}")
    env = _environment(pod, container, field, ctx)
    lookup = env.get
    command = [expand(str(a), lookup) for a in container.get("command") or []]
    args = [expand(str(a), lookup) for a in container.get("args") or []]
    if not command:
        raise InvalidInput(
            f"{field}.command",
            "is required on the local cluster: images are not run, so there is no image entrypoint",
        )
    return ContainerSpec(
        name=str(container.get("name", "")),
        argv=tuple(command + args),
        env=tuple(env.items()),
        working_dir=str(container.get("workingDir") or "") or None,
        mounts=_mounts(pod, container, field, env, ctx),
        image=str(container.get("image", "")),
    )


def _environment(
    pod: Mapping[str, Any], container: Mapping[str, Any], field: str, ctx: PodContext
) -> dict[str, str]:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    env: dict[str, str] = {
        "PATH": IMAGE_PATH,
        "HOSTNAME": str(spec.get("hostname") or meta.get("name", "")),
    }
    env.update(ctx.extra_env)
    for i, entry in enumerate(container.get("env") or []):
        at = f"{field}.env[{i}]"
        name = str(entry.get("name", ""))
        if not name:
            raise InvalidInput(f"{at}.name", "is required")
        source = entry.get("valueFrom")
        if source is None:
            # "Variable references $(VAR_NAME) are expanded using the previously defined environment
            # variables in the container and any service environment variables."
            env[name] = expand(str(entry.get("value") or ""), env.get)
            continue
        for key in sorted(source):
            if key != "fieldRef":
                raise InvalidInput(f"{at}.valueFrom.{key}", f"{key} is {UNSUPPORTED}")
        env[name] = _field_value(pod, str((source.get("fieldRef") or {}).get("fieldPath", "")), ctx, at)
    return env


def _field_value(pod: Mapping[str, Any], path: str, ctx: PodContext, at: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": ctx.host_ips[0] if ctx.host_ips else "",
        "status.hostIPs": ",".join(ctx.host_ips),
        "status.podIP": ctx.pod_ips[0] if ctx.pod_ips else "",
        "status.podIPs": ",".join(ctx.pod_ips),
    }
    if path in simple:
        return str(simple[path] or "")
    for prefix, values in (
        ("metadata.labels", meta.get("labels")),
        ("metadata.annotations", meta.get("annotations")),
    ):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((values or {}).get(path[len(prefix) + 2 : -2], ""))
    raise InvalidInput(f"{at}.valueFrom.fieldRef.fieldPath", f"{path!r} is not a supported field for env")


def _mounts(
    pod: Mapping[str, Any], container: Mapping[str, Any], field: str, env: Mapping[str, str], ctx: PodContext
) -> tuple[Mount, ...]:
    spec = pod.get("spec") or {}
    volumes = {str(v.get("name")): (i, v) for i, v in enumerate(spec.get("volumes") or [])}
    if container.get("volumeDevices"):
        raise InvalidInput(f"{field}.volumeDevices", f"volumeDevices are {UNSUPPORTED}")
    mounts: list[Mount] = []
    for i, vm in enumerate(container.get("volumeMounts") or []):
        at = f"{field}.volumeMounts[{i}]"
        target = str(vm.get("mountPath") or "")
        if not target.startswith("/"):
            raise InvalidInput(f"{at}.mountPath", f"{target!r} must be an absolute path")
        if any(m.target.rstrip("/") == target.rstrip("/") for m in mounts):
            raise InvalidInput(f"{at}.mountPath", f"{target!r} must be unique")
        if vm.get("mountPropagation") == "Bidirectional":
            raise InvalidInput(f"{at}.mountPropagation", f"Bidirectional propagation is {UNSUPPORTED}")
        name = str(vm.get("name", ""))
        if name not in volumes:
            raise InvalidInput(f"{at}.name", f"no volume named {name!r} in spec.volumes")
        index, volume = volumes[name]
        source, checks = _volume_source(pod, volume, f"spec.volumes[{index}]", ctx)
        sub = _sub_path(vm, at, env)
        if sub:
            source = source / sub
            # The kubelet creates a missing subPath as a directory.
            checks = (*checks, SourceCheck(source, SourceType.DIRECTORY_OR_CREATE, f"{at}.subPath"))
        read_only = bool(vm.get("readOnly")) or source == ctx.service_account_dir
        mounts.append(Mount(source, target, read_only, checks))
    if _automounts_token(pod) and not any(_is_token_target(m.target) for m in mounts):
        mounts.append(Mount(ctx.service_account_dir, SERVICE_ACCOUNT_MOUNT, True))
    return tuple(mounts)


def _sub_path(vm: Mapping[str, Any], at: str, env: Mapping[str, str]) -> str:
    sub = str(vm.get("subPath") or "")
    key = "subPath"
    if vm.get("subPathExpr"):
        if sub:
            raise InvalidInput(f"{at}.subPathExpr", "subPath and subPathExpr are mutually exclusive")
        sub, key = expand(str(vm["subPathExpr"]), env.get), "subPathExpr"
    parts = [p for p in sub.split("/") if p and p != "."]
    if sub.startswith("/") or ".." in parts:
        raise InvalidInput(f"{at}.{key}", f"{sub!r} must be a relative path without '..'")
    return "/".join(parts)


def _volume_source(
    pod: Mapping[str, Any], volume: Mapping[str, Any], at: str, ctx: PodContext
) -> tuple[Path, tuple[SourceCheck, ...]]:
    name = str(volume.get("name", ""))
    if "hostPath" in volume:
        host = volume["hostPath"] or {}
        path = str(host.get("path") or "")
        if not path.startswith("/"):
            raise InvalidInput(f"{at}.hostPath.path", f"{path!r} must be an absolute path")
        try:
            kind = SourceType(str(host.get("type") or ""))
        except ValueError:
            raise InvalidInput(f"{at}.hostPath.type", f"unknown type {host.get('type')!r}") from None
        source = ctx.host_path(path)
        return source, (SourceCheck(source, kind, f"{at}.hostPath.path"),)
    if "emptyDir" in volume:
        source = ctx.empty_dir_root / name
        return source, (SourceCheck(source, SourceType.DIRECTORY_OR_CREATE, f"{at}.emptyDir"),)
    if _is_token_volume(pod, volume):
        return ctx.service_account_dir, ()
    other = sorted(k for k in volume if k != "name")
    if not other:
        raise InvalidInput(at, "has no volume source")
    raise InvalidInput(f"{at}.{other[0]}", f"{other[0]} volumes are {UNSUPPORTED}")


def _is_token_volume(pod: Mapping[str, Any], volume: Mapping[str, Any]) -> bool:
    """The admission-made kube-api-access-* projection, or a legacy <sa>-token-* secret."""
    projected = volume.get("projected")
    if projected is not None:
        sources = projected.get("sources") or []
        return str(volume.get("name", "")).startswith("kube-api-access-") or any(
            "serviceAccountToken" in s for s in sources
        )
    secret = volume.get("secret")
    if secret is not None:
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        return str(secret.get("secretName", "")).startswith(f"{account}-token-")
    return False


def _automounts_token(pod: Mapping[str, Any]) -> bool:
    return (pod.get("spec") or {}).get("automountServiceAccountToken") is not False


def _is_token_target(target: str) -> bool:
    clean = target.rstrip("/")
    return clean in (SERVICE_ACCOUNT_MOUNT, SERVICE_ACCOUNT_MOUNT.removeprefix("/var"))


def _pod_ref(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


__all__ = [
    "IMAGE_PATH",
    "SERVICE_ACCOUNT_MOUNT",
    "ContainerSpec",
    "InvalidContainer",
    "Mount",
    "PodContext",
    "SourceCheck",
    "SourceType",
    "container_spec",
    "expand",
    "pod_container_specs",
]

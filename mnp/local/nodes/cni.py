"""Runs real CNI plugin binaries the way Multus does, from inside a node's network namespace.

The plugin sees what it would see on a real node: the CNI_* environment, the Kubernetes CNI_ARGS,
the network config on stdin with `name` and `cniVersion` (and `runtimeConfig` only for capabilities
the config declares, as libcni does), and the node's own `eth0` as `master`. The result is what
Multus turns into the `k8s.v1.cni.cncf.io/network-status` element, see `network_status_entry`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from mnp.api.errors import MnpError
from mnp.local.nodes.netns import resolve_netns

CNI_PATH = "/usr/lib/cni"
DEFAULT_CNI_VERSION = "0.4.0"
PLUGIN_TIMEOUT_S = 60.0


class CniError(MnpError):
    """A CNI plugin failed; carries the plugin's error code and message (CNI spec error object)."""

    def __init__(self, what: str, code: int | None, msg: str, details: str = "") -> None:
        self.what = what
        self.code = code
        self.msg = msg
        self.details = details
        code_part = f"code {code}: " if code is not None else ""
        detail_part = f" ({details})" if details else ""
        super().__init__(f"{what}: {code_part}{msg}{detail_part}")


def cni_add(
    config: Mapping[str, Any],
    *,
    netns: str,
    ifname: str,
    container_id: str,
    pod_namespace: str,
    pod_name: str,
    node_netns: str,
    runtime_config: Mapping[str, Any] | None = None,
    cni_path: str = CNI_PATH,
) -> dict[str, Any]:
    """CNI ADD of one network (a config or a conflist with `plugins`); returns the final CNI result.

    `netns` and `node_netns` are netns names under /run/netns or paths. Raises CniError with the
    plugin's code and message; for a conflist, plugins already added are deleted again first.
    """
    plugins = _plugins(config)
    prev: dict[str, Any] | None = None
    done: list[Mapping[str, Any]] = []
    ctx = _Context(netns, ifname, container_id, pod_namespace, pod_name, node_netns, cni_path)
    for plugin in plugins:
        try:
            prev = _exec("ADD", _stdin(config, plugin, runtime_config, prev), ctx)
        except CniError:
            for added in reversed(done):
                with contextlib.suppress(CniError):  # the ADD error is the one worth reporting
                    _exec("DEL", _stdin(config, added, runtime_config, None), ctx)
            raise
        done.append(plugin)
    if prev is None:
        raise CniError(f"ADD {pod_namespace}/{pod_name} {ifname}", None, "the network config has no plugins")
    return prev


def cni_del(
    config: Mapping[str, Any],
    *,
    netns: str,
    ifname: str,
    container_id: str,
    pod_namespace: str,
    pod_name: str,
    node_netns: str,
    runtime_config: Mapping[str, Any] | None = None,
    prev_result: Mapping[str, Any] | None = None,
    cni_path: str = CNI_PATH,
) -> None:
    """CNI DEL of one network, plugins in reverse order; idempotent like the plugins themselves.

    A netns that no longer exists is passed as an empty CNI_NETNS, which the spec allows for DEL.
    """
    ctx = _Context(netns, ifname, container_id, pod_namespace, pod_name, node_netns, cni_path)
    if not os.path.exists(ctx.netns):
        ctx.netns = ""
    first: CniError | None = None
    for plugin in reversed(_plugins(config)):
        try:
            _exec("DEL", _stdin(config, plugin, runtime_config, prev_result), ctx)
        except CniError as e:
            first = first or e
    if first is not None:
        raise first


def network_status_entry(network: str, result: Mapping[str, Any], ifname: str) -> dict[str, Any]:
    """The element Multus writes into `k8s.v1.cni.cncf.io/network-status` for one attachment.

    `network` is the NetworkAttachmentDefinition as ns/name. IPs are those the result puts on the
    sandbox interface named `ifname` (or on no interface in particular), without prefix length.
    """
    interfaces = result.get("interfaces") or []
    index: int | None = None
    mac: str | None = None
    for i, iface in enumerate(interfaces):
        if iface.get("name") == ifname and iface.get("sandbox"):
            index, mac = i, iface.get("mac")
            break
    ips = [
        str(ip["address"]).split("/")[0]
        for ip in result.get("ips") or []
        if ip.get("interface") is None or index is None or ip.get("interface") == index
    ]
    for legacy in ("ip4", "ip6"):  # CNI 0.2.0 results
        address = (result.get(legacy) or {}).get("ip")
        if address:
            ips.append(str(address).split("/")[0])
    entry: dict[str, Any] = {"name": network, "interface": ifname, "ips": ips}
    if mac:
        entry["mac"] = mac
    entry["dns"] = dict(result.get("dns") or {})
    return entry


class _Context:
    def __init__(
        self,
        netns: str,
        ifname: str,
        container_id: str,
        pod_namespace: str,
        pod_name: str,
        node_netns: str,
        cni_path: str,
    ) -> None:
        self.netns = resolve_netns(netns)
        self.ifname = ifname
        self.container_id = container_id
        self.pod = f"{pod_namespace}/{pod_name}"
        self.node_netns = resolve_netns(node_netns)
        self.cni_path = cni_path
        self.args = (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod_namespace};K8S_POD_NAME={pod_name};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id}"
        )


def _plugins(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "plugins" in config:
        plugins = config["plugins"]
        if not isinstance(plugins, list) or not all(isinstance(p, Mapping) for p in plugins):
            raise CniError("network config", None, "plugins is not a list of objects")
        return plugins
    return [config]


def _stdin(
    network: Mapping[str, Any],
    plugin: Mapping[str, Any],
    runtime_config: Mapping[str, Any] | None,
    prev: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One plugin's stdin, as libcni builds it: name/cniVersion from the network, filtered runtimeConfig."""
    conf = copy.deepcopy(dict(plugin))
    conf["name"] = network.get("name", conf.get("name"))
    conf["cniVersion"] = network.get("cniVersion", conf.get("cniVersion", DEFAULT_CNI_VERSION))
    caps = plugin.get("capabilities") or {}
    conf.pop("runtimeConfig", None)
    if runtime_config and caps:
        granted = {k: v for k, v in runtime_config.items() if caps.get(k) is True}
        if granted:
            conf["runtimeConfig"] = granted
    if prev is not None:
        conf["prevResult"] = dict(prev)
    return conf


def _exec(command: str, conf: Mapping[str, Any], ctx: _Context) -> dict[str, Any]:
    kind = conf.get("type")
    what = f"{kind} {command} {ctx.pod} {ctx.ifname}"
    if not isinstance(kind, str) or not kind or "/" in kind:
        raise CniError(what, None, f"plugin type {kind!r} is not a plugin name")
    binary = next(
        (os.path.join(d, kind) for d in ctx.cni_path.split(":") if os.access(os.path.join(d, kind), os.X_OK)),
        None,
    )
    if binary is None:
        raise CniError(what, None, f"plugin {kind} not found in {ctx.cni_path}")
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": ctx.container_id,
        "CNI_NETNS": ctx.netns,
        "CNI_IFNAME": ctx.ifname,
        "CNI_PATH": ctx.cni_path,
        "CNI_ARGS": ctx.args,
    }
    try:
        # Inside the node netns: `master: eth0` must be the node's uplink, never the machine's.
        proc = subprocess.run(
            ["nsenter", f"--net={ctx.node_netns}", "--", binary],
            input=json.dumps(conf),
            env=env,
            capture_output=True,
            text=True,
            timeout=PLUGIN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CniError(what, None, f"timed out after {PLUGIN_TIMEOUT_S:.0f}s") from None
    if proc.returncode != 0:
        code, msg, details = None, proc.stderr.strip() or f"exit status {proc.returncode}", ""
        try:
            err = json.loads(proc.stdout)
            if isinstance(err, dict):
                code = err.get("code") if isinstance(err.get("code"), int) else None
                msg = str(err.get("msg") or msg)
                details = str(err.get("details") or "")
        except json.JSONDecodeError:
            if proc.stdout.strip():
                details = proc.stdout.strip()
        raise CniError(what, code, msg, details)
    if command != "ADD":
        return {}
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise CniError(what, None, f"result is not JSON: {e}") from None
    if not isinstance(result, dict):
        raise CniError(what, None, "result is not a JSON object")
    return result


__all__ = ["CNI_PATH", "CniError", "cni_add", "cni_del", "network_status_entry"]

"""mnp.kube.client against the real local API server: CRUD, error mapping, paging, subresources,
retries of transient failures, discovery (including a CRD created after the client started) and
in-cluster configuration from a service-account directory.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnp.api.errors import ApiError, Conflict, NotFound
from mnp.kube.client import (
    DEPLOYMENTS,
    LEASES,
    NADS,
    NODES,
    PODS,
    RULESETS,
    SERVICEACCOUNTS,
    Client,
    PatchType,
    Resource,
)
from mnp.kube.errors import AlreadyExists, KubeApiError, NoMatch, Unreachable
from tests.apiserver.conftest import running_apiserver
from tests.kube.conftest import LocalServer, configmap, faults, install_crds, run

CONFIGMAPS = Resource("", "v1", "configmaps", True, "ConfigMap")


def test_objects_are_created_read_replaced_patched_and_deleted(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        created = await client.create(CONFIGMAPS, configmap("a", ns, x="1"))
        assert created["metadata"]["uid"]
        assert (await client.get(CONFIGMAPS, "a", ns))["data"] == {"x": "1"}

        created["data"]["x"] = "2"
        replaced = await client.replace(CONFIGMAPS, created)
        assert replaced["data"] == {"x": "2"}

        merged = await client.patch(CONFIGMAPS, "a", {"data": {"y": "3"}}, ns)
        assert merged["data"] == {"x": "2", "y": "3"}
        patched = await client.patch(
            CONFIGMAPS, "a", [{"op": "remove", "path": "/data/x"}], ns, type=PatchType.JSON
        )
        assert patched["data"] == {"y": "3"}
        applied = await client.patch(
            CONFIGMAPS,
            "a",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"z": "4"}},
            ns,
            type=PatchType.APPLY,
            field_manager="mnp-test",
        )
        assert applied["data"]["z"] == "4"

        await client.delete(CONFIGMAPS, "a", ns)
        with pytest.raises(NotFound):
            await client.get(CONFIGMAPS, "a", ns)

    run(server, body)


def test_a_missing_object_raises_not_found_naming_the_object(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        with pytest.raises(NotFound) as caught:
            await client.get(CONFIGMAPS, "nothing-here", ns)
        error = caught.value
        assert isinstance(error, KubeApiError)
        assert (error.code, error.reason) == (404, "NotFound")
        assert f"ConfigMap {ns}/nothing-here" in str(error)
        assert '"nothing-here" not found' in error.message

    run(server, body)


def test_a_stale_resource_version_raises_conflict_and_a_taken_name_already_exists(
    server: LocalServer,
) -> None:
    async def body(client: Client, ns: str) -> None:
        first = await client.create(CONFIGMAPS, configmap("a", ns, x="1"))
        await client.patch(CONFIGMAPS, "a", {"data": {"x": "2"}}, ns)
        first["data"]["x"] = "3"
        with pytest.raises(Conflict) as stale:
            await client.replace(CONFIGMAPS, first)
        assert isinstance(stale.value, KubeApiError) and stale.value.code == 409
        assert f"ConfigMap {ns}/a" in str(stale.value)

        with pytest.raises(AlreadyExists):
            await client.create(CONFIGMAPS, configmap("a", ns))

        with pytest.raises(Conflict):
            await client.delete(CONFIGMAPS, "a", ns, uid="00000000-0000-0000-0000-000000000000")
        current = await client.get(CONFIGMAPS, "a", ns)
        await client.delete(
            CONFIGMAPS, "a", ns, uid=current["metadata"]["uid"], propagation_policy="Background"
        )

    run(server, body)


def test_a_list_returns_every_object_across_pages_with_a_resource_version(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        names = [f"cm-{i:02}" for i in range(23)]
        for name in names:
            await client.create(CONFIGMAPS, configmap(name, ns, {"parity": str(int(name[-1]) % 2)}))
        listed = await client.list(CONFIGMAPS, ns, limit=5)
        assert [o["metadata"]["name"] for o in listed.items] == names
        assert all(o["kind"] == "ConfigMap" for o in listed.items)
        assert int(listed.resource_version) >= max(
            int(o["metadata"]["resourceVersion"]) for o in listed.items
        )

        odd = await client.list(CONFIGMAPS, ns, label_selector="parity=1", limit=4)
        assert [o["metadata"]["name"] for o in odd.items] == [n for n in names if int(n[-1]) % 2]
        one = await client.list(CONFIGMAPS, ns, field_selector="metadata.name=cm-07")
        assert [o["metadata"]["name"] for o in one.items] == ["cm-07"]
        everywhere = await client.list(CONFIGMAPS, None, field_selector=f"metadata.namespace={ns}", limit=6)
        assert len(everywhere.items) == len(names)

    run(server, body)


def test_status_is_written_through_its_subresource_only(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        await install_crds(client)
        ruleset = _ruleset("web-0", ns)
        created = await client.create(RULESETS, ruleset)
        status = {"observedGeneration": 1, "rules": 3, "appliedHash": "sha256:00", "elements": 0}
        patched = await client.patch_status(RULESETS, "web-0", {"status": status}, ns)
        assert patched["status"]["rules"] == 3
        assert patched["metadata"]["generation"] == created["metadata"]["generation"]

        patched["status"]["rules"] = 5
        replaced = await client.replace_status(RULESETS, patched)
        assert replaced["status"]["rules"] == 5
        # A main-resource write ignores status (the status subresource owns it).
        ignored = await client.patch(RULESETS, "web-0", {"status": {"rules": 9}}, ns)
        assert ignored["status"]["rules"] == 5

    run(server, body)


def test_subresources_are_created_by_post(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        await client.create(SERVICEACCOUNTS, {"metadata": {"name": "agent", "namespace": ns}})
        review = await client.create_subresource(
            SERVICEACCOUNTS, "agent", "token", {"spec": {"expirationSeconds": 600}}, ns
        )
        assert review["status"]["token"].count(".") == 2

        await client.create(PODS, _pod("p", ns))
        await client.create_subresource(
            PODS,
            "p",
            "binding",
            {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}},
            ns,
        )
        assert (await client.get(PODS, "p", ns))["spec"]["nodeName"] == "node-1"

    run(server, body)


def test_a_raw_request_can_ask_for_another_representation(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        await client.create(CONFIGMAPS, configmap("a", ns))
        table = await client.request(
            "GET", CONFIGMAPS.path(ns), accept="application/json;as=Table;v=v1;g=meta.k8s.io"
        )
        assert table["kind"] == "Table"
        assert [row["cells"][0] for row in table["rows"]] == ["a"]

    run(server, body)


def test_injected_server_errors_are_retried_until_the_request_succeeds(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        await client.create(CONFIGMAPS, configmap("a", ns))
        for code in (500, 503, 504, 429):
            await faults(
                client, {"failNext": {"count": 2, "code": code, "pathPrefix": f"/api/v1/namespaces/{ns}"}}
            )
            assert (await client.get(CONFIGMAPS, "a", ns))["metadata"]["name"] == "a"
        await faults(
            client, {"failNext": {"count": 1, "code": 503, "pathPrefix": f"/api/v1/namespaces/{ns}"}}
        )
        assert len((await client.list(CONFIGMAPS, ns)).items) == 1

    run(server, body, backoff_max=0.2)


def test_retries_stop_after_the_retry_time_with_the_last_error(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        await faults(
            client, {"failNext": {"count": 1000, "code": 500, "pathPrefix": f"/api/v1/namespaces/{ns}"}}
        )
        try:
            with pytest.raises(KubeApiError) as caught:
                await client.get(CONFIGMAPS, "a", ns)
            assert caught.value.code == 500 and caught.value.reason == "InternalError"
        finally:
            await faults(client, {"reset": True})

    run(server, body, retry_for=0.5, backoff_max=0.1)


def test_an_unreachable_server_raises_unreachable_after_retrying() -> None:
    # A server process that dies closes its connections; the in-process server's stop() does not.
    with running_apiserver() as process:

        async def main() -> None:
            async with await Client.from_kubeconfig(
                process.kubeconfig, retry_for=0.5, backoff_max=0.1
            ) as client:
                await client.list(NODES)
                await asyncio.to_thread(process.kill)
                with pytest.raises(Unreachable) as caught:
                    await client.get(CONFIGMAPS, "a", "default")
                assert caught.value.code == 0 and isinstance(caught.value, ApiError)
                assert "ConfigMap default/a" in str(caught.value)

        asyncio.run(main())


def test_discovery_maps_kinds_and_cli_names_to_resources(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        assert await client.resource_for("v1", "Pod") == PODS
        assert await client.resource_for("apps/v1", "Deployment") == DEPLOYMENTS
        assert await client.resource_for("coordination.k8s.io/v1", "Lease") == LEASES
        assert (await client.resource_for("v1", "Node")).namespaced is False
        for name in ("pods", "pod", "po", "Pod", "PODS"):
            assert await client.find_resource(name) == PODS, name
        assert await client.find_resource("no") == NODES
        assert await client.find_resource("deploy") == DEPLOYMENTS
        assert await client.find_resource("deployments.apps") == DEPLOYMENTS
        with pytest.raises(NoMatch) as unknown:
            await client.resource_for("v1", "Gadget")
        assert str(unknown.value) == 'no matches for kind "Gadget" in version "v1"'
        with pytest.raises(NoMatch) as unknown_name:
            await client.find_resource("gadgets")
        assert str(unknown_name.value) == 'the server doesn\'t have a resource type "gadgets"'

    run(server, body)


def test_a_crd_created_after_the_client_started_is_found_by_discovery(server: LocalServer) -> None:
    async def body(client: Client, ns: str) -> None:
        with pytest.raises(
            NoMatch, match='no matches for kind "PodNetworkRuleset" in version "mnp.dev/v1alpha1"'
        ):
            await client.resource_for("mnp.dev/v1alpha1", "PodNetworkRuleset")
        with pytest.raises(NoMatch):
            await client.find_resource("pnr")
        await install_crds(client)
        assert await client.resource_for("mnp.dev/v1alpha1", "PodNetworkRuleset") == RULESETS
        for name in ("pnr", "podnetworkruleset", "PodNetworkRuleset", "podnetworkrulesets.mnp.dev"):
            found = await client.find_resource(name)
            assert found == RULESETS and found.kind == "PodNetworkRuleset", name
        assert (await client.find_resource("multi-policy")).plural == "multi-networkpolicies"
        with pytest.raises(NoMatch):
            await client.resource_for(f"{NADS.group}/{NADS.version}", "NetworkAttachmentDefinition")

    run(server, body)


def test_in_cluster_configuration_reads_the_service_account_directory(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()

    async def setup(client: Client, ns: str) -> str:
        await client.create(SERVICEACCOUNTS, {"metadata": {"name": "reader", "namespace": ns}})
        rbac = "rbac.authorization.k8s.io"
        role = Resource(rbac, "v1", "roles", True, "Role")
        binding = Resource(rbac, "v1", "rolebindings", True, "RoleBinding")
        await client.create(
            role,
            {
                "metadata": {"name": "reader", "namespace": ns},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            },
        )
        await client.create(
            binding,
            {
                "metadata": {"name": "reader", "namespace": ns},
                "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
            },
        )
        await client.create(CONFIGMAPS, configmap("visible", ns))
        review = await client.create_subresource(SERVICEACCOUNTS, "reader", "token", {"spec": {}}, ns)
        (sa_dir / "token").write_text(review["status"]["token"])
        (sa_dir / "namespace").write_text(ns)
        (sa_dir / "ca.crt").write_text(_ca_pem(server))
        return ns

    ns = run(server, setup)
    host, _, port = server.address.rpartition(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    # A kubeconfig in reach must not win over the service account.
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))

    async def main() -> None:
        async with await Client.in_cluster(sa_dir) as client:
            assert client.server == f"https://{server.address}"
            assert (await client.get(CONFIGMAPS, "visible", ns))["metadata"]["name"] == "visible"
            with pytest.raises(KubeApiError) as forbidden:
                await client.list(NODES)
            assert forbidden.value.code == 403

    asyncio.run(main())


def test_a_rotated_token_is_read_again_after_a_401(server: LocalServer, tmp_path: Path) -> None:
    good = server.kubeconfig.read_text()
    token = yaml.safe_load(good)["users"][0]["user"]["token"]
    rotated = tmp_path / "kubeconfig"
    rotated.write_text(good.replace(token, "expired-token"))

    async def main() -> None:
        async with await Client.from_kubeconfig(rotated, retry_for=0.5) as client:
            with pytest.raises(KubeApiError) as unauthorized:
                await client.list(NODES)
            assert unauthorized.value.code == 401
            rotated.write_text(good)
            assert (await client.list(NODES)).resource_version

    asyncio.run(main())


def test_from_environment_uses_the_given_kubeconfig_else_kubeconfig_from_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))

    async def main() -> None:
        for client in (await Client.from_environment(server.kubeconfig), await Client.from_environment()):
            async with client:
                assert client.server == server.running.url  # type: ignore[union-attr]
                assert (await client.list(NODES)).resource_version

    asyncio.run(main())


def _ca_pem(server: LocalServer) -> str:
    cfg = yaml.safe_load(server.kubeconfig.read_text())
    return base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()


def _pod(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]},
    }


def _ruleset(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "mnp.dev/v1alpha1",
        "kind": "PodNetworkRuleset",
        "metadata": {"name": name, "namespace": ns, "labels": {"mnp.dev/node": "node-1"}},
        "spec": {
            "podUID": "4f1c9a3e-2b7d-4e0f-8a6c-5d1e2f3a4b5c",
            "node": "node-1",
            "policies": [f"{ns}/web-policy"],
            "interfaces": [{"name": "net1", "network": f"{ns}/macvlan1", "ips": ["192.0.2.5"]}],
        },
    }

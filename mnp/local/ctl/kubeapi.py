"""`ClusterApi` over `mnp.kube.Client`: resources converted to `Kind`, server-side apply as `mnp local`
does it, and tables requested in the server's Table format.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mnp.api.errors import ApiError, NotFound
from mnp.kube.client import Client, PatchType
from mnp.kube.errors import KubeApiError, NoMatch, Unreachable
from mnp.kube.resources import Resource
from mnp.local.ctl.api import FIELD_MANAGER
from mnp.local.ctl.kinds import Kind, UnknownKind

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
# A CLI should say soon that the cluster is down; the local API server restarts within a second or two.
RETRY_FOR_S = 2.0


def _kind(r: Resource) -> Kind:
    return Kind(r.group, r.version, r.kind, r.plural, r.namespaced)


def _resource(k: Kind) -> Resource:
    return Resource(k.group, k.version, k.plural, k.namespaced, k.kind)


def _refused(e: KubeApiError) -> ApiError:
    """A refusal as the server's message alone (the verbs name the object); no answer stays Unreachable."""
    return e if isinstance(e, Unreachable) else ApiError(f"{e.message} ({e.code} {e.reason})")


class KubeClusterApi:
    """The verbs' view of one API server through an `mnp.kube.Client` (owned: `close` closes it)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @classmethod
    async def from_kubeconfig(cls, path: Path) -> KubeClusterApi:
        return cls(await Client.from_kubeconfig(path, retry_for=RETRY_FOR_S))

    @property
    def server(self) -> str:
        return self._client.server

    async def close(self) -> None:
        await self._client.close()

    async def kind_for(self, api_version: str, kind: str) -> Kind:
        try:
            return _kind(await self._client.resource_for(api_version, kind))
        except NoMatch:
            raise UnknownKind(f"{kind} in {api_version}") from None

    async def find_kind(self, name: str) -> Kind:
        try:
            return _kind(await self._client.find_resource(name))
        except NoMatch:
            raise UnknownKind(name) from None

    async def apply(self, kind: Kind, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        try:
            return await self._client.patch(
                _resource(kind),
                str(meta["name"]),
                dict(obj),
                meta.get("namespace") or None,
                type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                force=True,
            )
        except KubeApiError as e:
            raise _refused(e) from None

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        return await self._client.get(_resource(kind), name, namespace or None)

    async def list(self, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
        return (await self._client.list(_resource(kind), namespace)).items

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        try:
            await self._client.delete(_resource(kind), name, namespace or None)
        except KubeApiError as e:
            if isinstance(e, NotFound):
                raise
            raise _refused(e) from None

    async def table(self, kind: Kind, namespace: str | None, name: str | None) -> dict[str, Any]:
        r = _resource(kind)
        path = r.path(namespace if kind.namespaced else None, name)
        answer = await self._client.request("GET", path, accept=TABLE_ACCEPT, obj=r.describe(namespace, name))
        if not isinstance(answer, dict) or answer.get("kind") != "Table":
            raise ApiError(f"GET {path}: expected a Table, got {str(answer)[:200]}")
        return answer


__all__ = ["KubeClusterApi"]

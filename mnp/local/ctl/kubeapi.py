"""`ClusterApi` over `mnp.kube.Client`: resources converted to `Kind`, server-side apply as `mnp local`
does it, and tables requested in the server's Table format.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import kr8s

from mnp.api.errors import ApiError
from mnp.kube.client import Client, PatchType
from mnp.kube.errors import KubeApiError, NoMatch, Unreachable, error_from_status, parse_body
from mnp.kube.resources import Resource
from mnp.local.ctl.api import FIELD_MANAGER
from mnp.local.ctl.kinds import Kind, UnknownKind

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
# A CLI should say quickly that the cluster is down rather than retry for long.
RETRY_FOR_S = 5.0


def _kind(r: Resource) -> Kind:
    return Kind(r.group, r.version, r.kind, r.plural, r.namespaced)


def _resource(k: Kind) -> Resource:
    return Resource(k.group, k.version, k.plural, k.namespaced, k.kind)


def _message(e: KubeApiError) -> ApiError:
    """The server's message without the object (the verbs name it themselves)."""
    return ApiError(f"{e.message} ({e.code} {e.reason})" if e.code else e.message)


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
            raise _message(e) from None

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        return await self._client.get(_resource(kind), name, namespace or None)

    async def list(self, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
        return (await self._client.list(_resource(kind), namespace)).items

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        try:
            await self._client.delete(_resource(kind), name, namespace or None)
        except KubeApiError as e:
            if e.code == 404:
                raise
            raise _message(e) from None

    async def table(self, kind: Kind, namespace: str | None, name: str | None) -> dict[str, Any]:
        r = _resource(kind)
        path = r.path(namespace if kind.namespaced else None, name)
        answer = await _get_table(self._client, path)
        if not isinstance(answer, dict) or answer.get("kind") != "Table":
            raise ApiError(f"GET {path}: expected a Table, got {str(answer)[:200]}")
        return answer


async def _get_table(client: Client, path: str) -> Any:
    """GET `path` asking for a Table.

    Stopgap: `Client.request` always sends `Accept: application/json`; until it takes an `accept`
    argument this one request goes through the client's kr8s session with mnp.kube's error mapping.
    """
    head, _, rest = path.lstrip("/").partition("/")
    try:
        async with client._api.call_api(
            "GET", version="", base=f"/{head}", url=rest, headers={"Accept": TABLE_ACCEPT}
        ) as response:
            return parse_body(response.content)
    except kr8s.ServerError as e:
        code = e.response.status_code if e.response is not None else 0
        body = parse_body(e.response.content) if e.response is not None else str(e)
        raise error_from_status(code, body, path) from None
    except (httpx.TransportError, kr8s.APITimeoutError, OSError) as e:
        raise Unreachable(f"GET {path}: {type(e).__name__}: {e}") from None


__all__ = ["KubeClusterApi"]

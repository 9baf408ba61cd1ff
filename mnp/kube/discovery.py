"""API discovery: which resource serves an apiVersion/kind, and what a CLI name (`pnr`, `pods`) means.

Reads the legacy discovery documents (/api, /apis, then one resource list per group-version), caches
them, and refreshes once on a miss so that a CRD created after the client started is found.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from mnp.kube.errors import KubeNotFound, NoMatch
from mnp.kube.resources import Resource

if TYPE_CHECKING:
    from mnp.kube.client import Client


class Discovery:
    """The cache of served resources of one client; `Client.discovery`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = asyncio.Lock()
        self._by_group_version: dict[str, list[Resource]] = {}
        # Every group-version in kubectl's order (core first, preferred version first): None until read.
        self._order: list[str] | None = None
        self._aliases: dict[Resource, frozenset[str]] = {}  # singular name and short names

    async def resource_for(self, api_version: str, kind: str) -> Resource:
        """The resource of `kind` in `api_version`; NoMatch (kubectl's message) when not served."""
        for refresh in (False, True):
            resources = await self._group_version(api_version, refresh)
            for r in resources:
                if r.kind == kind:
                    return r
        raise NoMatch(f'no matches for kind "{kind}" in version "{api_version}"')

    async def find(self, name: str) -> Resource:
        """The resource a name means: plural, singular, kind or short name (any case), or `name.group`."""
        for refresh in (False, True):
            found = _match(await self._everything(refresh), self._aliases, name)
            if found is not None:
                return found
        raise NoMatch(f'the server doesn\'t have a resource type "{name}"')

    async def resources(self) -> list[Resource]:
        """Every served resource (no subresources), core first, preferred versions first."""
        return await self._everything(False)

    async def _group_version(self, api_version: str, refresh: bool) -> list[Resource]:
        async with self._lock:
            if refresh or api_version not in self._by_group_version:
                self._by_group_version[api_version] = await self._read_group_version(api_version)
            return self._by_group_version[api_version]

    async def _everything(self, refresh: bool) -> list[Resource]:
        async with self._lock:
            if refresh or self._order is None:
                order = await self._read_group_versions()
                for gv in order:
                    self._by_group_version[gv] = await self._read_group_version(gv)
                self._order = order
            return [r for gv in self._order for r in self._by_group_version.get(gv, [])]

    async def _read_group_versions(self) -> list[str]:
        core = await self._client.request("GET", "/api")
        groups = await self._client.request("GET", "/apis")
        order = [str(v) for v in (core or {}).get("versions") or []]
        for group in (groups or {}).get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("groupVersion")
            versions = [str(v["groupVersion"]) for v in group.get("versions") or []]
            order.extend(sorted(versions, key=lambda gv: gv != preferred))
        return order

    async def _read_group_version(self, api_version: str) -> list[Resource]:
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{api_version}" if group else f"/api/{version}"
        try:
            answer = await self._client.request("GET", path)
        except KubeNotFound:
            return []
        found = []
        for raw in (answer or {}).get("resources") or []:
            if "/" in raw["name"]:
                continue  # a subresource such as pods/status
            r = _resource(group, version, raw)
            names = [raw.get("singularName") or "", *(raw.get("shortNames") or [])]
            self._aliases[r] = frozenset(str(n).lower() for n in names if n)
            found.append(r)
        return found


def _resource(group: str, version: str, raw: dict[str, Any]) -> Resource:
    return Resource(
        raw.get("group") or group,
        raw.get("version") or version,
        str(raw["name"]),
        bool(raw.get("namespaced")),
        str(raw.get("kind") or ""),
    )


def _match(resources: list[Resource], aliases: dict[Resource, frozenset[str]], name: str) -> Resource | None:
    """kubectl's order: exact plural, kind or plural.group first, then singular and short names."""
    wanted = name.lower()
    for r in resources:
        if wanted in (r.plural, r.kind.lower()) or wanted == r.qualified:
            return r
    for r in resources:
        if wanted in aliases.get(r, frozenset()):
            return r
    base, _, group = wanted.partition(".")
    if group:
        for r in resources:
            if r.group == group and (
                base in (r.plural, r.kind.lower()) or base in aliases.get(r, frozenset())
            ):
                return r
    return None

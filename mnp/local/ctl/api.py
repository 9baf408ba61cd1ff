"""The seam between the verbs and the API server: what they need, as a Protocol.

`kubeapi.KubeClusterApi` implements it with `mnp.kube` (the only package that talks to an API server).
Errors are mnp's: UnknownKind for a resource the server does not serve, NotFound for an absent object,
ApiError (with the server's message) for anything else refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mnp.api.errors import NotFound
from mnp.local.ctl.kinds import Kind

FIELD_MANAGER = "mnp-local"


class ClusterApi(Protocol):
    async def kind_for(self, api_version: str, kind: str) -> Kind:
        """The resource serving `kind` in `api_version`, asking the server again on a miss."""
        ...

    async def find_kind(self, name: str) -> Kind:
        """What a user's name means: plural, singular, kind or short name, optionally `.group`."""
        ...

    async def apply(self, kind: Kind, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of `obj` with field manager FIELD_MANAGER and force; the stored object."""
        ...

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]: ...

    async def list(self, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of the kind (with apiVersion and kind), in `namespace` or in all (None)."""
        ...

    async def delete(self, kind: Kind, namespace: str, name: str) -> None: ...

    async def table(self, kind: Kind, namespace: str | None, name: str | None) -> dict[str, Any]:
        """The server's Table (meta.k8s.io/v1) for one object (`name`) or a list."""
        ...


async def get_or_none(api: ClusterApi, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await api.get(kind, namespace, name)
    except NotFound:
        return None


__all__ = ["FIELD_MANAGER", "ClusterApi", "get_or_none"]

"""The async API client every mnp process uses: JSON in and out, mnp errors, bounded retries.

Requests go through `transport` (kr8s's low-level `call_api`: authentication, TLS, token refresh), so
URLs, query parameters and streaming stay ours. Transient failures (no connection, 429, 5xx) are
retried with capped exponential backoff and jitter for at most `retry_for` seconds; 4xx never are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from mnp.kube.discovery import Discovery
from mnp.kube.errors import KubeApiError, KubeGone, Unreachable
from mnp.kube.resources import (
    CRDS,
    DAEMONSETS,
    DEPLOYMENTS,
    EVENTS,
    LEASES,
    MNPS,
    NADS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    RULESETS,
    SERVICEACCOUNTS,
    Resource,
)
from mnp.kube.transport import JSON_TYPE, Transport

__all__ = [
    "CRDS",
    "DAEMONSETS",
    "DEPLOYMENTS",
    "EVENTS",
    "LEASES",
    "MNPS",
    "NADS",
    "NAMESPACES",
    "NODES",
    "PODS",
    "REPLICASETS",
    "RULESETS",
    "SERVICEACCOUNTS",
    "Client",
    "ObjectList",
    "PatchType",
    "Resource",
]

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
LIST_PAGE = 500
# A continue token outlives a page only while the server keeps its snapshot: start over a few times.
LIST_RESTARTS = 3
REQUEST_TIMEOUT = 30.0


class PatchType(StrEnum):
    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    JSON = "application/json-patch+json"
    APPLY = "application/apply-patch+yaml"


@dataclass(frozen=True, slots=True)
class ObjectList:
    """A complete list: every item, and the resourceVersion to watch from."""

    items: list[dict[str, Any]]
    resource_version: str


class Client:
    """One API server connection. Create with `from_kubeconfig`, `in_cluster` or `from_environment`."""

    def __init__(self, transport: Transport, *, retry_for: float = 30.0, backoff_max: float = 5.0) -> None:
        self.transport = transport
        self._api = transport.api  # kept for mnp/local/ctl/kubeapi.py until it passes `accept` to request()
        self.retry_for = retry_for
        self.backoff_max = backoff_max
        self.discovery = Discovery(self)

    @classmethod
    async def from_kubeconfig(
        cls,
        path: str | Path,
        context: str | None = None,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        **options: Any,
    ) -> Client:
        """A client for the kubeconfig at `path` (its current context unless `context` is given)."""
        return cls(await Transport.from_kubeconfig(path, context, request_timeout), **options)

    @classmethod
    async def in_cluster(
        cls,
        service_account_dir: str | Path = SERVICE_ACCOUNT_DIR,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        **options: Any,
    ) -> Client:
        """A client from the pod's service account (token, ca.crt) and KUBERNETES_SERVICE_HOST/PORT."""
        sa = Path(service_account_dir)
        if not (sa / "token").is_file() or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise Unreachable(f"not in a cluster: no {sa / 'token'} or KUBERNETES_SERVICE_HOST unset")
        return cls(await Transport.from_service_account(sa, request_timeout), **options)

    @classmethod
    async def from_environment(cls, kubeconfig: str | Path | None = None, **options: Any) -> Client:
        """`kubeconfig` if given, else in-cluster inside a pod, else $KUBECONFIG or ~/.kube/config."""
        if kubeconfig:
            return await cls.from_kubeconfig(kubeconfig, **options)
        if os.environ.get("KUBERNETES_SERVICE_HOST") and Path(SERVICE_ACCOUNT_DIR, "token").is_file():
            return await cls.in_cluster(**options)
        path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        return await cls.from_kubeconfig(path, **options)

    @property
    def server(self) -> str:
        return self.transport.server

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- objects ---------------------------------------------------------------------------------

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = _scope(resource, namespace, name)
        return await self._object("GET", resource.path(ns, name), resource.describe(ns, name))

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = LIST_PAGE,
    ) -> ObjectList:
        """Every matching object (all namespaces when `namespace` is None), fetched in pages."""
        path = resource.path(namespace if resource.namespaced else None)
        what = resource.describe(namespace, None)
        params = _selectors(label_selector, field_selector)
        for attempt in range(LIST_RESTARTS + 1):
            items: list[dict[str, Any]] = []
            token = ""
            rv = ""
            try:
                while True:
                    page_params = {**params, "limit": str(limit)} | ({"continue": token} if token else {})
                    page = await self._object("GET", path, what, params=page_params)
                    items.extend(_with_type(resource, i) for i in page.get("items") or [])
                    meta = page.get("metadata") or {}
                    rv = rv or str(meta.get("resourceVersion") or "")
                    token = str(meta.get("continue") or "")
                    if not token:
                        return ObjectList(items, rv)
            except KubeGone:
                if not token or attempt == LIST_RESTARTS:
                    raise
                log.info("list continue token expired, listing again", extra={"resource": what})
        raise AssertionError("unreachable")

    async def create(
        self,
        resource: Resource,
        body: dict[str, Any],
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        meta = body.get("metadata") or {}
        ns = _scope(
            resource, namespace or meta.get("namespace"), meta.get("name") or meta.get("generateName")
        )
        return await self._object(
            "POST",
            resource.path(ns),
            resource.describe(ns, meta.get("name")),
            body=body,
            params=_write_params(field_manager, dry_run),
        )

    async def replace(
        self, resource: Resource, body: dict[str, Any], *, field_manager: str | None = None
    ) -> dict[str, Any]:
        """PUT the whole object; a `metadata.resourceVersion` in `body` makes it conditional."""
        return await self._put(resource, body, None, field_manager)

    async def replace_status(
        self, resource: Resource, body: dict[str, Any], *, field_manager: str | None = None
    ) -> dict[str, Any]:
        return await self._put(resource, body, "status", field_manager)

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
        force: bool = False,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PATCH with the given patch type; APPLY is server-side apply and needs `field_manager`."""
        ns = _scope(resource, namespace, name)
        params = _write_params(field_manager, False)
        if type is PatchType.APPLY:
            if not field_manager:
                raise ValueError("server-side apply needs a field_manager")
            params["force"] = "true" if force else "false"
        return await self._object(
            "PATCH",
            resource.path(ns, name, subresource),
            resource.describe(ns, name),
            body=patch,
            params=params,
            content_type=type.value,
        )

    async def patch_status(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        return await self.patch(
            resource, name, patch, namespace, type=type, field_manager=field_manager, subresource="status"
        )

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """DELETE; returns what the server answers (the object, or a Status when already gone)."""
        ns = _scope(resource, namespace, name)
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            options["preconditions"] = preconditions
        return await self._object(
            "DELETE", resource.path(ns, name), resource.describe(ns, name), body=options
        )

    async def create_subresource(
        self,
        resource: Resource,
        name: str,
        subresource: str,
        body: dict[str, Any],
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """POST to a subresource: pods/binding, serviceaccounts/token, pods/eviction."""
        ns = _scope(resource, namespace, name)
        return await self._object(
            "POST", resource.path(ns, name, subresource), resource.describe(ns, name), body=body
        )

    async def resource_for(self, api_version: str, kind: str) -> Resource:
        """The resource serving `kind` in `api_version` (discovery; refreshed once on a miss)."""
        return await self.discovery.resource_for(api_version, kind)

    async def find_resource(self, name: str) -> Resource:
        """The resource a CLI name means: plural, singular, kind or short name, optionally `.group`."""
        return await self.discovery.find(name)

    # ---- raw requests --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON_TYPE,
        accept: str = JSON_TYPE,
        obj: str = "",
    ) -> Any:
        """One request with retries of transient failures; the decoded JSON answer."""
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(self.retry_for),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, KubeApiError) and e.transient),
            before_sleep=_log_retry,
            reraise=True,
        ):
            with attempt:
                return await self.transport.send(method, path, params, body, content_type, accept, obj)
        raise AssertionError("unreachable")

    def stream(
        self, path: str, params: dict[str, str], read_timeout: float, obj: str = ""
    ) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """An open streaming GET as an iterator of lines; errors as mnp errors, not retried here."""
        return self.transport.stream(path, params, read_timeout, obj)

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(multiplier=0.2, max=self.backoff_max, jitter=0.2)(state)
        failure = state.outcome.exception() if state.outcome else None
        hint = failure.retry_after if isinstance(failure, KubeApiError) and failure.retry_after else 0.0
        return max(backoff, min(hint, self.backoff_max))

    async def _object(self, method: str, path: str, obj: str, **kw: Any) -> dict[str, Any]:
        answer = await self.request(method, path, obj=obj, **kw)
        if not isinstance(answer, dict):
            raise KubeApiError(200, "BadResponse", f"expected a JSON object, got {str(answer)[:200]}", obj)
        return answer

    async def _put(
        self, resource: Resource, body: dict[str, Any], subresource: str | None, field_manager: str | None
    ) -> dict[str, Any]:
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise ValueError("replace needs metadata.name in the body")
        ns = _scope(resource, meta.get("namespace"), name)
        return await self._object(
            "PUT",
            resource.path(ns, name, subresource),
            resource.describe(ns, name),
            body=body,
            params=_write_params(field_manager, False),
        )


def _scope(resource: Resource, namespace: str | None, name: str | None) -> str | None:
    if not resource.namespaced:
        return None
    if not namespace:
        raise ValueError(f"{resource.describe(None, name)}: a namespace is needed for {resource.plural}")
    return namespace


def _selectors(label_selector: str, field_selector: str) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _write_params(field_manager: str | None, dry_run: bool) -> dict[str, str]:
    params: dict[str, str] = {}
    if field_manager:
        params["fieldManager"] = field_manager
    if dry_run:
        params["dryRun"] = "All"
    return params


def _with_type(resource: Resource, item: dict[str, Any]) -> dict[str, Any]:
    """List items lack apiVersion/kind on real servers (Go clients fill them in): add them."""
    if resource.kind and "kind" not in item:
        return {"apiVersion": resource.api_version, "kind": resource.kind, **item}
    return item


def _log_retry(state: RetryCallState) -> None:
    failure = state.outcome.exception() if state.outcome else None
    obj = failure.obj if isinstance(failure, KubeApiError) else ""
    log.warning(
        "request failed, retrying",
        extra={"object": obj, "attempt": state.attempt_number, "error": str(failure)},
    )

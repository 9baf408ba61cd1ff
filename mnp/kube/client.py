"""The async API client every mnp process uses: JSON in and out, mnp errors, bounded retries.

Built on kr8s's low-level `Api.call_api` (authentication, TLS, token refresh on 401) so that URLs,
query parameters and streaming stay ours. Transient failures (no connection, 429, 5xx) are retried
with capped exponential backoff and jitter for at most `retry_for` seconds; other 4xx never are.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import kr8s
import kr8s.asyncio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from mnp.kube.discovery import Discovery
from mnp.kube.errors import KubeApiError, KubeGone, Unreachable, error_from_status, parse_body
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
JSON_TYPE = "application/json"


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

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        retry_for: float = 30.0,
        request_timeout: float = 30.0,
        backoff_max: float = 5.0,
    ) -> None:
        self._api = api
        self.retry_for = retry_for
        self.request_timeout = request_timeout
        self.backoff_max = backoff_max
        self.discovery = Discovery(self)

    @classmethod
    async def from_kubeconfig(cls, path: str | Path, context: str | None = None, **options: Any) -> Client:
        """A client for the kubeconfig at `path` (its current context unless `context` is given)."""
        api = kr8s.asyncio.Api(bypass_factory=True, kubeconfig=str(path), context=context)
        await _authenticate(api, f"kubeconfig {path}")
        return cls(api, **options)

    @classmethod
    async def in_cluster(
        cls, service_account_dir: str | Path = SERVICE_ACCOUNT_DIR, **options: Any
    ) -> Client:
        """A client from the pod's service account (token, ca.crt) and KUBERNETES_SERVICE_HOST/PORT."""
        sa = Path(service_account_dir)
        if not (sa / "token").is_file() or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise Unreachable(f"not in a cluster: no {sa / 'token'} or KUBERNETES_SERVICE_HOST unset")
        # kr8s prefers a kubeconfig when one can be read ($KUBECONFIG, ~/.kube/config); naming one
        # that cannot exist makes it fall through to the service account, as its own tests do.
        api = kr8s.asyncio.Api(
            bypass_factory=True, kubeconfig=str(sa / "no-kubeconfig"), serviceaccount=str(sa)
        )
        await _authenticate(api, f"service account {sa}")
        return cls(api, **options)

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
        return str(self._api.auth.server)

    async def close(self) -> None:
        session = self._api._session  # kr8s offers no public close; its session is an httpx client
        if session is not None and not session.is_closed:
            await session.aclose()

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
                return await self._send(method, path, params, body, content_type, obj)
        raise AssertionError("unreachable")

    def stream(
        self, path: str, params: dict[str, str], read_timeout: float, obj: str = ""
    ) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """An open streaming GET as an iterator of lines; errors as mnp errors, not retried here."""
        return _Stream(self, path, params, read_timeout, obj)

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

    async def _send(
        self, method: str, path: str, params: dict[str, str] | None, body: Any, content_type: str, obj: str
    ) -> Any:
        content = None if body is None else json.dumps(body).encode()
        base, url = _split(path)
        try:
            async with self._api.call_api(
                method,
                version="",
                base=base,
                url=url,
                params=params or {},
                content=content,
                headers={"Content-Type": content_type, "Accept": JSON_TYPE},
                timeout=self.request_timeout,
            ) as response:
                return parse_body(response.content)
        except kr8s.ServerError as e:
            raise _status_error(e, obj) from e
        except (httpx.TransportError, kr8s.APITimeoutError, OSError) as e:
            raise Unreachable(f"{method} {path}: {type(e).__name__}: {e}", obj) from e


class _Stream:
    """`async with client.stream(...) as lines`: one streaming GET, closed on exit."""

    def __init__(
        self, client: Client, path: str, params: dict[str, str], read_timeout: float, obj: str
    ) -> None:
        timeout = httpx.Timeout(client.request_timeout, read=read_timeout)
        base, url = _split(path)
        self._cm = client._api.call_api(
            "GET",
            version="",
            base=base,
            url=url,
            params=params,
            stream=True,
            headers={"Accept": JSON_TYPE},
            timeout=timeout,
        )
        self._what = f"GET {path}"
        self._obj = obj

    async def __aenter__(self) -> AsyncIterator[str]:
        try:
            response: httpx.Response = await self._cm.__aenter__()
        except kr8s.ServerError as e:
            raise _status_error(e, self._obj) from e
        except (httpx.TransportError, kr8s.APITimeoutError, OSError) as e:
            raise Unreachable(f"{self._what}: {type(e).__name__}: {e}", self._obj) from e
        return self._lines(response)

    async def __aexit__(self, *exc: Any) -> None:
        # The stream is being abandoned anyway; the caller already has the error it acts on.
        with contextlib.suppress(httpx.TransportError, kr8s.APITimeoutError, OSError):
            await self._cm.__aexit__(*exc)

    async def _lines(self, response: httpx.Response) -> AsyncIterator[str]:
        try:
            async for line in response.aiter_lines():
                if line.strip():
                    yield line
        except (httpx.TransportError, kr8s.APITimeoutError, OSError) as e:
            raise Unreachable(f"{self._what}: stream broke: {type(e).__name__}: {e}", self._obj) from e


async def _authenticate(api: kr8s.asyncio.Api, source: str) -> None:
    try:
        await api.auth
    except (ValueError, KeyError, OSError) as e:
        raise Unreachable(f"cannot load credentials from {source}: {e}") from e


def _status_error(e: kr8s.ServerError, obj: str) -> KubeApiError:
    response = e.response
    if response is None:
        return KubeApiError(0, "Unknown", str(e), obj)
    header = response.headers.get("Retry-After")
    retry_after = float(header) if header and header.replace(".", "", 1).isdigit() else None
    return error_from_status(response.status_code, parse_body(response.content), obj, retry_after)


def _split(path: str) -> tuple[str, str]:
    """kr8s joins base, version and url with "/": base and url such that nothing is added."""
    head, _, rest = path.lstrip("/").partition("/")
    return f"/{head}", rest


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

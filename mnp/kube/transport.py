"""The seam to kr8s: one HTTP request or one streaming GET on a kr8s Api, with failures as mnp errors.

kr8s supplies authentication (kubeconfig, service account, exec plugins), TLS and the httpx session;
URLs, query parameters, headers and streaming stay ours. One-shot requests go through mnp's lean
HTTP/1.1 client (`http11`, several times cheaper per request than httpx) with kr8s's server, token
and TLS context, unless a proxy is configured; watches and proxied requests use kr8s's session.
Only a 401 is sent again, once, after kr8s reloads the credentials (a rotated service-account token);
kr8s itself does the same on 403, replacing its session (and so ending every open watch) each time,
which is why it is not left to it. No other retries here (see client).
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import kr8s
import kr8s.asyncio

from mnp.kube.errors import KubeApiError, Unreachable, error_from_status, parse_body
from mnp.kube.http11 import Http11

JSON_TYPE = "application/json"
USER_AGENT = "mnp"
_NO_ANSWER = (httpx.TransportError, kr8s.APITimeoutError, OSError)


class Transport:
    """Requests over one kr8s Api (`api`), with a default timeout in seconds."""

    def __init__(self, api: kr8s.asyncio.Api, timeout: float, direct: Http11 | None = None) -> None:
        self.api = api
        self.timeout = timeout
        self.direct = direct  # one-shot requests go here when set

    @classmethod
    async def from_kubeconfig(cls, path: str | Path, context: str | None, timeout: float) -> Transport:
        api = kr8s.asyncio.Api(bypass_factory=True, kubeconfig=str(path), context=context)
        await _authenticate(api, f"kubeconfig {path}")
        return cls(api, timeout, await _direct_client(api))

    @classmethod
    async def from_service_account(cls, directory: Path, timeout: float) -> Transport:
        # kr8s prefers a kubeconfig when one can be read ($KUBECONFIG, ~/.kube/config); naming one
        # that cannot exist makes it fall through to the service account, as its own tests do.
        api = kr8s.asyncio.Api(
            bypass_factory=True, kubeconfig=str(directory / "no-kubeconfig"), serviceaccount=str(directory)
        )
        await _authenticate(api, f"service account {directory}")
        return cls(api, timeout, await _direct_client(api))

    @property
    def server(self) -> str:
        return str(self.api.auth.server)

    async def close(self) -> None:
        if self.direct is not None:
            await self.direct.close()
        session = self.api._session  # kr8s offers no public close; its session is an httpx client
        if session is not None and not session.is_closed:
            await session.aclose()

    async def send(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        content_type: str = JSON_TYPE,
        accept: str = JSON_TYPE,
        obj: str = "",
    ) -> Any:
        """One request; the decoded answer (JSON, else text). Raises KubeApiError subclasses."""
        content = None if body is None else json.dumps(body).encode()
        if self.direct is not None:
            return await self._send_direct(method, path, params, content, content_type, accept, obj)
        base, url = _split(path)
        for reauthenticate in (False, True):
            try:
                async with self.api.call_api(
                    method,
                    version="",
                    base=base,
                    url=url,
                    raise_for_status=reauthenticate,
                    params=params or {},
                    content=content,
                    headers={"Content-Type": content_type, "Accept": accept},
                    timeout=self.timeout,
                ) as response:
                    if response.status_code == 401 and not reauthenticate:
                        continue
                    if response.is_error:
                        raise _response_error(response, obj)
                    return parse_body(response.content)
            except kr8s.ServerError as e:
                raise _status_error(e, obj) from e
            except _NO_ANSWER as e:
                raise Unreachable(f"{method} {path}: {type(e).__name__}: {e}", obj) from e
        raise AssertionError("unreachable")

    async def _send_direct(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        content: bytes | None,
        content_type: str,
        accept: str,
        obj: str,
    ) -> Any:
        http = self.direct
        assert http is not None
        for reauthenticate in (False, True):
            headers = {"User-Agent": USER_AGENT, "Accept": accept}
            if content is not None:
                headers["Content-Type"] = content_type
            token = self.api.auth.token
            if token:
                headers["Authorization"] = f"Bearer {token}"
            try:
                answer = await http.request(method, path, params, headers, content, self.timeout)
            except (OSError, EOFError) as e:  # TimeoutError and ssl.SSLError are OSErrors
                raise Unreachable(f"{method} {path}: {type(e).__name__}: {e}", obj) from e
            if answer.status == 401 and not reauthenticate:
                # A rotated service-account token or an expired exec credential: load it again, once.
                try:
                    await self.api.auth.reauthenticate()
                except (ValueError, KeyError, OSError) as e:
                    raise Unreachable(f"{method} {path}: cannot reload credentials: {e}", obj) from e
                continue
            if answer.status >= 400:
                raise _api_error(answer.status, answer.headers.get("retry-after"), answer.body, obj)
            return parse_body(answer.body)
        raise AssertionError("unreachable")

    def stream(self, path: str, params: dict[str, str], read_timeout: float, obj: str = "") -> Stream:
        return Stream(self, path, params, read_timeout, obj)


class Stream:
    """`async with transport.stream(...) as lines`: one streaming GET as non-empty lines, closed on exit."""

    def __init__(
        self, transport: Transport, path: str, params: dict[str, str], read_timeout: float, obj: str
    ) -> None:
        self._api = transport.api
        self._base, self._url = _split(path)
        self._params = params
        self._timeout = httpx.Timeout(transport.timeout, read=read_timeout)
        self._cm: AbstractAsyncContextManager[httpx.Response] | None = None
        self._what = f"GET {path}"
        self._obj = obj

    async def __aenter__(self) -> AsyncIterator[str]:
        for reauthenticate in (False, True):
            cm = self._api.call_api(
                "GET",
                version="",
                base=self._base,
                url=self._url,
                raise_for_status=reauthenticate,
                stream=True,
                params=self._params,
                headers={"Accept": JSON_TYPE},
                timeout=self._timeout,
            )
            try:
                response: httpx.Response = await cm.__aenter__()
                if not response.is_error:
                    self._cm = cm
                    return self._lines(response)
                await response.aread()
                await cm.__aexit__(None, None, None)
            except kr8s.ServerError as e:
                raise _status_error(e, self._obj) from e
            except _NO_ANSWER as e:
                raise Unreachable(f"{self._what}: {type(e).__name__}: {e}", self._obj) from e
            if response.status_code != 401 or reauthenticate:
                raise _response_error(response, self._obj)
        raise AssertionError("unreachable")

    async def __aexit__(self, *exc: Any) -> None:
        # The stream is being abandoned anyway; the caller already has the error it acts on.
        if self._cm is not None:
            with contextlib.suppress(*_NO_ANSWER):
                await self._cm.__aexit__(*exc)

    async def _lines(self, response: httpx.Response) -> AsyncIterator[str]:
        try:
            async for line in response.aiter_lines():
                if line.strip():
                    yield line
        except _NO_ANSWER as e:
            raise Unreachable(f"{self._what}: stream broke: {type(e).__name__}: {e}", self._obj) from e


async def _direct_client(api: kr8s.asyncio.Api) -> Http11 | None:
    """mnp's HTTP/1.1 client for the api's server, or None where kr8s's session must be used (a proxy)."""
    if api.auth.proxy:
        return None
    verify = await api.auth.ssl_context()  # type: ignore[no-untyped-call]
    tls = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
    tls.set_alpn_protocols(["http/1.1"])
    return Http11(str(api.auth.server), tls, api.auth.tls_server_name)


async def _authenticate(api: kr8s.asyncio.Api, source: str) -> None:
    try:
        await api.auth
    except (ValueError, KeyError, OSError) as e:
        raise Unreachable(f"cannot load credentials from {source}: {e}") from e


def _status_error(e: kr8s.ServerError, obj: str) -> KubeApiError:
    if e.response is None:
        return KubeApiError(0, "Unknown", str(e), obj)
    return _response_error(e.response, obj)


def _response_error(response: httpx.Response, obj: str) -> KubeApiError:
    return _api_error(response.status_code, response.headers.get("Retry-After"), response.content, obj)


def _api_error(status: int, header: str | None, body: bytes, obj: str) -> KubeApiError:
    """The mnp error of an HTTP error answer; `header` is its Retry-After, if any."""
    retry_after = float(header) if header and header.replace(".", "", 1).isdigit() else None
    return error_from_status(status, parse_body(body), obj, retry_after)


def _split(path: str) -> tuple[str, str]:
    """kr8s joins base, version and url with "/": base and url such that nothing is added."""
    head, _, rest = path.lstrip("/").partition("/")
    return f"/{head}", rest

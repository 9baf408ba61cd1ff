"""Request dispatch: authentication, authorization, discovery, OpenAPI, admin and resource verbs.

Transport-free: takes a parsed `Request` and returns a `Response` (a JSON body, or a stream of
watch lines), so the HTTP layer stays a thin shell around it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import yaml

from mnp.local.apiserver import discovery, paging, pods, rbac, reviews, table
from mnp.local.apiserver.catalog import VIRTUAL, Catalog, ResourceType
from mnp.local.apiserver.errors import StatusError, not_found_path
from mnp.local.apiserver.faults import Faults
from mnp.local.apiserver.objects import PATCH_TYPES, Store, WriteOptions
from mnp.local.apiserver.openapi import OpenAPI
from mnp.local.apiserver.routes import Route, parse_resource_path
from mnp.local.apiserver.selectors import parse_field_selector, parse_label_selector
from mnp.local.apiserver.tls import Credentials
from mnp.local.apiserver.values import intern_keys, loads_interned
from mnp.local.apiserver.watchstream import WatchRequest, watch_stream

log = logging.getLogger(__name__)
ADMIN_PATH = "/mnp-admin/faults"
# gnostic openapi_v2.Document{swagger: "2.0", info: {title: "Kubernetes", version: "v1.33.0"}}
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
EMPTY_OPENAPI_V2 = b"\n\x032.0\x12\x15\n\nKubernetes\x12\x07v1.33.0"
SELF_REVIEWS = frozenset({"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"})
PUBLIC = frozenset({"/version", "/healthz", "/livez", "/readyz"})
TABLE_V1 = "application/json;as=Table;v=v1;g=meta.k8s.io"
TABLE_V1BETA1 = "application/json;as=Table;v=v1beta1;g=meta.k8s.io"


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes


@dataclass(slots=True)
class Response:
    code: int
    body: Any = None  # JSON-able, or bytes already encoded
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


def _table_type(accept: str) -> str | None:
    for part in accept.split(","):
        if "as=Table" in part and "g=meta.k8s.io" in part:
            return TABLE_V1BETA1 if "v=v1beta1" in part else TABLE_V1
    return None


class App:
    def __init__(
        self, store: Store, catalog: Catalog, faults: Faults, creds: Credentials, address: str
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.faults = faults
        self.creds = creds
        self.address = address
        self.openapi = OpenAPI(catalog)

    # --- entry point -------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        user = rbac.authenticate(
            req.headers.get("Authorization"), self.creds.admin_token, self.creds.sa_key, self.store.storage
        )
        if user is None and (req.headers.get("Authorization") or path not in PUBLIC):
            raise StatusError(401, "Unauthorized", "Unauthorized")
        if user is not None and req.headers.get("Impersonate-User"):
            user = _impersonate(user, req.headers)
        if path == ADMIN_PATH:
            if user is None or not user.admin:
                raise StatusError(403, "the fault switches need the admin token", "Forbidden")
            return self._admin(req)
        failure = self.faults.take_failure(path)
        if failure is not None:
            raise failure
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)
        route = parse_resource_path(path)
        if route is None:
            if req.method != "GET":
                raise StatusError(
                    405,
                    "the server does not allow this method on the requested resource",
                    "MethodNotAllowed",
                )
            return self._non_resource(path, req)
        assert user is not None
        return self._resource(route, req, user)

    def _admin(self, req: Request) -> Response:
        if req.method == "POST":
            try:
                spec = json.loads(req.body or b"{}")
            except ValueError:
                raise StatusError(400, "the fault payload is not JSON") from None
            self.faults.configure(spec)
            if isinstance(spec, dict) and spec.get("dropWatches"):
                self.store.hub.drop_all()
        elif req.method != "GET":
            raise StatusError(405, "GET or POST only", "MethodNotAllowed")
        return Response(200, self.faults.state())

    def _non_resource(self, path: str, req: Request) -> Response:
        accept = req.headers.get("Accept") or ""
        agg = discovery.aggregated_kind(accept)
        if path == "/version":
            return Response(200, discovery.VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain")
        if path == "/api":
            if agg:
                return Response(200, discovery.aggregated(self.catalog, True, agg), _agg_type(agg))
            return Response(200, discovery.api_versions(self.address))
        if path == "/apis":
            if agg:
                return Response(200, discovery.aggregated(self.catalog, False, agg), _agg_type(agg))
            return Response(200, discovery.api_group_list(self.catalog))
        if path == "/openapi/v3":
            return Response(200, self.openapi.index())
        if path.startswith("/openapi/v3/"):
            doc = self.openapi.doc(path[len("/openapi/v3/") :])
            if doc is None:
                raise not_found_path()
            return Response(200, doc)
        if path == "/openapi/v2":
            # An empty document (protobuf, as kubectl asks): kubectl's client-side validation then skips
            # kinds it cannot find, and a custom resource applied before its CRD gets the real
            # "no matches for kind ... ensure CRDs are installed first" instead of a 404 error.
            return Response(200, EMPTY_OPENAPI_V2, OPENAPI_V2_PROTOBUF)
        parts = [p for p in path.split("/") if p]
        found: dict[str, Any] | None = None
        if len(parts) == 2 and parts[0] == "api":
            found = discovery.resource_list(self.catalog, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            found = discovery.api_group(self.catalog, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            found = discovery.resource_list(self.catalog, parts[1], parts[2])
        if found is None:
            raise not_found_path()
        return Response(200, found)

    # --- resources ---------------------------------------------------------------------------
    def _resource(self, route: Route, req: Request, user: rbac.User) -> Response:
        t = self.catalog.find(route.group, route.version, route.plural)
        if route.namespace is not None and not t.namespaced:
            raise not_found_path()
        if (
            route.sub
            and not (route.sub == "status" and t.status)
            and not (route.sub == "token" and t.plural == "serviceaccounts" and not t.group)
            and not (route.sub == "binding" and t.plural == "pods" and not t.group)
        ):
            raise not_found_path()
        ns = route.namespace or ""
        verb = _verb(req, route)
        name = route.name
        if verb in ("list", "watch") and not name:
            # As the real RequestInfo does: a metadata.name field selector names the object, so a
            # rule with resourceNames can allow `kubectl wait` and single-object watches.
            name = _selected_name(req.query.get("fieldSelector") or "")
        attrs = rbac.Attributes(verb, t.group, t.plural, route.sub, ns if t.namespaced else "", name)
        # Every authenticated user may ask about itself (the system:basic-user ClusterRole).
        if t.plural not in SELF_REVIEWS and not rbac.allowed(self.store.storage, user, attrs):
            raise rbac.forbidden(user, attrs)
        if t.plural in VIRTUAL:
            return Response(201, reviews.review(self.store.storage, self.creds, t, _json(req), user))
        if route.sub == "binding":
            if verb != "create":
                raise StatusError(405, "only POST is allowed on pods/binding", "MethodNotAllowed")
            return Response(201, pods.bind(self.store, t, ns, route.name, _json(req)))
        if verb not in t.verbs and route.sub != "token":
            raise StatusError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        if route.sub == "token":
            from mnp.local.apiserver.tokens import token_request

            return Response(201, token_request(self.store, self.creds.sa_key, ns, route.name, _json(req)))
        if t.namespaced and route.namespace is None and verb not in ("list", "watch"):
            raise not_found_path()
        q = req.query
        opts = WriteOptions(
            dry_run=q.get("dryRun") == "All",
            field_validation=q.get("fieldValidation", ""),
            field_manager=q.get("fieldManager", ""),
            force=q.get("force") == "true",
        )
        if q.get("dryRun") not in (None, "", "All"):
            raise StatusError(400, f"Invalid dry run value: {q['dryRun']}")
        if opts.field_validation not in ("", "Strict", "Warn", "Ignore"):
            raise StatusError(400, f"Invalid fieldValidation value: {opts.field_validation}")
        accept = req.headers.get("Accept") or ""
        # Whether to intern a body's keys as it is decoded: a custom resource's schema check does it
        # for what it keeps (in one pass it makes anyway).
        keys = t.builtin or not t.schema
        if verb in ("list", "watch"):
            return self._list_or_watch(t, route, req, verb == "watch", accept)
        if verb == "get":
            obj = self.store.get(t, ns, route.name)
            return self._one(t, obj, accept, req.query)
        if verb == "create":
            obj = self.store.create(t, ns, _json(req, keys), opts)
            return self._written(201, obj, opts)
        if verb == "update":
            obj, created = self.store.update(t, ns, route.name, _json(req, keys), route.sub, opts)
            return self._written(201 if created else 200, obj, opts)
        if verb == "patch":
            ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype not in PATCH_TYPES:
                raise StatusError(
                    415,
                    f"the body of the request was in an unknown format - accepted media "
                    f"types include: {', '.join(PATCH_TYPES)}",
                    "UnsupportedMediaType",
                )
            body = _yaml(req) if ctype == "application/apply-patch+yaml" else _json(req, keys)
            obj, created = self.store.patch(t, ns, route.name, ctype, body, route.sub, opts)
            return self._written(201 if created else 200, obj, opts)
        if verb == "delete":
            options = _json(req) if req.body.strip() else {}
            if not isinstance(options, dict):
                raise StatusError(400, "delete options must be an object")
            for key in ("propagationPolicy", "dryRun", "gracePeriodSeconds"):
                if key in q and key != "dryRun":
                    options.setdefault(key, q[key])
            if options.get("dryRun") == ["All"]:
                opts.dry_run = True
            if t.store_key == ("", "pods"):
                obj = pods.delete(self.store, t, ns, route.name, options, opts)
            else:
                obj = self.store.delete(t, ns, route.name, options, opts)
            return self._written(200, obj, opts)
        if verb == "deletecollection":
            items, _ = self._selected(t, route, req)
            for item in items:
                meta = item.get("metadata") or {}
                try:
                    self.store.delete(t, meta.get("namespace", ""), meta.get("name", ""), {}, opts)
                except StatusError as e:
                    if e.code != 404:
                        raise
            return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        raise StatusError(
            405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
        )

    def _written(self, code: int, obj: dict[str, Any], opts: WriteOptions) -> Response:
        headers = {}
        if opts.warnings:
            headers["Warning"] = ", ".join('299 - "{}"'.format(w.replace('"', '\\"')) for w in opts.warnings)
        return Response(code, self.store.encoded(obj) or obj, headers=headers)

    def _one(self, t: ResourceType, obj: dict[str, Any], accept: str, q: dict[str, str]) -> Response:
        ttype = _table_type(accept)
        if ttype:
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            body = table.to_table(t, [obj], rv, self.store.clock(), q.get("includeObject", "Metadata"))
            return Response(200, body, ttype)
        return Response(200, obj)

    def _selected(self, t: ResourceType, route: Route, req: Request) -> tuple[list[dict[str, Any]], int]:
        labels = parse_label_selector(req.query.get("labelSelector"))
        fields = parse_field_selector(req.query.get("fieldSelector"), t.field_getters())
        return self.store.list(t, route.namespace if t.namespaced else None, labels, fields)

    def _list_or_watch(
        self, t: ResourceType, route: Route, req: Request, watch: bool, accept: str
    ) -> Response:
        q = req.query
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), t.field_getters())
        ttype = _table_type(accept)
        if watch:
            wr = WatchRequest.from_query(
                t, route.namespace if t.namespaced else None, labels, fields, q, ttype
            )
            return Response(200, None, ttype or "application/json", stream=watch_stream(self, wr))
        if q.get("resourceVersionMatch") == "Exact" and q.get("resourceVersion") not in (
            None,
            str(self.store.storage.rv),
        ):
            raise StatusError(
                410,
                f"too old resource version: {q.get('resourceVersion')} ({self.store.storage.rv})",
                "Expired",
            )
        items, rv = self.store.list(t, route.namespace if t.namespaced else None, labels, fields)
        items, meta = paging.page(items, rv, q.get("limit"), q.get("continue"), self.store.hub.oldest())
        if ttype:
            tab = table.to_table(
                t, items, meta["resourceVersion"], self.store.clock(), q.get("includeObject", "Metadata")
            )
            tab["metadata"] = meta
            return Response(200, tab, ttype)
        body = {"kind": t.list_kind, "apiVersion": t.api_version, "metadata": meta, "items": items}
        return Response(200, body)


def _impersonate(user: rbac.User, headers: Message) -> rbac.User:
    """`kubectl --as/--as-group`: the admin may act as anyone (RBAC then applies to that user)."""
    name = headers.get("Impersonate-User") or ""
    if not user.admin:
        raise StatusError(
            403,
            f'users "{name}" is forbidden: User "{user.name}" cannot impersonate resource '
            '"users" in API group "" at the cluster scope',
            "Forbidden",
        )
    groups = list(headers.get_all("Impersonate-Group") or [])
    if name.startswith("system:serviceaccount:"):
        ns = name.split(":")[2] if name.count(":") >= 3 else ""
        groups += ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
    if "system:authenticated" not in groups:
        groups.append("system:authenticated")
    return rbac.User(name, tuple(groups), headers.get("Impersonate-Uid") or "")


def _selected_name(selector: str) -> str:
    names = {
        term.split("=")[-1].strip()
        for term in selector.split(",")
        if term.strip().startswith("metadata.name") and "!=" not in term
    }
    return names.pop() if len(names) == 1 else ""


def _agg_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def _verb(req: Request, route: Route) -> str:
    m = req.method
    if m == "GET":
        if route.name:
            return "get"
        return "watch" if req.query.get("watch") in ("true", "1") else "list"
    if m == "POST":
        return "create"
    if m == "PUT":
        return "update"
    if m == "PATCH":
        return "patch"
    if m == "DELETE":
        return "delete" if route.name else "deletecollection"
    raise StatusError(
        405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
    )


def _json(req: Request, intern: bool = True) -> Any:
    """The JSON (or YAML, or protobuf) body; its keys interned (see values) unless told not to."""
    ctype = (req.headers.get("Content-Type") or "application/json").split(";")[0].strip()
    if ctype == "application/vnd.kubernetes.protobuf":
        from mnp.local.apiserver.protobuf import decode

        return intern_keys(decode(req.body))
    if "protobuf" in ctype or "cbor" in ctype:
        raise StatusError(
            415,
            "the body of the request was in an unknown format - accepted media types "
            "include: application/json, application/yaml",
            "UnsupportedMediaType",
        )
    if ctype == "application/yaml":
        return _yaml(req)
    try:
        return loads_interned(req.body or b"null") if intern else json.loads(req.body or b"null")
    except ValueError as e:
        raise StatusError(400, f"the object provided is unrecognized: {e}") from None


def _yaml(req: Request) -> Any:
    try:
        return intern_keys(yaml.safe_load(req.body or b"")) or {}
    except yaml.YAMLError as e:
        raise StatusError(400, f"error decoding YAML: {e}") from None

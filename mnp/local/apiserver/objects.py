"""The object store: create, read, update, patch and delete with the real server's semantics.

One lock serialises every write; each write gets the next global resourceVersion, is committed to
sqlite, then published to the watch hub. Lifecycle consequences (finalizers, garbage collection,
namespace and CRD deletion) live in `lifecycle.py` and run under the same lock.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mnp.local.apiserver import admission as adm
from mnp.local.apiserver import apply as ssa
from mnp.local.apiserver import events
from mnp.local.apiserver import patch as patches
from mnp.local.apiserver import schema as structural
from mnp.local.apiserver.catalog import Catalog, ResourceType
from mnp.local.apiserver.errors import (
    StatusError,
    already_exists,
    apply_conflict,
    conflict,
    invalid,
    not_found,
)
from mnp.local.apiserver.selectors import FieldSelector, LabelSelector
from mnp.local.apiserver.storage import ObjectTooLarge, Storage, StoreKey
from mnp.local.apiserver.values import json_copy, json_copy_sharing_strings
from mnp.local.apiserver.watch import Event, WatchHub

Clock = Callable[[], datetime.datetime]
UNCONDITIONAL_UPDATE = frozenset(
    {
        "pods",
        "namespaces",
        "nodes",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "events",
        "deployments",
        "daemonsets",
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
        "customresourcedefinitions",
    }
)
CREATE_ON_UPDATE = frozenset(
    {"leases", "events", "roles", "rolebindings", "clusterroles", "clusterrolebindings"}
)
PODS = ("", "pods")
# How many objects' validating schema is remembered for ratcheting (the most recently written ones).
VALIDATED_MAX = 8192
BODIES_KEPT = 64  # written objects whose JSON is kept for their answers (one per request in flight)
PATCH_TYPES = (
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


@dataclass(slots=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: str = ""  # Strict, Warn, Ignore ("" = Warn)
    field_manager: str = ""
    force: bool = False
    warnings: list[str] = field(default_factory=list)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from resourceVersion and managedFields: such a write is a no-op."""

    def strip(o: dict[str, Any]) -> dict[str, Any]:
        m = {k: v for k, v in _meta(o).items() if k not in ("resourceVersion", "managedFields")}
        return {**o, "metadata": m}

    return strip(a) == strip(b)


class Store:
    def __init__(self, storage: Storage, catalog: Catalog, hub: WatchHub, clock: Clock) -> None:
        self.storage = storage
        self.catalog = catalog
        self.hub = hub
        self.clock = clock
        self.lock = threading.RLock()
        # (key, namespace, name) → (resourceVersion, schema): the stored version of that object came
        # from a write this schema validated (see `_validated_base`).
        self._validated: dict[tuple[StoreKey, str, str], tuple[str, dict[str, Any]]] = {}
        # id → (object, its JSON) of the last objects written, so answers need not encode them again.
        self._bodies: dict[int, tuple[dict[str, Any], bytes]] = {}
        # Imported here: lifecycle needs the Store type and is only ever used through it.
        from mnp.local.apiserver.lifecycle import Lifecycle

        self.lifecycle = Lifecycle(self)

    # --- reads -------------------------------------------------------------------------------
    def view(self, t: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The stored object as this type's version presents it (CRD versions share storage)."""
        if obj.get("apiVersion") == t.api_version:
            return obj
        if events.is_new_api(t.group, t.plural):
            return events.from_core(obj)
        return {**obj, "apiVersion": t.api_version, "kind": t.kind}

    def get(self, t: ResourceType, ns: str, name: str) -> dict[str, Any]:
        obj = self.storage.get(t.store_key, ns if t.namespaced else "", name)
        if obj is None:
            raise not_found(t.group, t.plural, name)
        return self.view(t, obj)

    def list(
        self, t: ResourceType, ns: str | None, labels: LabelSelector, fields: FieldSelector
    ) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            rv = self.storage.rv
            items = [
                self.view(t, o)
                for o in self.storage.items(t.store_key, ns if t.namespaced else None)
                if labels.matches(_meta(o).get("labels")) and fields.matches(o)
            ]
        items.sort(key=lambda o: (_meta(o).get("namespace", ""), _meta(o).get("name", "")))
        return items, rv

    def encoded(self, obj: dict[str, Any]) -> bytes | None:
        """obj's compact JSON if it is one of the objects just written (as stored), else None."""
        kept = self._bodies.get(id(obj))
        return kept[1] if kept is not None and kept[0] is obj else None

    # --- the one write path ------------------------------------------------------------------
    def write(
        self,
        t: ResourceType,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        opts: WriteOptions,
        event: str | None = None,
    ) -> dict[str, Any]:
        """Store new (None: remove old), bump the resourceVersion, publish; returns what was stored."""
        ref = new if new is not None else old
        assert ref is not None
        ns, name = _meta(ref).get("namespace", "") if t.namespaced else "", _meta(ref).get("name", "")
        if new is not None and old is not None and _same(old, new):
            return old
        if (new is not None and old is not None) and (
            adm.spec_part(t, old) != adm.spec_part(t, new)
            or (_meta(new).get("deletionTimestamp") and not _meta(old).get("deletionTimestamp"))
        ):
            new["metadata"]["generation"] = int(_meta(old).get("generation") or 1) + 1
        if opts.dry_run:
            return new if new is not None else old  # type: ignore[return-value]
        rv = self.storage.next_rv()
        stored = new if new is not None else json_copy(old)
        assert stored is not None
        stored["metadata"]["resourceVersion"] = str(rv)
        try:
            (body,) = self.storage.commit(rv, [(t.store_key, ns, name, new)])
        except ObjectTooLarge:
            raise StatusError(413, "etcdserver: request is too large", "RequestEntityTooLarge") from None
        if body is not None:
            self._bodies[id(stored)] = (stored, body)
            if len(self._bodies) > BODIES_KEPT:
                del self._bodies[next(iter(self._bodies))]
        kind = event or ("DELETED" if new is None else "ADDED" if old is None else "MODIFIED")
        self.hub.publish(Event(rv, kind, t.store_key, ns, stored, old, body=body))
        self.lifecycle.after_write(t, old, new)
        return stored

    # --- create ------------------------------------------------------------------------------
    def create(self, t: ResourceType, ns: str, body: Any, opts: WriteOptions) -> dict[str, Any]:
        obj = self._body(t, ns, body)
        if t.builtin:  # decoding comes first: unknown fields of built-ins fail before any validation
            obj, warnings = adm.validate_custom(t, obj, opts.field_validation)
            opts.warnings.extend(warnings)
        with self.lock:
            meta = obj["metadata"]
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + adm.random_suffix()
            adm.check_name(t, meta.get("name", ""), ns)
            adm.check_metadata(t, obj)
            if t.namespaced:
                self.lifecycle.check_namespace_open(ns)
            if self.storage.get(t.store_key, ns if t.namespaced else "", meta["name"]) is not None:
                raise already_exists(t.group, t.plural, meta["name"])
            adm.new_metadata(obj, t, ns, self.clock())
            adm.reset_status_on_create(t, obj)
            if t.store_key == PODS:
                adm.default_pod(obj)
                adm.validate_pod(obj)
            if t.builtin:
                adm.normalize_times(obj)
            if not t.builtin:
                obj, warnings = adm.validate_custom(t, obj, opts.field_validation)
                opts.warnings.extend(warnings)
            obj = self.lifecycle.before_create(t, obj)
            stored = self.write(t, None, obj, opts)
            self._note_validated(t, stored, obj, opts)
            return self.view(t, stored)

    def _body(self, t: ResourceType, ns: str, body: Any) -> dict[str, Any]:
        """The request body as the object to write; the store takes it over (callers pass a freshly
        decoded or built body and do not use it again), so it is not copied."""
        if not isinstance(body, dict):
            raise StatusError(400, "the body of the request could not be decoded as an object")
        obj = body
        if events.is_new_api(t.group, t.plural):
            obj = {**events.to_core(obj), "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind")}
        if not isinstance(obj.get("metadata", {}), dict):
            raise StatusError(400, "metadata must be an object")
        obj.setdefault("metadata", {})
        kind, api = obj.get("kind"), obj.get("apiVersion")
        if api and api != t.api_version:
            raise StatusError(
                400,
                f"the API version in the data ({api}) does not match the expected API version "
                f"({t.api_version})",
            )
        if kind and kind != t.kind:
            raise StatusError(
                400, f"the kind in the data ({kind}) does not match the expected kind ({t.kind})"
            )
        body_ns = obj["metadata"].get("namespace")
        if t.namespaced and body_ns and body_ns != ns:
            raise StatusError(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        return obj

    def _owned(self, t: ResourceType, stored: dict[str, Any]) -> dict[str, Any]:
        """A stored object to build its next version from. Built-in kinds get a deep copy: their
        admission edits objects in place. A custom resource gets its own top level and metadata and
        shares the rest, which the schema check replaces rather than edits."""
        if t.builtin or not isinstance(stored.get("metadata"), dict):
            return json_copy_sharing_strings(stored)
        return {**stored, "metadata": json_copy_sharing_strings(stored["metadata"])}

    def _validated_base(self, t: ResourceType, old: dict[str, Any]) -> dict[str, Any] | None:
        """`old` if this type's current schema validated it as stored, so the schema check need not
        judge its unchanged fields again; None after a change of the CRD's schema, a write that was not
        validated (finalizers, garbage collection), a restart, or once forgotten."""
        meta = _meta(old)
        seen = self._validated.get((t.store_key, meta.get("namespace", ""), meta.get("name", "")))
        if seen is None or seen[1] is not t.schema or seen[0] != meta.get("resourceVersion"):
            return None
        return old

    def _note_validated(
        self, t: ResourceType, stored: dict[str, Any], validated: dict[str, Any], opts: WriteOptions
    ) -> None:
        if t.builtin or not t.schema or opts.dry_run or stored is not validated:
            return
        meta = _meta(stored)
        key = (t.store_key, meta.get("namespace", ""), meta.get("name", ""))
        self._validated.pop(key, None)
        self._validated[key] = (meta.get("resourceVersion", ""), t.schema)
        if len(self._validated) > VALIDATED_MAX:
            del self._validated[next(iter(self._validated))]

    # --- update ------------------------------------------------------------------------------
    def update(
        self, t: ResourceType, ns: str, name: str, body: Any, sub: str, opts: WriteOptions
    ) -> tuple[dict[str, Any], bool]:
        """PUT; returns (object, created)."""
        obj = self._body(t, ns, body)
        if obj["metadata"].get("name", name) != name:
            raise StatusError(
                400,
                "the name of the object ({}) does not match the name on the URL ({})".format(
                    obj["metadata"].get("name"), name
                ),
            )
        obj["metadata"]["name"] = name
        with self.lock:
            old = self.storage.get(t.store_key, ns if t.namespaced else "", name)
            if old is None:
                if sub or t.plural not in CREATE_ON_UPDATE:
                    raise not_found(t.group, t.plural, name)
                obj["metadata"].pop("resourceVersion", None)
                return self.create(t, ns, obj, opts), True
            return self._update(t, old, obj, sub, opts), False

    def _update(
        self, t: ResourceType, old: dict[str, Any], obj: dict[str, Any], sub: str, opts: WriteOptions
    ) -> dict[str, Any]:
        name = _meta(old)["name"]
        rv = obj["metadata"].get("resourceVersion")
        if not rv:
            if t.plural not in UNCONDITIONAL_UPDATE:
                raise invalid(
                    t.kind,
                    t.group,
                    name,
                    [("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")],
                )
        elif rv != _meta(old).get("resourceVersion"):
            raise conflict(t.group, t.plural, name)
        if sub == "status":
            new = self._owned(t, old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        else:
            new = obj
            adm.copy_server_metadata(old, new)
            if t.status:
                if "status" in old:
                    new["status"] = json_copy_sharing_strings(old["status"]) if t.builtin else old["status"]
                else:
                    new.pop("status", None)
            adm.check_metadata(t, new)
        if events.is_new_api(t.group, t.plural):
            new = events.to_core(new)
        new["apiVersion"], new["kind"] = t.storage_api_version
        new, warnings = adm.validate_custom(
            t, new, opts.field_validation, None if t.builtin else self._validated_base(t, old)
        )
        opts.warnings.extend(warnings)
        if t.builtin:
            adm.normalize_times(new)
        if t.store_key == PODS and sub != "status":
            adm.default_pod(new)
            adm.check_pod_update(old, new)
        new = self.lifecycle.before_update(t, old, new)
        # An update that drops the last finalizer of an object being deleted removes it, unless it is
        # still within a grace period (a terminating pod: the kubelet removes it with grace 0 when done).
        if (
            _meta(new).get("deletionTimestamp")
            and not _meta(new).get("finalizers")
            and not _meta(new).get("deletionGracePeriodSeconds")
            and t.plural != "namespaces"
        ):
            return self.view(t, self.write(t, old, None, opts))
        stored = self.write(t, old, new, opts)
        self._note_validated(t, stored, new, opts)
        return self.view(t, stored)

    # --- patch -------------------------------------------------------------------------------
    def patch(
        self, t: ResourceType, ns: str, name: str, content_type: str, body: Any, sub: str, opts: WriteOptions
    ) -> tuple[dict[str, Any], bool]:
        """PATCH with any of the four patch types; returns (object, created)."""
        if content_type == "application/strategic-merge-patch+json" and not t.builtin:
            raise StatusError(
                415,
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
                "UnsupportedMediaType",
            )
        with self.lock:
            key_ns = ns if t.namespaced else ""
            old = self.storage.get(t.store_key, key_ns, name)
            if content_type == "application/apply-patch+yaml":
                return self._apply(t, ns, name, old, body, sub, opts)
            if old is None:
                raise not_found(t.group, t.plural, name)
            # A merge patch builds new containers where it changes something and never edits its
            # target (strategic merge, for built-in kinds only, gets the deep copy they all get).
            current = self.view(t, self._owned(t, old))
            if content_type == "application/json-patch+json":
                patched = patches.json_patch(current, body)
            elif content_type == "application/merge-patch+json":
                if not isinstance(body, dict):
                    raise StatusError(
                        400, "json: cannot unmarshal array into Go value of type map[string]interface {}"
                    )
                patched = patches.merge_patch(current, body)
            else:
                if not isinstance(body, dict):
                    raise StatusError(400, "the body of a strategic merge patch must be an object")
                patched = patches.strategic_merge(current, body)
            if not isinstance(patched, dict):
                raise StatusError(422, "the patched object is not an object")
            meta = patched.setdefault("metadata", {})
            if not meta.get("resourceVersion"):
                meta["resourceVersion"] = _meta(old).get("resourceVersion")
            meta["name"] = name
            return self._update(t, old, patched, sub, opts), False

    def _apply(
        self,
        t: ResourceType,
        ns: str,
        name: str,
        old: dict[str, Any] | None,
        body: Any,
        sub: str,
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        if not opts.field_manager:
            raise StatusError(400, "PATCH, application/apply-patch+yaml requires fieldManager to be set")
        if not isinstance(body, dict):
            raise StatusError(400, "the body of an apply patch must be an object")
        body_name = _meta(body).get("name")
        if body_name and body_name != name:
            raise StatusError(
                400, f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        if t.builtin:

            def list_keys(names: tuple[str, ...]) -> tuple[str, ...]:
                if names[-2:] == ("spec", "ports") and t.plural == "services":
                    return ("port", "protocol")
                key = patches.MERGE_KEYS.get(names[-1]) if names else None
                return (key,) if key else ()
        else:

            def list_keys(names: tuple[str, ...]) -> tuple[str, ...]:
                return structural.list_map_keys(t.schema, names)

        now = adm.timestamp(self.clock())
        config = json_copy_sharing_strings(body)
        config.setdefault("metadata", {})["name"] = name
        if old is None:
            if sub:
                raise not_found(t.group, t.plural, name)
            merged = ssa.server_side_apply(None, config, opts.field_manager, list_keys, now)
            return self.create(t, ns, merged, opts), True
        current = self.view(t, json_copy_sharing_strings(old))
        try:
            merged = ssa.server_side_apply(current, config, opts.field_manager, list_keys, now, opts.force)
        except ssa.ApplyConflict as e:
            raise apply_conflict(t.group, t.plural, name, e.conflicts) from None
        if sub == "status":
            merged = {**current, "status": merged.get("status")}
        merged["metadata"]["resourceVersion"] = _meta(body).get("resourceVersion") or _meta(old).get(
            "resourceVersion"
        )
        return self._update(t, old, merged, sub, opts), False

    # --- delete ------------------------------------------------------------------------------
    def delete(
        self, t: ResourceType, ns: str, name: str, options: dict[str, Any], opts: WriteOptions
    ) -> dict[str, Any]:
        with self.lock:
            old = self.storage.get(t.store_key, ns if t.namespaced else "", name)
            if old is None:
                raise not_found(t.group, t.plural, name)
            pre = options.get("preconditions") or {}
            meta = _meta(old)
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise conflict(
                    t.group,
                    t.plural,
                    name,
                    f"Precondition failed: UID in precondition: "
                    f"{pre['uid']}, UID in object meta: {meta.get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise conflict(
                    t.group,
                    t.plural,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object "
                    f"meta: {meta.get('resourceVersion')}",
                )
            policy = options.get("propagationPolicy") or (
                "Orphan" if options.get("orphanDependents") else "Background"
            )
            if policy not in ("Background", "Foreground", "Orphan"):
                raise invalid(
                    "DeleteOptions",
                    "",
                    "",
                    [
                        (
                            "propagationPolicy",
                            f'Unsupported value: "{policy}": '
                            'supported values: "Foreground", "Background", "Orphan"',
                        )
                    ],
                )
            return self.view(t, self.lifecycle.delete(t, old, policy, opts))

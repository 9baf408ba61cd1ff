"""Object lifecycle: finalizers and deletionTimestamp, graceful pod deletion, ownerReference garbage
collection, namespace termination, and CRDs that add and remove served resources.

Runs inside the store's write lock, right after each write, so a watcher sees an owner's DELETED
before its dependents' and a namespace disappears only once it is empty.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from mnp.local.apiserver import admission as adm
from mnp.local.apiserver.catalog import ResourceType, crd_types
from mnp.local.apiserver.errors import StatusError, invalid, not_found
from mnp.local.apiserver.storage import ObjKey, StoreKey
from mnp.local.apiserver.values import json_copy_sharing_strings

if TYPE_CHECKING:
    from mnp.local.apiserver.objects import Store, WriteOptions

Loc = tuple[StoreKey, str, str]  # storage key, namespace, name
CRDS: StoreKey = ("apiextensions.k8s.io", "customresourcedefinitions")
PODS: StoreKey = ("", "pods")
TERMINAL_PHASES = ("Succeeded", "Failed")
DEFAULT_GRACE_SECONDS = 30
NAMESPACES: StoreKey = ("", "namespaces")
FOREGROUND = "foregroundDeletion"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


class Lifecycle:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.uids: dict[str, Loc] = {}
        self.dependents: dict[str, set[Loc]] = {}
        # DeleteOptions.gracePeriodSeconds of the request being served (set under the store lock by
        # pods.delete); applies to the requested object only, never to what its deletion cascades to.
        self.request_grace: int | None = None

    # --- startup -----------------------------------------------------------------------------
    def start(self) -> None:
        """Index stored objects, serve stored CRDs, and make the default namespaces."""
        st = self.store.storage
        for key, ns, name, uid, owners in st.loaded_index:
            loc: Loc = (key, ns, name)
            self.uids[uid] = loc
            for owner in owners:
                self.dependents.setdefault(owner, set()).add(loc)
        st.loaded_index = []
        for crd in st.items(CRDS):
            try:
                self.store.catalog.set_crd(_meta(crd)["name"], crd_types(crd))
            except StatusError:
                continue
        from mnp.local.apiserver.objects import WriteOptions

        ns_type = self.store.catalog.find("", "v1", "namespaces")
        for name in DEFAULT_NAMESPACES:
            if st.get(NAMESPACES, "", name) is None:
                self.store.create(ns_type, "", {"metadata": {"name": name}}, WriteOptions())

    def _index(self, key: StoreKey, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            meta = _meta(obj)
            loc: Loc = (key, meta.get("namespace", ""), meta.get("name", ""))
            uid = meta.get("uid", "")
            for ref in meta.get("ownerReferences") or []:
                deps = self.dependents.setdefault(ref.get("uid", ""), set())
                if add:
                    deps.add(loc)
                else:
                    deps.discard(loc)
            if add:
                self.uids[uid] = loc
            elif self.uids.get(uid) == loc:
                del self.uids[uid]

    def _type(self, key: StoreKey) -> ResourceType | None:
        types = self.store.catalog.by_storage(key)
        preferred = [t for t in types if t.group == key[0]]
        found = preferred or types
        return found[0] if found else None

    # --- hooks of the write path -----------------------------------------------------------
    def check_namespace_open(self, ns: str) -> None:
        obj = self.store.storage.get(NAMESPACES, "", ns)
        if obj is None:
            raise not_found("", "namespaces", ns)
        if _meta(obj).get("deletionTimestamp"):
            raise StatusError(
                403,
                f"unable to create new content in namespace {ns} because it is being terminated",
                "Forbidden",
                {
                    "name": ns,
                    "kind": "namespaces",
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "field": "metadata.namespace",
                            "message": f"namespace {ns} is being terminated",
                        }
                    ],
                },
            )

    def before_create(self, t: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if t.store_key == CRDS:
            self._crd_status(obj)
        return obj

    def before_update(self, t: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        if t.store_key == CRDS:
            if (new.get("spec") or {}).get("group") != (old.get("spec") or {}).get("group"):
                raise invalid(
                    t.kind,
                    t.group,
                    _meta(old).get("name", ""),
                    [("spec.group", "Invalid value: field is immutable")],
                )
            self._crd_status(new)
        if _meta(old).get("deletionTimestamp"):
            # "Cannot add finalizers to an object being deleted" would be stricter; dropping is enough.
            new["metadata"]["deletionTimestamp"] = _meta(old)["deletionTimestamp"]
            if "deletionGracePeriodSeconds" in _meta(old):
                new["metadata"]["deletionGracePeriodSeconds"] = _meta(old)["deletionGracePeriodSeconds"]
        return new

    def _crd_status(self, crd: dict[str, Any]) -> None:
        crd_types(crd)  # raises 422 for a malformed CRD
        spec = crd.get("spec") or {}
        now = adm.timestamp(self.store.clock())
        old_status = crd.get("status") or {}
        old_conditions = {c.get("type"): c for c in old_status.get("conditions") or []}
        names = dict(spec.get("names") or {})
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        stored = list(old_status.get("storedVersions") or [])
        for v in storage:
            if v not in stored:
                stored.append(v)

        def cond(kind: str, reason: str, message: str) -> dict[str, Any]:
            prev = old_conditions.get(kind) or {}
            return {
                "type": kind,
                "status": "True",
                "lastTransitionTime": prev.get("lastTransitionTime", now),
                "reason": reason,
                "message": message,
            }

        crd["status"] = {
            "conditions": [
                cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": names,
            "storedVersions": stored,
        }

    def after_write(self, t: ResourceType, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        self._index(t.store_key, old, new)
        if t.store_key == CRDS:
            ref = new if new is not None else old
            assert ref is not None
            self.store.catalog.set_crd(_meta(ref)["name"], crd_types(new) if new is not None else [])
        if new is None and old is not None:
            self._after_removal(t, old)
        if old is None and new is not None and t.store_key == NAMESPACES:
            self._default_service_account(_meta(new).get("name", ""))

    def _default_service_account(self, ns: str) -> None:
        """Every namespace gets a `default` ServiceAccount, as the service-account controller makes."""
        from mnp.local.apiserver.objects import WriteOptions

        if self.store.storage.get(("", "serviceaccounts"), ns, "default") is None:
            sa_type = self.store.catalog.find("", "v1", "serviceaccounts")
            self.store.create(sa_type, ns, {"metadata": {"name": "default"}}, WriteOptions())

    def _after_removal(self, t: ResourceType, old: dict[str, Any]) -> None:
        meta = _meta(old)
        uid = meta.get("uid", "")
        from mnp.local.apiserver.objects import WriteOptions

        for loc in sorted(self.dependents.pop(uid, set())):
            self._collect(loc, uid, WriteOptions())
        for ref in meta.get("ownerReferences") or []:
            self._release_foreground(ref.get("uid", ""))
        ns = meta.get("namespace", "")
        if ns and t.namespaced:
            self._finish_namespace(ns)

    def _collect(self, loc: Loc, owner_uid: str, opts: WriteOptions) -> None:
        """Garbage-collect a dependent whose owner is gone: delete it, or drop the reference."""
        key, ns, name = loc
        obj = self.store.storage.get(key, ns, name)
        dt = self._type(key)
        if obj is None or dt is None:
            return
        refs = _meta(obj).get("ownerReferences") or []
        alive = [r for r in refs if r.get("uid") != owner_uid and r.get("uid") in self.uids]
        if alive:
            new = json_copy_sharing_strings(obj)
            new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
            self.store.write(dt, obj, new, opts)
        elif not _meta(obj).get("deletionTimestamp"):
            self.delete(dt, obj, "Background", opts)

    def _release_foreground(self, owner_uid: str) -> None:
        loc = self.uids.get(owner_uid)
        if loc is None or self.dependents.get(owner_uid):
            return
        owner = self.store.storage.get(*loc)
        ot = self._type(loc[0])
        if owner is None or ot is None or FOREGROUND not in (_meta(owner).get("finalizers") or []):
            return
        from mnp.local.apiserver.objects import WriteOptions

        new = json_copy_sharing_strings(owner)
        new["metadata"]["finalizers"] = [f for f in _meta(owner)["finalizers"] if f != FOREGROUND]
        in_grace = bool(_meta(owner).get("deletionGracePeriodSeconds"))  # a pod its kubelet still runs
        self.store.write(
            ot, owner, None if not new["metadata"]["finalizers"] and not in_grace else new, WriteOptions()
        )

    # --- delete ------------------------------------------------------------------------------
    def delete(self, t: ResourceType, old: dict[str, Any], policy: str, opts: WriteOptions) -> dict[str, Any]:
        grace, self.request_grace = self.request_grace, None
        meta = _meta(old)
        if t.store_key == NAMESPACES:
            return self._delete_namespace(t, old, opts)
        if t.store_key == CRDS and not opts.dry_run:
            self._delete_custom_objects(old)
        uid = meta.get("uid", "")
        finalizers = list(meta.get("finalizers") or [])
        pending = self._pod_grace(old, grace) if t.store_key == PODS else None
        if pending == "pending":
            # "graceful deletion is pending, do nothing": finalizers cannot change through DeleteOptions.
            return old
        if policy == "Orphan" and not opts.dry_run:
            for loc in sorted(self.dependents.get(uid, set())):
                self._orphan(loc, uid)
        if policy == "Foreground" and self.dependents.get(uid) and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if not finalizers and pending is None:
            return self.store.write(t, old, None, opts)
        if meta.get("deletionTimestamp") and finalizers == meta.get("finalizers") and pending is None:
            return old
        new = json_copy_sharing_strings(old)
        if finalizers:
            new["metadata"]["finalizers"] = finalizers
        if isinstance(pending, tuple):
            new["metadata"]["deletionTimestamp"], new["metadata"]["deletionGracePeriodSeconds"] = pending
        new["metadata"].setdefault("deletionTimestamp", adm.timestamp(self.store.clock()))
        new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
        stored = self.store.write(t, old, new, opts)
        if isinstance(pending, tuple) and pending[1] == 0 and not finalizers:
            # "the registry supports grace period mechanism and we are intentionally delete
            # gracelessly": the store writes the update (watchers see MODIFIED), then deletes.
            return self.store.write(t, stored, None, opts)
        if FOREGROUND in finalizers and not opts.dry_run:
            for loc in sorted(self.dependents.get(uid, set())):
                dep = self.store.storage.get(*loc)
                dt = self._type(loc[0])
                if dep is not None and dt is not None and not _meta(dep).get("deletionTimestamp"):
                    self.delete(dt, dep, "Background", opts)
        return stored

    def _pod_grace(self, pod: dict[str, Any], requested: int | None) -> tuple[str, int] | str | None:
        """The deletion a pod gets, as the real server's rest.BeforeDelete and the pod strategy's
        CheckGracefulDelete decide it.

        Returns (deletionTimestamp, seconds) to start or shorten a grace period (seconds 0: written,
        then removed at once, as for an unbound or terminal pod or a request for 0); "pending" when a
        running grace period is kept; None when the pod is already being deleted with grace 0 (no
        update: removed, or held by finalizers).
        """
        meta = _meta(pod)
        if requested is not None and requested < 0:
            requested = 1  # "Negative values will be treated as the value `1s` on the delete path."
        current = meta.get("deletionGracePeriodSeconds")
        since = adm.parse_time(meta.get("deletionTimestamp") or "")
        now = self.store.clock()
        if since is not None:
            # "if we are already being deleted, we may only shorten the deletion grace period"
            if not current:
                return None
            if requested is None or requested >= int(current):
                return "pending"
            until = since - datetime.timedelta(seconds=int(current)) + datetime.timedelta(seconds=requested)
            if until < now:
                # "Prevent shortening the grace period moving deletionTimestamp into the past"; a
                # graceful request keeps the minimum period so that its kubelet still finishes it.
                until, requested = now, (1 if requested else 0)
            return adm.timestamp(until), requested
        spec = pod.get("spec") or {}
        seconds = requested
        if seconds is None:
            seconds = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
        if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            seconds = 0
        return adm.timestamp(now + datetime.timedelta(seconds=max(seconds, 0))), max(seconds, 0)

    def _orphan(self, loc: Loc, owner_uid: str) -> None:
        obj = self.store.storage.get(*loc)
        dt = self._type(loc[0])
        if obj is None or dt is None:
            return
        from mnp.local.apiserver.objects import WriteOptions

        new = json_copy_sharing_strings(obj)
        new["metadata"]["ownerReferences"] = [
            r for r in _meta(obj).get("ownerReferences") or [] if r.get("uid") != owner_uid
        ]
        if not new["metadata"]["ownerReferences"]:
            del new["metadata"]["ownerReferences"]
        self.store.write(dt, obj, new, WriteOptions())

    def _delete_custom_objects(self, crd: dict[str, Any]) -> None:
        from mnp.local.apiserver.objects import WriteOptions

        spec = crd.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        ct = self._type(key)
        if ct is None:
            return
        for obj in list(self.store.storage.items(key)):
            self.store.write(ct, obj, None, WriteOptions())

    def _delete_namespace(self, t: ResourceType, old: dict[str, Any], opts: WriteOptions) -> dict[str, Any]:
        if _meta(old).get("deletionTimestamp"):
            return old
        new = json_copy_sharing_strings(old)
        new["metadata"]["deletionTimestamp"] = adm.timestamp(self.store.clock())
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new.setdefault("status", {})["phase"] = "Terminating"
        stored = self.store.write(t, old, new, opts)
        if opts.dry_run:
            return stored
        ns = _meta(old)["name"]
        for key, objs in self._namespace_objects(ns):
            dt = self._type(key)
            for obj in objs:
                if dt is not None and not _meta(obj).get("deletionTimestamp"):
                    current = self.store.storage.get(key, ns, _meta(obj)["name"])
                    if current is not None:
                        self.delete(dt, current, "Background", opts)
        self._finish_namespace(ns)
        return self.store.storage.get(NAMESPACES, "", ns) or stored

    def _namespace_objects(self, ns: str) -> list[tuple[StoreKey, list[dict[str, Any]]]]:
        out = []
        for key in self.store.storage.resource_keys():
            if key == NAMESPACES:
                continue
            objs = list(self.store.storage.items(key, ns))
            if objs:
                out.append((key, objs))
        return out

    def _finish_namespace(self, ns: str) -> None:
        obj = self.store.storage.get(NAMESPACES, "", ns)
        if obj is None or not _meta(obj).get("deletionTimestamp") or self._namespace_objects(ns):
            return
        from mnp.local.apiserver.objects import WriteOptions

        nt = self.store.catalog.find("", "v1", "namespaces")
        self.store.write(nt, obj, None, WriteOptions())


def object_key(obj: dict[str, Any]) -> ObjKey:
    meta = _meta(obj)
    return meta.get("namespace", ""), meta.get("name", "")

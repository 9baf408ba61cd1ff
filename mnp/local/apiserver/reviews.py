"""Review APIs answered from the request alone: SelfSubjectReview (`kubectl auth whoami`),
SelfSubjectAccessReview and SubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview
(`can-i --list`) and TokenReview (kr8s `whoami`)."""

from __future__ import annotations

from typing import Any

from mnp.local.apiserver import rbac
from mnp.local.apiserver.catalog import ResourceType
from mnp.local.apiserver.errors import StatusError
from mnp.local.apiserver.storage import Storage
from mnp.local.apiserver.tls import Credentials


def review(
    storage: Storage, creds: Credentials, t: ResourceType, body: Any, user: rbac.User
) -> dict[str, Any]:
    """The created review object, with its status filled in."""
    if not isinstance(body, dict):
        raise StatusError(400, "review body must be an object")
    spec = body.get("spec") or {}
    if t.plural == "selfsubjectreviews":
        info = {"username": user.name, "groups": list(user.groups)}
        if user.uid:
            info["uid"] = user.uid
        return {**body, "apiVersion": t.api_version, "kind": t.kind, "status": {"userInfo": info}}
    if t.plural == "tokenreviews":
        reviewed = rbac.authenticate(
            f"Bearer {spec.get('token', '')}",
            creds.admin_token,
            creds.sa_key,
            storage,
        )
        status: dict[str, Any] = {"authenticated": reviewed is not None}
        if reviewed is not None:
            status["user"] = {"username": reviewed.name, "groups": list(reviewed.groups)}
            if reviewed.uid:
                status["user"]["uid"] = reviewed.uid
            status["audiences"] = spec.get("audiences") or [rbac.ISSUER]
        else:
            status["error"] = "invalid bearer token"
        return {**body, "apiVersion": t.api_version, "kind": t.kind, "status": status}
    if t.plural == "selfsubjectrulesreviews":
        rules = rbac.rules_for(storage, user, spec.get("namespace", ""))
        return {**body, "apiVersion": t.api_version, "kind": t.kind, "status": rules}
    subject = user
    if t.plural == "subjectaccessreviews":
        subject = rbac.User(spec.get("user", ""), tuple(spec.get("groups") or ()))
    ra = spec.get("resourceAttributes")
    if ra:
        attrs = rbac.Attributes(
            ra.get("verb", ""),
            ra.get("group", ""),
            ra.get("resource", ""),
            ra.get("subresource", ""),
            ra.get("namespace", ""),
            ra.get("name", ""),
        )
        allowed = rbac.allowed(storage, subject, attrs)
    else:
        allowed = subject.admin or "system:authenticated" in subject.groups
    verdict: dict[str, Any] = {"allowed": allowed}
    if allowed and not subject.admin:
        verdict["reason"] = "RBAC: allowed by a binding"
    return {**body, "apiVersion": t.api_version, "kind": t.kind, "status": verdict}

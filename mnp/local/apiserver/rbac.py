"""Authentication by bearer token and RBAC authorization from the stored Roles and bindings.

The kubeconfig's token is cluster-admin (group system:masters). Service-account tokens are HS256 JWTs
signed with the server's key (minted by the TokenRequest subresource); their requests are allowed
only by the rules of the Roles and ClusterRoles bound to the account, its groups, or a named user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from mnp.local.apiserver.errors import StatusError, qualified
from mnp.local.apiserver.storage import Storage

ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_GROUPS = ("system:masters", "system:authenticated")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...]
    uid: str = ""

    @property
    def admin(self) -> bool:
        return "system:masters" in self.groups


@dataclass(frozen=True, slots=True)
class Attributes:
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(
    key: bytes,
    namespace: str,
    name: str,
    uid: str,
    seconds: int = 3600,
    audiences: list[str] | None = None,
    now: float | None = None,
) -> tuple[str, int]:
    """A service-account JWT and its expiry (unix seconds)."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "aud": audiences or [ISSUER],
        "iat": issued,
        "nbf": issued,
        "exp": issued + seconds,
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    }
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = _b64(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}", issued + seconds


def authenticate(header: str | None, admin_token: str, key: bytes, storage: Storage) -> User | None:
    """The user a request's Authorization header names; None for no or a bad credential."""
    # The scheme is case-insensitive, as in the real authenticator: the `kubernetes` client's
    # in-cluster config sends "bearer <token>".
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    token = token.strip()
    if hmac.compare_digest(token, admin_token):
        return User("kubernetes-admin", ADMIN_GROUPS)
    parts = token.split(".")
    if len(parts) != 3:
        return None
    want = _b64(hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(want, parts[2]):
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except ValueError:
        return None
    if claims.get("exp", 0) < time.time():
        return None
    info = claims.get("kubernetes.io") or {}
    ns, sa = info.get("namespace", ""), (info.get("serviceaccount") or {})
    stored = storage.get(("", "serviceaccounts"), ns, sa.get("name", ""))
    if stored is None or (stored.get("metadata") or {}).get("uid") != sa.get("uid"):
        return None  # the account was deleted (or recreated): its tokens die with it
    return User(
        f"system:serviceaccount:{ns}:{sa['name']}",
        ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
        sa.get("uid", ""),
    )


def _subject_matches(subject: dict[str, Any], user: User, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        return user.name == f"system:serviceaccount:{subject.get('namespace') or binding_ns}:{name}"
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    return False


def _rule_allows(rule: dict[str, Any], a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    resources = rule.get("resources") or []
    wanted = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if not ("*" in resources or wanted in resources or (a.subresource and f"*/{a.subresource}" in resources)):
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(a.name) and a.name in names)


def _role_rules(storage: Storage, ref: dict[str, Any], ns: str) -> list[dict[str, Any]]:
    if ref.get("kind") == "ClusterRole":
        role = storage.get(("rbac.authorization.k8s.io", "clusterroles"), "", ref.get("name", ""))
        if role is not None and role.get("aggregationRule"):
            return _aggregated_rules(storage, role)
    else:
        role = storage.get(("rbac.authorization.k8s.io", "roles"), ns, ref.get("name", ""))
    return list((role or {}).get("rules") or [])


def _aggregated_rules(storage: Storage, role: dict[str, Any]) -> list[dict[str, Any]]:
    from mnp.local.apiserver.selectors import Requirement

    rules = list(role.get("rules") or [])
    for sel in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
        reqs = [Requirement(k, "=", frozenset({v})) for k, v in (sel.get("matchLabels") or {}).items()]
        for other in storage.items(("rbac.authorization.k8s.io", "clusterroles")):
            labels = (other.get("metadata") or {}).get("labels") or {}
            if other is not role and all(r.matches(labels) for r in reqs):
                rules.extend(other.get("rules") or [])
    return rules


def _bindings(storage: Storage, user: User, namespace: str) -> list[tuple[dict[str, Any], str]]:
    """(roleRef, namespace for Role lookup) of every binding naming this user or one of its groups."""
    refs = [
        (crb.get("roleRef") or {}, "")
        for crb in storage.items(("rbac.authorization.k8s.io", "clusterrolebindings"))
        if any(_subject_matches(s, user, "") for s in crb.get("subjects") or [])
    ]
    if namespace:
        refs += [
            (rb.get("roleRef") or {}, namespace)
            for rb in storage.items(("rbac.authorization.k8s.io", "rolebindings"), namespace)
            if any(_subject_matches(s, user, namespace) for s in rb.get("subjects") or [])
        ]
    return refs


def allowed(storage: Storage, user: User, a: Attributes) -> bool:
    if user.admin:
        return True
    return any(
        _rule_allows(rule, a)
        for ref, ns in _bindings(storage, user, a.namespace)
        for rule in _role_rules(storage, ref, ns)
    )


def rules_for(storage: Storage, user: User, namespace: str) -> dict[str, Any]:
    """A SelfSubjectRulesReview status: what this user may do in the namespace."""
    if user.admin:
        resource_rules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
        non_resource = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
    else:
        resource_rules = [
            {k: v for k, v in rule.items() if k in ("verbs", "apiGroups", "resources", "resourceNames")}
            for ref, ns in _bindings(storage, user, namespace)
            for rule in _role_rules(storage, ref, ns)
            if rule.get("resources")
        ]
        non_resource = [
            {
                "verbs": ["get"],
                "nonResourceURLs": [
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/openapi",
                    "/openapi/*",
                    "/version",
                ],
            }
        ]
    return {"resourceRules": resource_rules, "nonResourceRules": non_resource, "incomplete": False}


def forbidden(user: User, a: Attributes) -> StatusError:
    """403 worded as the real server words it."""
    what = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    subject = f'{qualified(a.group, a.resource)} "{a.name}"' if a.name else qualified(a.group, a.resource)
    return StatusError(
        403,
        f'{subject} is forbidden: User "{user.name}" cannot {a.verb} resource "{what}" in API group '
        f'"{a.group}" {where}',
        "Forbidden",
        {"name": a.name, "group": a.group, "kind": a.resource}
        if a.name
        else {"group": a.group, "kind": a.resource},
    )

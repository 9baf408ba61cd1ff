"""The TokenRequest subresource (`serviceaccounts/<name>/token`): short-lived service-account tokens
that the local cluster hands to pods, authorized by RBAC like on a real cluster.
"""

from __future__ import annotations

import datetime
from typing import Any

from mnp.local.apiserver import rbac
from mnp.local.apiserver.admission import timestamp
from mnp.local.apiserver.errors import StatusError, not_found
from mnp.local.apiserver.objects import Store


def token_request(store: Store, key: bytes, ns: str, name: str, body: Any) -> dict[str, Any]:
    sa = store.storage.get(("", "serviceaccounts"), ns, name)
    if sa is None:
        raise not_found("", "serviceaccounts", name)
    if not isinstance(body, dict):
        body = {}
    spec = dict(body.get("spec") or {})
    seconds = int(spec.get("expirationSeconds") or 3600)
    if seconds < 600:
        raise StatusError(
            422,
            "spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes",
            "Invalid",
        )
    token, exp = rbac.mint_token(
        key, ns, name, (sa.get("metadata") or {}).get("uid", ""), seconds, spec.get("audiences") or None
    )
    spec["expirationSeconds"] = seconds
    spec.setdefault("audiences", [rbac.ISSUER])
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": timestamp(datetime.datetime.fromtimestamp(exp, datetime.UTC)),
        },
    }

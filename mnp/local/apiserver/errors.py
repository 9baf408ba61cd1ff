"""Kubernetes `Status` errors: every non-2xx answer of the local API server is one of these.

Handlers raise `StatusError`; the HTTP layer turns it into the `Status` body that kubectl, the
`kubernetes` client and kr8s print (their `message`), with the code and reason the real server uses.
"""

from __future__ import annotations

from typing import Any

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class StatusError(Exception):
    """An API error carried to the client as a `Status` object."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        return status_body(self.code, self.message, self.reason, self.details)


def status_body(
    code: int, message: str, reason: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def qualified(group: str, plural: str) -> str:
    """`pods`, `podnetworkrulesets.mnp.dev`: how the real server names a resource in messages."""
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> StatusError:
    return StatusError(
        404,
        f'{qualified(group, plural)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def not_found_path() -> StatusError:
    return StatusError(404, "the server could not find the requested resource", details={})


def already_exists(group: str, plural: str, name: str) -> StatusError:
    return StatusError(
        409,
        f'{qualified(group, plural)} "{name}" already exists',
        "AlreadyExists",
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(group: str, plural: str, name: str, why: str | None = None) -> StatusError:
    text = (
        why or "the object has been modified; please apply your changes to the latest version and try again"
    )
    return StatusError(
        409,
        f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {text}',
        "Conflict",
        details={"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> StatusError:
    """422 Invalid; causes are (field path, message) pairs, worded as the real server words them."""
    gk = f"{kind}.{group}" if group else kind
    text = "; ".join(f"{field}: {msg}" if field else msg for field, msg in causes)
    if len(causes) > 1:
        text = f"[{', '.join(f'{f}: {m}' if f else m for f, m in causes)}]"
    return StatusError(
        422,
        f'{gk} "{name}" is invalid: {text}',
        "Invalid",
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": _cause_reason(msg), "message": msg, "field": field} for field, msg in causes
            ],
        },
    )


def _cause_reason(message: str) -> str:
    if message.startswith("Required value"):
        return "FieldValueRequired"
    if message.startswith("Unsupported value"):
        return "FieldValueNotSupported"
    if message.startswith("Too long") or message.startswith("Too many"):
        return "FieldValueTooLong"
    if message.startswith("Forbidden"):
        return "FieldValueForbidden"
    return "FieldValueInvalid"


def bad_request(message: str) -> StatusError:
    return StatusError(400, message)


def apply_conflict(group: str, plural: str, name: str, conflicts: list[tuple[str, str]]) -> StatusError:
    """409 as the real server words a server-side apply conflict: (manager, field) pairs."""
    if len(conflicts) == 1:
        manager, field = conflicts[0]
        text = f'Apply failed with 1 conflict: conflict with "{manager}": {field}'
    else:
        lines = "\n".join(f'- conflict with "{m}": {f}' for m, f in conflicts)
        text = f"Apply failed with {len(conflicts)} conflicts:\n{lines}"
    causes = [
        {"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": f}
        for m, f in conflicts
    ]
    return StatusError(
        409, text, "Conflict", {"name": name, "group": group, "kind": plural, "causes": causes}
    )

"""API server failures as mnp errors: the HTTP code, the Status reason and message, and the object.

Every error mnp.kube raises is a `KubeApiError` (an `mnp.api.errors.ApiError`); the ones callers branch
on also derive from the matching mnp type, so `except NotFound` works without knowing about this module.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from mnp.api.errors import ApiError, Conflict, Gone, NotFound

# Retried with backoff: the request may succeed later unchanged (client-go retries the same set).
TRANSIENT_CODES = frozenset({429, 500, 502, 503, 504})


class KubeApiError(ApiError):
    """A failed request. `code` is the HTTP status (0: the server could not be reached)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        obj: str = "",
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.obj = obj
        self.retry_after = retry_after
        self.details = details or {}
        head = f"{obj}: " if obj else ""
        tail = f" ({code} {reason})" if code else f" ({reason})"
        super().__init__(f"{head}{message}{tail}")

    @property
    def transient(self) -> bool:
        return self.code == 0 or self.code in TRANSIENT_CODES


class KubeNotFound(KubeApiError, NotFound):
    """404: the object (or the resource type itself) does not exist."""


class KubeConflict(KubeApiError, Conflict):
    """409: a stale resourceVersion or a failed precondition."""


class AlreadyExists(KubeConflict):
    """409 AlreadyExists: a create for a name that is taken."""


class KubeGone(KubeApiError, Gone):
    """410: the resourceVersion (watch) or continue token (list) is too old."""


class Invalid(KubeApiError):
    """422: the object failed validation; `details["causes"]` names the fields."""


class Unreachable(KubeApiError):
    """No HTTP answer: connection refused or reset, TLS failure, timeout."""

    def __init__(self, message: str, obj: str = "") -> None:
        super().__init__(0, "Unreachable", message, obj)


class NoMatch(KubeNotFound):
    """The server does not serve a kind or resource name (discovery found nothing)."""

    def __init__(self, message: str) -> None:
        super().__init__(404, "NotFound", message)
        self.args = (message,)  # kubectl's words exactly, for CLI output


def error_from_status(code: int, body: Any, obj: str = "", retry_after: float | None = None) -> KubeApiError:
    """The error for an HTTP status and its body (a Status object when the server sent one)."""
    status: dict[str, Any] = body if isinstance(body, dict) else {}
    reason = str(status.get("reason") or _default_reason(code))
    message = str(status.get("message") or (body if isinstance(body, str) and body else f"HTTP {code}"))
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    if retry_after is None and details and isinstance(details.get("retryAfterSeconds"), int | float):
        retry_after = float(details["retryAfterSeconds"])
    cls: type[KubeApiError] = KubeApiError
    if code == 404:
        cls = KubeNotFound
    elif code == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else KubeConflict
    elif code == 410:
        cls = KubeGone
    elif code == 422:
        cls = Invalid
    return cls(code, reason, message, obj, retry_after, details)


def parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")[:500]


def _default_reason(code: int) -> str:
    """The Status reason for a bare HTTP error: Kubernetes' word where it differs from HTTP's phrase."""
    special = {410: "Expired", 422: "Invalid", 500: "InternalError", 504: "Timeout"}
    if code in special:
        return special[code]
    try:
        return HTTPStatus(code).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return "Unknown"

"""Fault switches for tests, set over the admin endpoint (see `mnp.local.apiserver` docstring).

Failing the next N requests with 429/500/503, answering watches with 410, adding latency and
dropping every open watch; the bookmark interval is a knob here too, so tests need not wait 60 s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from mnp.local.apiserver.errors import StatusError


@dataclass(slots=True)
class _Failure:
    remaining: int
    code: int
    path_prefix: str


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self.watch_gone = False
        self.latency_ms = 0
        self.bookmark_seconds = 60.0

    def configure(self, spec: dict[str, Any]) -> None:
        """Apply an admin payload; raises 400 on a malformed one."""
        if not isinstance(spec, dict):
            raise StatusError(400, "fault payload must be a JSON object")
        with self._lock:
            if spec.get("reset"):
                self._failures.clear()
                self.watch_gone = False
                self.latency_ms = 0
                self.bookmark_seconds = 60.0
            fail = spec.get("failNext")
            if fail is not None:
                if not isinstance(fail, dict) or fail.get("code") not in (422, 429, 500, 503, 504):
                    raise StatusError(400, "failNext needs {count: N, code: 422|429|500|503|504}")
                self._failures.append(
                    _Failure(int(fail.get("count", 1)), int(fail["code"]), str(fail.get("pathPrefix", "")))
                )
            if "watchGone" in spec:
                self.watch_gone = bool(spec["watchGone"])
            if "latencyMs" in spec:
                self.latency_ms = max(0, int(spec["latencyMs"]))
            if "bookmarkSeconds" in spec:
                self.bookmark_seconds = max(0.05, float(spec["bookmarkSeconds"]))

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "failNext": [
                    {"count": f.remaining, "code": f.code, "pathPrefix": f.path_prefix}
                    for f in self._failures
                ],
                "watchGone": self.watch_gone,
                "latencyMs": self.latency_ms,
                "bookmarkSeconds": self.bookmark_seconds,
            }

    def take_failure(self, path: str) -> StatusError | None:
        """The error this request must get, if a failure switch is armed for it."""
        with self._lock:
            for f in self._failures:
                if f.remaining > 0 and path.startswith(f.path_prefix):
                    f.remaining -= 1
                    if f.remaining == 0:
                        self._failures.remove(f)
                    return _error(f.code)
        return None


def _error(code: int) -> StatusError:
    if code == 422:  # what admission or validation refusing the object looks like
        return StatusError(422, "the object is refused by a fault switch", "Invalid")
    if code == 429:
        return StatusError(
            429,
            "Too many requests, please try again later.",
            "TooManyRequests",
            {"retryAfterSeconds": 1},
            {"Retry-After": "1"},
        )
    if code == 503:
        return StatusError(
            503,
            "The server is currently unable to handle the request",
            "ServiceUnavailable",
            {"retryAfterSeconds": 1},
            {"Retry-After": "1"},
        )
    if code == 504:
        return StatusError(504, "The server was unable to return a response in the time allotted", "Timeout")
    return StatusError(500, "Internal error injected by a fault switch", "InternalError")

"""Object references and diagnostics, printed the same way everywhere (`ns/name`, field paths)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True, order=True)
class ObjRef:
    """A namespaced (or cluster-scoped, namespace "") object: `kind` is informational only."""

    namespace: str
    name: str
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def parse(cls, text: str, default_namespace: str, kind: str = "") -> ObjRef:
        ns, sep, name = text.partition("/")
        return cls(ns, name, kind) if sep else cls(default_namespace, text, kind)


class Severity(StrEnum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """A problem with one object's field. The part it concerns grants nothing (fail closed)."""

    obj: ObjRef
    field: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return f"{self.obj}: {self.field}: {self.message}" if self.field else f"{self.obj}: {self.message}"

"""The mnp exception tree; callers branch on these, never on library exceptions.

MnpError
├── InvalidInput          user input that cannot be understood; names object and field
│   └── InvalidRuleset    a PodNetworkRuleset the agent must not apply
├── NftError              nftables refused or failed a transaction
├── NetnsError            a network namespace could not be opened or entered
└── ApiError              talking to an API server failed
    ├── NotFound, Conflict, Gone
"""

from __future__ import annotations


class MnpError(Exception):
    """Base of every error mnp raises on purpose."""


class InvalidInput(MnpError):
    """Input that cannot be understood. `field` is a path such as spec.ingress[1].ports[0].port."""

    def __init__(self, field: str, message: str, obj: str = "") -> None:
        self.obj = obj
        self.field = field
        self.message = message
        super().__init__(self.describe())

    def describe(self) -> str:
        head = f"{self.obj}: " if self.obj else ""
        return f"{head}{self.field}: {self.message}" if self.field else f"{head}{self.message}"

    def at(self, prefix: str, obj: str | None = None) -> InvalidInput:
        """The same error with `prefix` put before its field path (and an object, if given)."""
        field = f"{prefix}.{self.field}" if prefix and self.field else (prefix or self.field)
        return type(self)(field, self.message, obj if obj is not None else self.obj)


class InvalidRuleset(InvalidInput):
    """A PodNetworkRuleset that fails validation: never rendered, never applied."""


class NftError(MnpError):
    """nftables rejected a transaction or could not be reached."""


class NetnsError(MnpError):
    """A network namespace path could not be opened or entered."""


class ApiError(MnpError):
    """An API server request failed."""


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    pass

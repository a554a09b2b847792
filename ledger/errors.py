"""One root for every refusal the ledger makes, split by whose fault it is.

Each error carries a stable machine ``code`` (PROTOCOL.md section 6), a ``detail``
sentence a cooperative treasurer can read, and, inside a batch, the failing ``index``.
The HTTP layer maps the class to a status; the ledger itself knows nothing of HTTP.
"""

from __future__ import annotations

from typing import ClassVar


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    #: what kind of fault this is; the API maps it to an HTTP status in one place
    fault: ClassVar[str] = "internal"

    def __init__(self, code: str, detail: str, *, index: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.index = index

    def at(self, index: int) -> LedgerError:
        """Return this error tagged with the batch position that caused it."""
        self.index = index
        return self

    def __repr__(self) -> str:
        where = f", index={self.index}" if self.index is not None else ""
        return f"{type(self).__name__}({self.code!r}, {self.detail!r}{where})"


class MalformedError(LedgerError):
    """The bytes are not acceptable JSON (400 ``malformed``)."""

    fault = "malformed"

    def __init__(self, detail: str) -> None:
        super().__init__("malformed", detail)


class TooLargeError(LedgerError):
    """A body, a batch or an envelope is over its size or count limit (413)."""

    fault = "too_large"

    def __init__(self, detail: str) -> None:
        super().__init__("too_large", detail)


class SchemaError(LedgerError):
    """The JSON does not have the shape the protocol requires (422 ``schema``)."""

    fault = "schema"

    def __init__(self, detail: str) -> None:
        super().__init__("schema", detail)


class SignatureError(LedgerError):
    """The signature is bad, or the key is not one the actor holds (401)."""

    fault = "signature"


class ForbiddenError(LedgerError):
    """The signer may not do this (403: role, custody, licence, prefix...)."""

    fault = "forbidden"


class NotFoundError(LedgerError):
    """Something the body or the path names does not exist (404)."""

    fault = "not_found"


class ConflictError(LedgerError):
    """The current state of the ledger forbids this (409)."""

    fault = "conflict"


class RuleError(LedgerError):
    """A rule on times or on balances is broken (422, other than ``schema``)."""

    fault = "rule"


class IntegrityError(LedgerError):
    """The store itself is broken or inconsistent with the log (never the user's fault)."""

    fault = "integrity"


class UnavailableError(LedgerError):
    """The store cannot take writes safely now (e.g. its database file was replaced)."""

    fault = "unavailable"


class VerificationError(LedgerError):
    """Offline verification failed: a proof, a checkpoint or a bundle does not check out."""

    fault = "verification"

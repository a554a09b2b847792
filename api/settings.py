"""Server settings from the environment (PROTOCOL.md section 8)."""

from __future__ import annotations

import re

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ledger.protocol import hex32, is_valid_public_key


class Settings(BaseSettings):
    """Everything ``goldtrail serve`` reads from ``GOLDTRAIL_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="GOLDTRAIL_", extra="ignore")

    database_url: str = "sqlite:///./goldtrail.db"
    migrate_database_url: str | None = Field(
        default=None,
        description="the schema owner's URL: migrations run with it when set, and the server "
        "then connects with database_url as a role that may only read and append to the log",
    )
    registrar_key: str | None = Field(
        default=None, description="hex public key trusted to sign the seq-0 registration"
    )
    origin: str = "goldtrail.localhost/log"
    public_url: str = "http://127.0.0.1:8000"
    log_key_file: str = "./goldtrail-log.key"

    @field_validator("database_url", "migrate_database_url")
    @classmethod
    def _database_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or (value == "" and info.field_name == "migrate_database_url"):
            return None
        return usable_database_url(value, f"GOLDTRAIL_{str(info.field_name).upper()}")

    @field_validator("registrar_key")
    @classmethod
    def _hex_key(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # "hex public key" (section 8): an environment variable is not JSON, so capitals are
        # the same key; it is compared with the lowercase hex of seq 0's signature.key
        key = hex32(value)
        if key is None:
            raise ValueError("GOLDTRAIL_REGISTRAR_KEY must be 64 hex characters")
        if not is_valid_public_key(bytes.fromhex(key)):
            # every seq 0 signed "with" it would be refused: say so now, not at each post
            raise ValueError(
                "GOLDTRAIL_REGISTRAR_KEY is not an Ed25519 public key (64 hex characters, "
                "but not a point of the curve that a signing key gives)"
            )
        return key

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: str) -> str:
        if not value or any(c in value for c in " +\n") or not value.isprintable():
            raise ValueError("GOLDTRAIL_ORIGIN must be non-empty, with no spaces or '+'")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("GOLDTRAIL_PUBLIC_URL must start with http:// or https://")
        return value.rstrip("/")


def usable_database_url(value: str, variable: str) -> str:
    """``value`` if it is a SQLAlchemy URL of SQLite or PostgreSQL whose driver is installed
    (section 8: ``sqlite:///…`` or ``postgresql+psycopg://…``); else ValueError naming
    ``variable`` in plain words (never the URL, which may hold a password)."""
    usage = "write sqlite:///path/to/goldtrail.db or postgresql+psycopg://user@host/database"
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"{variable} is not a database URL: {usage}") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(
            f"{variable}: goldtrail stores its log in SQLite or PostgreSQL, not {backend}"
        )
    try:
        url.get_dialect().import_dbapi()
    except (ArgumentError, ImportError):  # an unknown driver, or one not installed
        raise ValueError(
            f"{variable}: the database driver {url.drivername!r} is not available here: {usage}"
        ) from None
    return value


def plain_settings_errors(error: ValidationError) -> str:
    """Pydantic's errors about ``Settings`` as one sentence naming the variables (never the
    values, which may hold a password)."""
    reasons = []
    for item in error.errors():
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        variable = "GOLDTRAIL_" + "_".join(str(p) for p in item.get("loc", ())).upper()
        reasons.append(message if variable in message else f"{variable}: {message}")
    return "; ".join(reasons) + "."

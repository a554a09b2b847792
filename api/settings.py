"""Server settings from the environment (PROTOCOL.md section 8)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @field_validator("migrate_database_url")
    @classmethod
    def _optional_url(cls, value: str | None) -> str | None:
        return value or None

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

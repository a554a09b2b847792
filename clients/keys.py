"""Signing-key files, encrypted at rest with a passphrase.

A key file is a small JSON document::

    {"format": "goldtrail-key/1",
     "actor": "coop-mambasa-femmes",
     "public_key": "<64 hex>",
     "kdf": {"alg": "argon2id13", "salt": "<32 hex>", "opslimit": 3, "memlimit": 268435456},
     "box": "<hex: 24-byte nonce || XSalsa20-Poly1305 ciphertext>",
     "checksum": "<64 hex>"}

- The passphrase is stretched with Argon2id (``nacl.pwhash.argon2id.kdf``, a random 16-byte
  salt per file) into a 32-byte key for ``nacl.secret.SecretBox``.
- The box holds ``{"actor", "seed"}``: decrypting it proves the passphrase, and the actor
  and the public key derived from the seed must equal the file's clear fields (so a file
  whose ``actor`` or ``public_key`` was edited is refused, not used to sign as someone else).
- ``checksum`` is SHA-256 over the other fields (canonical JSON). It catches a damaged or
  edited file *before* decryption, so a flipped byte in ``box`` or ``salt`` is reported as
  a damaged file instead of as a wrong passphrase. (It is not a secret: it protects against
  accidents and confusion; the box's own authentication protects the seed.)
- Files are created with ``os.open(O_CREAT | O_EXCL, 0o600)``: never world-readable, never
  silently overwritten (``force=True`` replaces a file atomically).

**Cost of the KDF.** New files use libsodium's ``MODERATE`` limits (3 passes, 256 MiB):
about half a second on a desktop and one to three seconds on a cheap laptop, once per
command. The key file is what a thief of the laptop would attack offline, and a key signs
in the name of a whole cooperative, so we prefer the stronger setting; ``INTERACTIVE``
(2 passes, 64 MiB) is offered for machines with less than 1 GiB of memory
(``goldtrail keys new --kdf interactive``). The limits are stored in the file, so a file
opens with whatever it was made with; tests inject ``MIN_LIMITS`` to stay fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

__all__ = [
    "FORMAT",
    "INTERACTIVE",
    "MIN_LIMITS",
    "MODERATE",
    "KdfLimits",
    "KeyFile",
    "KeyFileError",
    "create_key_file",
    "load_key_file",
    "load_signing_key",
    "read_public",
    "write_key_file",
]

FORMAT = "goldtrail-key/1"
KDF_ALG = "argon2id13"
MIN_PASSPHRASE = 8

_argon = nacl.pwhash.argon2id
_HEX = re.compile(r"[0-9a-f]*")
_ACTOR = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")


@dataclass(frozen=True)
class KdfLimits:
    """Argon2id work factors: passes (``opslimit``) and memory in bytes (``memlimit``)."""

    opslimit: int
    memlimit: int


MODERATE = KdfLimits(_argon.OPSLIMIT_MODERATE, _argon.MEMLIMIT_MODERATE)
INTERACTIVE = KdfLimits(_argon.OPSLIMIT_INTERACTIVE, _argon.MEMLIMIT_INTERACTIVE)
#: the smallest limits libsodium accepts: for tests only
MIN_LIMITS = KdfLimits(_argon.OPSLIMIT_MIN, _argon.MEMLIMIT_MIN)
#: a file may not ask for more than this (a crafted file must not exhaust the machine)
MAX_LIMITS = KdfLimits(_argon.OPSLIMIT_SENSITIVE, _argon.MEMLIMIT_SENSITIVE)


class KeyFileError(Exception):
    """A key file cannot be created, read or opened; ``detail`` says why in one sentence."""

    code = "key_file"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.detail} ({self.code})"


@dataclass(frozen=True)
class KeyFile:
    """An opened key file: the actor it signs for and its Ed25519 signing key."""

    path: Path
    actor: str
    public_key: str
    signing_key: nacl.signing.SigningKey


# ---------------------------------------------------------------------------
# Helpers


def _canonical(value: Any) -> bytes:
    # The fields are ASCII strings, ints and one flat object: sorted compact JSON is JCS here.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _checksum(document: dict[str, Any]) -> str:
    rest = {k: v for k, v in document.items() if k != "checksum"}
    return hashlib.sha256(_canonical(rest)).hexdigest()


def _derive(passphrase: str, salt: bytes, limits: KdfLimits) -> bytes:
    return _argon.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        # a passphrase from a non-UTF-8 environment holds the bytes it could not decode as
        # surrogates: use those very bytes (the same every time), never fail on them
        passphrase.encode("utf-8", "surrogateescape"),
        salt,
        opslimit=limits.opslimit,
        memlimit=limits.memlimit,
    )


def _hex(value: object, size: int | None, what: str, path: Path) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) % 2:
        raise KeyFileError(f"the key file {path} is damaged: {what} is not lowercase hex")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        raise KeyFileError(f"the key file {path} is damaged: {what} has the wrong length")
    return raw


def _write_exclusive(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to a new file with mode 0600; replace an existing one only if forced."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    target = path
    if force and (path.exists() or path.is_symlink()):
        target = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as e:
        raise KeyFileError(
            f"{path} already exists; it was not overwritten (use --force to replace it, "
            "and keep a copy of the old key if anything was signed with it)"
        ) from e
    except OSError as e:
        raise KeyFileError(f"cannot create the key file {path}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if target != path:
            os.replace(target, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise


# ---------------------------------------------------------------------------
# Creating and opening


def write_key_file(
    path: Path,
    actor: str,
    signing_key: nacl.signing.SigningKey,
    passphrase: str,
    *,
    force: bool = False,
    limits: KdfLimits = MODERATE,
) -> KeyFile:
    """Encrypt ``signing_key`` for ``actor`` under ``passphrase`` into a new file at ``path``.

    Raises KeyFileError if the file exists (unless ``force``), the actor id is not valid or
    the passphrase is shorter than 8 characters.
    """
    if not _ACTOR.fullmatch(actor):
        raise KeyFileError(
            f"{actor!r} is not an actor id: 3 to 64 lowercase letters, digits or '-', "
            "as given by the registrar"
        )
    # the same accented passphrase may be typed composed or decomposed (keyboards, input
    # methods, copy-paste): new files use the composed form (NFC), and opening tries both
    passphrase = unicodedata.normalize("NFC", passphrase)
    if len(passphrase) < MIN_PASSPHRASE:
        raise KeyFileError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    salt = nacl.utils.random(_argon.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, limits))
    public_key = bytes(signing_key.verify_key).hex()
    secret = _canonical({"actor": actor, "seed": bytes(signing_key).hex()})
    document: dict[str, Any] = {
        "format": FORMAT,
        "actor": actor,
        "public_key": public_key,
        "kdf": {
            "alg": KDF_ALG,
            "salt": salt.hex(),
            "opslimit": limits.opslimit,
            "memlimit": limits.memlimit,
        },
        "box": bytes(box.encrypt(secret)).hex(),
    }
    document["checksum"] = _checksum(document)
    data = (json.dumps(document, indent=2) + "\n").encode()
    _write_exclusive(path, data, force=force)
    return KeyFile(path, actor, public_key, signing_key)


def create_key_file(
    path: Path,
    actor: str,
    passphrase: str,
    *,
    force: bool = False,
    limits: KdfLimits = MODERATE,
) -> KeyFile:
    """Generate a new Ed25519 key for ``actor`` and write it encrypted to ``path``."""
    return write_key_file(
        path, actor, nacl.signing.SigningKey.generate(), passphrase, force=force, limits=limits
    )


def _read_document(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise KeyFileError(
            f"no key file at {path} (create one with `goldtrail keys new`, or give --key)"
        ) from e
    except OSError as e:
        raise KeyFileError(f"cannot read the key file {path}: {e.strerror}") from e
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{path} is not a goldtrail key file (not JSON)") from e
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeyFileError(f"{path} is not a goldtrail key file (format is not {FORMAT})")
    expected = {"format", "actor", "public_key", "kdf", "box", "checksum"}
    if set(document) != expected:
        raise KeyFileError(
            f"the key file {path} is damaged: its fields are not {', '.join(sorted(expected))}"
        )
    if not isinstance(document["checksum"], str) or not hmac.compare_digest(
        document["checksum"], _checksum(document)
    ):
        raise KeyFileError(
            f"the key file {path} is damaged or was edited (its checksum does not match); "
            "restore it from your backup"
        )
    return document


def read_public(path: Path) -> tuple[str, str]:
    """The actor and the public key (64 hex) of a key file, without the passphrase.

    The file's checksum is verified; the public key is what a registrar needs.
    """
    document = _read_document(path)
    actor, public_key = document["actor"], document["public_key"]
    _hex(public_key, 32, "public_key", path)
    if not isinstance(actor, str):
        raise KeyFileError(f"the key file {path} is damaged: actor is not text")
    return actor, public_key


def load_key_file(path: Path, passphrase: str) -> KeyFile:
    """Open a key file with its passphrase.

    Raises KeyFileError: ``wrong passphrase for key file …`` when the box does not open, or a
    sentence saying the file is damaged or was tampered with (checksum, salt, box, actor or
    public key not matching the key inside).
    """
    document = _read_document(path)
    actor, public_key = read_public(path)
    kdf = document["kdf"]
    if not isinstance(kdf, dict) or kdf.get("alg") != KDF_ALG:
        raise KeyFileError(f"the key file {path} uses an unknown key derivation")
    salt = _hex(kdf.get("salt"), _argon.SALTBYTES, "kdf.salt", path)
    ops, mem = kdf.get("opslimit"), kdf.get("memlimit")
    if not (
        isinstance(ops, int)
        and isinstance(mem, int)
        and MIN_LIMITS.opslimit <= ops <= MAX_LIMITS.opslimit
        and MIN_LIMITS.memlimit <= mem <= MAX_LIMITS.memlimit
    ):
        raise KeyFileError(f"the key file {path} asks for key-derivation limits out of range")
    sealed = _hex(document["box"], None, "box", path)
    opened: bytes | None = None
    # composed first (how files are made now), then as typed and decomposed (files made
    # before, or on a machine that sends accents as separate marks); an ASCII passphrase
    # has one form only, so a wrong one costs a single key derivation
    forms = (unicodedata.normalize("NFC", passphrase), passphrase)
    for form in dict.fromkeys((*forms, unicodedata.normalize("NFD", passphrase))):
        box = nacl.secret.SecretBox(_derive(form, salt, KdfLimits(ops, mem)))
        with contextlib.suppress(nacl.exceptions.CryptoError):
            opened = box.decrypt(sealed)
            break
    if opened is None:
        raise KeyFileError(f"wrong passphrase for key file {path}")
    try:
        secret = json.loads(opened)
    except ValueError as e:
        raise KeyFileError(f"the key file {path} is damaged: its box does not hold a key") from e
    if not isinstance(secret, dict) or not isinstance(secret.get("seed"), str):
        raise KeyFileError(f"the key file {path} is damaged: its box does not hold a key")
    signing_key = nacl.signing.SigningKey(_hex(secret["seed"], 32, "seed", path))
    if bytes(signing_key.verify_key).hex() != public_key:
        raise KeyFileError(
            f"the key file {path} was tampered with: its public_key is not the public key of "
            "the key inside it"
        )
    if secret.get("actor") != actor:
        raise KeyFileError(
            f"the key file {path} was tampered with: it says actor {actor!r} but the key "
            f"inside it was made for {secret.get('actor')!r}"
        )
    return KeyFile(path, actor, public_key, signing_key)


def is_loose(path: Path) -> bool:
    """True if a key file can be read by other users (group or world permissions)."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def load_signing_key(
    path: Path, passphrase: Callable[[], str]
) -> tuple[nacl.signing.SigningKey, str | None]:
    """A signing key from either a raw seed file (64 hex, as the server writes a generated
    registrar key) or an encrypted key file (asking ``passphrase()`` only then).

    Returns the key and the actor the file names (None for a raw seed).
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read the key file {path}: {e.strerror}") from e
    text = raw.strip().decode("ascii", "replace").lower()
    if re.fullmatch(r"[0-9a-f]{64}", text):
        return nacl.signing.SigningKey(bytes.fromhex(text)), None
    opened = load_key_file(path, passphrase())
    return opened.signing_key, opened.actor

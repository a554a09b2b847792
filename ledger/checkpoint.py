"""Signed tree heads: C2SP tlog-checkpoints in the C2SP signed-note format (PROTOCOL.md 4).

A checkpoint is the note

    <origin>\\n<tree size>\\n<base64 root>\\n\\n— <origin> <base64(key id || signature)>\\n

signed with the log's Ed25519 key under the key name ``origin``. It opens with Go's
``golang.org/x/mod/sumdb/note`` unchanged, and with ``open_checkpoint`` here, which is stricter:
exactly three body lines, canonical base64, origin equal to the key name.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from ledger.errors import VerificationError
from ledger.protocol import sha256

ED25519_ALGORITHM = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash and a space start every signature line
MAX_TREE_SIZE = 2**63 - 1  # Go's tlog sizes are int64
MAX_SIGNATURE_LINES = 100  # Go's note.Open refuses a note with more

_HASH_SIZE = 32
_SEED_SIZE = 32
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
#: whole quanta of standard base64, padded: what Go's base64.StdEncoding decodes (but for
#: the newlines it skips, which no note line holds)
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def key_id(name: str, public_key: bytes) -> bytes:
    """The note key id: the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key)."""
    return sha256(name.encode("utf-8") + b"\n" + bytes([ED25519_ALGORITHM]) + public_key)[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The note verifier key ``<name>+<key id, 8 hex>+<base64(0x01 || public key)>``."""
    encoded = base64.b64encode(bytes([ED25519_ALGORITHM]) + public_key).decode("ascii")
    return f"{name}+{key_id(name, public_key).hex()}+{encoded}"


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: the log's origin, its size and root, and the signed note itself."""

    origin: str
    size: int
    root: bytes
    note: str


def _is_key_name(name: str) -> bool:
    """True if ``name`` can name a note key: non-empty, no whitespace, '+' or unprintable."""
    return bool(name) and not any(c.isspace() or c == "+" or not c.isprintable() for c in name)


def _name_rule(name: str) -> str:
    return (
        f"The name {name!r} cannot name a note key: it must be non-empty, without whitespace, "
        "'+' or unprintable characters."
    )


def _decode_base64(text: str, *, canonical: bool = True) -> bytes | None:
    """Decode standard base64 (with padding); None if ``text`` is anything else.

    ``canonical``: also None unless ``text`` is the one encoding of its bytes (unused bits
    zero), which Go's decoder does not ask of a signature line.
    """
    if not _BASE64.fullmatch(text):
        return None
    data = base64.b64decode(text, validate=True)
    if canonical and base64.b64encode(data).decode("ascii") != text:
        return None
    return data


class LogSigner:
    """The log's Ed25519 key, signing tree heads as checkpoints under the origin's name."""

    def __init__(self, origin: str, seed: bytes) -> None:
        """Hold the key made from a 32-byte Ed25519 seed, named ``origin``.

        Raises ValueError if the origin cannot name a key or the seed is not 32 bytes.
        """
        if not _is_key_name(origin):
            raise ValueError(_name_rule(origin))
        if len(seed) != _SEED_SIZE:
            raise ValueError(f"An Ed25519 seed is {_SEED_SIZE} bytes, not {len(seed)}.")
        self._origin = origin
        self._signing_key = nacl.signing.SigningKey(seed)
        self._public_key = bytes(self._signing_key.verify_key)
        self._key_id = key_id(origin, self._public_key)

    @property
    def origin(self) -> str:
        """The log's origin, which is also the key's name."""
        return self._origin

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return self._public_key

    @property
    def verifier_key(self) -> str:
        """The note verifier key that opens this signer's checkpoints."""
        return verifier_key(self._origin, self._public_key)

    def sign(self, size: int, root: bytes) -> Checkpoint:
        """Sign the tree head (size, root) as a checkpoint note.

        Raises ValueError if the size is out of range or the root is not 32 bytes.
        """
        if not 0 <= size <= MAX_TREE_SIZE:
            raise ValueError(f"A tree size is between 0 and {MAX_TREE_SIZE}, not {size}.")
        if len(root) != _HASH_SIZE:
            raise ValueError(f"A root hash is {_HASH_SIZE} bytes, not {len(root)}.")
        text = f"{self._origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"
        signature = self._signing_key.sign(text.encode("utf-8")).signature
        encoded = base64.b64encode(self._key_id + signature).decode("ascii")
        note = f"{text}\n{SIGNATURE_PREFIX}{self._origin} {encoded}\n"
        return Checkpoint(self._origin, size, root, note)


def _bad_key(detail: str) -> VerificationError:
    return VerificationError("bad_verifier_key", detail)


def parse_verifier_key(vkey: str) -> tuple[str, bytes, bytes]:
    """Split a note verifier key into its name, 4-byte key id and Ed25519 public key.

    Raises VerificationError ``bad_verifier_key`` if it is malformed, is not an Ed25519 key,
    or its key id does not match its name and key.
    """
    name, plus, rest = vkey.partition("+")
    id_hex, plus_again, key_base64 = rest.partition("+")
    if not (plus and plus_again):
        raise _bad_key(f"The verifier key {vkey!r} is not of the form <name>+<key id>+<key>.")
    if not _is_key_name(name):
        raise _bad_key(_name_rule(name))
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise _bad_key(f"The verifier key's key id {id_hex!r} is not 8 hex digits.")
    key = _decode_base64(key_base64)
    if key is None:
        raise _bad_key(f"The verifier key's key {key_base64!r} is not standard base64.")
    if len(key) != 1 + 32 or key[0] != ED25519_ALGORITHM:
        raise _bad_key(
            "The verifier key is not an Ed25519 key: it should be the byte 0x01 then 32 bytes, "
            f"and it is {len(key)} bytes starting with {key[:1].hex() or 'nothing'}."
        )
    public_key = key[1:]
    expected = key_id(name, public_key)
    if bytes.fromhex(id_hex) != expected:
        raise _bad_key(
            f"The verifier key's key id is {id_hex}, but its name and key give {expected.hex()}."
        )
    return name, expected, public_key


def _bad(detail: str) -> VerificationError:
    return VerificationError("bad_checkpoint", detail)


def _split_note(note: str) -> tuple[str, list[str]]:
    """The note's signed text (ending in a newline) and its signature lines.

    Raises VerificationError ``bad_checkpoint`` if it is not a signed note.
    """
    for position, char in enumerate(note):
        if (ord(char) < 0x20 and char != "\n") or 0xD800 <= ord(char) <= 0xDFFF:
            raise _bad(
                f"The checkpoint holds the character {char!r} at position {position}; a note is "
                "UTF-8 text with no control character other than newline."
            )
    split = note.rfind("\n\n")
    if split < 0:
        raise _bad("The checkpoint is not a signed note: no blank line ends its text.")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise _bad("The checkpoint is not signed: no signature line follows the blank line.")
    if not block.endswith("\n"):
        raise _bad("The checkpoint's last signature line does not end in a newline.")
    return text, block[:-1].split("\n")


def _is_go_key_name(name: str) -> bool:
    """True if Go's note reads ``name`` as a key name: non-empty, no space, no '+'."""
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


def _find_signature(lines: list[str], name: str, wanted_id: bytes) -> bytes:
    """The signature of the first line by key ``name`` with key id ``wanted_id``.

    Every line is read first, as Go's ``note.Open`` reads them: a witness's line may have
    any name Go accepts, but a malformed line anywhere, or more than
    ``MAX_SIGNATURE_LINES`` lines, refuses the whole note. Raises VerificationError
    ``bad_checkpoint`` for those, or if no line is by that key.
    """
    if len(lines) > MAX_SIGNATURE_LINES:
        raise _bad(
            f"The checkpoint has {len(lines)} signature lines; a note has at most "
            f"{MAX_SIGNATURE_LINES}."
        )
    signers = []
    found: bytes | None = None
    for number, line in enumerate(lines, start=1):
        signer, _, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        # the log's own line is canonical base64; another's is read as Go reads it
        signature = _decode_base64(encoded, canonical=signer == name)
        if not (
            line.startswith(SIGNATURE_PREFIX)
            and _is_go_key_name(signer)
            and signature is not None
            and len(signature) > 4
        ):
            raise _bad(
                f"Signature line {number} ({line[:80]!r}) is not '— <key name> <base64 of the "
                "key id and signature>'."
            )
        if found is None and signer == name and signature[:4] == wanted_id:
            found = signature[4:]
        signers.append(f"{signer}+{signature[:4].hex()}")
    if found is None:
        raise _bad(
            f"The checkpoint is not signed by the trusted key {name}+{wanted_id.hex()}; "
            f"it is signed by {', '.join(signers)}."
        )
    return found


def _parse_body(text: str) -> tuple[str, int, bytes]:
    """The origin, size and root of a checkpoint's signed text.

    Raises VerificationError ``bad_checkpoint`` unless it is exactly those three lines.
    """
    lines = text.split("\n")[:-1]
    if len(lines) != 3:
        raise _bad(
            f"The checkpoint text has {len(lines)} lines; a goldtrail checkpoint has exactly "
            "three (origin, tree size, root) and no extension lines."
        )
    origin, size_line, root_line = lines
    if not _DECIMAL.fullmatch(size_line) or len(size_line) > 19 or int(size_line) > MAX_TREE_SIZE:
        raise _bad(
            f"The checkpoint's tree size {size_line[:40]!r} is not a decimal number from 0 to "
            f"{MAX_TREE_SIZE} without leading zeros."
        )
    root = _decode_base64(root_line)
    if root is None:
        raise _bad(f"The checkpoint's root {root_line[:80]!r} is not standard base64.")
    if len(root) != _HASH_SIZE:
        raise _bad(f"The checkpoint's root is {len(root)} bytes, not a {_HASH_SIZE}-byte hash.")
    return origin, int(size_line), root


def open_checkpoint(note: str, vkey: str) -> Checkpoint:
    """Verify a checkpoint note with the trusted verifier key and read its tree head.

    Other signatures (witnesses) are allowed and ignored. Raises VerificationError
    ``bad_verifier_key`` if ``vkey`` is malformed, and ``bad_checkpoint`` if the note is
    malformed, not signed by that key, badly signed, not exactly origin/size/root, or for
    another origin than the key's name.
    """
    name, wanted_id, public_key = parse_verifier_key(vkey)
    text, lines = _split_note(note)
    signature = _find_signature(lines, name, wanted_id)
    try:
        nacl.signing.VerifyKey(public_key).verify(text.encode("utf-8"), signature)
    except (nacl.exceptions.BadSignatureError, ValueError) as e:
        raise _bad(
            f"The checkpoint's signature by {name} does not verify: its text was changed "
            "after signing, or the signature is not this key's."
        ) from e
    origin, size, root = _parse_body(text)
    if origin != name:
        raise _bad(f"The checkpoint is for the origin {origin!r}, but its key is named {name!r}.")
    return Checkpoint(origin, size, root, note)

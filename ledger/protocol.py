"""Canonical bytes, the strict JSON reader, event ids and Ed25519 signatures (PROTOCOL.md 1-2).

Everything here works on bytes and plain JSON values; nothing reads a clock, a file or a
global key. Canonical form is RFC 8785 (JCS). The reference ``rfc8785`` package defines it;
``canonical`` takes a faster path, the C JSON encoder, for the values where the two are
byte-identical (see ``_fast_domain``), which ``tests/ledger/test_canonical.py`` checks with
hypothesis against ``rfc8785`` on everything the strict reader accepts, and beyond.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.encoder import (  # type: ignore[attr-defined]
    c_encode_basestring,
    c_make_encoder,
)
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing
import rfc8785

from ledger.errors import MalformedError, SchemaError, SignatureError

MAX_SAFE_INTEGER = 2**53 - 1
EVENT_DOMAIN = b"goldtrail/v1/event\n"

JSON = Any  # a parsed JSON value: dict, list, str, int, bool or None


# ---------------------------------------------------------------------------
# Strict reading


def _refuse_float(text: str) -> Any:
    raise MalformedError(
        f"The number {text} is a float (it has a fraction or an exponent); goldtrail only "
        "accepts whole numbers (masses in mg, money in minor units)."
    )


def _refuse_constant(text: str) -> Any:
    raise MalformedError(f"{text} is not JSON (not a number JSON allows); use whole numbers only.")


def _checked_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        # more digits than int() converts (sys.get_int_max_str_digits, 4300): far out of
        # range, and refused as such rather than escaping the reader as a ValueError
        value = None
    if value is None or not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        shown = text if len(text) <= 24 else f"{text[:20]}… ({len(text.lstrip('-'))} digits)"
        raise MalformedError(
            f"The integer {shown} is out of the integer range: integers must lie within "
            "±(2^53 − 1)."
        )
    return value


def _check_string(value: str) -> None:
    if value.isascii():
        return  # ASCII is valid Unicode and in NFC
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedError(
            "The text holds an unpaired surrogate escape, which is not UTF-8 (not valid Unicode)."
        ) from e
    if not unicodedata.is_normalized("NFC", value):
        raise MalformedError(
            f"The text {value[:40]!r} is not in Unicode NFC form; goldtrail never normalises "
            "what a signer signed, so send it already normalised (non-NFC)."
        )


def _object_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs) and "".join(obj).isascii():
        # no duplicate and only ASCII keys (so in NFC): only the values can fail, in order
        for value in obj.values():
            if type(value) is str and not value.isascii():
                _check_string(value)
        return obj
    return _object_hook_in_order(pairs)


def _object_hook_in_order(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # every check, pair by pair, so that the first problem in the text is the one named
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise MalformedError(f"The key {key!r} appears twice in one object (duplicate key).")
        if not key.isascii():
            raise MalformedError(f"The key {key!r} has non-ASCII characters (non-ASCII key).")
        _check_string(key)
        if isinstance(value, str):
            _check_string(value)
        obj[key] = value
    return obj


def _check_strings_in_arrays(value: Any) -> None:
    # Object values and keys are checked by the hook; strings inside arrays are not.
    # (Written out rather than one call per value: it walks every parsed value.)
    kind = type(value)
    if kind is list:
        for item in value:
            item_kind = type(item)
            if item_kind is str:
                if not item.isascii():
                    _check_string(item)
            elif item_kind is list or item_kind is dict:
                _check_strings_in_arrays(item)
    elif kind is dict:
        for item in value.values():
            item_kind = type(item)
            if item_kind is list or item_kind is dict:
                _check_strings_in_arrays(item)


def _ascii_object_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # for text with no non-ASCII byte and no \u escape: every key and string is ASCII, so
    # NFC and valid Unicode; only duplicate keys are left to find
    obj = dict(pairs)
    if len(obj) != len(pairs):
        return _object_hook_in_order(pairs)  # names the duplicate key
    return obj


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_hook,
    parse_float=_refuse_float,
    parse_int=_checked_int,
    parse_constant=_refuse_constant,
)
_ASCII_DECODER = json.JSONDecoder(
    object_pairs_hook=_ascii_object_hook,
    parse_float=_refuse_float,
    parse_int=_checked_int,
    parse_constant=_refuse_constant,
)


def parse_strict(data: bytes) -> JSON:
    """Parse bytes as I-JSON with goldtrail's extra rules.

    Raises MalformedError naming the check that failed: not UTF-8, not JSON, duplicate key,
    float, integer range, non-NFC, non-ASCII key.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedError(
            f"The request is not UTF-8 text (bad byte at position {e.start})."
        ) from e
    if text.startswith("\ufeff"):
        raise MalformedError("The request starts with a byte-order mark; send plain UTF-8 JSON.")
    if not _may_hold_u_escape(data):
        # without \u escapes every string is text of ``data``, so valid Unicode
        if data.isascii():
            # plain ASCII (most events) cannot hold a string that is not NFC or a
            # non-ASCII key either: the per-string checks are skipped for it
            return _decode(_ASCII_DECODER, text)
        # UTF-8 text (a bundle, with a non-ASCII name or its checkpoint's signature line):
        # read as plain text, then only the few strings holding a non-ASCII character are
        # checked. Anything refused or unsure goes to the full checks below, which name
        # the first problem in the text.
        try:
            value = _decode(_ASCII_DECODER, text)
        except MalformedError:
            pass
        else:
            if _non_ascii_strings_pass(data):
                return value
    value = _decode(_DECODER, text)
    if isinstance(value, str):
        _check_string(value)
    else:
        _check_strings_in_arrays(value)
    return value


def not_json_detail(e: json.JSONDecodeError) -> str:
    """The 400 ``malformed`` detail for text the JSON reader stopped at: what it expected
    and where (some of its messages end in "at", which the position says again)."""
    what = e.msg.removesuffix(" at")
    return f"The request is not JSON: {what} at line {e.lineno}, column {e.colno}."


def _decode(decoder: json.JSONDecoder, text: str) -> JSON:
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as e:
        raise MalformedError(not_json_detail(e)) from e
    except RecursionError as e:
        raise MalformedError("The request is not JSON we can read: it is nested too deeply.") from e


def _may_hold_u_escape(data: bytes) -> bool:
    """True if ``data`` holds a backslash followed by ``u`` (``b"\\u" in data``, which
    is slower: a backslash is found with memchr, and most texts have few or none)."""
    at = data.find(b"\\")
    for _ in range(64):
        if at < 0:
            return False
        if data[at + 1 : at + 2] == b"u":
            return True
        at = data.find(b"\\", at + 1)
    return at >= 0 and b"\\u" in data[at:]


_NON_ASCII_BYTE = re.compile(rb"[\x80-\xff]")
#: a JSON string token (from its opening quote) and what makes a string a key
_STRING_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_KEY_COLON = re.compile(rb"[ \t\n\r]*:")
_CHUNK = 4096


def _next_non_ascii(data: bytes, start: int) -> int:
    """The position of the first byte of ``data`` from ``start`` that is not ASCII, or -1."""
    for at in range(start, len(data), _CHUNK):
        chunk = data[at : at + _CHUNK]
        if not chunk.isascii():
            match = _NON_ASCII_BYTE.search(chunk)
            assert match is not None
            return at + match.start()
    return -1


def _non_ascii_strings_pass(data: bytes) -> bool:
    """For UTF-8 JSON text without \\u escapes that ``_ASCII_DECODER`` read: True if
    every string holding a non-ASCII character is a value, not a key, and passes
    ``_check_string``, so that the full checks accept the text too (every other string is
    ASCII, valid and in NFC). False when not, or not sure.

    Outside strings JSON text is ASCII, so each non-ASCII byte lies in a string token. Its
    opening quote is the nearest quote before it that no backslash precedes: inside a
    string a quote is always escaped, and outside one a backslash never stands.
    """
    at = _next_non_ascii(data, 0)
    while at >= 0:
        start = data.rfind(b'"', 0, at)
        while start > 0 and data[start - 1] == 0x5C:
            start = data.rfind(b'"', 0, start)
        token = _STRING_TOKEN.match(data, start) if start >= 0 else None
        if token is None or token.end() <= at or _KEY_COLON.match(data, token.end()):
            return False
        # the decoder's own string reader, on the token alone
        value, _ = scanstring(token.group().decode("utf-8"), 1, True)
        try:
            _check_string(value)
        except MalformedError:
            return False
        at = _next_non_ascii(data, token.end())
    return True


# ---------------------------------------------------------------------------
# The envelope

_LOWER_HEX = re.compile(r"[0-9a-f]*")


def split_envelope(envelope: object) -> tuple[dict[str, Any], dict[str, str]]:
    """Check the envelope's outer shape and return its body and signature.

    Raises SchemaError when it is not exactly ``{body, signature: {key, value}}``.
    """
    if not isinstance(envelope, dict):
        raise SchemaError("An event must be a JSON object with 'body' and 'signature'.")
    if not envelope.keys() <= _ENVELOPE_FIELDS:
        extra = set(envelope) - _ENVELOPE_FIELDS
        raise SchemaError(f"The envelope has an unknown field: {sorted(extra)[0]!r}.")
    body, sig = envelope.get("body"), envelope.get("signature")
    if not isinstance(body, dict):
        raise SchemaError("body: an event needs a 'body' object.")
    if not isinstance(sig, dict):
        raise SchemaError("signature: an event needs a 'signature' object with key and value.")
    if sig.keys() != _SIGNATURE_FIELDS:
        raise SchemaError("signature: must have exactly the fields 'key' and 'value'.")
    key, value = sig["key"], sig["value"]
    if not (isinstance(key, str) and len(key) == 64 and _is_lower_hex(key)):
        raise SchemaError("signature.key: must be a public key in 64 lowercase hex characters.")
    if not (isinstance(value, str) and len(value) == 128 and _is_lower_hex(value)):
        raise SchemaError("signature.value: must be a signature in 128 lowercase hex characters.")
    return body, {"key": key, "value": value}


_ENVELOPE_FIELDS = frozenset({"body", "signature"})
_SIGNATURE_FIELDS = frozenset({"key", "value"})


def _is_lower_hex(text: str) -> bool:
    """True if ``text`` is lower-case hex digits only (``_LOWER_HEX``), of even length.

    Decoded and written back in C, faster than the pattern; ``bytes.fromhex`` also takes
    capitals and spaces, which the round trip does not give back.
    """
    try:
        return bytes.fromhex(text).hex() == text
    except ValueError:
        return False


# ---------------------------------------------------------------------------
# Canonical bytes and ids


#: The C encoder writes RFC 8785 for the fast domain: no whitespace, keys sorted (by code
#: point, which is UTF-16 order for ASCII keys), UTF-8 text with exactly RFC 8785's escapes
#: (``\"``, ``\\``, ``\b \f \n \r \t``, other controls as ``\u00xx`` in lowercase hex),
#: integers in decimal.
_FAST = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    sort_keys=True,
    allow_nan=False,
    check_circular=False,
)


def _fast_domain(value: JSON) -> bool:
    """True if ``value`` holds only what the fast path writes exactly as RFC 8785 does:
    objects with ASCII string keys, arrays, strings, safe integers, booleans and null (the
    exact built-in types, so no subclass can change how it is written). A string that is
    not valid Unicode is caught when the text is encoded."""
    kind = type(value)
    if kind is dict:
        try:
            if not "".join(value).isascii():  # raises TypeError for a key that is no str
                return False
        except TypeError:
            return False
        items = value.values()
    elif kind is list:
        items = value
    else:
        return _fast_scalar(value)
    # the scalars written out rather than one call each: this walks every value
    for item in items:
        item_kind = type(item)
        if item_kind is str or item_kind is bool or item is None:
            continue
        if item_kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return False
        elif item_kind is dict or item_kind is list:
            if not _fast_domain(item):
                return False
        else:
            return False
    return True


def _fast_scalar(value: JSON) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    return kind is int and bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)


#: ``_FAST``'s C encoder made once (``JSONEncoder.encode`` makes one per call): same
#: arguments, so the same bytes
_FAST_C = (
    c_make_encoder(
        None,  # check_circular=False
        _FAST.default,
        c_encode_basestring,  # ensure_ascii=False
        None,  # indent
        _FAST.key_separator,
        _FAST.item_separator,
        _FAST.sort_keys,
        _FAST.skipkeys,
        _FAST.allow_nan,
    )
    if c_make_encoder is not None and c_encode_basestring is not None
    else None
)


def _encode_fast(value: JSON) -> bytes:
    text = "".join(_FAST_C(value, 0)) if _FAST_C is not None else _FAST.encode(value)
    return text.encode("utf-8")


def canonical(value: JSON) -> bytes:
    """Return the RFC 8785 canonical bytes of a JSON value.

    Raises SchemaError if the value cannot be canonicalised (a float, an out-of-range
    integer or a non-string key slipped through, or a value nested too deeply to walk).
    """
    try:
        if _fast_domain(value):
            try:
                return _encode_fast(value)
            except UnicodeEncodeError:
                pass  # an unpaired surrogate: the reference path refuses it in its own words
        return _canonical_reference_path(value)
    except RecursionError as e:  # only a value built in code: the strict reader limits depth
        raise SchemaError(
            "This value cannot be written in canonical JSON: it is nested too deeply."
        ) from e


def canonical_parsed(value: JSON) -> bytes:
    """``canonical`` of a value exactly as ``parse_strict`` returned it, not changed since
    (never one built or changed in code: the C encoder would write a float or a big
    integer where RFC 8785 writes or refuses it otherwise).

    The strict reader only returns values of the fast domain (objects with ASCII keys,
    arrays, valid strings, safe integers, booleans and null, of the exact built-in types),
    so the walk that proves it is skipped (``tests/ledger/test_canonical.py`` checks that
    on everything the reader accepts).
    """
    try:
        return _encode_fast(value)
    except UnicodeEncodeError:
        return canonical(value)  # an unpaired surrogate: the reader never returns one


def _canonical_reference_path(value: JSON) -> bytes:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise SchemaError(f"This value cannot be written in canonical JSON: {e}.") from e


def canonical_reference(value: JSON) -> bytes:
    """RFC 8785 bytes from the reference ``rfc8785`` package alone (tests and benchmarks
    compare ``canonical`` with it)."""
    return rfc8785.dumps(value)


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def body_digest(body: JSON) -> bytes:
    """SHA-256 of the canonical body (the raw 32 bytes behind the event id)."""
    return sha256(canonical(body))


def event_id(body: JSON) -> str:
    """The event id: hex SHA-256 of the canonical body."""
    return body_digest(body).hex()


def signing_message(origin: str, digest: bytes) -> bytes:
    """The message an actor signs: domain, origin and body digest, bound to one log."""
    return EVENT_DOMAIN + origin.encode("utf-8") + b"\n" + digest


# ---------------------------------------------------------------------------
# Keys and signatures


_HEX32 = re.compile(r"[0-9a-fA-F]{64}")


def hex32(text: str) -> str | None:
    """32 bytes (a key, a hash) as a person types or sets them: 64 hex digits in either
    case, returned as the lowercase hex the log writes; None for anything else."""
    return text.lower() if _HEX32.fullmatch(text) else None


def is_valid_public_key(key: bytes) -> bool:
    """True if ``key`` is a canonical encoding of a point of the prime-order subgroup."""
    return len(key) == 32 and bool(nacl.bindings.crypto_core_ed25519_is_valid_point(key))


def public_key_hex(signing_key: nacl.signing.SigningKey) -> str:
    """Lowercase hex of a signing key's public key."""
    return bytes(signing_key.verify_key).hex()


def signing_key_from_seed(seed_hex: str) -> nacl.signing.SigningKey:
    """An Ed25519 signing key from its 32-byte seed in hex.

    Raises ValueError if the seed is not 64 hex characters.
    """
    seed = bytes.fromhex(seed_hex)
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes (64 hex characters)")
    return nacl.signing.SigningKey(seed)


def sign_body(body: JSON, signing_key: nacl.signing.SigningKey, origin: str) -> dict[str, Any]:
    """Sign a body for the log ``origin`` and return the envelope."""
    message = signing_message(origin, body_digest(body))
    signature = signing_key.sign(message).signature
    return {
        "body": body,
        "signature": {"key": public_key_hex(signing_key), "value": signature.hex()},
    }


@functools.lru_cache(maxsize=1024)
def _verify_key(key_hex: str) -> nacl.signing.VerifyKey:
    # a log's events are signed by few keys: each is decoded once (an error is not cached)
    return nacl.signing.VerifyKey(bytes.fromhex(key_hex))


def verify_signature(origin: str, digest: bytes, key_hex: str, signature_hex: str) -> None:
    """Check an Ed25519 signature over the event message as strictly as libsodium does.

    Raises SignatureError ``bad_signature`` when it does not verify.
    """
    try:
        key = _verify_key(key_hex)
        signature = bytes.fromhex(signature_hex)
        key.verify(signing_message(origin, digest), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError) as e:
        raise SignatureError(
            "bad_signature",
            "The signature does not match this event: it was changed after signing, signed "
            "for another log, or signed with another key.",
        ) from e

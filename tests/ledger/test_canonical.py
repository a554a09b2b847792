"""The fast canonical path is byte-identical to the reference ``rfc8785`` package.

``ledger.protocol.canonical`` writes most values with the C JSON encoder and falls back to
``rfc8785`` outside the domain where the two agree. The brief allows a faster path only with
a property test proving it byte-identical to rfc8785 on everything the strict reader
accepts: these tests generate JSON texts, keep those ``parse_strict`` accepts, and compare.
A second test goes beyond the strict reader (floats, huge integers, non-ASCII keys, lone
surrogates, tuples, subclasses) and checks the two agree or both refuse.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError, SchemaError
from ledger.protocol import (
    MAX_SAFE_INTEGER,
    _fast_domain,
    canonical,
    canonical_parsed,
    canonical_reference,
    not_json_detail,
    parse_strict,
)

EXAMPLES = 400
REPO = Path(__file__).resolve().parents[2]

# Text that stresses escaping and ordering: controls, quotes, backslashes, DEL, U+2028,
# non-BMP characters, combining marks (non-NFC forms are refused by the reader, NFC kept).
_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "\u00e9", "\U0001f600"]),
    ),
    max_size=12,
)
_keys = st.one_of(st.text(alphabet=st.characters(max_codepoint=127), max_size=6), _text)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.integers(min_value=-(2**60), max_value=2**60),
    _text,
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(_keys, inner, max_size=5),
    ),
    max_leaves=25,
)


def _reference(value: object) -> bytes | None:
    try:
        return rfc8785.dumps(value)  # type: ignore[arg-type]
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return None


def _ours(value: object) -> bytes | None:
    try:
        return canonical(value)
    except SchemaError:
        return None


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_identical_on_everything_the_strict_reader_accepts(value: object) -> None:
    text = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        accepted = parse_strict(text)
    except LedgerError:
        return  # refused by the reader: outside what the product ever canonicalises
    assert canonical(accepted) == rfc8785.dumps(accepted)
    # what the reader returns is in the fast domain, so canonical_parsed skips that walk
    assert _fast_domain(accepted)
    assert canonical_parsed(accepted) == rfc8785.dumps(accepted)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.recursive(
        st.one_of(
            _scalars,
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=2),
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=4).map(tuple),
            st.dictionaries(st.one_of(_keys, st.integers()), inner, max_size=4),
        ),
        max_leaves=15,
    )
)
def test_identical_or_both_refuse_beyond_the_reader(value: object) -> None:
    assert _ours(value) == _reference(value)


def test_the_escapes_and_orders_the_rfc_names() -> None:
    value = {
        "b": '\b\f\n\r\t\x00\x1f\x7f"\\/\u2028é😀',
        "a": [1, -0, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, True, False, None, {}, []],
        "B": {"z": 1, "_": 2, "a": 3},
    }
    assert canonical(value) == canonical_reference(value)
    assert canonical(value).startswith(b'{"B":{"_":2,"a":3,"z":1},"a":[1,0,')
    assert b'"\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\\"\\\\/\xe2\x80\xa8' in canonical(value)


class _Colour(enum.IntEnum):
    RED = 1


class _Name(enum.StrEnum):
    GOLD = "gold"


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        2**53,
        -(2**53),
        {1: "int key"},
        {"é": 1, "\U0001f600": 2, "\uffff": 3},
        ("a", 1),
        _Colour.RED,
        {"form": _Name.GOLD},
        "\ud800",
    ],
    ids=[
        "float",
        "too-big",
        "too-small",
        "int-key",
        "astral-keys",
        "tuple",
        "intenum",
        "str-enum",
        "surrogate",
    ],
)
def test_outside_the_fast_domain_the_reference_decides(value: object) -> None:
    assert _ours(value) == _reference(value)


def test_the_vectors_and_the_scenario() -> None:
    for path in (
        REPO / "tests" / "vectors" / "events.json",
        REPO / "clients" / "data" / "scenario.json",
    ):
        value = json.loads(path.read_bytes())
        assert canonical(value) == canonical_reference(value)


def _full_strict_parse(data: bytes) -> object:
    """The strict reader with every check, pair by pair and string by string."""
    from ledger import protocol

    decoder = json.JSONDecoder(
        object_pairs_hook=protocol._object_hook_in_order,
        parse_float=protocol._refuse_float,
        parse_int=protocol._checked_int,
        parse_constant=protocol._refuse_constant,
    )
    value = decoder.decode(data.decode("utf-8"))
    if isinstance(value, str):
        protocol._check_string(value)
    else:
        protocol._check_strings_in_arrays(value)
    return value


def _outcome(read: Any, data: bytes) -> object:
    try:
        return ("value", read(data))
    except LedgerError as e:
        return ("refused", e.detail)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.recursive(
        st.one_of(_scalars, st.floats(allow_nan=False, allow_infinity=False)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)
        ),
        max_leaves=15,
    ),
    st.booleans(),
    st.booleans(),
)
def test_the_fast_paths_of_the_reader_agree_with_the_full_checks(
    value: object, ascii_only: bool, duplicate: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    if duplicate and text.startswith("{") and text != "{}":
        text = '{"dup": 1, "dup": 2, ' + text[1:]
    data = text.encode("utf-8", "surrogatepass")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return  # not UTF-8: refused before either decoder runs
    assert _outcome(parse_strict, data) == _outcome(_full_strict_parse, data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json, st.booleans())
def test_plain_json_reads_what_the_strict_reader_accepts_alike(
    value: object, ascii_only: bool
) -> None:
    """The audit reads an entry the signature worker found sound (strict and canonical)
    with ``json.loads``: on every text ``parse_strict`` accepts, the two give equal values
    of the same types."""
    data = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        strict = parse_strict(data)
    except LedgerError:
        return
    plain = json.loads(data)
    assert plain == strict
    assert canonical(plain) == canonical(strict)
    assert repr(plain) == repr(strict)  # the same types all the way down (True is not 1)


# Text for the reader's UTF-8 path (no \u escape): non-ASCII keys and values, NFC and
# non-NFC forms, escaped quotes and backslashes next to non-ASCII characters, a colon or a
# quote in a string, a non-ASCII space, combining marks after an escape's letter.
_utf8_text = st.text(
    alphabet='an"\\/:,{\n <e\u00e9\u0301\u0303\u212b\u00c5\u00a0\u2014\U0001f600\u0338',
    max_size=8,
)


@st.composite
def _utf8_texts(draw: st.DrawFn) -> bytes:
    value = draw(
        st.recursive(
            st.one_of(st.none(), st.integers(-5, 5), _utf8_text, st.text(max_size=4)),
            lambda inner: st.one_of(
                st.lists(inner, max_size=4),
                st.dictionaries(
                    st.one_of(_utf8_text, st.text(alphabet="abc", max_size=3)), inner, max_size=4
                ),
            ),
            max_leaves=12,
        )
    )
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :\n")]))
    text = json.dumps(value, ensure_ascii=False, separators=separators)
    if draw(st.booleans()):
        # a character put anywhere: inside a string, or outside (not JSON then)
        at = draw(st.integers(0, len(text)))
        extra = draw(st.sampled_from(["\u00e9", "\u0301", "\u00a0", '"', "\\"]))
        text = text[:at] + extra + text[at:]
    return text.encode("utf-8", "surrogatepass")


def _full_strict_read(data: bytes) -> object:
    """``_full_strict_parse`` refusing text that is not JSON in ``parse_strict``'s words."""
    try:
        return _full_strict_parse(data)
    except json.JSONDecodeError as e:
        raise MalformedError(not_json_detail(e)) from e


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_utf8_texts())
def test_the_readers_utf8_path_agrees_with_the_full_checks(data: bytes) -> None:
    # UTF-8 text without \u escapes is read as plain text and only its strings holding a
    # non-ASCII character are checked: the same value or the same first refusal
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    outcome = _outcome(parse_strict, data)
    assert outcome == _outcome(_full_strict_read, data)
    if outcome[0] == "value":
        assert canonical_parsed(outcome[1]) == rfc8785.dumps(outcome[1])


@pytest.mark.parametrize(
    "text",
    [
        '"\u00e9"',
        ' "e\u0301" ',
        '["a", "\\"\u00e9\\\\", {"k": "\\\\"}, "\u212b"]',
        '{"a\\"": "\u00e9", "b": "\\"e\u0301"}',
        '{"\u00e9" : 1}',
        '{"a": "\u00e9", "a": 1}',
        '{"a": "\\n\u0303"}',
        '{"a": "n\u0303\u00e9"}',
        '{"a":\u00a01}',
        '{"a": 1.5, "b": "\u00e9"}',
        '{"a": "\u00e9" "b"}',
    ],
)
def test_the_readers_utf8_path_on_the_edges(text: str) -> None:
    data = text.encode()
    assert _outcome(parse_strict, data) == _outcome(_full_strict_read, data)

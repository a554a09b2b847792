"""``check_body``'s fast checks agree with ``parse_body``: a body a fast check proves valid
is one ``parse_body`` accepts, and ``check_body`` accepts and refuses exactly what
``parse_body`` does, with the same error."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import SchemaError
from ledger.events import FAST_CHECKS, MAX_COUNT, MAX_MASS_MG, MAX_PPM, check_body, parse_body
from tests.ledger.test_events import KEY, REFUSALS, VALID, _mutated

H = "a1" * 32
H2 = "b2" * 32


#: bodies of the fast-checked types without their optional fields: the fast checks prove
#: these valid on their own
def _without(kind: str, *optional: str) -> dict[str, Any]:
    """test_events' valid body of ``kind`` without the given optional fields."""
    return {k: v for k, v in VALID[kind].items() if k not in optional}


MINIMAL: dict[str, dict[str, Any]] = {
    "actor.registered": _without("actor.registered", "licence", "profile"),
    "lot.registered": {
        **_without("lot.registered", "payment", "pit", "state_payments", "tag"),
        "producers": {"women": 6, "men": 3},
    },
    "lot.transfer_offered": _without(
        "lot.transfer_offered", "payment_method", "price", "seal", "seller_sex"
    ),
    "lot.transfer_accepted": _without("lot.transfer_accepted"),
    "lot.processed": {
        "v": 1,
        "actor": "refiner-alpine",
        "time": "2026-11-20T09:30:00Z",
        "type": "lot.processed",
        "inputs": [{"lot": "KLA-2026-0101", "prev": H}, {"lot": "KLA-2026-0102", "prev": H2}],
        "outputs": [
            {"lot": "ALP-2026-118842", "mass_mg": 44800, "form": "dore", "fineness_ppm": 999900},
            {"lot": "ALP-2026-118843", "mass_mg": 100, "form": "gold", "fineness_ppm": 500000},
        ],
        "process": "refining",
    },
    "lot.assayed": _without("lot.assayed", "certificate", "mass_mg"),
}


def _outcome(check: Any, body: object) -> str | None:
    """None when ``check`` accepts the body, else the SchemaError's detail."""
    try:
        check(body)
    except SchemaError as error:
        return error.detail
    return None


def _agree(body: object) -> None:
    """check_body gives parse_body's verdict; a fast check's yes is parse_body's yes."""
    expected = _outcome(parse_body, body)
    assert _outcome(check_body, body) == expected
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        fast = FAST_CHECKS.get(body["type"])
        if fast is not None and fast(body):
            assert expected is None, (body, expected)


def test_every_fast_type_has_a_minimal_body() -> None:
    assert set(MINIMAL) == set(FAST_CHECKS)


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_the_fast_check_proves_a_minimal_body_valid(kind: str) -> None:
    assert FAST_CHECKS[kind](MINIMAL[kind])
    _agree(MINIMAL[kind])


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_bodies_with_their_optional_fields(kind: str) -> None:
    _agree(VALID[kind])


@pytest.mark.parametrize(("kind", "path", "value", "field"), REFUSALS)
def test_every_refusal_of_parse_body_is_check_bodys(
    kind: str, path: str, value: Any, field: str
) -> None:
    body = _mutated(kind, path, value)
    assert _outcome(parse_body, body) is not None
    _agree(body)


EDGE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    2,
    -1,
    1.0,
    MAX_PPM,
    MAX_PPM + 1,
    MAX_MASS_MG,
    MAX_MASS_MG + 1,
    MAX_COUNT,
    MAX_COUNT + 1,
    "",
    "1",
    "gold",
    "GOLD",
    "dore",
    "bar",
    "ore",
    "none",
    "wfcl",
    "nearby",
    "taxes",
    "control",
    "xrf",
    "smelting",
    "trader-bunia",
    "coop-reafecom",
    "assayer-kampala",
    "Trader-bunia",
    "ab",
    "a" * 64,
    "a" * 65,
    "MAK-2026-0001",
    "mak-2026-0001",
    "MAK",
    "A" * 48,
    "A" * 49,
    H,
    H.upper(),
    H[:-1],
    H + "\n",
    "2026-11-20T09:30:00Z",
    "2026-11-20T09:30:00",
    "2026-02-30T09:30:00Z",
    "2026-11-21T00:00:00Z",
    "2026-11-20",
    "2026-11-21",
    "2026-08-20",
    "2026-08-19",
    "2026-02-30",
    "0000-01-01",
    "2026-11-10\n",
    "\u0661\u0662\u0663",
    [],
    ["gold"],
    {},
    {"from": "2026-11-10", "to": "2026-11-19"},
    {"women": 0, "men": 0},
    {"women": 0, "men": 1},
    {"women": 1, "men": 0, "women_led": False},
    # actor.registered
    ["cooperative"],
    ["auditor"],
    ["assayer", "registrar"],
    ["trader", "trader"],
    ["refiner", "auditor"],
    ["Cooperative"],
    [None],
    KEY,
    "00" * 32,  # the identity: not a usable key
    "01" + "00" * 31,
    "CD",
    "XX",
    "cd",
    "MAK-",
    "MAK",
    "A" * 16 + "-",
    "A" * 17 + "-",
    "Coop\nérative",
    "Coop\u2028",
    "Coop\u0085",
    "x" * 2000,
    "x" * 2001,
    # lot.processed
    "refining",
    "merging",
    "smelting-x",
    [{"lot": "KLA-2026-0101", "prev": H}],
    [{"lot": "KLA-2026-0101", "prev": H}, {"lot": "KLA-2026-0101", "prev": H2}],
    [{"lot": "ALP-2026-118842", "prev": H}],
    [{"lot": "KLA-2026-0101"}],
    [{"lot": "KLA-2026-0101", "prev": H, "extra": 1}],
    [{"lot": "ALP-2026-118842", "mass_mg": 1, "form": "gold", "fineness_ppm": 1}],
    [{"lot": "KLA-2026-0101", "mass_mg": 1, "form": "gold", "fineness_ppm": 1}],
    [{"lot": "ALP-2026-1", "mass_mg": 1, "form": "bar", "fineness_ppm": 1}],
    [
        {
            "lot": "ALP-2026-1",
            "mass_mg": 1,
            "form": "bar",
            "fineness_ppm": 1,
            "bar": {"serial": "AP-1", "year": 2026},
        }
    ],
    [{"lot": "ALP-2026-1", "mass_mg": 0, "form": "dore", "fineness_ppm": 1}],
    [{"lot": "ALP-2026-1", "mass_mg": 1, "form": "dore", "fineness_ppm": MAX_PPM + 1}],
    [{"lot": f"KLA-2026-{i:04d}", "prev": H} for i in range(100)],
    [{"lot": f"KLA-2026-{i:04d}", "prev": H} for i in range(101)],
]


@st.composite
def _mutants(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(MINIMAL)))
    body = copy.deepcopy(MINIMAL[kind])
    for _ in range(draw(st.integers(1, 3))):
        target: Any = body
        # now and then one level down, into extracted, producers or declarations
        nested = [k for k, v in body.items() if isinstance(v, dict)]
        if nested and draw(st.booleans()):
            target = body[draw(st.sampled_from(nested))]
        keys = sorted(target)
        action = draw(st.integers(0, 3))
        if action == 0 and keys:
            del target[draw(st.sampled_from(keys))]
        elif action == 1:
            name = draw(st.sampled_from(["extra", "tag", "pit", "women_led", "mass_mg"]))
            # a copy: the body is changed further, EDGE_VALUES never
            target[name] = copy.deepcopy(draw(st.sampled_from(EDGE_VALUES)))
        elif keys:
            value = draw(st.sampled_from(EDGE_VALUES) | st.integers() | st.text(max_size=70))
            target[draw(st.sampled_from(keys))] = copy.deepcopy(value)
    return body


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutants())
def test_fast_checks_agree_with_parse_body_on_mutants(body: dict[str, Any]) -> None:
    _agree(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(MINIMAL)), st.data())
def test_fast_checks_agree_on_edge_values_of_every_field(kind: str, data: st.DataObject) -> None:
    body = copy.deepcopy(MINIMAL[kind])
    path = data.draw(
        st.sampled_from(
            [(k,) for k in body]
            + [(k, n) for k, v in body.items() if isinstance(v, dict) for n in v]
        )
    )
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = copy.deepcopy(data.draw(st.sampled_from(EDGE_VALUES)))
    _agree(body)


@st.composite
def _processed_mutants(draw: st.DrawFn) -> dict[str, Any]:
    """lot.processed with its inputs' and outputs' items changed, one level further down
    than ``_mutants`` goes."""
    body = copy.deepcopy(MINIMAL["lot.processed"])
    for _ in range(draw(st.integers(1, 3))):
        items = body[draw(st.sampled_from(["inputs", "outputs"]))]
        action = draw(st.integers(0, 4))
        if action == 0 and items:
            del items[draw(st.integers(0, len(items) - 1))]
        elif action == 1:
            items.append(copy.deepcopy(draw(st.sampled_from(items or [{}]))))
        elif items:
            item = items[draw(st.integers(0, len(items) - 1))]
            key = draw(st.sampled_from(["lot", "prev", "mass_mg", "form", "fineness_ppm", "bar"]))
            if action == 2:
                item.pop(key, None)
            else:
                value = draw(
                    st.sampled_from(EDGE_VALUES)
                    | st.sampled_from(["KLA-2026-0101", "KLA-2026-0102", "ALP-2026-118842"])
                )
                item[key] = copy.deepcopy(value)
    return body


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_processed_mutants())
def test_the_fast_check_of_lot_processed_agrees_on_its_items(body: dict[str, Any]) -> None:
    _agree(body)

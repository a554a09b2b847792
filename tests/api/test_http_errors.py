"""Every status and code of PROTOCOL.md section 6, reached through HTTP.

One "arena" log per database (SQLite and PostgreSQL) holds every situation a refusal needs
(a pending offer, a consumed lot, a lot on hold, a red site, a revoked actor, a resolved
flag...). Each case builds one envelope that must be refused with a given status and code,
sends it alone (``POST /v1/events``: no ``index``) and inside a batch after an envelope
already logged (``POST /v1/events/batch``: ``index`` 1), and checks the RFC 9457 problem
and that the log (size and root, ``GET /v1/log``) did not change. Then the whole-body
errors (sizes, parsing), the query parameters, and the order of the checks for a few pairs.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nacl.signing
import pytest

from api.body import BATCH_COUNT, BATCH_LIMIT, EVENT_LIMIT
from ledger.protocol import canonical

from .conftest import (
    NOW,
    Api,
    HttpWorld,
    check_problem,
    factories,
    fresh_database,
    open_api,
    refusal,
)

Event = factories.Event
HEX0 = "0" * 64
RANDOM_EVENT = "ab" * 32
#: a valid profile (section 5: women_led, members and leaders, none optional)
PROFILE = {
    "women_led": True,
    "members": {"women": 3, "total": 10},
    "leaders": {"women": 1, "total": 3},
}


@dataclass
class Arena:
    """A log holding every situation the refusals below need."""

    api: Api
    w: HttpWorld
    lot: str  # active, held by coop
    offered: str  # offered by coop to trader (pending)
    consumed: str  # split by coop
    held: str  # on hold (serious_abuse open)
    flagged: str  # carries a resolved flag
    resolved_flag: str
    old_offer: str  # an offer of ``lot`` already answered (rejected)
    logged: dict[str, Any]  # an envelope already in the log (the first lot's registration)
    logged_event: Any


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def arena(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Arena]:
    folder = tmp_path_factory.mktemp(f"arena-{request.param}")
    pg = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    with fresh_database(request.param, folder, pg) as url:
        api = open_api(url, folder)
        try:
            w = api.world().standard()
            with w.batching():
                lot_ev = w.register_lot()
                lot = lot_ev.body["lot"]
                old_offer = w.offer(lot, "trader").id
                w.reject(lot)
                offered = w.register_lot().body["lot"]
                w.offer(offered, "trader")
                consumed = w.register_lot().body["lot"]
                w.split(consumed, [50_000, 50_000])
                held = w.register_lot().body["lot"]
                w.flag(held, "serious_abuse")
                flagged = w.register_lot().body["lot"]
                flag_ev = w.flag(flagged, "bribery")
                w.resolve(flagged, flag_ev.flag_id("bribery"))
                w.register_site("site-red", "coop")
                w.assess_site("site-red", "red")
                w.register_actor("gone", ["trader"], lot_prefix="GONE-")
                w.revoke("gone")
                w.register_actor(
                    "coopx",
                    ["cooperative"],
                    lot_prefix="CPX-",
                    licence={"number": "L-1", "issuer": "CAMI", "valid_until": "2026-01-31"},
                )
                w.register_site("site-x", "coopx")
                w.assess_site("site-x", "green")
                w.rotate_key("trader2")
            yield Arena(
                api,
                w,
                lot,
                offered,
                consumed,
                held,
                flagged,
                flag_ev.flag_id("bribery"),
                old_offer,
                lot_ev.envelope,
                lot_ev,
            )
        finally:
            api.close()


def _coop_key_time(w: HttpWorld, seconds: int) -> str:
    """A time just after coop got its key (so before the arena's lots were registered)."""
    since = factories.parse_time(w.actor("coop").keys[0].since_time)
    return factories.fmt_time(since + dt.timedelta(seconds=seconds))


def _future(w: HttpWorld, build: Callable[[], Any]) -> Any:
    """Build an event with a time in the future without moving the world's clock there."""
    saved = w.clock
    try:
        return build()
    finally:
        w.clock = saved


def _register(w: HttpWorld, subject: str, roles: list[str], **kw: Any) -> Any:
    return w.register_actor(subject, roles, post=False, **kw)


# name -> (status, code, build the envelope from the arena)
Builder = Callable[[Arena], Any]
CASES: dict[str, tuple[int, str, Builder]] = {
    # 422 schema (before anything else that reads the log)
    "schema_offer_to_self": (422, "schema", lambda a: a.w.offer(a.lot, "coop", post=False)),
    "schema_no_signature": (
        422,
        "schema",
        lambda a: {"body": a.logged["body"]},
    ),
    "schema_unknown_field": (
        422,
        "schema",
        lambda a: factories.resign(
            {"body": {**a.logged["body"], "colour": "gold"}}, a.w.keys["coop"]
        ),
    ),
    # 401
    "bad_signature": (
        401,
        "bad_signature",
        lambda a: factories.tamper(a.w.offer(a.lot, "trader", post=False), mass_mg=99_000),
    ),
    "unknown_key": (
        401,
        "unknown_key",
        lambda a: a.w.offer(a.lot, "trader", post=False, key=nacl.signing.SigningKey.generate()),
    ),
    "key_inactive_revoked": (
        401,
        "key_inactive",
        lambda a: a.w.update_actor("gone", signer="gone", post=False, profile=PROFILE),
    ),
    "key_inactive_rotated": (
        401,
        "key_inactive",
        lambda a: a.w.update_actor(
            "trader2",
            signer="trader2",
            post=False,
            profile=PROFILE,
            key=a.w.old_keys["trader2"][0],
        ),
    ),
    # 422 time
    "future_time": (
        422,
        "future_time",
        lambda a: _future(
            a.w,
            lambda: a.w.offer(
                a.lot, "trader", post=False, time=NOW + dt.timedelta(minutes=5, seconds=1)
            ),
        ),
    ),
    "time_order": (
        422,
        "time_order",
        lambda a: a.w.offer(a.lot, "trader", post=False, time=_coop_key_time(a.w, 30)),
    ),
    # 404
    "unknown_actor": (404, "unknown_actor", lambda a: a.w.offer(a.lot, "nobody", post=False)),
    "unknown_site": (
        404,
        "unknown_site",
        lambda a: a.w.register_lot("COOP-9001", "site-zz", actor="coop", post=False),
    ),
    "unknown_lot": (
        404,
        "unknown_lot",
        lambda a: a.w.emit(
            {
                "type": "lot.transfer_offered",
                "actor": "coop",
                "lot": "COOP-9999",
                "prev": RANDOM_EVENT,
                "to": "trader",
                "mass_mg": 1000,
            },
            post=False,
        ),
    ),
    "unknown_event_offer": (
        404,
        "unknown_event",
        lambda a: a.w.accept(a.offered, offer=RANDOM_EVENT, post=False),
    ),
    "unknown_flag": (
        404,
        "unknown_flag",
        lambda a: a.w.resolve(a.lot, f"{RANDOM_EVENT}/serious_abuse", post=False),
    ),
    # 409 stale_prev
    "stale_prev": (409, "stale_prev", lambda a: a.w.offer(a.lot, "trader", prev=HEX0, post=False)),
    # 403
    "forbidden_role": (
        403,
        "forbidden_role",
        lambda a: a.w.register_site("site-t", "coop", signer="trader", post=False),
    ),
    "forbidden_role_counterparty": (
        403,
        "forbidden_role",
        lambda a: a.w.offer(a.lot, "auditor", post=False),
    ),
    "not_custodian": (
        403,
        "not_custodian",
        lambda a: a.w.offer(a.lot, "trader2", actor="trader", post=False),
    ),
    "not_operator": (
        403,
        "not_operator",
        lambda a: a.w.register_lot("CPB-9001", "site-a", actor="coop2", post=False),
    ),
    "not_recipient": (
        403,
        "not_recipient",
        lambda a: a.w.accept(a.offered, actor="trader2", post=False),
    ),
    "not_offerer": (
        403,
        "not_offerer",
        lambda a: a.w.cancel(a.offered, actor="trader", post=False),
    ),
    "licence_expired": (
        403,
        "licence_expired",
        lambda a: a.w.register_lot("CPX-0001", "site-x", post=False),
    ),
    "actor_revoked": (403, "actor_revoked", lambda a: a.w.offer(a.lot, "gone", post=False)),
    "wrong_prefix": (
        403,
        "wrong_prefix",
        lambda a: a.w.register_lot("CPB-9002", "site-a", post=False),
    ),
    # other 409
    "offer_pending": (
        409,
        "offer_pending",
        lambda a: a.w.offer(a.offered, "trader2", post=False),
    ),
    "lot_consumed": (409, "lot_consumed", lambda a: a.w.offer(a.consumed, "trader", post=False)),
    "lot_on_hold": (409, "lot_on_hold", lambda a: a.w.offer(a.held, "trader", post=False)),
    "site_red": (409, "site_red", lambda a: a.w.register_lot("COOP-9003", "site-red", post=False)),
    "duplicate_lot": (
        409,
        "duplicate_lot",
        lambda a: a.w.register_lot(a.lot, "site-a", post=False),
    ),
    "duplicate_actor": (409, "duplicate_actor", lambda a: _register(a.w, "coop", ["auditor"])),
    "duplicate_site": (
        409,
        "duplicate_site",
        lambda a: a.w.register_site("site-a", "coop", post=False),
    ),
    "key_reused": (
        409,
        "key_reused",
        lambda a: _register(a.w, "newbie", ["auditor"], new_key=a.w.keys["coop"]),
    ),
    "key_reused_old_key": (
        409,
        "key_reused",
        lambda a: _register(a.w, "newbie", ["auditor"], new_key=a.w.old_keys["trader2"][0]),
    ),
    "prefix_reused": (
        409,
        "prefix_reused",
        lambda a: _register(a.w, "newbie", ["trader"], lot_prefix="COOP-"),
    ),
    "flag_not_open": (
        409,
        "flag_not_open",
        lambda a: a.w.resolve(a.flagged, a.resolved_flag, post=False),
    ),
    "duplicate_event": (
        409,
        "duplicate_event",
        lambda a: factories.alt_signature(a.logged_event, a.w.keys["coop"]),
    ),
    "last_registrar": (409, "last_registrar", lambda a: a.w.revoke("registrar", post=False)),
    "last_registrar_update": (
        409,
        "last_registrar",
        lambda a: a.w.update_actor("registrar", roles=["auditor"], post=False),
    ),
    "holds_lots": (
        409,
        "holds_lots",
        lambda a: a.w.update_actor("coop", roles=["auditor"], post=False),
    ),
    # 422 balance and fineness
    "mass_balance": (
        422,
        "mass_balance",
        lambda a: a.w.split(a.lot, [60_000, 40_001], ids=["COOP-9101", "COOP-9102"], post=False),
    ),
    "fine_gold_balance": (
        422,
        "fine_gold_balance",
        lambda a: a.w.split(a.lot, [100_000], ids=["COOP-9103"], fineness_ppm=800_001, post=False),
    ),
    "fineness_raise": (
        422,
        "fineness_raise",
        lambda a: a.w.assay(a.lot, 900_000, actor="coop", post=False),
    ),
}


def _reg_of(a: Arena, lot: str) -> str:
    """The id of a lot's registration event (a known event that is not an offer)."""
    created = a.w.lot(lot).created_event
    assert created is not None
    return str(created)


# a known event that is not the pending offer (the lot's registration)
CASES["no_pending_offer"] = (
    409,
    "no_pending_offer",
    lambda a: a.w.accept(a.offered, offer=_reg_of(a, a.offered), post=False),
)
# an offer already answered, on a lot with no pending offer
CASES["no_pending_offer_answered"] = (
    409,
    "no_pending_offer",
    lambda a: a.w.accept(a.lot, offer=a.old_offer, actor="trader", post=False),
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_event_refusal_alone_and_in_a_batch(arena: Arena, case: str) -> None:
    status, code, build = CASES[case]
    envelope = build(arena)
    envelope = envelope.envelope if isinstance(envelope, Event) else envelope
    api = arena.api
    refusal(api, lambda: api.post(envelope), status, code)
    # after an envelope already logged (a re-post, which changes nothing): index 1
    refusal(api, lambda: api.batch([arena.logged, envelope]), status, code, index=1)


def test_every_code_of_the_table_is_covered() -> None:
    """The table of section 6, minus what other tests below reach."""
    table = {
        400: {"malformed"},
        401: {"bad_signature", "unknown_key", "key_inactive"},
        403: {
            "forbidden_role",
            "not_custodian",
            "not_operator",
            "not_recipient",
            "not_offerer",
            "licence_expired",
            "actor_revoked",
            "wrong_prefix",
        },
        404: {
            "unknown_actor",
            "unknown_site",
            "unknown_lot",
            "unknown_event",
            "unknown_flag",
            "not_found",
        },
        409: {
            "log_not_started",
            "stale_prev",
            "offer_pending",
            "no_pending_offer",
            "lot_consumed",
            "lot_on_hold",
            "site_red",
            "duplicate_lot",
            "duplicate_actor",
            "duplicate_site",
            "key_reused",
            "prefix_reused",
            "flag_not_open",
            "duplicate_event",
            "last_registrar",
            "holds_lots",
        },
        413: {"too_large"},
        422: {
            "schema",
            "future_time",
            "time_order",
            "mass_balance",
            "fine_gold_balance",
            "fineness_raise",
        },
    }
    covered = {(status, code) for status, code, _ in CASES.values()}
    # reached by the tests below: malformed, not_found, log_not_started, too_large
    covered |= {(400, "malformed"), (404, "not_found"), (409, "log_not_started")}
    covered |= {(413, "too_large")}
    wanted = {(status, code) for status, codes in table.items() for code in codes}
    assert wanted - covered == set()


# ---------------------------------------------------------------------------
# Whole-body errors: sizes and parsing (no index)

MALFORMED = {
    "not UTF-8": (b'{"body": "\xff"}', "UTF-8"),
    "not JSON": (b'{"body": ', "not JSON"),
    "duplicate key": (b'{"body": {}, "body": {}}', "duplicate key"),
    "float": (b'{"body": {"mass_mg": 1.5}}', "float"),
    "exponent": (b'{"body": {"mass_mg": 1e3}}', "float"),
    "integer range": (b'{"body": {"mass_mg": 9007199254740992}}', "integer range"),
    # more digits than Python's int() converts: was an uncaught ValueError (500 internal)
    "integer of 5000 digits": (b'{"body": {"mass_mg": ' + b"1" * 5000 + b"}}", "integer range"),
    "non-NFC": ('{"body": {"name": "Cafe\u0301"}}'.encode(), "NFC"),
    "non-NFC in an array": ('{"body": {"roles": ["e\u0301"]}}'.encode(), "NFC"),
    "non-ASCII key": ('{"body": {"nom\u00e9": 1}}'.encode(), "non-ASCII key"),
    "lone surrogate": (b'{"body": "\\ud800"}', "UTF-8"),
    # section 1, at the edges: below -(2^53 - 1), a key spelt with an escape, a BOM (not
    # UTF-8 JSON, RFC 8259 8.1), and the number constants JSON does not have
    "negative integer range": (b'{"body": {"mass_mg": -9007199254740992}}', "integer range"),
    "escaped duplicate key": (b'{"body": {}, "\\u0062ody": {}}', "duplicate key"),
    "byte-order mark": (b'\xef\xbb\xbf{"body": {}}', "UTF-8"),
    "NaN": (b'{"body": {"mass_mg": NaN}}', "not JSON"),
    "Infinity": (b'{"body": {"mass_mg": -Infinity}}', "not JSON"),
}


@pytest.mark.parametrize("check", sorted(MALFORMED))
@pytest.mark.parametrize("path", ["/v1/events", "/v1/events/batch"])
def test_malformed_names_the_check(arena: Arena, path: str, check: str) -> None:
    data, words = MALFORMED[check]
    if path.endswith("batch"):
        bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
        data = bom + b'{"events": [' + data.removeprefix(bom) + b"]}"
    api = arena.api
    problem = refusal(
        api,
        lambda: api.client.post(path, content=data, headers={"content-type": "application/json"}),
        400,
        "malformed",
    )
    assert words in problem["detail"], problem["detail"]


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b'{"body": "a\x01"}', "Invalid control character at line 1, column 12."),
        (b'{"body": "abc', "Unterminated string starting at line 1, column 10."),
        (b'{"body": ', "Expecting value at line 1, column 10."),
    ],
)
def test_not_json_says_where_once(arena: Arena, data: bytes, detail: str) -> None:
    # the reader's own words for some stops end in "at": the position follows them once
    api = arena.api
    problem = refusal(
        api,
        lambda: api.client.post(
            "/v1/events", content=data, headers={"content-type": "application/json"}
        ),
        400,
        "malformed",
    )
    assert problem["detail"] == f"The request is not JSON: {detail}"


def test_sizes(arena: Arena) -> None:
    api, post = arena.api, arena.api.client.post
    # a single body over 256 KiB is refused before parsing: invalid JSON, yet 413
    too_big = b"{" + b"x" * EVENT_LIMIT
    refusal(api, lambda: post("/v1/events", content=too_big), 413, "too_large")
    # ... and also when no Content-Length announces it (chunked: counted while reading)
    chunks = [b"x" * 65536] * 5
    refusal(api, lambda: post("/v1/events", content=iter(chunks)), 413, "too_large")
    # exactly at the limit: read and parsed (so not JSON: 400)
    at_limit = b"{" + b" " * (EVENT_LIMIT - 2) + b"x"
    assert len(at_limit) == EVENT_LIMIT
    refusal(api, lambda: post("/v1/events", content=at_limit), 400, "malformed")
    # a batch body over 4 MiB, not JSON either: 413
    refusal(
        api, lambda: post("/v1/events/batch", content=b"[" * (BATCH_LIMIT + 1)), 413, "too_large"
    )
    # a batch of 1001 small envelopes (found once parsed; even though they are invalid)
    many = {"events": [{"body": {}}] * (BATCH_COUNT + 1)}
    refusal(api, lambda: post("/v1/events/batch", json=many), 413, "too_large")
    # 1000 is not refused for its count (schema of the first one instead)
    enough = {"events": [{"body": {}}] * BATCH_COUNT}
    refusal(api, lambda: post("/v1/events/batch", json=enough), 422, "schema", index=0)
    # one envelope of a batch over 256 KiB in canonical form: 413 naming it
    huge = copy.deepcopy(arena.logged)
    huge["body"]["note"] = "n" * EVENT_LIMIT
    assert len(canonical(huge)) > EVENT_LIMIT
    batch = {"events": [arena.logged, arena.logged, huge]}
    refusal(api, lambda: post("/v1/events/batch", json=batch), 413, "too_large", index=2)
    # and the same envelope alone is over the body limit: 413
    refusal(api, lambda: api.post(huge), 413, "too_large")


def test_batch_shape(arena: Arena) -> None:
    api, post = arena.api, arena.api.client.post
    refusal(api, lambda: post("/v1/events/batch", json={"events": []}), 422, "schema")
    refusal(api, lambda: post("/v1/events/batch", json=[arena.logged]), 422, "schema")
    refusal(api, lambda: post("/v1/events/batch", json={"event": [arena.logged]}), 422, "schema")
    extra = {"events": [arena.logged], "more": 1}
    refusal(api, lambda: post("/v1/events/batch", json=extra), 422, "schema")
    refusal(api, lambda: post("/v1/events/batch", json={"events": [1]}), 422, "schema", index=0)
    refusal(api, lambda: post("/v1/events", json=[arena.logged]), 422, "schema")
    refusal(api, lambda: post("/v1/events", json="text"), 422, "schema")
    refusal(api, lambda: post("/v1/events", content=b""), 400, "malformed")


# ---------------------------------------------------------------------------
# Paths and query parameters


def test_not_found_paths(arena: Arena) -> None:
    api, get = arena.api, arena.api.client.get
    refusal(api, lambda: get("/nowhere"), 404, "not_found")
    refusal(api, lambda: get("/v1/nowhere"), 404, "not_found")
    refusal(api, lambda: get(f"/v1/events/{RANDOM_EVENT}"), 404, "unknown_event")
    refusal(api, lambda: get("/v1/lots/NOPE-0001"), 404, "unknown_lot")
    refusal(api, lambda: get("/v1/lots/NOPE-0001/events"), 404, "unknown_lot")
    refusal(api, lambda: get("/v1/lots/NOPE-0001/bundle"), 404, "unknown_lot")
    refusal(api, lambda: get("/v1/lots/NOPE-0001/qr.png"), 404, "unknown_lot")
    refusal(api, lambda: get("/v1/lots/NOPE-0001/qr.svg"), 404, "unknown_lot")
    refusal(api, lambda: get("/v1/actors/nobody"), 404, "unknown_actor")
    refusal(api, lambda: get("/v1/sites/site-zz"), 404, "unknown_site")
    # an ``at`` that is not on the lot's own chain
    other = arena.w.head(arena.held)
    refusal(api, lambda: get(f"/v1/lots/{arena.lot}/bundle?at={other}"), 404, "unknown_event")
    problem = check_problem(api.client.delete("/v1/log"), 405, "method_not_allowed")
    assert "DELETE" in problem["detail"]


BAD_QUERIES = [
    "/v1/log/proof/inclusion?index=0&size=100000",  # a size outside the log
    "/v1/log/proof/inclusion?index=5&size=5",  # index not below size
    "/v1/log/proof/inclusion?index=-1&size=1",  # a negative index
    "/v1/log/proof/inclusion?index=0&size=0",
    "/v1/log/proof/inclusion?index=x&size=1",
    "/v1/log/proof/inclusion?size=1",  # index missing
    "/v1/log/proof/consistency?first=0&second=1",
    "/v1/log/proof/consistency?first=3&second=2",
    "/v1/log/proof/consistency?first=1&second=100000",
    "/v1/log/entries?limit=0",
    "/v1/log/entries?limit=-5",
    "/v1/log/entries?start=-1",
    "/v1/actors?limit=0",
    "/v1/actors?cursor=%25%25%25",
    "/v1/actors?cursor=LTE",  # base64 of "-1"
    "/v1/sites?limit=0",
    "/v1/sites?cursor=bm90LWEtbnVtYmVy",  # base64 of "not-a-number"
    "/v1/lots?limit=0",
    "/v1/lots?status=lost",
    "/v1/lots?risk=extreme",
    "/v1/lots?cursor=!!",
    "/v1/lots/COOP-0001/events?limit=0",
    "/v1/lots/COOP-0001/bundle?at=XYZ",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_query_parameters_are_422_schema(arena: Arena, query: str) -> None:
    api = arena.api
    refusal(api, lambda: api.client.get(query), 422, "schema")


# ---------------------------------------------------------------------------
# log_not_started: a server configured with GOLDTRAIL_REGISTRAR_KEY on an empty log


def test_log_not_started_and_its_precedence(make_api: Callable[..., Api]) -> None:
    key = nacl.signing.SigningKey.generate()
    api = make_api(registrar_key=factories.public_key_hex(key))
    assert api.log()["size"] == 0 and api.log()["registrar_key"] is None
    # another log's events (same origin, its own registrar): valid, but not for this log
    world = factories.World(origin=api.settings.origin)
    w = factories.World.standard()
    offer = w.offer(w.register_lot().body["lot"], "trader", post=False)
    refusal(api, lambda: api.post(offer.envelope), 409, "log_not_started")
    refusal(api, lambda: api.batch([offer.envelope]), 409, "log_not_started", index=0)
    # 422 schema comes before: a malformed envelope is schema, even on an empty log
    refusal(api, lambda: api.post({"body": offer.body}), 422, "schema")
    bad = factories.tamper(offer, mass_mg=1)
    # 409 log_not_started comes before 401 bad_signature
    refusal(api, lambda: api.post(bad.envelope), 409, "log_not_started")
    # a self-registration signed by another key than the configured one: 401 unknown_key
    refusal(api, lambda: api.post(world.envelopes()[0]), 401, "unknown_key")
    # the bad signature of a seq-0 candidate is 401 bad_signature (before unknown_key)
    refusal(
        api,
        lambda: api.post(factories.tamper(Event(world.envelopes()[0]), name="X").envelope),
        401,
        "bad_signature",
    )
    # 413 and 400 come before everything
    refusal(
        api,
        lambda: api.client.post("/v1/events", content=b"x" * (EVENT_LIMIT + 1)),
        413,
        "too_large",
    )
    refusal(api, lambda: api.client.post("/v1/events", content=b"{"), 400, "malformed")


# ---------------------------------------------------------------------------
# The order of the checks, pair by pair


def test_precedence_through_http(arena: Arena) -> None:
    a, api = arena, arena.api
    stranger = nacl.signing.SigningKey.generate()

    def refused(envelope: Any, status: int, code: str) -> None:
        env = envelope.envelope if isinstance(envelope, Event) else envelope
        refusal(api, lambda: api.post(env), status, code)

    # 413 (size) before 400 (not JSON) — test_sizes; 400 before 413 (count): not JSON stays 400
    refusal(
        api,
        lambda: api.client.post("/v1/events/batch", content=b'{"events": [' + b"{}," * 1001),
        400,
        "malformed",
    )
    # 413 (an envelope's canonical size) before 422 schema of an earlier envelope
    huge = {"body": {"note": "n" * EVENT_LIMIT}, "signature": {}}
    refusal(api, lambda: api.batch([{"junk": 1}, huge]), 413, "too_large", index=1)
    # 401 bad_signature before 401 unknown_key: a changed body signed by an unknown key
    refused(
        factories.tamper(a.w.offer(a.lot, "trader", post=False, key=stranger), mass_mg=1),
        401,
        "bad_signature",
    )
    # bad_signature before the re-post rule: a logged body under a broken signature
    broken = copy.deepcopy(a.logged)
    broken["signature"]["value"] = "00" * 64
    refused(broken, 401, "bad_signature")
    # unknown_key before 422 time: a stranger's event far in the future
    refused(
        _future(
            a.w,
            lambda: a.w.offer(
                a.lot, "trader", post=False, key=stranger, time=NOW + dt.timedelta(days=9)
            ),
        ),
        401,
        "unknown_key",
    )
    # key_inactive before 404: a revoked actor offering an unknown lot
    refused(
        a.w.emit(
            {
                "type": "lot.transfer_offered",
                "actor": "gone",
                "lot": "GONE-0001",
                "prev": RANDOM_EVENT,
                "to": "trader",
                "mass_mg": 1,
            },
            post=False,
        ),
        401,
        "key_inactive",
    )
    # 422 future_time before 404: an unknown lot in the future
    refused(
        _future(
            a.w,
            lambda: a.w.emit(
                {
                    "type": "lot.transfer_offered",
                    "actor": "coop",
                    "lot": "COOP-9999",
                    "prev": RANDOM_EVENT,
                    "to": "trader",
                    "mass_mg": 1,
                },
                post=False,
                time=NOW + dt.timedelta(hours=1),
            ),
        ),
        422,
        "future_time",
    )
    # the time rule only compares with events that exist: an unknown prev is stale_prev
    refused(
        a.w.offer(a.lot, "trader", prev=RANDOM_EVENT, time=_coop_key_time(a.w, 30), post=False),
        409,
        "stale_prev",
    )
    # 404 unknown_event before 409 stale_prev
    refused(a.w.accept(a.offered, offer=RANDOM_EVENT, prev=HEX0, post=False), 404, "unknown_event")
    # 404 unknown_actor (the recipient) before 409 stale_prev
    refused(a.w.offer(a.lot, "nobody", prev=HEX0, post=False), 404, "unknown_actor")
    # 409 stale_prev before 403: a stranger to the lot with a stale prev
    refused(a.w.offer(a.lot, "trader2", actor="trader", prev=HEX0, post=False), 409, "stale_prev")
    # 403 not_custodian before 409 lot_consumed
    refused(a.w.offer(a.consumed, "trader2", actor="trader", post=False), 403, "not_custodian")
    # 403 signer's role before custody
    smelt = [factories.out("COOP-9006", 1)]
    refused(a.w.process([a.lot], smelt, actor="auditor", post=False), 403, "forbidden_role")
    # 403 licence_expired before wrong_prefix
    refused(a.w.register_lot("COOP-9004", "site-x", post=False), 403, "licence_expired")
    # 403 wrong_prefix before 409 site_red
    refused(a.w.register_lot("CPB-9005", "site-red", post=False), 403, "wrong_prefix")
    # 403 counterparty (actor_revoked) before 409 offer_pending
    refused(a.w.offer(a.offered, "gone", post=False), 403, "actor_revoked")
    # 409 lot_consumed before offer_pending / on hold
    refused(a.w.offer(a.consumed, "trader", post=False), 409, "lot_consumed")
    # 409 lot_on_hold before 422 mass_balance
    refused(a.w.split(a.held, [10**9], ids=["COOP-9201"], post=False), 409, "lot_on_hold")
    # 409 duplicate_lot before 422 mass_balance
    refused(a.w.split(a.lot, [10**9], ids=[a.held], post=False), 409, "duplicate_lot")
    # mass_balance before fine_gold_balance
    refused(
        a.w.split(a.lot, [100_001], ids=["COOP-9202"], fineness_ppm=999_999, post=False),
        422,
        "mass_balance",
    )
    # in a batch, the failing index is the first failure, later ones not reached
    refusal(
        api,
        lambda: api.batch(
            [
                a.logged,
                a.w.offer(a.lot, "trader", prev=HEX0, post=False).envelope,
                {"body": {}},
            ]
        ),
        409,
        "stale_prev",
        index=1,
    )


def test_batch_events_build_on_earlier_ones_then_fail_all_or_nothing(arena: Arena) -> None:
    """A batch whose event 2 fails appends nothing, though events 0 and 1 were valid."""
    a, api = arena, arena.api
    # build against a copy of the mirror so the arena's state stays as it is
    w = copy.deepcopy(a.w, {id(api): api})
    with_batch: list[dict[str, Any]] = []
    w._pending = with_batch
    new_lot = w.register_lot("COOP-9301").envelope
    offer = w.offer("COOP-9301", "trader").envelope
    w._pending = None
    second = w.offer("COOP-9301", "trader2", post=False).envelope
    refusal(api, lambda: api.batch([new_lot, offer, second]), 409, "offer_pending", index=2)
    refusal(api, lambda: api.client.get("/v1/lots/COOP-9301"), 404, "unknown_lot")


def test_refusals_are_counted_in_metrics(arena: Arena) -> None:
    api = arena.api
    before = _refused(api, "stale_prev")
    refusal(
        api,
        lambda: api.post(arena.w.offer(arena.lot, "trader", prev=HEX0, post=False)),
        409,
        "stale_prev",
    )
    assert _refused(api, "stale_prev") == before + 1


def _refused(api: Api, code: str) -> float:
    text = api.client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(f'goldtrail_events_refused_total{{code="{code}"}}'):
            return float(line.split()[-1])
    return 0.0


# ---------------------------------------------------------------------------
# What the database cannot hold never reaches it (found by probing: these were 500s)


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


ODD_REQUESTS = [
    ("/v1/log/entries?start=99999999999999999999", 422, "schema"),
    (f"/v1/actors?cursor={_cursor('99999999999999999999/x')}", 422, "schema"),
    (f"/v1/lots?cursor={_cursor('99999999999999999999/x')}", 422, "schema"),
    (f"/v1/sites?cursor={_cursor('5/' + chr(0))}", 422, "schema"),
    ("/v1/lots?custodian=%00", 422, "schema"),
    ("/v1/lots?site=%00", 422, "schema"),
    ("/v1/actors/%00", 404, "unknown_actor"),
    ("/v1/sites/%00", 404, "unknown_site"),
    ("/v1/events/%00", 404, "unknown_event"),
    ("/v1/lots/%00", 404, "unknown_lot"),
    ("/v1/lots/%00/events", 404, "unknown_lot"),
    ("/v1/lots/%00/bundle", 404, "unknown_lot"),
    ("/v1/lots/%00/qr.png", 404, "unknown_lot"),
]


@pytest.mark.parametrize(("path", "status", "code"), ODD_REQUESTS)
def test_odd_identifiers_are_refused_not_crashed(
    arena: Arena, path: str, status: int, code: str
) -> None:
    api = arena.api
    refusal(api, lambda: api.client.get(path), status, code)


def test_nul_characters_in_events_are_schema_errors(arena: Arena) -> None:
    """A NUL in what an envelope names must be 422 schema, not a database error."""
    api = arena.api
    body = {
        "type": "lot.transfer_offered",
        "actor": "co\u0000op",
        "lot": "X\u0000",
        "prev": "\u0000",
    }
    sig = {"key": "\u0000", "value": "00"}
    for envelope in (
        {"body": body, "signature": arena.logged["signature"]},
        {"body": body, "signature": sig},
    ):
        refusal(api, lambda envelope=envelope: api.post(envelope), 422, "schema")
        refusal(
            api,
            lambda envelope=envelope: api.batch([arena.logged, envelope]),
            422,
            "schema",
            index=1,
        )
    page = api.client.get("/l/%00")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")

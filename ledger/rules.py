"""The rules of PROTOCOL.md sections 2 and 5: who may append what, and what it changes.

``admit`` takes one envelope, runs every check in the order of section 6 and, when the
event is accepted, stages its effects on a ``StagedState``. It reads no clock and no
global: the server passes ``now`` (None for an import or an offline replay), so a replay
of the log reaches exactly the verdicts the server reached.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ledger.errors import (
    ConflictError,
    ForbiddenError,
    LedgerError,
    NotFoundError,
    RuleError,
    SchemaError,
    SignatureError,
)
from ledger.events import FLAG_CLASS, FlagCode, check_body, parse_protocol_time
from ledger.protocol import (
    canonical,
    canonical_parsed,
    sha256,
    split_envelope,
    verify_signature,
)
from ledger.state import (
    CUSTODY_ROLES,
    ActorState,
    Assessment,
    EventRecord,
    FlagState,
    KeyRecord,
    LotState,
    Offer,
    Registration,
    SiteState,
    StagedState,
    shallow_copy,
)

FUTURE_TOLERANCE = dt.timedelta(minutes=5)
MERCURY_WORST = frozenset(
    {"amalgamation_open", "whole_ore_amalgamation", "cyanide_on_mercury_tailings"}
)
OPEN_PROCESSES = frozenset({"splitting", "merging"})
PROCESSING_ROLES = frozenset({"cooperative", "processor", "refiner"})
_REGISTRAR = frozenset({"registrar"})
_REGISTRAR_OR_AUDITOR = frozenset({"registrar", "auditor"})
_COOPERATIVE = frozenset({"cooperative"})
_EXPORTER = frozenset({"exporter"})
SITE_FIELDS = (
    "site",
    "name",
    "operator",
    "country",
    "region",
    "location",
    "deposit",
    "icglr_id",
    "licence",
)
ASSESSMENT_FIELDS = frozenset(
    {
        "v",
        "type",
        "actor",
        "time",
        "site",
        "status",
        "assessed_on",
        "valid_until",
        "cahra",
        "findings",
    }
)


@dataclass
class Admitted:
    """The outcome of admitting one envelope.

    For a new event, its effects are staged; for an exact re-post, ``existing`` is the
    logged event and nothing is staged.
    """

    event_id: str
    envelope: dict[str, Any]
    leaf_data: bytes
    existing: EventRecord | None = None


@dataclass
class _Event:
    """What every handler needs about the event being admitted."""

    id: str
    seq: int
    body: dict[str, Any]
    time: dt.datetime
    signer: ActorState
    #: the UTC date of ``time``, which every date rule uses
    day: dt.date


_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def parse_time(value: str) -> dt.datetime:
    """Parse a protocol timestamp (already validated) as an aware UTC datetime.

    Raises ValueError for anything but ``YYYY-MM-DDTHH:MM:SSZ`` naming a real time.
    """
    parsed = parse_protocol_time(value)
    if parsed is not None:
        return parsed
    match = _TIME.fullmatch(value)
    if match is None:  # not the protocol's form: let strptime give its usual error
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    year, month, day, hour, minute, second = map(int, match.groups())
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


class Prepared(NamedTuple):
    """An envelope whose outer shape passed ``split_envelope`` and whose canonical bytes are
    computed, so that a caller which needs them before ``admit`` (the store to look up
    re-posts, the audit and the verifier to hash leaves) computes them once.

    Make one only with ``prepare``; ``admit`` accepts it in place of the raw envelope and
    runs every check, in the same order, except recomputing these bytes. (A named tuple:
    immutable, and three times cheaper to make than a frozen dataclass.)
    """

    body: dict[str, Any]
    signature: dict[str, str]
    body_bytes: bytes
    digest: bytes
    event_id: str
    leaf_data: bytes
    #: the origin its signature was verified for (set by ``verified`` only)
    verified_for: str | None = None


def prepare(envelope: object, *, parsed: bool = False) -> Prepared:
    """Check the envelope's outer shape and compute its canonical bytes, digest and id.

    ``leaf_data`` is the canonical envelope (RFC 8785 sorts ``body`` before ``signature``).
    ``parsed``: the envelope is exactly as ``parse_strict`` returned it (see
    ``canonical_parsed``). Raises SchemaError as ``split_envelope`` and ``canonical`` do.
    """
    body, sig = split_envelope(envelope)
    return prepare_split(body, sig, parsed=parsed)


def verified(prepared: Prepared, origin: str) -> Prepared:
    """Verify the signature for the log ``origin`` now; return the envelope marked so that
    ``admit`` for the same origin does not verify it a second time.

    Raises SignatureError ``bad_signature`` as ``admit`` would.
    """
    sig = prepared.signature
    verify_signature(origin, prepared.digest, sig["key"], sig["value"])
    # ``prepared._replace(verified_for=origin)`` written out (twice as fast;
    # tests/ledger/test_rules.py checks they agree)
    return Prepared(
        prepared.body,
        sig,
        prepared.body_bytes,
        prepared.digest,
        prepared.event_id,
        prepared.leaf_data,
        origin,
    )


def prepare_split(body: dict[str, Any], sig: dict[str, str], *, parsed: bool = False) -> Prepared:
    """``prepare`` for the two parts ``split_envelope`` returned (a caller that split the
    envelope itself, to tell a shape error from a canonical-form one, does not split it
    again). Raises SchemaError as ``canonical`` does."""
    body_bytes = canonical_parsed(body) if parsed else canonical(body)
    digest = sha256(body_bytes)
    key, value = sig["key"], sig["value"]
    if type(key) is str and type(value) is str:
        # canonical(sig) written out: split_envelope let through only a key and a value in
        # lower-case hex, which RFC 8785 writes as they are
        sig_bytes = b'{"key":"' + key.encode() + b'","value":"' + value.encode() + b'"}'
    else:
        sig_bytes = canonical(sig)
    leaf_data = b'{"body":' + body_bytes + b',"signature":' + sig_bytes + b"}"
    return Prepared(body, sig, body_bytes, digest, digest.hex(), leaf_data)


def _is_seq0_candidate(body: dict[str, Any]) -> bool:
    return (
        body.get("type") == "actor.registered"
        and body.get("actor") == body.get("subject")
        and "registrar" in body.get("roles", [])
    )


def admit(
    state: StagedState,
    envelope: object,
    *,
    origin: str,
    registrar_key: str | None,
    now: dt.datetime | None,
    lenient: bool = False,
) -> Admitted:
    """Check one envelope against the state and stage its effects.

    ``registrar_key`` is the key trusted for seq 0 (None: any self-registration, for a
    verifier without a pinned key); ``now`` enables the future-time rule (None skips it,
    as an import or a replay must); ``lenient`` tolerates what an offline bundle need not
    contain (the recipient of an offer never accepted) and skips the two checks that need
    the whole log (``last_registrar``, ``holds_lots``): a verifier refuses only what it
    can prove wrong. ``envelope`` may be the ``Prepared`` form of an envelope (see
    ``prepare``): the same checks run, without recomputing its canonical bytes.
    Raises a LedgerError subclass carrying the code of the first failed check.
    """
    if isinstance(envelope, Prepared):
        prepared = envelope
        check_body(prepared.body)
    else:
        body_dict, sig = split_envelope(envelope)
        check_body(body_dict)
        prepared = prepare_split(body_dict, sig)
    body_dict, sig = prepared.body, prepared.signature
    digest, eid, leaf_data = prepared.digest, prepared.event_id, prepared.leaf_data
    env = {"body": body_dict, "signature": sig}

    seq = state.size()
    if seq == 0 and not _is_seq0_candidate(body_dict):
        raise ConflictError(
            "log_not_started",
            "The log has not started yet: its first event must be the registrar registering "
            "itself.",
        )
    if prepared.verified_for != origin:
        verify_signature(origin, digest, sig["key"], sig["value"])

    existing = state.event(eid)
    if existing is not None:
        if existing.signature is not None and existing.signature != sig:
            raise ConflictError(
                "duplicate_event",
                "This event is already in the log with a different signature.",
            )
        return Admitted(eid, env, leaf_data, existing)

    time = parse_time(body_dict["time"])
    if seq == 0:
        signer = _seq0_signer(body_dict, sig["key"], registrar_key)
    else:
        signer = _signer(state, body_dict["actor"], sig["key"], time)

    if now is not None and time > now + FUTURE_TOLERANCE:
        raise RuleError(
            "future_time",
            f"The event's time {body_dict['time']} is more than 5 minutes ahead of the "
            "server's clock; check the device's date and time.",
        )
    _check_named_times(state, body_dict, time)

    ev = _Event(eid, seq, body_dict, time, signer, time.date())
    handler = _HANDLERS[body_dict["type"]]
    handler(state, ev, lenient)
    state.add_event(EventRecord(eid, seq, body_dict["time"], body_dict, sig))
    return Admitted(eid, env, leaf_data)


def admit_all(
    state: StagedState,
    envelopes: Iterable[object],
    *,
    origin: str,
    registrar_key: str | None,
    now: dt.datetime | None,
    lenient: bool = False,
    batch: bool = True,
) -> list[Admitted]:
    """Admit envelopes in order against one staged state (all or nothing is the caller's).

    Raises the LedgerError of the first refused envelope, tagged with its ``index`` when
    ``batch`` is true.
    """
    admitted: list[Admitted] = []
    for index, envelope in enumerate(envelopes):
        try:
            admitted.append(
                admit(
                    state,
                    envelope,
                    origin=origin,
                    registrar_key=registrar_key,
                    now=now,
                    lenient=lenient,
                )
            )
        except LedgerError as e:
            if batch:
                e.at(index)
            raise
    return admitted


# ---------------------------------------------------------------------------
# Signer and time checks


def _seq0_signer(body: dict[str, Any], key: str, registrar_key: str | None) -> ActorState:
    if key != body["key"] or (registrar_key is not None and key != registrar_key):
        raise SignatureError(
            "unknown_key",
            "The first event must be signed by the registrar key this server was configured "
            "with, and register that same key.",
        )
    return ActorState(
        id=body["actor"],
        name=body["name"],
        roles=list(body["roles"]),
        country=body["country"],
        registered_seq=0,
        registered_by=body["actor"],
        updated_seq=0,
    )


def _signer(state: StagedState, actor_id: str, key: str, time: dt.datetime) -> ActorState:
    # read as is: handlers only read the signer (an actor they change is read again)
    actor = state.actor_as_is(actor_id)
    record = actor.key_record(key) if actor is not None else None
    if actor is None or record is None:
        raise SignatureError(
            "unknown_key",
            f"The key that signed this event is not a key of '{actor_id}' in this log.",
        )
    if actor.status != "active" or record.ended is not None:
        why = "revoked" if actor.status != "active" else record.ended
        raise SignatureError(
            "key_inactive",
            f"The key that signed this event is no longer valid for '{actor_id}' (it was "
            f"{why}). Events must be signed with the actor's current key.",
        )
    if parse_time(record.since_time) > time:
        raise RuleError(
            "time_order",
            f"The event's time is earlier than the event that gave '{actor_id}' its key.",
        )
    return actor


def _named_events(body: dict[str, Any]) -> Iterable[str]:
    if "prev" in body:
        yield body["prev"]
    for item in body.get("inputs", ()):
        yield item["prev"]
    if "offer" in body:
        yield body["offer"]


def _check_named_times(state: StagedState, body: dict[str, Any], time: dt.datetime) -> None:
    if "prev" in body and "inputs" not in body and "offer" not in body:
        named_events: Iterable[str] = (body["prev"],)
    else:
        named_events = _named_events(body)
    for named in named_events:
        record = state.event(named)
        if record is not None and parse_time(record.time) > time:
            raise RuleError(
                "time_order",
                f"The event's time is earlier than the event {named[:12]}… that it follows.",
            )


# ---------------------------------------------------------------------------
# Shared checks


def _need_lot(state: StagedState, lot_id: str, *, as_is: bool = False) -> LotState:
    """The lot, a copy to change (or, ``as_is``, the stored object, only to read)."""
    lot = state.lot_as_is(lot_id) if as_is else state.lot(lot_id)
    if lot is None:
        raise NotFoundError("unknown_lot", f"There is no lot '{lot_id}' in this log.")
    return lot


def _need_actor(state: StagedState, actor_id: str, *, as_is: bool = False) -> ActorState:
    """The actor, a copy to change (or, ``as_is``, the stored object, only to read)."""
    actor = state.actor_as_is(actor_id) if as_is else state.actor(actor_id)
    if actor is None:
        raise NotFoundError("unknown_actor", f"There is no actor '{actor_id}' in this log.")
    return actor


def _need_site(state: StagedState, site_id: str, *, as_is: bool = False) -> SiteState:
    """The site, a copy to change (or, ``as_is``, the stored object, only to read)."""
    site = state.site_as_is(site_id) if as_is else state.site(site_id)
    if site is None:
        raise NotFoundError("unknown_site", f"There is no site '{site_id}' in this log.")
    return site


def _check_prev(lot: LotState, prev: str) -> None:
    if lot.head != prev:
        raise ConflictError(
            "stale_prev",
            f"Lot '{lot.lot}' has moved on since this event was prepared: its latest event "
            f"is {lot.head[:12]}…, not {prev[:12]}…. Refresh the lot and sign again.",
        )


def _require_role(actor: ActorState, roles: Iterable[str], doing: str) -> None:
    allowed = roles if isinstance(roles, frozenset) else frozenset(roles)
    if allowed.isdisjoint(actor.roles):
        wanted = sorted(allowed)
        raise ForbiddenError(
            "forbidden_role",
            f"'{actor.id}' may not {doing}: that needs the role {' or '.join(wanted)}.",
        )


def _require_custodian(actor: ActorState, lot: LotState, doing: str) -> None:
    if lot.custodian != actor.id:
        raise ForbiddenError(
            "not_custodian",
            f"'{actor.id}' may not {doing} lot '{lot.lot}': it is held by '{lot.custodian}'.",
        )


def _check_licence(actor: ActorState, day: dt.date) -> None:
    if actor.licence_expired_on(day):
        raise ForbiddenError(
            "licence_expired",
            f"The licence of '{actor.id}' expired on {actor.licence['valid_until']}"  # type: ignore[index]
            f" and was not valid on {day.isoformat()}.",
        )


def _check_prefix(actor: ActorState, lot_id: str) -> None:
    if actor.lot_prefix is None or not lot_id.startswith(actor.lot_prefix):
        expected = f"'{actor.lot_prefix}'" if actor.lot_prefix else "a lot prefix"
        raise ForbiddenError(
            "wrong_prefix",
            f"Lot '{lot_id}' must start with {expected}, the prefix given to '{actor.id}'.",
        )


def _check_counterparty(actor: ActorState, doing: str) -> None:
    if actor.status != "active":
        raise ForbiddenError("actor_revoked", f"'{actor.id}' has been revoked and cannot {doing}.")
    if not actor.has_custody_role():
        raise ForbiddenError(
            "forbidden_role", f"'{actor.id}' cannot {doing}: it has no role that may hold gold."
        )


def _check_not_consumed(lot: LotState) -> None:
    if lot.status == "consumed":
        raise ConflictError(
            "lot_consumed",
            f"Lot '{lot.lot}' was used up by processing; it accepts no more events.",
        )


def _check_no_offer(lot: LotState) -> None:
    if lot.offer is not None:
        raise ConflictError(
            "offer_pending",
            f"Lot '{lot.lot}' has a pending offer to '{lot.offer.to}'; it must be accepted, "
            "rejected or cancelled first.",
        )


def _check_not_on_hold(lot: LotState) -> None:
    if lot.hold:
        codes = ", ".join(f.code for f in lot.flags if f.status == "open" and f.class_ == "hold")
        raise ConflictError(
            "lot_on_hold",
            f"Lot '{lot.lot}' is on hold ({codes}) until an auditor resolves the flag.",
        )


def _new_flag(flag_id: str, code: str) -> FlagState:
    """An open flag of ``code``, of the class PROTOCOL.md section 5 gives that code."""
    return FlagState(id=flag_id, code=code, **{"class": FLAG_CLASS[FlagCode(code)]})


def _with_flag(flags: list[FlagState], flag_id: str, code: str) -> list[FlagState]:
    """``flags`` with the flag raised: the same list when it is already there, else a new
    list (``flags`` itself is never changed)."""
    if any(f.id == flag_id for f in flags):
        return flags
    return [*flags, _new_flag(flag_id, code)]


def _discrepant(new: int, mass: int) -> bool:
    return 200 * abs(new - mass) > mass


def _adjust_held(state: StagedState, actor_id: str, delta: int) -> None:
    actor = state.actor_as_is(actor_id)
    if actor is not None:
        # a shallow copy is enough: only held_lots changes, and staged or stored objects
        # are never changed in place (every change is made on a private copy, then put)
        state.put_actor(shallow_copy(actor, held_lots=actor.held_lots + delta))


def _advance(state: StagedState, lot: LotState, ev: _Event, **changes: Any) -> None:
    """Stage the lot's next version, with the event as its head and ``changes`` set: a
    shallow copy, so ``lot`` may be read as is (every changed container, such as a list of
    flags with one more, is a new object; nothing ``lot`` shares is changed)."""
    changes["head"] = ev.id
    changes["events"] = lot.events + 1
    state.put_lot(shallow_copy(lot, **changes))


# ---------------------------------------------------------------------------
# Actors and sites


def _actor_registered(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    if ev.seq != 0:
        _require_role(ev.signer, _REGISTRAR, "register actors")
    if state.actor_as_is(b["subject"]) is not None:
        raise ConflictError("duplicate_actor", f"The actor id '{b['subject']}' is already taken.")
    _check_key_free(state, b["key"])
    if "lot_prefix" in b:
        _check_prefix_free(state, b["lot_prefix"])
    actor = ActorState(
        id=b["subject"],
        name=b["name"],
        roles=list(b["roles"]),
        country=b["country"],
        lot_prefix=b.get("lot_prefix"),
        licence=b.get("licence"),
        profile=b.get("profile"),
        keys=[KeyRecord(key=b["key"], since_seq=ev.seq, since_event=ev.id, since_time=b["time"])],
        registered_seq=ev.seq,
        registered_by=b["actor"],
        updated_seq=ev.seq,
    )
    state.put_actor(actor)
    state.claim_key(b["key"], actor.id)
    if actor.lot_prefix is not None:
        state.claim_prefix(actor.lot_prefix, actor.id)


def _check_key_free(state: StagedState, key: str) -> None:
    if state.key_owner(key) is not None:
        raise ConflictError(
            "key_reused",
            "This public key is or was already used by an actor; every actor needs a new key.",
        )


def _check_prefix_free(state: StagedState, prefix: str) -> None:
    if state.prefix_owner(prefix) is not None:
        raise ConflictError("prefix_reused", f"The lot prefix '{prefix}' is already given.")


def _actor_updated(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    subject = _need_actor(state, b["subject"])
    is_registrar = "registrar" in ev.signer.roles
    if not is_registrar:
        changes_more = set(b) - {"v", "type", "actor", "time", "subject", "profile"}
        if ev.signer.id != subject.id or changes_more:
            raise ForbiddenError(
                "forbidden_role",
                "Only a registrar may update an actor; an actor may update its own profile only.",
            )
    if subject.status != "active":
        raise ForbiddenError(
            "actor_revoked", f"'{subject.id}' has been revoked and cannot be updated."
        )
    new_roles = list(b["roles"]) if "roles" in b else subject.roles
    first_custody = (
        "roles" in b and subject.lot_prefix is None and bool(CUSTODY_ROLES.intersection(new_roles))
    )
    if first_custody and "lot_prefix" not in b:
        raise SchemaError(
            "lot_prefix: required when an actor is first given a role that may hold gold."
        )
    if "lot_prefix" in b and not first_custody:
        raise SchemaError(
            "lot_prefix: may be given only with the first role that may hold gold; a prefix "
            "is never changed."
        )
    if "lot_prefix" in b:
        _check_prefix_free(state, b["lot_prefix"])
    if "roles" in b and not lenient:
        if (
            "registrar" in subject.roles
            and "registrar" not in new_roles
            and state.active_registrars() == [subject.id]
        ):
            raise ConflictError(
                "last_registrar", f"'{subject.id}' is the last active registrar and must stay one."
            )
        removed = CUSTODY_ROLES.intersection(subject.roles) - set(new_roles)
        if removed and subject.held_lots > 0:
            raise ConflictError(
                "holds_lots",
                f"'{subject.id}' still holds {subject.held_lots} lot(s); its roles that hold gold "
                "cannot be removed until they are handed over.",
            )
    for name in ("name", "roles", "lot_prefix", "licence", "profile"):
        if name in b:
            setattr(subject, name, list(b[name]) if name == "roles" else b[name])
    subject.updated_seq = ev.seq
    state.put_actor(subject)
    if "lot_prefix" in b:
        state.claim_prefix(b["lot_prefix"], subject.id)


def _actor_key_rotated(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    subject = _need_actor(state, b["subject"])
    if ev.signer.id != subject.id:
        _require_role(ev.signer, _REGISTRAR, "rotate another actor's key")
    if subject.status != "active":
        raise ForbiddenError(
            "actor_revoked", f"'{subject.id}' has been revoked; its key cannot change."
        )
    _check_key_free(state, b["key"])
    current = subject.current_key()
    if current is not None:
        current.until_seq = ev.seq
        current.ended = "rotated"
    subject.keys.append(
        KeyRecord(key=b["key"], since_seq=ev.seq, since_event=ev.id, since_time=b["time"])
    )
    subject.updated_seq = ev.seq
    state.put_actor(subject)
    state.claim_key(b["key"], subject.id)


def _actor_revoked(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    subject = _need_actor(state, b["subject"])
    _require_role(ev.signer, _REGISTRAR, "revoke actors")
    if subject.status != "active":
        raise ForbiddenError("actor_revoked", f"'{subject.id}' is already revoked.")
    if not lenient and "registrar" in subject.roles and state.active_registrars() == [subject.id]:
        raise ConflictError(
            "last_registrar", f"'{subject.id}' is the last active registrar and cannot be revoked."
        )
    current = subject.current_key()
    if current is not None:
        current.until_seq = ev.seq
        current.ended = "revoked"
    subject.status = "revoked"
    subject.revoked_reason = b["reason"]
    subject.updated_seq = ev.seq
    state.put_actor(subject)


def _site_registered(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    operator = _need_actor(state, b["operator"], as_is=True)
    _require_role(ev.signer, _REGISTRAR, "register sites")
    if operator.status != "active":
        raise ForbiddenError(
            "actor_revoked", f"'{operator.id}' has been revoked and cannot operate a site."
        )
    if "cooperative" not in operator.roles:
        raise ForbiddenError(
            "forbidden_role", f"'{operator.id}' cannot operate a site: it is not a cooperative."
        )
    if state.site_as_is(b["site"]) is not None:
        raise ConflictError("duplicate_site", f"The site id '{b['site']}' is already taken.")
    fields = {name: b[name] for name in SITE_FIELDS if name in b}
    fields["id"] = fields.pop("site")
    state.put_site(SiteState(**fields, registered_seq=ev.seq, registered_event=ev.id))


def _site_assessed(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    site = _need_site(state, b["site"])
    _require_role(ev.signer, _REGISTRAR_OR_AUDITOR, "assess sites")
    site.assessment = Assessment(
        event_id=ev.id,
        seq=ev.seq,
        time=b["time"],
        actor=b["actor"],
        status=b["status"],
        assessed_on=b["assessed_on"],
        valid_until=b["valid_until"],
        cahra=b.get("cahra"),
        findings=list(b.get("findings", [])),
        indicators={k: v for k, v in b.items() if k not in ASSESSMENT_FIELDS},
    )
    site.assessments += 1
    state.put_site(site)


# ---------------------------------------------------------------------------
# Lots


def _lot_registered(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    site = _need_site(state, b["site"], as_is=True)
    _require_role(ev.signer, _COOPERATIVE, "register lots")
    if site.operator != ev.signer.id:
        raise ForbiddenError(
            "not_operator",
            f"Only '{site.operator}', the site's operator, may register lots at '{site.id}'.",
        )
    _check_licence(ev.signer, ev.day)
    _check_prefix(ev.signer, b["lot"])
    status = site.status_on(ev.day)
    if status == "red":
        raise ConflictError(
            "site_red", f"Site '{site.id}' is red (may not produce): no lot can be registered."
        )
    if state.lot_as_is(b["lot"]) is not None:
        raise ConflictError("duplicate_lot", f"The lot id '{b['lot']}' has already been used.")

    producers, decl = b["producers"], b["declarations"]
    fine = b["mass_mg"] * b["fineness_ppm"]
    payment = b.get("payment")
    lot = LotState(
        lot=b["lot"],
        custodian=ev.signer.id,
        mass_mg=b["mass_mg"],
        fineness_ppm=b["fineness_ppm"],
        form=b["form"],
        head=ev.id,
        origins=[site.id],
        origin_lots=[b["lot"]],
        created_seq=ev.seq,
        created_event=ev.id,
        registration=Registration(
            event_id=ev.id,
            site=site.id,
            women=producers["women"],
            men=producers["men"],
            women_led=producers.get("women_led", False),
            fine_product=fine,
            payment=None
            if payment is None
            else {
                "currency": payment["total"]["currency"],
                "total": payment["total"]["amount_minor"],
                "to_women": payment["to_women"]["amount_minor"],
            },
        ),
    )
    codes: list[str] = []
    codes += {"wfcl": ["worst_forms_child_labour"], "non_wfcl": ["child_labour"]}.get(
        decl["child_labour"], []
    )
    if decl["forced_labour"]:
        codes.append("forced_labour")
    if decl["armed_groups"] in ("controls_access", "taxes"):
        codes.append("armed_group_support")
    elif decl["armed_groups"] == "nearby":
        codes.append("armed_groups_nearby")
    if decl["security_forces"] in ("illegal_taxation", "control"):
        codes.append("security_forces_illegal")
    extracted = b["extracted"]
    days = (
        dt.date.fromisoformat(extracted["to"]) - dt.date.fromisoformat(extracted["from"])
    ).days + 1
    if fine > 4_000 * 10**6 * (producers["women"] + producers["men"]) * days:
        codes.append("implausible_volume")
    if b["recovery"] in MERCURY_WORST:
        codes.append("mercury_worst_practice")
    if site.assessment is not None and site.assessment.valid_on(ev.day) and site.assessment.cahra:
        codes.append("cahra_origin")
    if status == "yellow":
        codes.append("site_yellow")
    elif status == "blue":
        codes.append("site_unassessed")
    for code in codes:
        lot.flags = _with_flag(lot.flags, f"{ev.id}/{code}", code)  # a lot made above
    state.put_lot(lot)
    _adjust_held(state, ev.signer.id, +1)


def _lot_transfer_offered(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    lot = _need_lot(state, b["lot"], as_is=True)
    recipient = state.actor_as_is(b["to"])
    if recipient is None and not lenient:
        raise NotFoundError("unknown_actor", f"There is no actor '{b['to']}' in this log.")
    _check_prev(lot, b["prev"])
    _require_custodian(ev.signer, lot, "offer")
    _check_licence(ev.signer, ev.day)
    if recipient is not None:
        _check_counterparty(recipient, "receive lots")
    _check_not_consumed(lot)
    _check_no_offer(lot)
    _check_not_on_hold(lot)
    flags = lot.flags
    if _discrepant(b["mass_mg"], lot.mass_mg):
        flags = _with_flag(flags, f"{ev.id}/mass_discrepancy", "mass_discrepancy")
    offer = Offer(id=ev.id, to=b["to"], mass_mg=b["mass_mg"])
    _advance(state, lot, ev, status="offered", offer=offer, flags=flags)


def _answer(state: StagedState, ev: _Event, *, by_recipient: bool) -> LotState:
    """Checks shared by accept, reject and cancel, up to the pending-offer check; the lot
    is returned as is (only to read)."""
    b = ev.body
    lot = _need_lot(state, b["lot"], as_is=True)
    offer_event = state.event(b["offer"])
    if offer_event is None:
        raise NotFoundError("unknown_event", f"There is no event {b['offer'][:12]}… in this log.")
    _check_prev(lot, b["prev"])
    if by_recipient and ev.body["type"] == "lot.transfer_accepted":
        # only custody roles may hold lots: the recipient may have lost them since the offer
        _require_role(ev.signer, CUSTODY_ROLES, "take custody of lots")
    offer_body = offer_event.body
    if offer_body.get("type") == "lot.transfer_offered" and offer_body.get("lot") == lot.lot:
        if by_recipient and offer_body["to"] != ev.signer.id:
            raise ForbiddenError(
                "not_recipient",
                f"Only '{offer_body['to']}', to whom the lot was offered, may answer this offer.",
            )
        if not by_recipient and offer_body["actor"] != ev.signer.id:
            raise ForbiddenError(
                "not_offerer", f"Only '{offer_body['actor']}', who made the offer, may cancel it."
            )
    if by_recipient and ev.body["type"] == "lot.transfer_accepted":
        _check_licence(ev.signer, ev.day)
    _check_not_consumed(lot)
    if lot.offer is None or lot.offer.id != b["offer"]:
        raise ConflictError(
            "no_pending_offer",
            f"Event {b['offer'][:12]}… is not the pending offer of lot '{lot.lot}'.",
        )
    return lot


def _lot_transfer_accepted(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    lot = _answer(state, ev, by_recipient=True)
    _check_not_on_hold(lot)
    flags = lot.flags
    if _discrepant(b["mass_mg"], lot.mass_mg):
        flags = _with_flag(flags, f"{ev.id}/mass_discrepancy", "mass_discrepancy")
    offerer = state.actor_as_is(lot.custodian)
    if (
        offerer is not None
        and offerer.country != ev.signer.country
        and lot.destination != ev.signer.country
    ):
        code = "undeclared_border_crossing"
        flags = _with_flag(flags, f"{ev.id}/{code}", code)
    previous = lot.custodian
    _advance(
        state,
        lot,
        ev,
        flags=flags,
        custodian=ev.signer.id,
        mass_mg=min(lot.mass_mg, b["mass_mg"]),
        destination=None,
        status="active",
        offer=None,
    )
    _adjust_held(state, previous, -1)
    _adjust_held(state, ev.signer.id, +1)


def _lot_transfer_rejected(state: StagedState, ev: _Event, lenient: bool) -> None:
    lot = _answer(state, ev, by_recipient=True)
    _advance(state, lot, ev, status="active", offer=None)


def _lot_transfer_cancelled(state: StagedState, ev: _Event, lenient: bool) -> None:
    lot = _answer(state, ev, by_recipient=False)
    _advance(state, lot, ev, status="active", offer=None)


def _lot_processed(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    # the inputs are only read; each is staged consumed as a new version at the end
    inputs = [_need_lot(state, item["lot"], as_is=True) for item in b["inputs"]]
    for lot, item in zip(inputs, b["inputs"], strict=True):
        _check_prev(lot, item["prev"])
    if b["process"] not in OPEN_PROCESSES:
        _require_role(ev.signer, PROCESSING_ROLES, f"process gold by {b['process']}")
    for lot in inputs:
        _require_custodian(ev.signer, lot, "process")
    _check_licence(ev.signer, ev.day)
    for out in b["outputs"]:
        _check_prefix(ev.signer, out["lot"])
    for lot in inputs:
        _check_not_consumed(lot)
    for lot in inputs:
        _check_no_offer(lot)
    for lot in inputs:
        _check_not_on_hold(lot)
    for out in b["outputs"]:
        if state.lot_as_is(out["lot"]) is not None:
            raise ConflictError(
                "duplicate_lot", f"The lot id '{out['lot']}' has already been used."
            )
    mass_in = sum(lot.mass_mg for lot in inputs)
    mass_out = sum(out["mass_mg"] for out in b["outputs"])
    if mass_out > mass_in:
        raise RuleError(
            "mass_balance",
            f"The outputs weigh {mass_out} mg but the inputs only {mass_in} mg: processing "
            "cannot make gold.",
        )
    fine_in = sum(lot.mass_mg * lot.fineness_ppm for lot in inputs)
    fine_out = sum(out["mass_mg"] * out["fineness_ppm"] for out in b["outputs"])
    if fine_out > fine_in:
        raise RuleError(
            "fine_gold_balance",
            f"The outputs hold {fine_out // 10**6} mg of fine gold but the inputs only "
            f"{fine_in // 10**6} mg: processing cannot make gold.",
        )

    inherited: dict[str, FlagState] = {}
    for lot in inputs:
        for flag in lot.flags:
            keep = flag.status == "open" or (flag.class_ == "hold" and flag.outcome == "remediated")
            if not keep:
                continue
            seen = inherited.get(flag.id)
            if seen is None or (seen.status != "open" and flag.status == "open"):
                inherited[flag.id] = flag
    if b["process"] in MERCURY_WORST:
        code = "mercury_worst_practice"
        inherited[f"{ev.id}/{code}"] = _new_flag(f"{ev.id}/{code}", code)
    destinations = {lot.destination for lot in inputs}
    destination = destinations.pop() if len(destinations) == 1 else None
    origins = sorted({site for lot in inputs for site in lot.origins})
    origin_lots = sorted({o for lot in inputs for o in lot.origin_lots})

    for lot in inputs:
        _advance(state, lot, ev, status="consumed", offer=None)
    for out in b["outputs"]:
        state.put_lot(
            LotState(
                lot=out["lot"],
                custodian=ev.signer.id,
                mass_mg=out["mass_mg"],
                fineness_ppm=out["fineness_ppm"],
                form=out["form"],
                bar=out.get("bar"),
                head=ev.id,
                origins=origins,
                origin_lots=origin_lots,
                flags=[f.model_copy() for f in inherited.values()],
                destination=destination,
                created_seq=ev.seq,
                created_event=ev.id,
            )
        )
    _adjust_held(state, ev.signer.id, len(b["outputs"]) - len(inputs))


def _lot_assayed(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    lot = _need_lot(state, b["lot"], as_is=True)
    _check_prev(lot, b["prev"])
    if "assayer" not in ev.signer.roles:
        _require_custodian(ev.signer, lot, "assay")
    _check_not_consumed(lot)
    _check_no_offer(lot)
    new = b["fineness_ppm"]
    if lot.custodian == ev.signer.id and new > lot.fineness_ppm:
        raise RuleError(
            "fineness_raise",
            f"The holder of lot '{lot.lot}' cannot raise its fineness ({lot.fineness_ppm} → "
            f"{new} ppm); only an independent assayer can.",
        )
    flags, mass = lot.flags, lot.mass_mg
    if "mass_mg" in b:
        if _discrepant(b["mass_mg"], lot.mass_mg):
            flags = _with_flag(flags, f"{ev.id}/mass_discrepancy", "mass_discrepancy")
        mass = min(lot.mass_mg, b["mass_mg"])
    if new - lot.fineness_ppm > 50_000:
        flags = _with_flag(flags, f"{ev.id}/fineness_discrepancy", "fineness_discrepancy")
    _advance(state, lot, ev, flags=flags, mass_mg=mass, fineness_ppm=new)


def _lot_exported(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    lot = _need_lot(state, b["lot"], as_is=True)
    _check_prev(lot, b["prev"])
    _require_role(ev.signer, _EXPORTER, "export gold")
    _require_custodian(ev.signer, lot, "export")
    _check_licence(ev.signer, ev.day)
    _check_not_consumed(lot)
    _check_no_offer(lot)
    _check_not_on_hold(lot)
    _advance(state, lot, ev, destination=b["destination"], exported=True)


def _lot_flagged(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    lot = _need_lot(state, b["lot"], as_is=True)
    _check_prev(lot, b["prev"])
    if not {"auditor", "registrar"}.intersection(ev.signer.roles):
        _require_custodian(ev.signer, lot, "flag")
    _check_not_consumed(lot)
    flags = _with_flag(lot.flags, f"{ev.id}/{b['code']}", b["code"])
    _advance(state, lot, ev, flags=flags)


def _lot_flag_resolved(state: StagedState, ev: _Event, lenient: bool) -> None:
    b = ev.body
    lot = _need_lot(state, b["lot"], as_is=True)
    flag = lot.flag(b["flag"])
    if flag is None:
        raise NotFoundError("unknown_flag", f"Lot '{lot.lot}' carries no flag {b['flag']}.")
    _check_prev(lot, b["prev"])
    _require_role(ev.signer, _REGISTRAR_OR_AUDITOR, "resolve flags")
    _check_not_consumed(lot)
    if flag.status != "open":
        raise ConflictError(
            "flag_not_open", f"Flag {flag.code} of lot '{lot.lot}' is already resolved."
        )
    resolved = shallow_copy(flag, status="resolved", outcome=b["outcome"])
    flags = [resolved if f is flag else f for f in lot.flags]
    _advance(state, lot, ev, flags=flags)


_HANDLERS = {
    "actor.registered": _actor_registered,
    "actor.updated": _actor_updated,
    "actor.key_rotated": _actor_key_rotated,
    "actor.revoked": _actor_revoked,
    "site.registered": _site_registered,
    "site.assessed": _site_assessed,
    "lot.registered": _lot_registered,
    "lot.transfer_offered": _lot_transfer_offered,
    "lot.transfer_accepted": _lot_transfer_accepted,
    "lot.transfer_rejected": _lot_transfer_rejected,
    "lot.transfer_cancelled": _lot_transfer_cancelled,
    "lot.processed": _lot_processed,
    "lot.assayed": _lot_assayed,
    "lot.exported": _lot_exported,
    "lot.flagged": _lot_flagged,
    "lot.flag_resolved": _lot_flag_resolved,
}

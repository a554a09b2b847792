"""Offline verification of a provenance bundle (PROTOCOL.md section 7).

Its only inputs are the bundle's bytes, the log's verifier key the buyer trusts and,
optionally, a pinned registrar key. Flags, risk, origins and the gender summary are
recomputed by replaying the rules over the bundle's events, never copied from a server.
Nothing is "mostly verified": any failure makes the verdict false.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from ledger import gcpause
from ledger.checkpoint import Checkpoint, open_checkpoint, parse_verifier_key
from ledger.errors import LedgerError, MalformedError, SignatureError, VerificationError
from ledger.merkle import HASH_SIZE, leaf_hash, node_hash, verify_inclusion
from ledger.protocol import canonical, event_id, parse_strict
from ledger.reports import MIN_GROUP
from ledger.rules import Prepared, admit, prepare, verified
from ledger.state import (
    CUSTODY_ROLES,
    ActorState,
    LotState,
    MemoryState,
    Registration,
    SiteState,
    StagedState,
)
from ledger.views import lot_view

BUNDLE_FORMAT = "goldtrail-bundle/1"
_HASH_HEX = re.compile(r"[0-9a-f]{64}")  # section 1: a hash inside JSON


@dataclass
class Failure:
    """One thing that did not verify, with the entry it concerns (if any)."""

    reason: str
    seq: int | None = None
    event_id: str | None = None

    def __str__(self) -> str:
        where = f"entry seq {self.seq}" if self.seq is not None else "bundle"
        if self.event_id:
            where += f" (event {self.event_id[:12]}…)"
        return f"{where}: {self.reason}"


@dataclass
class TimelineItem:
    """One event of the lot's provenance, in log order.

    ``details`` says what the event did, from its verified body (section 5 fields): the
    recipient of an offer (``to``, ``to_name``), a mass weighed (``mass_mg``), a process and
    its ``outputs``, an assay's ``method`` and ``fineness_ppm``, an export's
    ``destination``, a flag's ``code``, a resolution's ``flag`` and ``outcome``, a
    registration's ``site`` (``site_name``), ``form``, ``mass_mg`` and ``fineness_ppm``.
    Never free text, prices or a seller's sex.
    """

    seq: int
    event_id: str
    time: str
    type: str
    actor: str
    actor_name: str
    lots: list[str]
    on_own_chain: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """The verdict on a bundle and what was recomputed from it."""

    ok: bool
    lot: str | None
    head: str | None
    label_at: str | None
    failures: list[Failure] = field(default_factory=list)
    origin: str | None = None
    checkpoint_size: int | None = None
    state: dict[str, Any] | None = None
    timeline: list[TimelineItem] = field(default_factory=list)
    after_label: list[TimelineItem] = field(default_factory=list)
    sites: list[dict[str, Any]] = field(default_factory=list)
    #: per payment currency, the smallest group of people a payment figure in it concerns
    #: (over the origin registrations paid in it, the fewest women or men of a team that has
    #: any): a report shows a figure only for a group of at least 5 (section 7)
    payment_groups: dict[str, int] = field(default_factory=dict)

    def payment_shown(self, currency: str) -> bool:
        """Whether the lot's payment figures in ``currency`` may be shown: only when they
        concern groups of at least ``MIN_GROUP`` people (``payment_groups``)."""
        return self.payment_groups.get(currency, 0) >= MIN_GROUP

    def went_into(self) -> list[str]:
        """For a lot consumed by processing (its own chain's last event), the other lots
        that processing made: where its gold went."""
        if self.state is None or self.state.get("status") != "consumed":
            return []
        last = next((t for t in reversed(self.timeline) if t.on_own_chain), None)
        if last is None or last.type != "lot.processed":
            return []
        return [str(o["lot"]) for o in last.details.get("outputs", []) if o["lot"] != self.lot]

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON."""
        return {
            "ok": self.ok,
            "lot": self.lot,
            "head": self.head,
            "label_at": self.label_at,
            "origin": self.origin,
            "checkpoint_size": self.checkpoint_size,
            "failures": [
                {"seq": f.seq, "event_id": f.event_id, "reason": f.reason} for f in self.failures
            ],
            "state": self.state,
            "timeline": [vars(t) for t in self.timeline],
            "after_label": [vars(t) for t in self.after_label],
            "sites": self.sites,
            "payment_groups": self.payment_groups,
        }


def verify_bundle(
    bundle: bytes | dict[str, Any],
    log_key: str,
    registrar_key: str | None = None,
    *,
    lot: str | None = None,
    label_at: str | None = None,
) -> Report:
    """Verify a bundle against the trusted log verifier key and an optional registrar key.

    ``lot`` and ``label_at``, when given, are what the buyer asked for (a label's QR code
    holds ``/l/{lot}?at={label_at}``): a bundle for another lot, or whose ``label_at`` is
    not that event, does not verify, however genuine (section 7: ``label_at`` echoes
    ``?at=``).

    Never raises for a bad bundle: every problem is a Failure in the returned Report.
    The cyclic garbage collector is paused meanwhile, as for an append or an audit
    (``ledger.gcpause``): the parsed bundle and the replay make no reference cycles.
    """
    with gcpause.paused():
        return _verify_bundle(bundle, log_key, registrar_key, lot, label_at)


def _verify_bundle(
    bundle: bytes | dict[str, Any],
    log_key: str,
    registrar_key: str | None,
    lot: str | None = None,
    label_at: str | None = None,
) -> Report:
    try:
        data = parse_strict(bundle) if isinstance(bundle, bytes) else bundle
    except MalformedError as e:
        # the strict reader speaks of "the request" (it reads the API's too): here, a file
        detail = e.detail.replace("The request", "It", 1)
        return Report(False, None, None, None, [Failure(f"the bundle is not valid JSON: {detail}")])
    if not isinstance(data, dict):
        return Report(False, None, None, None, [Failure("the bundle is not a JSON object")])
    report = Report(
        ok=False,
        lot=_str(data.get("lot")),
        head=_str(data.get("head")),
        label_at=_str(data.get("label_at")),
    )
    with contextlib.suppress(_Stop):
        # a bundle read here is exactly as the strict reader returned it
        if lot is not None and report.lot != lot:
            _fail(report, f"the bundle is for lot {report.lot!r}, not the label's {lot!r}")
        if label_at is not None and report.label_at != label_at:
            given = "null" if report.label_at is None else f"{report.label_at[:12]}…"
            _fail(
                report, f"the bundle's label_at is {given}, not the label's event {label_at[:12]}…"
            )
        _verify(data, log_key, registrar_key, report, parsed=isinstance(bundle, bytes))
    report.ok = not report.failures
    return report


class _Stop(Exception):
    """Verification cannot go on; the failure is already recorded."""


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _fail(report: Report, reason: str, seq: int | None = None, eid: str | None = None) -> None:
    report.failures.append(Failure(reason, seq, eid))


def _verify(
    data: dict[str, Any],
    log_key: str,
    registrar_key: str | None,
    report: Report,
    *,
    parsed: bool,
) -> None:
    if data.get("format") != BUNDLE_FORMAT:
        _fail(report, f"unknown bundle format {data.get('format')!r}, expected {BUNDLE_FORMAT}")
        raise _Stop
    if "label_at" not in data:
        _fail(report, "the bundle has no label_at: it is the label's event id, or null")
        raise _Stop
    if data.get("label_at") is not None and report.label_at is None:
        _fail(report, "the bundle's label_at is neither an event id nor null")
        raise _Stop
    if report.lot is None or report.head is None:
        _fail(report, "the bundle does not name its lot and head")
        raise _Stop

    # 1. the checkpoint, opened with the key the buyer trusts
    try:
        checkpoint = open_checkpoint(str(data.get("checkpoint", "")), log_key)
    except VerificationError as e:
        _fail(report, f"the checkpoint does not verify with the trusted log key: {e.detail}")
        raise _Stop from e
    report.origin, report.checkpoint_size = checkpoint.origin, checkpoint.size
    log = data.get("log") if isinstance(data.get("log"), dict) else {}
    assert isinstance(log, dict)
    if log.get("origin") != checkpoint.origin:
        _fail(
            report,
            f"the bundle's origin {log.get('origin')!r} is not the checkpoint's "
            f"{checkpoint.origin!r}",
        )
    if not _same_verifier_key(log.get("verifier_key"), log_key):
        _fail(report, "the bundle's verifier_key is not the trusted log key")

    # 2. every entry's inclusion proof
    prepared: dict[int, Prepared] = {}
    entries = _entries(data, checkpoint, report, prepared, parsed)

    # 3 and 4. signatures, keys rooted at seq 0, and every rule, by replaying the entries
    if not entries or entries[0][0] != 0:
        _fail(report, "the bundle does not start with the registrar's self-registration at seq 0")
        raise _Stop
    # the key seq 0 is signed with, when its envelope is well shaped (else the replay
    # refuses it in its turn, as any malformed entry)
    ready0 = prepared.get(0)
    seq0_key = ready0.signature["key"] if ready0 is not None else None
    if registrar_key is not None and seq0_key is not None and seq0_key != registrar_key:
        _fail(
            report,
            f"the registrar at seq 0 signs with {seq0_key[:16]}…, not the pinned "
            f"registrar key {registrar_key[:16]}…",
            0,
            entries[0][2],
        )
    if seq0_key is not None and log.get("registrar_key") != seq0_key:
        _fail(report, "the bundle's registrar_key is not the key of seq 0")
    # one staged state over the whole bundle, as a MemoryLedger appending the entries one
    # by one would reach (without the Merkle tree it keeps, which nothing here reads)
    # every signature first, in one loop, as the signature worker checks a batch's: the
    # verifier's tables stay in the cache
    for seq, ready in prepared.items():
        try:
            prepared[seq] = verified(ready, checkpoint.origin)
        except SignatureError:
            continue  # left unmarked: the replay checks it in its turn and refuses it there
    state = MemoryState()
    staged = StagedState(state)
    by_id: dict[str, tuple[int, dict[str, Any]]] = {}
    #: lot.registered event id -> its site as the log stood then (a site is never changed
    #: in place, so the object kept is that version; later assessments make new ones)
    registered_at: dict[str, SiteState | None] = {}
    #: offers replayed while the bundle held no actor they were made to: (seq, id, actor)
    unknown_recipients: list[tuple[int, str, str]] = []
    #: updates that removed custody roles from an actor: (seq, id, actor)
    removals: list[tuple[int, str, str]] = []
    # who held which lot when matters only to a bundle that changes roles (most do not)
    custody = _Custody() if any(_sets_roles(envelope) for _, envelope, _ in entries) else None
    for seq, envelope, eid in entries:
        holder = _custodian_losing_roles(staged, envelope) if custody is not None else None
        try:
            admitted = admit(
                staged,
                prepared.get(seq, envelope),
                origin=checkpoint.origin,
                registrar_key=registrar_key or seq0_key,
                now=None,
                lenient=True,
            )
        except LedgerError as e:
            _fail(report, f"refused by the rules ({e.code}): {e.detail}", seq, eid)
            raise _Stop from e
        if admitted.existing is not None:
            # a re-post is answered with its first receipt, never appended again (section 2)
            _fail(report, f"the event is already in the log at seq {by_id[eid][0]}", seq, eid)
            raise _Stop
        body = envelope["body"]
        by_id[eid] = (seq, body)
        if body["type"] == "lot.registered":
            registered_at[eid] = staged.site_as_is(body["site"])
        elif body["type"] == "lot.transfer_offered" and staged.actor_as_is(body["to"]) is None:
            unknown_recipients.append((seq, eid, body["to"]))
        elif holder is not None and CUSTODY_ROLES.intersection(holder.roles) - set(body["roles"]):
            removals.append((seq, eid, holder.id))
        if custody is not None:
            custody.record(staged, seq, body)
    state.apply(staged.changes)
    _check_what_the_whole_bundle_proves(
        report,
        state,
        unknown_recipients,
        custody.proven_holdings(removals, report.lot) if custody is not None else [],
    )

    # 4. the provenance graph from head is complete back to registrations
    lot = state.lots.get(report.lot)
    if lot is None:
        _fail(report, f"the bundle holds no event creating lot {report.lot}")
        raise _Stop
    if lot.head != report.head:
        _fail(
            report,
            f"the lot's last event in the bundle is {lot.head[:12]}…, not the "
            f"bundle's head {report.head[:12]}…",
        )
    ancestry = _ancestry(report.head, by_id, report)
    # a set: the timeline asks of every event of the provenance whether it is on the chain
    own_chain = set(_own_chain(report.lot, report.head, by_id))
    if report.label_at is not None and report.label_at not in own_chain:
        _fail(report, f"the label's event {report.label_at[:12]}… is not on the lot's own chain")
    if report.failures:
        raise _Stop

    # 5. what the buyer is shown, recomputed from the replay
    report.state = lot_view(_AsIs(state), lot)
    report.timeline = [
        _timeline_item(state, eid, by_id, eid in own_chain)
        for eid in sorted(ancestry, key=lambda e: by_id[e][0])
    ]
    if report.label_at is not None:
        label_seq = by_id[report.label_at][0]
        report.after_label = [t for t in report.timeline if t.on_own_chain and t.seq > label_seq]
    report.sites = _origin_sites(state, lot, by_id, registered_at)
    report.payment_groups = _payment_groups([by_id[e][1] for e in ancestry])


def _sets_roles(envelope: dict[str, Any]) -> bool:
    """Whether the envelope is an ``actor.updated`` that sets ``roles`` (with a subject)."""
    body = envelope.get("body")
    return (
        isinstance(body, dict)
        and body.get("type") == "actor.updated"
        and "roles" in body
        and isinstance(body.get("subject"), str)
    )


def _custodian_losing_roles(staged: StagedState, envelope: dict[str, Any]) -> ActorState | None:
    """For an ``actor.updated`` that sets ``roles``, its subject as it stands before it (not
    a copy: the update stages a new version), else None."""
    if not _sets_roles(envelope):
        return None
    return staged.actor_as_is(envelope["body"]["subject"])


def _check_what_the_whole_bundle_proves(
    report: Report,
    state: MemoryState,
    offers: list[tuple[int, str, str]],
    removals: list[tuple[int, str, str, str]],
) -> None:
    """Refuse, once every entry is replayed, what only later entries prove wrong; in seq
    order, each entry with the code the server refuses it with.

    The replay lets through two refusals of section 5 that a bundle alone cannot always
    prove, since it holds only the lots of one provenance and the actors that signed it:

    - an offer to an actor the bundle does not hold (section 7 lets a bundle leave out the
      recipient of an offer never accepted). But a bundle holding that actor holds all its
      ``actor.*`` events, its registration included, and an actor is registered once:
      registered after the offer, it did not exist when the lot was offered to it
      (404 ``unknown_actor``);
    - an update removing the custody roles of an actor that was then custodian of a lot of
      the bundle (the bundle does not say whether it held others, nor where the siblings of
      its lots went). It held that lot then if the lot's chain goes on later from the head
      it had then (every event names its lot's head in ``prev``), or if that head is the
      bundle's head (409 ``holds_lots``).
    """
    found: list[tuple[int, str, str]] = []
    for seq, eid, recipient in offers:
        actor = state.actors.get(recipient)
        if actor is not None:
            found.append(
                (
                    seq,
                    eid,
                    f"refused by the rules (unknown_actor): There was no actor '{recipient}' "
                    "in this log when the lot was offered to it; it was registered only "
                    f"later, at seq {actor.registered_seq}.",
                )
            )
    for seq, eid, holder, lot_id in removals:
        found.append(
            (
                seq,
                eid,
                f"refused by the rules (holds_lots): '{holder}' still held lot "
                f"'{lot_id}' when its roles that hold gold were removed; they can be "
                "removed only once its lots are handed over.",
            )
        )
    for seq, eid, reason in sorted(found):
        _fail(report, reason, seq, eid)
    if found:
        raise _Stop


class _Custody:
    """Who held each lot of the bundle, and from when to when, as the replay went.

    A lot stays as an event left it (its custodian, consumed or not) until the next event
    on its chain: a *stretch* of custody from that event's seq to the next's. Removals of
    custody roles are then checked against these stretches once the replay is over, by
    bisection, so that checking them costs no more than the bundle has entries (a scan of
    every lot at every removal grew with their product: a hostile bundle of 6000 lots and
    6000 removals took 7 s more).
    """

    def __init__(self) -> None:
        #: lot -> (seq of its last event, its custodian then, consumed)
        self.current: dict[str, tuple[int, str, bool]] = {}
        #: actor -> the ended stretches it held lots, as (from seq, to seq, lot)
        self.ended: dict[str, list[tuple[int, int, str]]] = {}

    def record(self, staged: StagedState, seq: int, body: dict[str, Any]) -> None:
        """Note the lots a replayed event touched, as they now stand."""
        touched = [body["lot"]] if "lot" in body and body["type"].startswith("lot.") else []
        touched += [item["lot"] for item in body.get("inputs", ())]
        touched += [item["lot"] for item in body.get("outputs", ())]
        for lot_id in touched:
            lot = staged.lot_as_is(lot_id)
            if lot is None:
                continue
            before = self.current.get(lot_id)
            if before is not None and not before[2]:
                self.ended.setdefault(before[1], []).append((before[0], seq, lot_id))
            self.current[lot_id] = (seq, lot.custodian, lot.status == "consumed")

    def proven_holdings(
        self, removals: list[tuple[int, str, str]], head_lot: str | None
    ) -> list[tuple[int, str, str, str]]:
        """The removals made while their subject provably held a lot: (seq, id, actor, lot).

        It held a lot then if the lot's chain goes on later from the head it had then
        (a stretch that ended after the removal), or if that head is the bundle's head (the
        bundle's lot, not consumed, as its last event left it)."""
        stretches = {actor: list(items) for actor, items in self.ended.items()}
        last = self.current.get(head_lot) if head_lot is not None else None
        if last is not None and not last[2]:
            stretches.setdefault(last[1], []).append((last[0], _NEVER, str(head_lot)))
        #: actor -> (stretch starts, sorted; the longest-lasting stretch among those that
        #: start at or before each)
        index: dict[str, tuple[list[int], list[tuple[int, str]]]] = {}
        for actor, items in stretches.items():
            items.sort()
            starts: list[int] = []
            longest: list[tuple[int, str]] = []
            best = (-1, "")
            for start, end, lot_id in items:
                best = max(best, (end, lot_id), key=lambda b: b[0])
                starts.append(start)
                longest.append(best)
            index[actor] = (starts, longest)
        proven = []
        for seq, eid, actor in removals:
            starts, longest = index.get(actor, ([], []))
            at = bisect.bisect_left(starts, seq) - 1  # the stretches that began before it
            if at >= 0 and longest[at][0] > seq:
                proven.append((seq, eid, actor, longest[at][1]))
        return proven


_NEVER = 2**63  # the end of a stretch still going on when the bundle ends


def _same_verifier_key(named: object, trusted: str) -> bool:
    """Whether the bundle's ``log.verifier_key`` is the trusted key (which has opened the
    checkpoint, so it parses): the same name, key id and key, however the id's hex is
    cased."""
    if not isinstance(named, str):
        return False
    try:
        return parse_verifier_key(named) == parse_verifier_key(trusted)
    except VerificationError:
        return False


def _proof_hashes(proof: list[Any]) -> list[bytes]:
    """The hashes of a bundle entry's proof, each 64 lowercase hex characters (section 1).

    Raises ValueError naming the first that is not.
    """
    hashes = []
    for position, item in enumerate(proof):
        if not (isinstance(item, str) and _HASH_HEX.fullmatch(item)):
            raise ValueError(f"proof hash {position} is not 64 lowercase hex characters")
        hashes.append(bytes.fromhex(item))
    return hashes


def _payment_groups(bodies: list[dict[str, Any]]) -> dict[str, int]:
    """See ``Report.payment_groups``: ``to_women`` is the women's pay, ``total − to_women``
    the men's, so each concerns one sex of one team."""
    groups: dict[str, int] = {}
    for body in bodies:
        payment = body.get("payment")
        if body["type"] != "lot.registered" or not isinstance(payment, dict):
            continue
        producers = body["producers"]
        smallest = min(
            (n for n in (producers.get("women", 0), producers.get("men", 0)) if n), default=0
        )
        currency = payment["total"]["currency"]
        groups[currency] = min(groups.get(currency, smallest), smallest)
    return groups


class _AsIs:
    """The replayed state's actors and lots as they are, not copies: the report only reads
    them."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state

    def actor(self, actor_id: str) -> ActorState | None:
        """The actor, or None."""
        return self.state.actors.get(actor_id)

    def lot(self, lot_id: str) -> LotState | None:
        """The lot, or None."""
        return self.state.lots.get(lot_id)


def _entries(
    data: dict[str, Any],
    checkpoint: Checkpoint,
    report: Report,
    prepared: dict[int, Prepared],
    parsed: bool,
) -> list[tuple[int, dict[str, Any], str]]:
    """The entries whose inclusion proofs hold, as (seq, envelope, event id); ``prepared``
    gets the canonical form of each well-shaped envelope, computed once for the leaf hash
    and the replay (``parsed``: the bundle is as ``parse_strict`` returned it)."""
    raw = data.get("entries")
    if not isinstance(raw, list):
        _fail(report, "the bundle has no list of entries")
        raise _Stop
    out: list[tuple[int, dict[str, Any], str]] = []
    last = -1
    paths = _ProvenPaths(checkpoint.size, checkpoint.root)
    for item in raw:
        if not (
            isinstance(item, dict)
            and type(item.get("seq")) is int  # not a bool: JSON false is not seq 0
            and isinstance(item.get("envelope"), dict)
            and isinstance(item.get("proof"), list)
        ):
            _fail(report, "an entry is not {seq, envelope, proof}")
            raise _Stop
        seq, envelope = item["seq"], item["envelope"]
        try:
            ready: Prepared | None = prepare(envelope, parsed=parsed)
        except LedgerError:
            ready = None  # checked as it is: the replay refuses it in its turn
        if ready is not None:
            eid: str | None = ready.event_id
        else:
            body = envelope.get("body")
            try:
                eid = event_id(body) if isinstance(body, dict) else None
            except LedgerError:  # a body JSON cannot hold (a bundle given as a dict)
                eid = None
        if seq <= last:
            _fail(report, "entries are not sorted by seq, each once", seq, eid)
        last = max(last, seq)
        if not 0 <= seq < checkpoint.size:
            _fail(
                report,
                f"seq {seq} is outside the checkpoint's tree of size {checkpoint.size}",
                seq,
                eid,
            )
            continue
        try:
            # a prepared envelope's leaf_data is exactly canonical(envelope)
            leaf = ready.leaf_data if ready is not None else None
            if leaf is None or not paths.holds(leaf_hash(leaf), seq, item["proof"]):
                # refused, or not sure: the reference check decides, with its own message
                proof = _proof_hashes(item["proof"])
                if leaf is None:
                    leaf = canonical(envelope)
                verify_inclusion(leaf_hash(leaf), seq, checkpoint.size, proof, checkpoint.root)
        except (ValueError, TypeError, LedgerError) as e:
            reason = e.detail if isinstance(e, LedgerError) else str(e)
            _fail(report, f"the inclusion proof does not match the checkpoint: {reason}", seq, eid)
            continue
        if eid is None:
            _fail(report, "the entry has no body", seq)
            continue
        out.append((seq, envelope, eid))
        if ready is not None:
            prepared[seq] = ready
    if report.failures:
        raise _Stop
    return out


class _ProvenPaths:
    """The inclusion proofs of one tree that reached its root, to check the next faster.

    ``holds`` walks a proof exactly as ``ledger.merkle.verify_inclusion`` does; what is
    left of a walk depends only on its position ``(fn, sn)``, the hash reached and the
    proof hashes still to fold, so when these equal those of a proof that reached the root,
    this one reaches it too. Entries of a bundle share most of their audit paths, so most
    walks stop after a step or two, and only the hashes walked are decoded from hex.
    """

    def __init__(self, size: int, root: bytes) -> None:
        self.size, self.root = size, root
        #: (fn, sn, hash reached) -> the proof hashes (as given) still folded from there to
        #: the root: each 64 lowercase hex characters (section 1), decoded
        self.proven: dict[tuple[int, int, bytes], list[Any]] = {}

    def holds(self, leaf: bytes, index: int, proof: list[Any]) -> bool:
        """True if ``verify_inclusion`` accepts the proof whose hashes are ``proof``'s items,
        each 64 lowercase hex characters (``_proof_hashes``); False if it may not, or an
        item is not such a hash (the caller then decodes them all with ``_proof_hashes``
        and the reference check gives the verdict)."""
        if not 0 <= index < self.size or len(self.root) != HASH_SIZE or len(leaf) != HASH_SIZE:
            return False
        fn, sn, digest = index, self.size - 1, leaf
        walked: list[tuple[tuple[int, int, bytes], int]] = []
        for step, item in enumerate(proof):
            state = (fn, sn, digest)
            rest = self.proven.get(state)
            if rest is not None and rest == proof[step:]:
                break  # the same items as a proof that decoded and reached the root
            walked.append((state, step))
            if sn == 0:
                return False
            if not (type(item) is str and _HASH_HEX.fullmatch(item)):
                return False  # section 1: a hash is 64 lowercase hex characters
            sibling = bytes.fromhex(item)
            if fn & 1 or fn == sn:
                digest = node_hash(sibling, digest)
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
            else:
                digest = node_hash(digest, sibling)
            fn >>= 1
            sn >>= 1
        else:
            if sn != 0 or digest != self.root:
                return False
        for state, step in walked:
            self.proven[state] = proof[step:]
        return True


def _links(body: dict[str, Any]) -> list[str]:
    links = [body["prev"]] if "prev" in body else []
    links += [item["prev"] for item in body.get("inputs", [])]
    return links


def _ancestry(head: str, by_id: dict[str, tuple[int, dict[str, Any]]], report: Report) -> set[str]:
    seen: set[str] = set()
    todo = [head]
    while todo:
        eid = todo.pop()
        if eid in seen:
            continue
        if eid not in by_id:
            _fail(report, f"the provenance is incomplete: event {eid[:12]}… is missing", None, eid)
            continue
        seen.add(eid)
        todo.extend(_links(by_id[eid][1]))
    return seen


def _own_chain(lot: str, head: str, by_id: dict[str, tuple[int, dict[str, Any]]]) -> list[str]:
    chain: list[str] = []
    current: str | None = head
    while current is not None and current in by_id:
        chain.append(current)
        body = by_id[current][1]
        current = None
        if body.get("lot") == lot and "prev" in body:
            current = body["prev"]
        for item in body.get("inputs", []):
            if item["lot"] == lot:
                current = item["prev"]
    return chain


def _timeline_item(
    state: MemoryState, eid: str, by_id: dict[str, tuple[int, dict[str, Any]]], own: bool
) -> TimelineItem:
    seq, body = by_id[eid]
    actor = state.actors.get(body["actor"])
    lots = [body["lot"]] if "lot" in body else []
    if "inputs" in body or "outputs" in body:  # lot.processed
        lots += [i["lot"] for i in body.get("inputs", [])]
        lots += [o["lot"] for o in body.get("outputs", [])]
    return TimelineItem(  # seq, event_id, time, type, actor, actor_name, lots, on_own_chain
        seq,
        eid,
        body["time"],
        body["type"],
        body["actor"],
        actor.name if actor is not None else body["actor"],
        lots,
        own,
        _step_details(state, body),
    )


#: the fields of a lot event a buyer is shown, by type (no free text, price or seller's sex)
_DETAIL_FIELDS: dict[str, tuple[str, ...]] = {
    "lot.registered": ("site", "form", "mass_mg", "fineness_ppm"),
    "lot.transfer_offered": ("to", "mass_mg"),
    "lot.transfer_accepted": ("mass_mg",),
    "lot.processed": ("process",),
    "lot.assayed": ("method", "fineness_ppm", "mass_mg"),
    "lot.exported": ("destination",),
    "lot.flagged": ("code",),
    "lot.flag_resolved": ("flag", "outcome"),
}


def _step_details(state: MemoryState, body: dict[str, Any]) -> dict[str, Any]:
    """What a verified lot event did, for the timeline (see ``TimelineItem``)."""
    details = {k: body[k] for k in _DETAIL_FIELDS.get(body["type"], ()) if k in body}
    if "to" in details:
        recipient = state.actors.get(details["to"])
        details["to_name"] = recipient.name if recipient is not None else details["to"]
    if body["type"] == "lot.registered":
        site = state.sites.get(body["site"])
        details["site_name"] = site.name if site is not None else body["site"]
    if body["type"] == "lot.processed":
        details["outputs"] = [
            {k: o[k] for k in ("lot", "form", "mass_mg", "fineness_ppm") if k in o}
            for o in body["outputs"]
        ]
    return details


def _origin_sites(
    state: MemoryState,
    lot: LotState,
    by_id: dict[str, tuple[int, dict[str, Any]]],
    registered_at: dict[str, SiteState | None],
) -> list[dict[str, Any]]:
    # the origin registrations by site, in one pass: a lot may come from thousands of sites
    by_site: dict[str, list[Registration]] = {}
    for o in state.lots_of(lot.origin_lots):
        if o.registration is not None:
            by_site.setdefault(o.registration.site, []).append(o.registration)
    sites = []
    for site_id in sorted(lot.origins):
        registrations = by_site.get(site_id, [])
        # the site as the latest of these registrations found it, not as later
        # assessments in the bundle left it (sections 5 and 7)
        latest = max(
            (r.event_id for r in registrations if r.event_id in by_id),
            key=lambda e: by_id[e][0],
            default=None,
        )
        site = registered_at.get(latest) if latest is not None else state.sites.get(site_id)
        if site is None:
            continue
        operator = state.actors.get(site.operator)
        # the colour the gold was registered under: expiry turns green or yellow to blue
        status = (
            site.status_on(dt.date.fromisoformat(by_id[latest][1]["time"][:10]))
            if latest is not None
            else "blue"
        )
        sites.append(
            {
                "id": site.id,
                "name": site.name,
                "country": site.country,
                "region": site.region,
                "operator": site.operator,
                "operator_name": operator.name if operator is not None else site.operator,
                "status": status,
                "assessment": None
                if site.assessment is None
                else {
                    "status": site.assessment.status,
                    "assessed_on": site.assessment.assessed_on,
                    "valid_until": site.assessment.valid_until,
                    "cahra": site.assessment.cahra,
                },
                "registrations": len(registrations),
            }
        )
    return sites

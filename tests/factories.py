"""Small factories for ledger tests: a ``World`` of named actors around a ``MemoryLedger``.

Every builder makes a valid body with sensible defaults (times one minute apart from
2026-11-01T08:00:00Z unless given), signs it with the right actor's key and appends it.
Keyword overrides change or add body fields (``DROP`` removes one); ``post=False`` builds
and signs without appending, to test refusals; ``signer=`` / ``key=`` sign with someone
else's key. ``resign``, ``tamper``, ``for_origin`` and ``alt_signature`` make broken or
unusual envelopes from an existing one.

Import it as ``from tests import factories``.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import nacl.bindings
import nacl.signing

from clients.scenario import ScenarioPlayer
from ledger.bundle import build_bundle
from ledger.checkpoint import LogSigner
from ledger.errors import LedgerError
from ledger.protocol import body_digest, event_id, public_key_hex, sign_body, signing_message
from ledger.replay import MemoryLedger
from ledger.state import CUSTODY_ROLES, ActorState, LotState, SiteState

ORIGIN = "test.goldtrail.example/log"
T0 = dt.datetime(2026, 11, 1, 8, 0, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=1)
L = 2**252 + 27742317777372353535851937790883648493  # order of the Ed25519 base point


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


#: pass as an override to remove a field from the body
DROP: Any = _Drop()

CLEAN = {
    "child_labour": "none",
    "forced_labour": False,
    "armed_groups": "none",
    "security_forces": "none",
}


def fmt_time(value: dt.datetime) -> str:
    """RFC 3339 UTC with Z and whole seconds."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | dt.datetime) -> dt.datetime:
    """A datetime from a protocol time string (or a datetime, returned as is)."""
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def money(amount: int, currency: str = "USD") -> dict[str, Any]:
    return {"amount_minor": amount, "currency": currency}


def out(
    lot: str,
    mass_mg: int,
    fineness_ppm: int = 800_000,
    form: str = "gold",
    bar: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry of ``lot.processed`` ``outputs``."""
    item: dict[str, Any] = {
        "lot": lot,
        "mass_mg": mass_mg,
        "form": form,
        "fineness_ppm": fineness_ppm,
    }
    if bar is not None:
        item["bar"] = bar
    return item


def auto_prefix(actor_id: str) -> str:
    """A lot prefix derived from an actor id: its letters and digits, capitalised."""
    return "".join(c for c in actor_id.upper() if c.isalnum())[:16] + "-"


@dataclass
class Event:
    """A signed envelope with its body and id (appended or not)."""

    envelope: dict[str, Any]

    @property
    def body(self) -> dict[str, Any]:
        return self.envelope["body"]  # type: ignore[no-any-return]

    @property
    def id(self) -> str:
        return event_id(self.body)

    def flag_id(self, code: str) -> str:
        """The id of the flag ``code`` this event raises."""
        return f"{self.id}/{code}"


def registry_self_registration(
    signer: nacl.signing.SigningKey, origin: str, **changes: Any
) -> dict[str, Any]:
    """The Ituri registry's self-registration (a log's seq 0 when ``signer`` is the
    configured registrar key), signed by ``signer``; ``changes`` replace body fields."""
    body = {
        "v": 1,
        "type": "actor.registered",
        "actor": "registry",
        "time": "2026-11-01T07:00:00Z",
        "subject": "registry",
        "name": "Ituri Provincial Mining Registry",
        "roles": ["registrar"],
        "key": public_key_hex(signer),
        "country": "CD",
        **changes,
    }
    return sign_body(body, signer, origin)


def auditor_onboarding(registry: nacl.signing.SigningKey, origin: str) -> dict[str, Any]:
    """The registry (signing with ``registry``) registering an auditor with a fresh key:
    an event that builds on seq 0."""
    body = {
        "v": 1,
        "type": "actor.registered",
        "actor": "registry",
        "time": "2026-11-01T07:01:00Z",
        "subject": "auditor",
        "name": "Great Lakes Audit",
        "roles": ["auditor"],
        "key": public_key_hex(nacl.signing.SigningKey.generate()),
        "country": "UG",
    }
    return sign_body(body, registry, origin)


def resign(ev: Event | dict[str, Any], key: nacl.signing.SigningKey, origin: str = ORIGIN) -> Event:
    """The same body signed (validly) with another key."""
    body = ev.body if isinstance(ev, Event) else ev["body"]
    return Event(sign_body(copy.deepcopy(body), key, origin))


def tamper(ev: Event, **changes: Any) -> Event:
    """The envelope with body fields changed after signing (the signature kept)."""
    env = copy.deepcopy(ev.envelope)
    for name, value in changes.items():
        if value is DROP:
            env["body"].pop(name, None)
        else:
            env["body"][name] = value
    return Event(env)


def alt_signature(ev: Event, key: nacl.signing.SigningKey, origin: str = ORIGIN) -> Event:
    """The same body and key with a different, valid Ed25519 signature.

    Ed25519 as libsodium signs is deterministic (the nonce is derived from the key and the
    message), but verification cannot tell: any nonce gives a valid signature. This signs
    with a random nonce, so the envelope differs byte for byte yet verifies strictly.
    """
    h = hashlib.sha512(bytes(key)).digest()
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    scalar = nacl.bindings.crypto_core_ed25519_scalar_reduce(bytes(a) + bytes(32))
    public = bytes(key.verify_key)
    message = signing_message(origin, body_digest(ev.body))
    r = nacl.bindings.crypto_core_ed25519_scalar_reduce(os.urandom(64))
    big_r = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(r)
    k = nacl.bindings.crypto_core_ed25519_scalar_reduce(
        hashlib.sha512(big_r + public + message).digest()
    )
    s = nacl.bindings.crypto_core_ed25519_scalar_add(
        r, nacl.bindings.crypto_core_ed25519_scalar_mul(k, scalar)
    )
    env = copy.deepcopy(ev.envelope)
    env["signature"] = {"key": public.hex(), "value": (big_r + s).hex()}
    return Event(env)


def malleate(ev: Event) -> Event:
    """The same signature with S replaced by S + L (valid for lax verifiers, not libsodium)."""
    sig = bytes.fromhex(ev.envelope["signature"]["value"])
    s = int.from_bytes(sig[32:], "little") + L
    env = copy.deepcopy(ev.envelope)
    env["signature"]["value"] = (sig[:32] + s.to_bytes(32, "little")).hex()
    return Event(env)


def snapshot(ledger: MemoryLedger) -> dict[str, Any]:
    """Everything the ledger holds, as plain data, to compare before and after."""
    st = ledger.state
    return {
        "actors": {k: v.model_dump() for k, v in st.actors.items()},
        "sites": {k: v.model_dump() for k, v in st.sites.items()},
        "lots": {k: v.model_dump() for k, v in st.lots.items()},
        "keys": dict(st.keys),
        "prefixes": dict(st.prefixes),
        "events": sorted(st.events),
        "count": st.count,
        "leaves": list(ledger.leaves),
    }


def signed_bundle(
    ledger: MemoryLedger,
    signer: LogSigner,
    lot: str,
    *,
    head: str | None = None,
    label_at: str | None = None,
    registrar_key: str | None = None,
) -> dict[str, Any]:
    """The bundle of ``lot`` (at its head, or ``head``) over the whole of an in-memory
    ledger, under a checkpoint ``signer`` signs; the registrar key is seq 0's unless
    given."""
    size = len(ledger.leaves)
    return build_bundle(
        ledger,
        lot=lot,
        head=head or ledger.state.lots[lot].head,
        label_at=label_at,
        origin=signer.origin,
        verifier_key=signer.verifier_key,
        registrar_key=registrar_key or ledger.envelopes[0]["signature"]["key"],
        checkpoint_note=signer.sign(size, ledger.root()).note,
        size=size,
    )


def replay(
    envelopes: Iterable[dict[str, Any]], registrar_key: str, origin: str = ORIGIN
) -> MemoryLedger:
    """A fresh ledger with ``envelopes`` appended one by one (no clock)."""
    fresh = MemoryLedger(origin, registrar_key)
    for env in envelopes:
        fresh.append(env)
    return fresh


class World:
    """Named actors with signing keys around a ``MemoryLedger``.

    ``World()`` starts the log with ``registrar`` at seq 0; ``World.standard()`` adds a
    usual cast and a green site.
    """

    def __init__(
        self,
        *,
        origin: str = ORIGIN,
        registrar: str | None = "registrar",
        country: str = "CD",
        start: dt.datetime = T0,
    ) -> None:
        self.origin = origin
        self.clock = start - STEP
        self.keys: dict[str, nacl.signing.SigningKey] = {}
        self.old_keys: dict[str, list[nacl.signing.SigningKey]] = {}
        self.registrar = registrar or "registrar"
        self.registrar_key = nacl.signing.SigningKey.generate()
        self.ledger = MemoryLedger(origin, public_key_hex(self.registrar_key))
        self.now: dt.datetime | None = None
        self._lot_counter = 0
        if registrar is not None:
            self.keys[registrar] = self.registrar_key
            self.emit(
                {
                    "type": "actor.registered",
                    "actor": registrar,
                    "subject": registrar,
                    "name": "Test registry",
                    "roles": ["registrar"],
                    "key": public_key_hex(self.registrar_key),
                    "country": country,
                }
            )

    # -- the usual cast --------------------------------------------------------------

    @classmethod
    def standard(cls) -> World:
        """Registrar, auditor, two cooperatives (one green site each), processor, traders,
        an exporter (UG), a refiner (CH) and an assayer."""
        w = cls()
        w.register_actor("auditor", ["auditor"], country="UG")
        w.register_actor("coop", ["cooperative"], lot_prefix="COOP-")
        w.register_actor("coop2", ["cooperative", "processor"], lot_prefix="CPB-")
        w.register_actor("processor", ["processor"], lot_prefix="PRC-")
        w.register_actor("trader", ["trader"], lot_prefix="TRD-")
        w.register_actor("trader2", ["trader"], lot_prefix="TRB-")
        w.register_actor("exporter", ["exporter", "trader"], country="UG", lot_prefix="EXP-")
        w.register_actor("refiner", ["refiner"], country="CH", lot_prefix="REF-")
        w.register_actor("assayer", ["assayer"], country="UG")
        w.register_site("site-a", "coop")
        w.assess_site("site-a", "green")
        w.register_site("site-b", "coop2")
        w.assess_site("site-b", "green")
        return w

    # -- state ---------------------------------------------------------------------------

    def lot(self, lot_id: str) -> LotState:
        return self.ledger.state.lots[lot_id]

    def actor(self, actor_id: str) -> ActorState:
        return self.ledger.state.actors[actor_id]

    def site(self, site_id: str) -> SiteState:
        return self.ledger.state.sites[site_id]

    def head(self, lot_id: str) -> str:
        return self.lot(lot_id).head

    def flag_ids(self, lot_id: str, code: str | None = None) -> list[str]:
        return [f.id for f in self.lot(lot_id).flags if code is None or f.code == code]

    def open_codes(self, lot_id: str) -> list[str]:
        return sorted(f.code for f in self.lot(lot_id).flags if f.status == "open")

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.ledger)

    def envelopes(self) -> list[dict[str, Any]]:
        """Every envelope in the log, in order."""
        return [json.loads(leaf) for leaf in self.ledger.leaves]

    # -- time ----------------------------------------------------------------------------

    def tick(self, time: str | dt.datetime | None = None) -> str:
        """The time for the next body: the given one (moving the clock forward if it is
        later), else one minute after the last."""
        if time is None:
            self.clock += STEP
            return fmt_time(self.clock)
        when = parse_time(time)
        self.clock = max(self.clock, when)
        return fmt_time(when)

    def at(self, when: str | dt.datetime) -> None:
        """Set the clock: the next default time is one minute after ``when``."""
        self.clock = parse_time(when)

    def today(self) -> dt.date:
        return (self.clock + STEP).date()

    # -- signing and appending -----------------------------------------------------------

    def key_of(self, actor_id: str) -> nacl.signing.SigningKey:
        return self.keys[actor_id]

    def emit(
        self,
        body: dict[str, Any],
        overrides: dict[str, Any] | None = None,
        *,
        post: bool = True,
        signer: str | None = None,
        key: nacl.signing.SigningKey | None = None,
        time: str | dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> Event:
        """Fill ``v`` and ``time``, apply overrides, sign and (unless ``post=False``) append."""
        full: dict[str, Any] = {"v": 1, **body}
        full["time"] = self.tick(time)
        for name, value in (overrides or {}).items():
            if value is DROP:
                full.pop(name, None)
            else:
                full[name] = value
        signing_key = key if key is not None else self.keys[signer or full["actor"]]
        ev = Event(sign_body(full, signing_key, self.origin))
        if post:
            self.append(ev, now=now)
        return ev

    def append(self, ev: Event | dict[str, Any], *, now: dt.datetime | None = None) -> Any:
        """Append one envelope; raises the ledger's error."""
        env = ev.envelope if isinstance(ev, Event) else ev
        return self.ledger.append(env, now=now if now is not None else self.now)

    def refuse(
        self, ev: Event | dict[str, Any] | Callable[[], Any], *, now: dt.datetime | None = None
    ) -> LedgerError:
        """Append ``ev`` expecting a refusal; checks nothing changed and returns the error."""
        before = self.snapshot()
        try:
            if callable(ev):
                ev()
            else:
                self.append(ev, now=now)
        except LedgerError as e:
            assert self.snapshot() == before, "a refused event changed the state"
            return e
        raise AssertionError("the event was accepted but a refusal was expected")

    def code(self, ev: Event | dict[str, Any], *, now: dt.datetime | None = None) -> str:
        """The code of the refusal of ``ev`` (asserting it is refused)."""
        return self.refuse(ev, now=now).code

    # -- actors --------------------------------------------------------------------------

    def register_actor(
        self,
        subject: str,
        roles: list[str],
        *,
        country: str = "CD",
        lot_prefix: str | None = None,
        licence: dict[str, Any] | None = None,
        profile: dict[str, Any] | None = None,
        signer: str | None = None,
        new_key: nacl.signing.SigningKey | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        key = new_key if new_key is not None else nacl.signing.SigningKey.generate()
        body: dict[str, Any] = {
            "type": "actor.registered",
            "actor": signer or self.registrar,
            "subject": subject,
            "name": f"{subject} (test)",
            "roles": list(roles),
            "key": public_key_hex(key),
            "country": country,
        }
        if CUSTODY_ROLES.intersection(roles):
            body["lot_prefix"] = lot_prefix or auto_prefix(subject)
        elif lot_prefix is not None:
            body["lot_prefix"] = lot_prefix
        if licence is not None:
            body["licence"] = licence
        if profile is not None:
            body["profile"] = profile
        ev = self._emit(body, kw, post)
        if post:
            self.keys[subject] = key
        return ev

    def update_actor(
        self, subject: str, *, signer: str | None = None, post: bool = True, **fields: Any
    ) -> Event:
        body = {"type": "actor.updated", "actor": signer or self.registrar, "subject": subject}
        return self._emit(body, fields, post)

    def rotate_key(
        self,
        subject: str,
        *,
        signer: str | None = None,
        new_key: nacl.signing.SigningKey | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        key = new_key if new_key is not None else nacl.signing.SigningKey.generate()
        body = {
            "type": "actor.key_rotated",
            "actor": signer or subject,
            "subject": subject,
            "key": public_key_hex(key),
        }
        ev = self._emit(body, kw, post)
        if post:
            self.old_keys.setdefault(subject, []).append(self.keys[subject])
            self.keys[subject] = key
        return ev

    def revoke(
        self, subject: str, *, signer: str | None = None, post: bool = True, **kw: Any
    ) -> Event:
        body = {
            "type": "actor.revoked",
            "actor": signer or self.registrar,
            "subject": subject,
            "reason": "licence withdrawn by the mining authority",
        }
        return self._emit(body, kw, post)

    # -- sites ---------------------------------------------------------------------------

    def register_site(
        self,
        site: str,
        operator: str,
        *,
        country: str = "CD",
        signer: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        body = {
            "type": "site.registered",
            "actor": signer or self.registrar,
            "site": site,
            "name": f"{site} (test)",
            "operator": operator,
            "country": country,
            "region": "Ituri",
            "location": {"lat": "1.23456", "lon": "29.12345"},
        }
        return self._emit(body, kw, post)

    def assess_site(
        self,
        site: str,
        status: str = "green",
        *,
        assessed_on: str | None = None,
        valid_until: str | None = None,
        cahra: bool | None = None,
        signer: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        day = self.today() if kw.get("time") is None else parse_time(kw["time"]).date()
        body: dict[str, Any] = {
            "type": "site.assessed",
            "actor": signer or self.registrar,
            "site": site,
            "status": status,
            "assessed_on": assessed_on or day.isoformat(),
            "valid_until": valid_until or (day + dt.timedelta(days=365)).isoformat(),
        }
        if cahra is not None:
            body["cahra"] = cahra
        return self._emit(body, kw, post)

    # -- lots ----------------------------------------------------------------------------

    def new_lot_id(self, actor_id: str) -> str:
        self._lot_counter += 1
        prefix = self.actor(actor_id).lot_prefix or "XX-"
        return f"{prefix}{self._lot_counter:04d}"

    def register_lot(
        self,
        lot: str | None = None,
        site: str = "site-a",
        *,
        actor: str | None = None,
        mass_mg: int = 100_000,
        fineness_ppm: int = 800_000,
        form: str = "gold",
        women: int = 2,
        men: int = 3,
        days: int = 30,
        declarations: dict[str, Any] | None = None,
        recovery: str = "gravity",
        post: bool = True,
        **kw: Any,
    ) -> Event:
        """Register a lot at ``site`` by its operator (100 g of gold at 800 000 ppm, five
        producers, extracted over the 30 days up to the event's date)."""
        signer = actor or self.site(site).operator
        lot_id = lot or self.new_lot_id(signer)
        day = self.today() if kw.get("time") is None else parse_time(kw["time"]).date()
        body = {
            "type": "lot.registered",
            "actor": signer,
            "lot": lot_id,
            "site": site,
            "mass_mg": mass_mg,
            "form": form,
            "fineness_ppm": fineness_ppm,
            "extracted": {
                "from": (day - dt.timedelta(days=days - 1)).isoformat(),
                "to": day.isoformat(),
            },
            "producers": {"women": women, "men": men},
            "recovery": recovery,
            "declarations": {**CLEAN, **(declarations or {})},
        }
        return self._emit(body, kw, post)

    def offer(
        self,
        lot: str,
        to: str,
        *,
        actor: str | None = None,
        mass_mg: int | None = None,
        prev: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        state = self.lot(lot)
        body = {
            "type": "lot.transfer_offered",
            "actor": actor or state.custodian,
            "lot": lot,
            "prev": prev or state.head,
            "to": to,
            "mass_mg": state.mass_mg if mass_mg is None else mass_mg,
        }
        return self._emit(body, kw, post)

    def _answer(
        self,
        kind: str,
        lot: str,
        actor: str | None,
        offer: str | None,
        prev: str | None,
        extra: dict[str, Any],
        post: bool,
        default_actor: Callable[[LotState], str],
    ) -> Event:
        state = self.lot(lot)
        offer_id = offer or (state.offer.id if state.offer is not None else "0" * 64)
        body = {
            "type": kind,
            "actor": actor or default_actor(state),
            "lot": lot,
            "prev": prev or state.head,
            "offer": offer_id,
        }
        return self._emit(body, extra, post)

    def accept(
        self,
        lot: str,
        *,
        actor: str | None = None,
        offer: str | None = None,
        prev: str | None = None,
        mass_mg: int | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        state = self.lot(lot)
        mass = (
            mass_mg
            if mass_mg is not None
            else (state.offer.mass_mg if state.offer is not None else state.mass_mg)
        )
        return self._answer(
            "lot.transfer_accepted",
            lot,
            actor,
            offer,
            prev,
            {"mass_mg": mass, **kw},
            post,
            _recipient,
        )

    def reject(
        self,
        lot: str,
        *,
        actor: str | None = None,
        offer: str | None = None,
        prev: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        return self._answer(
            "lot.transfer_rejected",
            lot,
            actor,
            offer,
            prev,
            {"reason": "the seal was broken", **kw},
            post,
            _recipient,
        )

    def cancel(
        self,
        lot: str,
        *,
        actor: str | None = None,
        offer: str | None = None,
        prev: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        return self._answer(
            "lot.transfer_cancelled",
            lot,
            actor,
            offer,
            prev,
            {"reason": "the buyer did not come", **kw},
            post,
            lambda s: s.custodian,
        )

    def transfer(self, lot: str, to: str, **kw: Any) -> Event:
        """Offer and accept at the same mass; returns the acceptance."""
        self.offer(lot, to)
        return self.accept(lot, **kw)

    def process(
        self,
        inputs: list[str] | list[tuple[str, str]],
        outputs: list[dict[str, Any]],
        *,
        process: str = "smelting",
        actor: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        items = [
            {"lot": i[0], "prev": i[1]}
            if isinstance(i, tuple)
            else {"lot": i, "prev": self.head(i)}
            for i in inputs
        ]
        if actor is None:
            first = inputs[0][0] if isinstance(inputs[0], tuple) else inputs[0]
            actor = (
                self.lot(first).custodian if first in self.ledger.state.lots else (self.registrar)
            )
        body = {
            "type": "lot.processed",
            "actor": actor,
            "inputs": items,
            "outputs": outputs,
            "process": process,
        }
        return self._emit(body, kw, post)

    def split(
        self,
        lot: str,
        masses: list[int],
        *,
        ids: list[str] | None = None,
        fineness_ppm: int | None = None,
        **kw: Any,
    ) -> Event:
        """Split ``lot`` into outputs of these masses, same fineness and form."""
        state = self.lot(lot)
        ids = ids or [self.new_lot_id(kw.get("actor") or state.custodian) for _ in masses]
        ppm = fineness_ppm or state.fineness_ppm
        outputs = [out(i, m, ppm, state.form) for i, m in zip(ids, masses, strict=True)]
        return self.process([lot], outputs, process="splitting", **kw)

    def merge(self, lots: list[str], into: str | None = None, **kw: Any) -> Event:
        """Merge lots into one of their total mass and (rounded down) mean fineness."""
        states = [self.lot(x) for x in lots]
        mass = sum(s.mass_mg for s in states)
        ppm = sum(s.mass_mg * s.fineness_ppm for s in states) // mass
        target = into or self.new_lot_id(kw.get("actor") or states[0].custodian)
        return self.process(lots, [out(target, mass, ppm, states[0].form)], process="merging", **kw)

    def assay(
        self,
        lot: str,
        fineness_ppm: int,
        *,
        actor: str = "assayer",
        mass_mg: int | None = None,
        prev: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        body: dict[str, Any] = {
            "type": "lot.assayed",
            "actor": actor,
            "lot": lot,
            "prev": prev or self.head(lot),
            "fineness_ppm": fineness_ppm,
            "method": "xrf",
        }
        if mass_mg is not None:
            body["mass_mg"] = mass_mg
        return self._emit(body, kw, post)

    def export(
        self,
        lot: str,
        destination: str = "AE",
        *,
        actor: str | None = None,
        prev: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        body = {
            "type": "lot.exported",
            "actor": actor or self.lot(lot).custodian,
            "lot": lot,
            "prev": prev or self.head(lot),
            "destination": destination,
            "permit": "EXP-PERMIT-1",
        }
        return self._emit(body, kw, post)

    def flag(
        self,
        lot: str,
        code: str = "serious_abuse",
        *,
        actor: str = "auditor",
        prev: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        body = {
            "type": "lot.flagged",
            "actor": actor,
            "lot": lot,
            "prev": prev or self.head(lot),
            "code": code,
            "note": "reported by a field monitor",
        }
        return self._emit(body, kw, post)

    def resolve(
        self,
        lot: str,
        flag: str,
        outcome: str = "unfounded",
        *,
        actor: str = "auditor",
        prev: str | None = None,
        post: bool = True,
        **kw: Any,
    ) -> Event:
        body = {
            "type": "lot.flag_resolved",
            "actor": actor,
            "lot": lot,
            "prev": prev or self.head(lot),
            "flag": flag,
            "outcome": outcome,
            "resolution": "checked on site",
        }
        return self._emit(body, kw, post)

    # -- internals -----------------------------------------------------------------------

    def _emit(self, body: dict[str, Any], kw: dict[str, Any], post: bool) -> Event:
        kw = dict(kw)
        # ``signer`` (lot builders only) names the actor whose key signs; ``actor`` in the
        # body stays as built
        options = {name: kw.pop(name) for name in ("signer", "key", "time", "now") if name in kw}
        return self.emit(body, kw, post=post, **options)


def _recipient(state: LotState) -> str:
    return state.offer.to if state.offer is not None else state.custodian


def play_scenario(
    events: list[dict[str, Any]],
    *,
    origin: str,
    registrar: nacl.signing.SigningKey | None = None,
    now: dt.datetime | None = None,
) -> tuple[MemoryLedger, ScenarioPlayer]:
    """Scenario events signed and appended in order to a fresh in-memory ledger, whose seq 0
    is signed by ``registrar`` (a new key when None); returns the ledger and the player
    (whose ``keys`` hold every actor's signing key)."""
    registrar = registrar or nacl.signing.SigningKey.generate()
    ledger = MemoryLedger(origin, public_key_hex(registrar))
    player = ScenarioPlayer(origin, first_registrar_key=registrar)

    def lookup(lot: str) -> dict[str, Any]:
        state: dict[str, Any] = ledger.state.lots[lot].model_dump(mode="json", by_alias=True)
        return state

    for index, raw in enumerate(events):
        result = ledger.append(player.envelope(raw, lookup), now=now)
        assert result.existing is None, (index, raw["type"])
    return ledger, player

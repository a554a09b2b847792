"""The ledger's derived state: actors, sites and lots as of a position in the log.

The log is the truth; these objects are projections of it. The rules (``ledger.rules``)
read them through the ``StateReader`` protocol and record what an accepted event changes
in a ``StagedState``; a store commits the staged changes in the same transaction as the
log entry, or throws them away when a check fails. ``MemoryState`` keeps everything in
dictionaries: the offline verifier, replays and tests use it.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import UnionType
from typing import (
    Any,
    Literal,
    NamedTuple,
    Protocol,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from pydantic import BaseModel, ConfigDict, Field

CUSTODY_ROLES = frozenset({"cooperative", "processor", "trader", "exporter", "refiner"})
RISK_ORDER = {"low": 0, "medium": 1, "high": 2, "hold": 3}

_M = TypeVar("_M", bound=BaseModel)

_ATOMIC = frozenset({str, int, bool, float, type(None)})
_set_attribute = object.__setattr__
#: per state model, the fields whose values may be mutable, each with how to copy it
_MUTABLE_FIELDS: dict[type[BaseModel], tuple[tuple[str, Callable[[Any], Any]], ...]] = {}


def _is_atomic(annotation: Any) -> bool:
    """True if every value the annotation allows is immutable (str, int, bool, None, a
    literal); mypy strict checks every assignment to a state field against it."""
    if annotation in _ATOMIC:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return all(type(arg) in _ATOMIC for arg in get_args(annotation))
    if origin is Union or origin is UnionType:
        return all(_is_atomic(arg) for arg in get_args(annotation))
    return False


def _copier(annotation: Any) -> Callable[[Any], Any]:
    """How to deep-copy a value of a field that is not atomic: a list of atomic values is
    copied flat, anything else by ``_fresh``."""
    if get_origin(annotation) is list and all(_is_atomic(a) for a in get_args(annotation)):
        return list.copy
    return _fresh


def _mutable_fields(cls: type[BaseModel]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    fields = _MUTABLE_FIELDS.get(cls)
    if fields is None:
        fields = tuple(
            (name, _copier(info.annotation))
            for name, info in cls.model_fields.items()
            if not _is_atomic(info.annotation)
        )
        _MUTABLE_FIELDS[cls] = fields
    return fields


def _fresh(value: Any) -> Any:
    """A deep copy of a field value: JSON containers and models are rebuilt, immutable
    values shared."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is list:
        return [item if type(item) in _ATOMIC else _fresh(item) for item in value]
    if kind is dict:
        return {key: item if type(item) in _ATOMIC else _fresh(item) for key, item in value.items()}
    if isinstance(value, BaseModel):
        return private_copy(value)
    return copy.deepcopy(value)


def private_copy(model: _M) -> _M:
    """An independent deep copy of a state object, equal to ``model_copy(deep=True)``.

    The rules pay one on most state reads, so it copies only what can change: the field
    dictionary is copied whole and only the fields that may hold a list, a dict or a model
    are copied deeper (pydantic's deepcopy visits every value; a dump and re-validation
    checks again what was checked when the object was made).
    """
    if model.__pydantic_extra__ is not None or model.__pydantic_private__ is not None:
        return model.model_copy(deep=True)
    cls = type(model)
    fields = model.__dict__.copy()
    for name, copier in _mutable_fields(cls):
        value = fields[name]
        if value is not None:
            fields[name] = copier(value)
    new = cls.__new__(cls)
    _set_attribute(new, "__dict__", fields)
    _set_attribute(new, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    _set_attribute(new, "__pydantic_extra__", None)
    _set_attribute(new, "__pydantic_private__", None)
    return new


def shallow_copy(model: _M, **changes: Any) -> _M:
    """A copy of a state object with ``changes`` set (not validated), sharing every other
    value with ``model``: equal to ``model.model_copy(update=changes)``.

    Only for objects that are never changed in place, as staged and stored ones are not.
    """
    if model.__pydantic_extra__ is not None or model.__pydantic_private__ is not None:
        return model.model_copy(update=changes)
    cls = type(model)
    fields = model.__dict__.copy()
    fields.update(changes)
    new = cls.__new__(cls)
    _set_attribute(new, "__dict__", fields)
    _set_attribute(new, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys())
    _set_attribute(new, "__pydantic_extra__", None)
    _set_attribute(new, "__pydantic_private__", None)
    return new


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class KeyRecord(_Model):
    """One key an actor holds or held, with the log position that gave and ended it."""

    key: str
    since_seq: int
    since_event: str
    since_time: str
    until_seq: int | None = None
    ended: Literal["rotated", "revoked"] | None = None


class ActorState(_Model):
    """An organisation as of a log position: roles, keys, licence, profile, status."""

    id: str
    name: str
    roles: list[str]
    country: str
    lot_prefix: str | None = None
    licence: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    status: Literal["active", "revoked"] = "active"
    revoked_reason: str | None = None
    keys: list[KeyRecord] = Field(default_factory=list)
    registered_seq: int
    registered_by: str
    updated_seq: int
    held_lots: int = 0

    def current_key(self) -> KeyRecord | None:
        """The key the actor signs with now, or None once revoked."""
        if self.status != "active" or not self.keys or self.keys[-1].ended is not None:
            return None
        return self.keys[-1]

    def key_record(self, key: str) -> KeyRecord | None:
        """The record of ``key`` if the actor ever held it."""
        for record in self.keys:
            if record.key == key:
                return record
        return None

    def has_custody_role(self) -> bool:
        """True if the actor may hold lots."""
        return bool(CUSTODY_ROLES.intersection(self.roles))

    def licence_expired_on(self, day: dt.date) -> bool:
        """True if the actor has a licence and it is no longer valid on ``day``."""
        if self.licence is None:
            return False
        return day > dt.date.fromisoformat(self.licence["valid_until"])


class Assessment(_Model):
    """A site's latest assessment, with its indicators as signed."""

    event_id: str
    seq: int
    time: str
    actor: str
    status: Literal["green", "yellow", "red", "blue"]
    assessed_on: str
    valid_until: str
    cahra: bool | None = None
    findings: list[str] = Field(default_factory=list)
    indicators: dict[str, Any] = Field(default_factory=dict)

    def valid_on(self, day: dt.date) -> bool:
        """True while ``valid_until`` is on or after ``day``."""
        return day <= dt.date.fromisoformat(self.valid_until)


class SiteState(_Model):
    """A mine site with its operator and its latest assessment."""

    id: str
    name: str
    operator: str
    country: str
    region: str
    location: dict[str, str]
    deposit: str | None = None
    icglr_id: str | None = None
    licence: dict[str, Any] | None = None
    registered_seq: int
    registered_event: str
    assessment: Assessment | None = None
    assessments: int = 0

    def status_on(self, day: dt.date) -> str:
        """The ICGLR colour on ``day``: as assessed while valid, then blue (red stays red)."""
        a = self.assessment
        if a is None:
            return "blue"
        if a.valid_on(day) or a.status == "red":
            return a.status
        return "blue"


class FlagState(_Model):
    """A due-diligence flag carried by a lot."""

    id: str
    code: str
    class_: Literal["hold", "high", "medium"] = Field(alias="class")
    status: Literal["open", "resolved"] = "open"
    outcome: Literal["unfounded", "remediated"] | None = None

    def counts_as(self) -> str | None:
        """The risk class this flag adds to its lot, or None when it adds none."""
        if self.status == "open":
            return self.class_
        if self.class_ == "hold" and self.outcome == "remediated":
            return "high"
        return None


class Offer(_Model):
    """A pending transfer offer."""

    id: str
    to: str
    mass_mg: int


class Registration(_Model):
    """What a lot's registration says about its producers, kept for gender summaries."""

    event_id: str
    site: str
    women: int
    men: int
    women_led: bool
    fine_product: int  # mass_mg × fineness_ppm as registered
    payment: dict[str, Any] | None = None  # {currency, total, to_women}


class LotState(_Model):
    """A lot as of a log position: custody, mass, fineness, flags, origins."""

    lot: str
    status: Literal["active", "offered", "consumed"] = "active"
    custodian: str
    mass_mg: int
    fineness_ppm: int
    form: str
    bar: dict[str, Any] | None = None
    head: str
    offer: Offer | None = None
    origins: list[str]
    origin_lots: list[str]
    flags: list[FlagState] = Field(default_factory=list)
    destination: str | None = None
    exported: bool = False
    created_seq: int
    created_event: str
    registration: Registration | None = None
    events: int = 1

    @property
    def hold(self) -> bool:
        """True while an open ``hold`` flag blocks the lot."""
        return any(f.status == "open" and f.class_ == "hold" for f in self.flags)

    @property
    def risk(self) -> str:
        """The highest class among the lot's flags that count (``low`` when none)."""
        best = "low"
        for f in self.flags:
            cls = f.counts_as()
            if cls is not None and RISK_ORDER[cls] > RISK_ORDER[best]:
                best = cls
        return best

    def flag(self, flag_id: str) -> FlagState | None:
        """The flag with this id, if the lot carries it."""
        return next((f for f in self.flags if f.id == flag_id), None)


class EventRecord(NamedTuple):
    """An accepted event as the rules need to see it again later (immutable; a named
    tuple, made for every event replayed, is three times cheaper than a frozen
    dataclass)."""

    event_id: str
    seq: int
    time: str
    body: dict[str, Any]
    signature: dict[str, str] | None = None


class StateReader(Protocol):
    """Read access to the state as of the end of the log (plus anything staged)."""

    def size(self) -> int:
        """Number of events in the log."""

    def actor(self, actor_id: str) -> ActorState | None:
        """A copy of the actor, or None."""

    def site(self, site_id: str) -> SiteState | None:
        """A copy of the site, or None."""

    def lot(self, lot_id: str) -> LotState | None:
        """A copy of the lot, or None."""

    def key_owner(self, key: str) -> str | None:
        """The actor that holds or held ``key``, or None."""

    def prefix_owner(self, prefix: str) -> str | None:
        """The actor given this lot prefix, or None."""

    def event(self, event_id: str) -> EventRecord | None:
        """An accepted event by id, or None."""

    def active_registrars(self) -> list[str]:
        """Ids of the active actors holding the registrar role."""


@dataclass
class Changes:
    """Everything a run of accepted events changes, to be written in one transaction."""

    actors: dict[str, ActorState] = field(default_factory=dict)
    sites: dict[str, SiteState] = field(default_factory=dict)
    lots: dict[str, LotState] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)


class StagedState:
    """A StateReader over a base state plus the changes of events not yet committed.

    Reads return private copies, so a refused event never touches the base; ``changes``
    holds what the accepted events did, for the store to persist.
    """

    def __init__(self, base: StateReader) -> None:
        self.base = base
        self.changes = Changes()
        self._events_by_id: dict[str, EventRecord] = {}
        self._base_size = base.size()
        # a MemoryState base is read in place by the ``*_as_is`` reads (no copy)
        self._memory = base if type(base) is MemoryState else None

    def size(self) -> int:
        """Number of events in the log, staged ones included."""
        return self._base_size + len(self.changes.events)

    def actor(self, actor_id: str) -> ActorState | None:
        """A copy of the actor, staged version first."""
        staged = self.changes.actors.get(actor_id)
        if staged is not None:
            return private_copy(staged)
        return self.base.actor(actor_id)

    def site(self, site_id: str) -> SiteState | None:
        """A copy of the site, staged version first."""
        staged = self.changes.sites.get(site_id)
        if staged is not None:
            return private_copy(staged)
        return self.base.site(site_id)

    def lot(self, lot_id: str) -> LotState | None:
        """A copy of the lot, staged version first."""
        staged = self.changes.lots.get(lot_id)
        if staged is not None:
            return private_copy(staged)
        return self.base.lot(lot_id)

    # The rules read many objects only to check them. These reads return the staged or
    # stored object itself, not a copy: the caller must never change it or put it back.

    def actor_as_is(self, actor_id: str) -> ActorState | None:
        """The actor, staged version first, for reading only (not a copy)."""
        staged = self.changes.actors.get(actor_id)
        if staged is not None:
            return staged
        if self._memory is not None:
            return self._memory.actors.get(actor_id)
        return self.base.actor(actor_id)

    def site_as_is(self, site_id: str) -> SiteState | None:
        """The site, staged version first, for reading only (not a copy)."""
        staged = self.changes.sites.get(site_id)
        if staged is not None:
            return staged
        if self._memory is not None:
            return self._memory.sites.get(site_id)
        return self.base.site(site_id)

    def lot_as_is(self, lot_id: str) -> LotState | None:
        """The lot, staged version first, for reading only (not a copy)."""
        staged = self.changes.lots.get(lot_id)
        if staged is not None:
            return staged
        if self._memory is not None:
            return self._memory.lots.get(lot_id)
        return self.base.lot(lot_id)

    def key_owner(self, key: str) -> str | None:
        """The actor that holds or held ``key``."""
        return self.changes.keys.get(key) or self.base.key_owner(key)

    def prefix_owner(self, prefix: str) -> str | None:
        """The actor given this lot prefix."""
        return self.changes.prefixes.get(prefix) or self.base.prefix_owner(prefix)

    def event(self, event_id: str) -> EventRecord | None:
        """An accepted event by id, staged ones included."""
        return self._events_by_id.get(event_id) or self.base.event(event_id)

    def active_registrars(self) -> list[str]:
        """Active registrars, with staged actors overriding the base."""
        ids = set(self.base.active_registrars())
        for actor in self.changes.actors.values():
            if actor.status == "active" and "registrar" in actor.roles:
                ids.add(actor.id)
            else:
                ids.discard(actor.id)
        return sorted(ids)

    # -- writes ------------------------------------------------------------

    def put_actor(self, actor: ActorState) -> None:
        """Stage a new version of an actor."""
        self.changes.actors[actor.id] = actor

    def put_site(self, site: SiteState) -> None:
        """Stage a new version of a site."""
        self.changes.sites[site.id] = site

    def put_lot(self, lot: LotState) -> None:
        """Stage a new version of a lot."""
        self.changes.lots[lot.lot] = lot

    def claim_key(self, key: str, actor_id: str) -> None:
        """Record that ``key`` now belongs to ``actor_id`` for ever."""
        self.changes.keys[key] = actor_id

    def claim_prefix(self, prefix: str, actor_id: str) -> None:
        """Record that ``prefix`` is given to ``actor_id`` for ever."""
        self.changes.prefixes[prefix] = actor_id

    def add_event(self, record: EventRecord) -> None:
        """Stage an accepted event."""
        self.changes.events.append(record)
        self._events_by_id[record.event_id] = record

    def apply(self, changes: Changes) -> None:
        """Stage ``changes`` on top of these (those of a StagedState over this one, once
        its event is accepted), as ``MemoryState.apply`` makes them permanent."""
        self.changes.actors.update(changes.actors)
        self.changes.sites.update(changes.sites)
        self.changes.lots.update(changes.lots)
        self.changes.keys.update(changes.keys)
        self.changes.prefixes.update(changes.prefixes)
        for record in changes.events:
            self.add_event(record)


class MemoryState:
    """The whole state in dictionaries: for the offline verifier, replays and tests."""

    def __init__(self) -> None:
        self.actors: dict[str, ActorState] = {}
        self.sites: dict[str, SiteState] = {}
        self.lots: dict[str, LotState] = {}
        self.keys: dict[str, str] = {}
        self.prefixes: dict[str, str] = {}
        self.events: dict[str, EventRecord] = {}
        self.count = 0

    def size(self) -> int:
        """Number of events applied."""
        return self.count

    def actor(self, actor_id: str) -> ActorState | None:
        """A copy of the actor, or None."""
        a = self.actors.get(actor_id)
        return private_copy(a) if a is not None else None

    def site(self, site_id: str) -> SiteState | None:
        """A copy of the site, or None."""
        s = self.sites.get(site_id)
        return private_copy(s) if s is not None else None

    def lot(self, lot_id: str) -> LotState | None:
        """A copy of the lot, or None."""
        lot = self.lots.get(lot_id)
        return private_copy(lot) if lot is not None else None

    def key_owner(self, key: str) -> str | None:
        """The actor that holds or held ``key``."""
        return self.keys.get(key)

    def prefix_owner(self, prefix: str) -> str | None:
        """The actor given this lot prefix."""
        return self.prefixes.get(prefix)

    def event(self, event_id: str) -> EventRecord | None:
        """An applied event by id."""
        return self.events.get(event_id)

    def active_registrars(self) -> list[str]:
        """Ids of active registrars."""
        return sorted(
            a.id for a in self.actors.values() if a.status == "active" and "registrar" in a.roles
        )

    def apply(self, changes: Changes) -> None:
        """Make staged changes permanent."""
        self.actors.update(changes.actors)
        self.sites.update(changes.sites)
        self.lots.update(changes.lots)
        self.keys.update(changes.keys)
        self.prefixes.update(changes.prefixes)
        for record in changes.events:
            self.events[record.event_id] = record
        self.count += len(changes.events)

    def lots_of(self, ids: Iterable[str]) -> list[LotState]:
        """The lots with these ids that exist."""
        return [self.lots[i] for i in ids if i in self.lots]


class LotSource(Protocol):
    """Anything that looks lots up by id (a StateReader, a report's state)."""

    def lot(self, lot_id: str) -> LotState | None:
        """A lot, or None."""


def gender_summary(state: LotSource, lot: LotState) -> dict[str, Any]:
    """The gender summary of PROTOCOL.md section 7, over the lot's origin registrations."""
    women = men = 0
    women_led_fine = origin_fine = 0
    paid: dict[str, list[int]] = {}
    for origin_id in lot.origin_lots:
        origin = lot if origin_id == lot.lot else state.lot(origin_id)
        if origin is None or origin.registration is None:
            continue
        reg = origin.registration
        women += reg.women
        men += reg.men
        origin_fine += reg.fine_product
        if reg.women_led:
            women_led_fine += reg.fine_product
        if reg.payment is not None:
            totals = paid.setdefault(reg.payment["currency"], [0, 0])
            totals[0] += reg.payment["total"]
            totals[1] += reg.payment["to_women"]
    return {
        "producers": {"women": women, "men": men},
        "women_led_fine_mg": women_led_fine // 1_000_000,
        "origin_fine_mg": origin_fine // 1_000_000,
        "paid": [
            {"currency": cur, "total": t[0], "to_women": t[1]} for cur, t in sorted(paid.items())
        ],
    }

"""Strict models of every signed event body (PROTOCOL.md sections 1, 2 and 5).

``parse_body`` turns a parsed JSON body into one frozen pydantic model per event type, or
raises one ``SchemaError`` whose detail names the first failing field. Nothing is coerced:
``"5"`` is not 5, ``true`` is not 1, an optional field is absent (never ``null``) and
unknown fields are refused. Only checks that need the body alone live here; everything that
needs the state of the log lives in the rules engine.

The models are read, never written back: event ids are computed from the original JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache, lru_cache
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from ledger.codes import COUNTRIES, CURRENCIES
from ledger.errors import SchemaError
from ledger.protocol import is_valid_public_key

__all__ = [
    "CUSTODY_ROLES",
    "EVENT_TYPES",
    "FLAG_CLASS",
    "MAX_COUNT",
    "MAX_MASS_MG",
    "MAX_PPM",
    "REGISTRABLE_FORMS",
    "TYPE_MODELS",
    "ActorKeyRotated",
    "ActorRegistered",
    "ActorRevoked",
    "ActorUpdated",
    "ArmedGroups",
    "AssayMethod",
    "Bar",
    "ChildLabour",
    "DailyIncome",
    "Declarations",
    "Deposit",
    "EventBody",
    "Extracted",
    "FlagCode",
    "Form",
    "GbvReports",
    "Input",
    "Licence",
    "Location",
    "LotAssayed",
    "LotExported",
    "LotFlagResolved",
    "LotFlagged",
    "LotProcessed",
    "LotRegistered",
    "LotTransferAccepted",
    "LotTransferCancelled",
    "LotTransferOffered",
    "LotTransferRejected",
    "Money",
    "Outcome",
    "Output",
    "Payment",
    "PaymentMethod",
    "PitOwner",
    "Process",
    "Producers",
    "Profile",
    "Role",
    "Scheme",
    "SecurityForces",
    "SellerSex",
    "Signature",
    "SiteAssessed",
    "SiteRegistered",
    "SiteStatus",
    "StatePayment",
    "StatePaymentKind",
    "WomenMen",
    "WomenOwned",
    "WomenRole",
    "WomenTotal",
    "check_body",
    "parse_body",
    "parse_envelope",
    "parse_protocol_time",
    "split_flag_id",
]

MAX_COUNT = 2**53 - 1
MAX_MASS_MG = 10**12
MAX_PPM = 1_000_000
MAX_INPUTS = 100
MAX_OUTPUTS = 1000
MAX_EXTRACTION_DAYS = 92
FREE_TEXT_MAX = 2000
REFERENCE_MAX = 128


# ---------------------------------------------------------------------------
# Controlled vocabularies


class Role(StrEnum):
    """What an actor may do; an actor may hold several."""

    REGISTRAR = "registrar"
    AUDITOR = "auditor"
    COOPERATIVE = "cooperative"
    PROCESSOR = "processor"
    TRADER = "trader"
    EXPORTER = "exporter"
    REFINER = "refiner"
    ASSAYER = "assayer"


#: roles that may hold lots; an actor with one of them has a lot prefix
CUSTODY_ROLES: frozenset[Role] = frozenset(
    {Role.COOPERATIVE, Role.PROCESSOR, Role.TRADER, Role.EXPORTER, Role.REFINER}
)


class Form(StrEnum):
    """The physical form of a lot."""

    ORE = "ore"
    CONCENTRATE = "concentrate"
    GOLD = "gold"
    DORE = "dore"
    BAR = "bar"


#: the forms a lot may have when it is first registered at a site
REGISTRABLE_FORMS: frozenset[Form] = frozenset({Form.ORE, Form.CONCENTRATE, Form.GOLD})


class Process(StrEnum):
    """How gold was recovered (``recovery``) or how lots were processed (``process``)."""

    NONE = "none"
    CRUSHING = "crushing"
    WASHING = "washing"
    GRAVITY = "gravity"
    AMALGAMATION_RETORT = "amalgamation_retort"
    AMALGAMATION_OPEN = "amalgamation_open"
    WHOLE_ORE_AMALGAMATION = "whole_ore_amalgamation"
    CYANIDATION = "cyanidation"
    CYANIDE_ON_MERCURY_TAILINGS = "cyanide_on_mercury_tailings"
    SMELTING = "smelting"
    REFINING = "refining"
    SPLITTING = "splitting"
    MERGING = "merging"


class FlagCode(StrEnum):
    """The codes of the flag table of PROTOCOL.md section 5."""

    WORST_FORMS_CHILD_LABOUR = "worst_forms_child_labour"
    FORCED_LABOUR = "forced_labour"
    ARMED_GROUP_SUPPORT = "armed_group_support"
    SERIOUS_ABUSE = "serious_abuse"
    CHILD_LABOUR = "child_labour"
    SECURITY_FORCES_ILLEGAL = "security_forces_illegal"
    IMPLAUSIBLE_VOLUME = "implausible_volume"
    MASS_DISCREPANCY = "mass_discrepancy"
    UNDECLARED_BORDER_CROSSING = "undeclared_border_crossing"
    ORIGIN_MISREPRESENTATION = "origin_misrepresentation"
    BRIBERY = "bribery"
    MONEY_LAUNDERING = "money_laundering"
    TAXES_UNPAID = "taxes_unpaid"
    MERCURY_WORST_PRACTICE = "mercury_worst_practice"
    FINENESS_DISCREPANCY = "fineness_discrepancy"
    ARMED_GROUPS_NEARBY = "armed_groups_nearby"
    CAHRA_ORIGIN = "cahra_origin"
    SITE_YELLOW = "site_yellow"
    SITE_UNASSESSED = "site_unassessed"


#: the class of every flag code: "hold", "high" or "medium"
FLAG_CLASS: dict[FlagCode, str] = {
    FlagCode.WORST_FORMS_CHILD_LABOUR: "hold",
    FlagCode.FORCED_LABOUR: "hold",
    FlagCode.ARMED_GROUP_SUPPORT: "hold",
    FlagCode.SERIOUS_ABUSE: "hold",
    FlagCode.CHILD_LABOUR: "high",
    FlagCode.SECURITY_FORCES_ILLEGAL: "high",
    FlagCode.IMPLAUSIBLE_VOLUME: "high",
    FlagCode.MASS_DISCREPANCY: "high",
    FlagCode.UNDECLARED_BORDER_CROSSING: "high",
    FlagCode.ORIGIN_MISREPRESENTATION: "high",
    FlagCode.BRIBERY: "high",
    FlagCode.MONEY_LAUNDERING: "high",
    FlagCode.TAXES_UNPAID: "high",
    FlagCode.MERCURY_WORST_PRACTICE: "medium",
    FlagCode.FINENESS_DISCREPANCY: "medium",
    FlagCode.ARMED_GROUPS_NEARBY: "medium",
    FlagCode.CAHRA_ORIGIN: "medium",
    FlagCode.SITE_YELLOW: "medium",
    FlagCode.SITE_UNASSESSED: "medium",
}


class SiteStatus(StrEnum):
    """A site's ICGLR colour."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"
    BLUE = "blue"


class Deposit(StrEnum):
    """The kind of deposit a site works."""

    ALLUVIAL = "alluvial"
    HARD_ROCK = "hard_rock"
    TAILINGS = "tailings"


class ChildLabour(StrEnum):
    """The cooperative's child-labour declaration for a lot."""

    NONE = "none"
    NON_WFCL = "non_wfcl"
    WFCL = "wfcl"


class ArmedGroups(StrEnum):
    """The cooperative's declaration on armed groups for a lot."""

    NONE = "none"
    NEARBY = "nearby"
    CONTROLS_ACCESS = "controls_access"
    TAXES = "taxes"


class SecurityForces(StrEnum):
    """The cooperative's declaration on public security forces for a lot."""

    NONE = "none"
    LAWFUL = "lawful"
    ILLEGAL_TAXATION = "illegal_taxation"
    CONTROL = "control"


class PaymentMethod(StrEnum):
    """How the buyer pays for an offered lot."""

    CASH = "cash"
    MOBILE_MONEY = "mobile_money"
    BANK = "bank"
    CREDIT = "credit"


class SellerSex(StrEnum):
    """Who hands the lot over in an offer."""

    WOMAN = "woman"
    MAN = "man"
    UNDISCLOSED = "undisclosed"


class PitOwner(StrEnum):
    """Who owns the pit a lot came from."""

    WOMAN = "woman"
    MAN = "man"
    MIXED = "mixed"
    COOPERATIVE = "cooperative"


class WomenRole(StrEnum):
    """The work women did to produce a lot."""

    DIGGING = "digging"
    HAULING = "hauling"
    CRUSHING = "crushing"
    WASHING_PANNING = "washing_panning"
    PROCESSING = "processing"
    TEAM_LEADER = "team_leader"
    PIT_OWNER = "pit_owner"
    TRADING = "trading"


class AssayMethod(StrEnum):
    """How a lot's fineness was measured."""

    TOUCHSTONE = "touchstone"
    ACID = "acid"
    XRF = "xrf"
    FIRE_ASSAY = "fire_assay"


class Outcome(StrEnum):
    """How a flag was resolved."""

    UNFOUNDED = "unfounded"
    REMEDIATED = "remediated"


class Scheme(StrEnum):
    """The responsible-sourcing scheme a site takes part in."""

    NONE = "none"
    CRAFT_ENGAGED = "craft_engaged"
    CRAFT_PROGRESS = "craft_progress"
    FAIRMINED = "fairmined"
    FAIRMINED_ECOLOGICAL = "fairmined_ecological"


class StatePaymentKind(StrEnum):
    """What a payment to the state was."""

    ROYALTY = "royalty"
    TAX = "tax"
    FEE = "fee"


# ---------------------------------------------------------------------------
# Field checks. Each raises a PydanticCustomError; parse_body turns the first one into a
# SchemaError naming the field path.

_GOLDTRAIL = "goldtrail"


def _fail(reason: str, field: str = "") -> PydanticCustomError:
    """An error for ``parse_body``: ``field`` is a dotted path below the current location."""
    return PydanticCustomError(_GOLDTRAIL, "{reason}", {"reason": reason, "field": field})


def _matcher(regex: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise _fail(f"must be {what}")
        return value

    return check


_HEX64 = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
_COORDINATE = re.compile(r"-?[0-9]{1,3}\.[0-9]{1,5}")
_FLAG_ID = re.compile(r"([0-9a-f]{64})/([a-z_]{1,64})")


@lru_cache(maxsize=4096)
def parse_protocol_time(value: str) -> datetime | None:
    """The aware UTC datetime of a protocol timestamp ``YYYY-MM-DDTHH:MM:SSZ`` naming a
    real time, or None for any other text."""
    # cached: a body's time is parsed when it is validated, by its ``at`` and by the rules
    # (``ledger.rules.parse_time``), and the rules parse the times of the events it names
    match = _TIME.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


_parse_time = parse_protocol_time


def _check_time(value: str) -> str:
    if _parse_time(value) is None:
        raise _fail(
            "must be a real UTC time written like 2026-11-20T09:30:00Z "
            "(RFC 3339, whole seconds, ending in Z)"
        )
    return value


def _to_date(value: object) -> object:
    if isinstance(value, str):
        match = _DATE.fullmatch(value)
        if match is not None:
            try:
                return date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                pass
    raise _fail("must be a real date written like 2026-11-20 (YYYY-MM-DD)")


def _check_version(value: int) -> int:
    if value != 1:
        raise _fail("must be 1, the protocol version")
    return value


def _check_key(value: str) -> str:
    if _HEX64.fullmatch(value) is None:
        raise _fail("must be an Ed25519 public key written as 64 lower-case hex characters")
    if not is_valid_public_key(bytes.fromhex(value)):
        raise _fail(
            "is not a usable Ed25519 public key (not a valid point of the prime-order "
            "subgroup); generate a new key pair"
        )
    return value


def _check_flag_id(value: str) -> str:
    match = _FLAG_ID.fullmatch(value)
    if match is None or match[2] not in _FLAG_CODES:
        raise _fail(
            "must be a flag id: the 64-hex id of the event that raised it, a slash, and a flag code"
        )
    return value


def _check_country(value: str) -> str:
    if value not in COUNTRIES:
        raise _fail("must be a country code of ISO 3166-1 in two capital letters, like CD or UG")
    return value


def _check_currency(value: str) -> str:
    if value not in CURRENCIES:
        raise _fail("must be a currency code of ISO 4217 in three capital letters, like USD")
    return value


def _coordinate(limit: int, what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if _COORDINATE.fullmatch(value) is None or abs(Decimal(value)) > limit:
            raise _fail(
                f'must be a {what} in decimal degrees written as text, like "-1.23456" '
                f"(at most 5 decimals, within ±{limit})"
            )
        return value

    return check


def _forbidden_character(value: str) -> str | None:
    for char in value:
        if char in "\u2028\u2029" or (ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F):
            return f"U+{ord(char):04X}"
    return None


def _text(limit: int, what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not 1 <= len(value) <= limit:
            raise _fail(f"must be {what} of 1 to {limit} characters")
        bad = _forbidden_character(value)
        if bad is not None:
            raise _fail(
                f"must not hold control characters such as line breaks or tabs (found {bad})"
            )
        return value

    return check


_E = TypeVar("_E", bound=StrEnum)


def _vocabulary(enum: type[StrEnum]) -> BeforeValidator:
    allowed = ", ".join(member.value for member in enum)
    # what ``enum(value)`` finds for a string, looked up without the enum machinery
    members: dict[str, StrEnum] = {member.value: member for member in enum}

    def check(value: object) -> object:
        if isinstance(value, str):
            member = members.get(value)
            if member is not None:
                return member
        raise _fail(f"must be one of: {allowed}")

    return BeforeValidator(check)


def _distinct(values: list[_E]) -> list[_E]:
    seen: set[_E] = set()
    for value in values:
        if value in seen:
            raise _fail(f"lists {value.value!r} twice; each value may appear only once")
        seen.add(value)
    return values


def _non_empty(values: list[_E]) -> list[_E]:
    if not values:
        raise _fail("must list at least one value")
    return values


# ---------------------------------------------------------------------------
# Field types

Count = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]
Mass = Annotated[int, Strict(), Field(ge=1, le=MAX_MASS_MG)]
AmountMg = Annotated[int, Strict(), Field(ge=0, le=MAX_MASS_MG)]
Fineness = Annotated[int, Strict(), Field(ge=1, le=MAX_PPM)]
Version = Annotated[int, Strict(), AfterValidator(_check_version)]
Year = Annotated[int, Strict(), Field(ge=1, le=9999)]
Flag = Annotated[bool, Strict()]

#: the patterns of ids, shared by their types and the fast checks of ``check_body``
_ID_PATTERN = r"[a-z0-9][a-z0-9-]{2,63}"
_LOT_ID_PATTERN = r"[A-Z0-9][A-Z0-9-]{3,47}"
_EVENT_ID_PATTERN = r"[0-9a-f]{64}"
_LOT_PREFIX_PATTERN = r"[A-Z0-9]{2,16}-"

ActorId = Annotated[
    str,
    Strict(),
    AfterValidator(
        _matcher(
            _ID_PATTERN,
            "an actor id: 3 to 64 lower-case letters, digits or hyphens, "
            "starting with a letter or digit",
        )
    ),
]
SiteId = Annotated[
    str,
    Strict(),
    AfterValidator(
        _matcher(
            _ID_PATTERN,
            "a site id: 3 to 64 lower-case letters, digits or hyphens, "
            "starting with a letter or digit",
        )
    ),
]
LotPrefix = Annotated[
    str,
    Strict(),
    AfterValidator(
        _matcher(
            _LOT_PREFIX_PATTERN,
            "a lot prefix: 2 to 16 capital letters or digits followed by a hyphen, like MAK-",
        )
    ),
]
LotId = Annotated[
    str,
    Strict(),
    AfterValidator(
        _matcher(
            _LOT_ID_PATTERN,
            "a lot id: 4 to 48 capital letters, digits or hyphens, "
            "starting with a letter or digit, like MAK-2026-0001",
        )
    ),
]
EventId = Annotated[
    str,
    Strict(),
    AfterValidator(_matcher(_EVENT_ID_PATTERN, "an event id: 64 lower-case hex characters")),
]
FlagId = Annotated[str, Strict(), AfterValidator(_check_flag_id)]
PublicKey = Annotated[str, Strict(), AfterValidator(_check_key)]
Time = Annotated[str, Strict(), AfterValidator(_check_time)]
Day = Annotated[date, BeforeValidator(_to_date)]
Country = Annotated[str, Strict(), AfterValidator(_check_country)]
Currency = Annotated[str, Strict(), AfterValidator(_check_currency)]
Latitude = Annotated[str, Strict(), AfterValidator(_coordinate(90, "latitude"))]
Longitude = Annotated[str, Strict(), AfterValidator(_coordinate(180, "longitude"))]
FreeText = Annotated[str, Strict(), AfterValidator(_text(FREE_TEXT_MAX, "text"))]
Reference = Annotated[str, Strict(), AfterValidator(_text(REFERENCE_MAX, "a reference"))]

RoleValue = Annotated[Role, _vocabulary(Role)]
FormValue = Annotated[Form, _vocabulary(Form)]
ProcessValue = Annotated[Process, _vocabulary(Process)]
FlagCodeValue = Annotated[FlagCode, _vocabulary(FlagCode)]
SiteStatusValue = Annotated[SiteStatus, _vocabulary(SiteStatus)]
DepositValue = Annotated[Deposit, _vocabulary(Deposit)]
ChildLabourValue = Annotated[ChildLabour, _vocabulary(ChildLabour)]
ArmedGroupsValue = Annotated[ArmedGroups, _vocabulary(ArmedGroups)]
SecurityForcesValue = Annotated[SecurityForces, _vocabulary(SecurityForces)]
PaymentMethodValue = Annotated[PaymentMethod, _vocabulary(PaymentMethod)]
SellerSexValue = Annotated[SellerSex, _vocabulary(SellerSex)]
PitOwnerValue = Annotated[PitOwner, _vocabulary(PitOwner)]
WomenRoleValue = Annotated[WomenRole, _vocabulary(WomenRole)]
AssayMethodValue = Annotated[AssayMethod, _vocabulary(AssayMethod)]
OutcomeValue = Annotated[Outcome, _vocabulary(Outcome)]
SchemeValue = Annotated[Scheme, _vocabulary(Scheme)]
StatePaymentKindValue = Annotated[StatePaymentKind, _vocabulary(StatePaymentKind)]

_FLAG_CODES = frozenset(code.value for code in FlagCode)


# ---------------------------------------------------------------------------
# Nested models


@cache
def _wire_names(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(info.alias or name for name, info in model.model_fields.items())


@cache
def _required_wire_names(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        info.alias or name for name, info in model.model_fields.items() if info.is_required()
    )


class _Model(BaseModel):
    """Strict, closed, read-only: no coercion, no unknown field, no null."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_null(cls, data: Any) -> Any:
        # ``None in values()`` finds every null value (identity is tried first), in C
        if isinstance(data, dict) and None in data.values():
            names = _wire_names(cls)
            for key, value in data.items():
                if value is None and key in names:
                    if key in _required_wire_names(cls):
                        raise _fail("is required and cannot be null", key)
                    raise _fail("is null; an optional field is left out, never sent as null", key)
        return data


class Money(_Model):
    """An amount in the currency's minor unit (UGX has none; USD and CDF have cents)."""

    amount_minor: Count
    currency: Currency


class Licence(_Model):
    """A licence or permit: valid up to and including ``valid_until``."""

    number: Reference
    issuer: Reference
    valid_until: Day


class WomenTotal(_Model):
    """A headcount of which ``women`` are women; ``women`` ≤ ``total``."""

    women: Count
    total: Count

    @model_validator(mode="after")
    def _women_within_total(self) -> Self:
        if self.women > self.total:
            raise _fail(f"must not be more than total ({self.total})", "women")
        return self


class WomenMen(_Model):
    """A headcount split into women and men."""

    women: Count
    men: Count


class Profile(_Model):
    """An organisation's gender profile (counts only): all three fields, none of which
    PROTOCOL.md section 5 marks optional; an update replaces the whole profile."""

    women_led: Flag
    members: WomenTotal
    leaders: WomenTotal


class Location(_Model):
    """Decimal-degree coordinates, as strings of at most 5 decimals."""

    lat: Latitude
    lon: Longitude


class WomenOwned(_Model):
    """How many pits and processing units women own at a site."""

    pits: Count
    processing_units: Count


class DailyIncome(_Model):
    """Median daily income at a site, for women and for men."""

    women: Money
    men: Money


class GbvReports(_Model):
    """Reports of gender-based violence at a site over a period of days: two counts, each
    ≥ 0 (PROTOCOL.md section 5: site indicators are counts and money only)."""

    count: Count
    period_days: Count


class Extracted(_Model):
    """The dates a lot was extracted: ``from`` ≤ ``to``, at most 92 days inclusive."""

    from_: Day = Field(alias="from")
    to: Day

    @model_validator(mode="after")
    def _span(self) -> Self:
        if self.from_ > self.to:
            raise _fail("must be on or before extracted.to", "from")
        if (self.to - self.from_).days + 1 > MAX_EXTRACTION_DAYS:
            raise _fail(
                f"must be at most {MAX_EXTRACTION_DAYS} days after extracted.from, counting "
                "both days; register longer periods as several lots",
                "to",
            )
        return self

    @property
    def days(self) -> int:
        """Number of days of extraction, counting both ends."""
        return (self.to - self.from_).days + 1


class Producers(_Model):
    """The people who produced a lot: together at least one."""

    women: Count
    men: Count
    women_led: Flag | None = None
    pit_owner: PitOwnerValue | None = None
    women_roles: Annotated[list[WomenRoleValue], AfterValidator(_distinct)] | None = None

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if self.women + self.men < 1:
            raise _fail("women + men must be at least 1: someone produced this lot", "men")
        return self


class Payment(_Model):
    """What the producers were paid: ``to_women`` ≤ ``total``, in the same currency."""

    total: Money
    to_women: Money

    @model_validator(mode="after")
    def _within_total(self) -> Self:
        if self.to_women.currency != self.total.currency:
            raise _fail(
                f"must be in the same currency as total ({self.total.currency})",
                "to_women.currency",
            )
        if self.to_women.amount_minor > self.total.amount_minor:
            raise _fail(
                f"must not be more than total ({self.total.amount_minor})",
                "to_women.amount_minor",
            )
        return self


class Declarations(_Model):
    """The cooperative's due-diligence declaration for a lot."""

    child_labour: ChildLabourValue
    forced_labour: Flag
    armed_groups: ArmedGroupsValue
    security_forces: SecurityForcesValue


class StatePayment(_Model):
    """A royalty, tax or fee paid to the state, with its receipt."""

    kind: StatePaymentKindValue
    amount: Money
    receipt: Reference


class Input(_Model):
    """An input of ``lot.processed``: a lot and its current head."""

    lot: LotId
    prev: EventId


class Bar(_Model):
    """A bar's serial number and year."""

    serial: Reference
    year: Year


class Output(_Model):
    """An output of ``lot.processed``: a new lot; ``bar`` is present iff form is bar."""

    lot: LotId
    mass_mg: Mass
    form: FormValue
    fineness_ppm: Fineness
    bar: Bar | None = None

    @model_validator(mode="after")
    def _bar_iff_bar(self) -> Self:
        if self.form is Form.BAR and self.bar is None:
            raise _fail("is required when form is bar: give {serial, year}", "bar")
        if self.form is not Form.BAR and self.bar is not None:
            raise _fail(f"is only for form bar, not {self.form.value}; remove it", "bar")
        return self


class Signature(_Model):
    """An envelope's signature: the signer's public key and the Ed25519 signature, in hex."""

    key: Annotated[
        str,
        Strict(),
        AfterValidator(
            _matcher(r"[0-9a-f]{64}", "an Ed25519 public key: 64 lower-case hex characters")
        ),
    ]
    value: Annotated[
        str,
        Strict(),
        AfterValidator(
            _matcher(r"[0-9a-f]{128}", "an Ed25519 signature: 128 lower-case hex characters")
        ),
    ]


# ---------------------------------------------------------------------------
# Event bodies


class _Body(_Model):
    """Fields every body has: ``v``, ``actor`` and ``time`` (``type`` is per model)."""

    v: Version
    actor: ActorId
    time: Time

    @property
    def at(self) -> datetime:
        """The signer's ``time`` as an aware UTC datetime."""
        parsed = _parse_time(self.time)
        assert parsed is not None  # validated
        return parsed

    @property
    def day(self) -> date:
        """The UTC date of ``time``: the date every date rule uses."""
        return self.at.date()


class ActorRegistered(_Body):
    """``actor.registered``: a registrar registers an actor (or itself at seq 0)."""

    type: Literal["actor.registered"]
    subject: ActorId
    name: FreeText
    roles: Annotated[list[RoleValue], AfterValidator(_non_empty), AfterValidator(_distinct)]
    key: PublicKey
    country: Country
    lot_prefix: LotPrefix | None = None
    licence: Licence | None = None
    profile: Profile | None = None

    @model_validator(mode="after")
    def _prefix_iff_custody(self) -> Self:
        custody = any(role in CUSTODY_ROLES for role in self.roles)
        if custody and self.lot_prefix is None:
            raise _fail(
                "is required for an actor with a custody role (cooperative, processor, "
                "trader, exporter or refiner)",
                "lot_prefix",
            )
        if not custody and self.lot_prefix is not None:
            raise _fail(
                "is only given to an actor with a custody role (cooperative, processor, "
                "trader, exporter or refiner); remove it",
                "lot_prefix",
            )
        return self


class ActorUpdated(_Body):
    """``actor.updated``: a registrar changes an actor, or an actor its own profile.

    ``lot_prefix`` is deliberately not checked here: PROTOCOL.md checks it after the 403s,
    so ``ledger.rules`` does (``_actor_updated``).
    """

    type: Literal["actor.updated"]
    subject: ActorId
    name: FreeText | None = None
    roles: (
        Annotated[list[RoleValue], AfterValidator(_non_empty), AfterValidator(_distinct)] | None
    ) = None
    lot_prefix: LotPrefix | None = None
    licence: Licence | None = None
    profile: Profile | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if all(
            value is None
            for value in (self.name, self.roles, self.lot_prefix, self.licence, self.profile)
        ):
            raise _fail(
                "an update must change at least one of name, roles, lot_prefix, licence or profile",
                "subject",
            )
        return self


class ActorKeyRotated(_Body):
    """``actor.key_rotated``: the subject's new key; the old one stops being valid."""

    type: Literal["actor.key_rotated"]
    subject: ActorId
    key: PublicKey


class ActorRevoked(_Body):
    """``actor.revoked``: a registrar revokes an actor for good."""

    type: Literal["actor.revoked"]
    subject: ActorId
    reason: FreeText


class SiteRegistered(_Body):
    """``site.registered``: a registrar registers a mine site and its operator."""

    type: Literal["site.registered"]
    site: SiteId
    name: FreeText
    operator: ActorId
    country: Country
    region: Reference
    location: Location
    deposit: DepositValue | None = None
    icglr_id: Reference | None = None
    licence: Licence | None = None


class SiteAssessed(_Body):
    """``site.assessed``: a registrar or an auditor assesses a site; indicators optional."""

    type: Literal["site.assessed"]
    site: SiteId
    status: SiteStatusValue
    assessed_on: Day
    valid_until: Day
    cahra: Flag | None = None
    findings: Annotated[list[FlagCodeValue], AfterValidator(_distinct)] | None = None
    workforce: WomenMen | None = None
    leadership: WomenTotal | None = None
    women_owned: WomenOwned | None = None
    daily_income_median: DailyIncome | None = None
    gbv_reports: GbvReports | None = None
    mercury_exposure_pregnant: Count | None = None
    womens_association: Flag | None = None
    grievance_mechanism: Flag | None = None
    scheme: SchemeValue | None = None

    @model_validator(mode="after")
    def _dates(self) -> Self:
        if self.assessed_on > self.valid_until:
            raise _fail("must be on or after assessed_on", "valid_until")
        return self


class LotRegistered(_Body):
    """``lot.registered``: the site's operator registers a new lot of ore, concentrate or gold."""

    type: Literal["lot.registered"]
    lot: LotId
    site: SiteId
    mass_mg: Mass
    form: FormValue
    fineness_ppm: Fineness
    extracted: Extracted
    tag: Reference | None = None
    pit: Reference | None = None
    producers: Producers
    recovery: ProcessValue
    declarations: Declarations
    payment: Payment | None = None
    state_payments: list[StatePayment] | None = None

    @model_validator(mode="after")
    def _registration(self) -> Self:
        if self.form not in REGISTRABLE_FORMS:
            raise _fail(
                "must be ore, concentrate or gold when a lot is registered; dore and bar "
                "only come out of lot.processed",
                "form",
            )
        if self.extracted.to > self.day:
            raise _fail(
                f"must not be after the date of time ({self.day.isoformat()})", "extracted.to"
            )
        return self


class LotTransferOffered(_Body):
    """``lot.transfer_offered``: the custodian offers a lot to another actor."""

    type: Literal["lot.transfer_offered"]
    lot: LotId
    prev: EventId
    to: ActorId
    mass_mg: Mass
    price: Money | None = None
    payment_method: PaymentMethodValue | None = None
    seal: Reference | None = None
    seller_sex: SellerSexValue | None = None

    @model_validator(mode="after")
    def _another_actor(self) -> Self:
        if self.to == self.actor:
            raise _fail("must be another actor: a lot cannot be offered to oneself", "to")
        return self


class LotTransferAccepted(_Body):
    """``lot.transfer_accepted``: the offer's recipient accepts it, weighing the lot."""

    type: Literal["lot.transfer_accepted"]
    lot: LotId
    prev: EventId
    offer: EventId
    mass_mg: Mass


class LotTransferRejected(_Body):
    """``lot.transfer_rejected``: the offer's recipient refuses it."""

    type: Literal["lot.transfer_rejected"]
    lot: LotId
    prev: EventId
    offer: EventId
    reason: FreeText


class LotTransferCancelled(_Body):
    """``lot.transfer_cancelled``: the offerer withdraws its offer."""

    type: Literal["lot.transfer_cancelled"]
    lot: LotId
    prev: EventId
    offer: EventId
    reason: FreeText


def _distinct_lots(items: Sequence[Input | Output], what: str) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.lot in seen:
            raise _fail(f"names lot {item.lot} twice in {what}", f"{what}[{index}].lot")
        seen.add(item.lot)


class LotProcessed(_Body):
    """``lot.processed``: the custodian turns 1..100 input lots into 1..1000 new lots."""

    type: Literal["lot.processed"]
    inputs: Annotated[list[Input], Field(min_length=1, max_length=MAX_INPUTS)]
    outputs: Annotated[list[Output], Field(min_length=1, max_length=MAX_OUTPUTS)]
    process: ProcessValue
    workers: WomenMen | None = None
    mercury_used_mg: AmountMg | None = None
    mercury_recovered_mg: AmountMg | None = None

    @model_validator(mode="after")
    def _lots_and_mercury(self) -> Self:
        _distinct_lots(self.inputs, "inputs")
        _distinct_lots(self.outputs, "outputs")
        inputs = {item.lot for item in self.inputs}
        for index, output in enumerate(self.outputs):
            if output.lot in inputs:
                raise _fail(
                    f"must be a new lot, but {output.lot} is also an input",
                    f"outputs[{index}].lot",
                )
        if self.mercury_recovered_mg is not None:
            if self.mercury_used_mg is None:
                raise _fail(
                    "needs mercury_used_mg: give the mercury used as well",
                    "mercury_recovered_mg",
                )
            if self.mercury_recovered_mg > self.mercury_used_mg:
                raise _fail(
                    f"must not be more than mercury_used_mg ({self.mercury_used_mg})",
                    "mercury_recovered_mg",
                )
        return self


class LotAssayed(_Body):
    """``lot.assayed``: an assayer or the custodian measures a lot's fineness."""

    type: Literal["lot.assayed"]
    lot: LotId
    prev: EventId
    fineness_ppm: Fineness
    mass_mg: Mass | None = None
    method: AssayMethodValue
    certificate: Reference | None = None


class LotExported(_Body):
    """``lot.exported``: the custodian, an exporter, records an export destination."""

    type: Literal["lot.exported"]
    lot: LotId
    prev: EventId
    destination: Country
    permit: Reference
    certificate: Reference | None = None
    state_payments: list[StatePayment] | None = None


class LotFlagged(_Body):
    """``lot.flagged``: an auditor, a registrar or the custodian raises a flag."""

    type: Literal["lot.flagged"]
    lot: LotId
    prev: EventId
    code: FlagCodeValue
    note: FreeText


class LotFlagResolved(_Body):
    """``lot.flag_resolved``: an auditor or a registrar resolves one open flag."""

    type: Literal["lot.flag_resolved"]
    lot: LotId
    prev: EventId
    flag: FlagId
    outcome: OutcomeValue
    resolution: FreeText


EventBody = Annotated[
    ActorRegistered
    | ActorUpdated
    | ActorKeyRotated
    | ActorRevoked
    | SiteRegistered
    | SiteAssessed
    | LotRegistered
    | LotTransferOffered
    | LotTransferAccepted
    | LotTransferRejected
    | LotTransferCancelled
    | LotProcessed
    | LotAssayed
    | LotExported
    | LotFlagged
    | LotFlagResolved,
    Field(discriminator="type"),
]

#: the model of every event type, by its ``type``
TYPE_MODELS: dict[str, type[_Body]] = {
    "actor.registered": ActorRegistered,
    "actor.updated": ActorUpdated,
    "actor.key_rotated": ActorKeyRotated,
    "actor.revoked": ActorRevoked,
    "site.registered": SiteRegistered,
    "site.assessed": SiteAssessed,
    "lot.registered": LotRegistered,
    "lot.transfer_offered": LotTransferOffered,
    "lot.transfer_accepted": LotTransferAccepted,
    "lot.transfer_rejected": LotTransferRejected,
    "lot.transfer_cancelled": LotTransferCancelled,
    "lot.processed": LotProcessed,
    "lot.assayed": LotAssayed,
    "lot.exported": LotExported,
    "lot.flagged": LotFlagged,
    "lot.flag_resolved": LotFlagResolved,
}

EVENT_TYPES: frozenset[str] = frozenset(TYPE_MODELS)


# ---------------------------------------------------------------------------
# Fast checks: for the commonest event types, a plain-Python check that proves a body
# valid without building its model. Each accepts only bodies the model accepts (exact
# types, the same patterns and limits, the same cross-field rules) and answers False for
# anything else, optional fields included: ``check_body`` then runs ``parse_body``,
# which accepts or gives its usual error.

_is_id = re.compile(_ID_PATTERN).fullmatch
_is_lot_id = re.compile(_LOT_ID_PATTERN).fullmatch
_is_event_id = re.compile(_EVENT_ID_PATTERN).fullmatch
_REGISTRABLE_VALUES = frozenset(member.value for member in REGISTRABLE_FORMS)
_PROCESS_VALUES = frozenset(member.value for member in Process)
_ASSAY_METHOD_VALUES = frozenset(member.value for member in AssayMethod)
_CHILD_LABOUR_VALUES = frozenset(member.value for member in ChildLabour)
_ARMED_GROUPS_VALUES = frozenset(member.value for member in ArmedGroups)
_SECURITY_FORCES_VALUES = frozenset(member.value for member in SecurityForces)


def _fast_common(body: dict[str, Any], fields: frozenset[str]) -> bool:
    """``body`` has exactly ``fields`` and a valid ``v``, ``actor`` and ``time``."""
    if body.keys() != fields:
        return False
    v, actor, time = body["v"], body["actor"], body["time"]
    return (
        type(v) is int
        and v == 1
        and type(actor) is str
        and _is_id(actor) is not None
        and type(time) is str
        and _parse_time(time) is not None
    )


def _fast_int(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _fast_str(value: object, match: Callable[[str], object]) -> bool:
    return type(value) is str and match(value) is not None


def _fast_date(value: object) -> date | None:
    if type(value) is not str:
        return None
    if _DATE.fullmatch(value) is None:
        return None
    try:
        return date.fromisoformat(value)  # YYYY-MM-DD: the same date as date(y, m, d)
    except ValueError:
        return None


_OFFERED_FIELDS = frozenset({"v", "type", "actor", "time", "lot", "prev", "to", "mass_mg"})


def _fast_transfer_offered(body: dict[str, Any]) -> bool:
    to = body.get("to")
    return (
        _fast_common(body, _OFFERED_FIELDS)
        and _fast_str(body["lot"], _is_lot_id)
        and _fast_str(body["prev"], _is_event_id)
        and _fast_str(to, _is_id)
        and _fast_int(body["mass_mg"], 1, MAX_MASS_MG)
        and to != body["actor"]
    )


_ACCEPTED_FIELDS = frozenset({"v", "type", "actor", "time", "lot", "prev", "offer", "mass_mg"})


def _fast_transfer_accepted(body: dict[str, Any]) -> bool:
    return (
        _fast_common(body, _ACCEPTED_FIELDS)
        and _fast_str(body["lot"], _is_lot_id)
        and _fast_str(body["prev"], _is_event_id)
        and _fast_str(body["offer"], _is_event_id)
        and _fast_int(body["mass_mg"], 1, MAX_MASS_MG)
    )


_ASSAYED_FIELDS = frozenset({"v", "type", "actor", "time", "lot", "prev", "fineness_ppm", "method"})


def _fast_assayed(body: dict[str, Any]) -> bool:
    method = body.get("method")
    return (
        _fast_common(body, _ASSAYED_FIELDS)
        and _fast_str(body["lot"], _is_lot_id)
        and _fast_str(body["prev"], _is_event_id)
        and _fast_int(body["fineness_ppm"], 1, MAX_PPM)
        and type(method) is str
        and method in _ASSAY_METHOD_VALUES
    )


_REGISTERED_FIELDS = frozenset(
    {
        "v",
        "type",
        "actor",
        "time",
        "lot",
        "site",
        "mass_mg",
        "form",
        "fineness_ppm",
        "extracted",
        "producers",
        "recovery",
        "declarations",
    }
)
_EXTRACTED_FIELDS = frozenset({"from", "to"})
_PRODUCERS_FIELDS = frozenset({"women", "men"})
_DECLARATIONS_FIELDS = frozenset(
    {"child_labour", "forced_labour", "armed_groups", "security_forces"}
)


def _fast_lot_registered(body: dict[str, Any]) -> bool:
    if not _fast_common(body, _REGISTERED_FIELDS):
        return False
    form, recovery = body["form"], body["recovery"]
    if not (
        _fast_str(body["lot"], _is_lot_id)
        and _fast_str(body["site"], _is_id)
        and _fast_int(body["mass_mg"], 1, MAX_MASS_MG)
        and type(form) is str
        and form in _REGISTRABLE_VALUES
        and _fast_int(body["fineness_ppm"], 1, MAX_PPM)
        and type(recovery) is str
        and recovery in _PROCESS_VALUES
    ):
        return False
    extracted, producers, decl = body["extracted"], body["producers"], body["declarations"]
    if not (
        type(extracted) is dict
        and extracted.keys() == _EXTRACTED_FIELDS
        and type(producers) is dict
        and producers.keys() == _PRODUCERS_FIELDS
        and type(decl) is dict
        and decl.keys() == _DECLARATIONS_FIELDS
    ):
        return False
    start, end = _fast_date(extracted["from"]), _fast_date(extracted["to"])
    if start is None or end is None or start > end:
        return False
    if (end - start).days + 1 > MAX_EXTRACTION_DAYS:
        return False
    at = _parse_time(body["time"])
    if at is None or end > at.date():
        return False
    women, men = producers["women"], producers["men"]
    if not (_fast_int(women, 0, MAX_COUNT) and _fast_int(men, 0, MAX_COUNT)):
        return False
    if women + men < 1:
        return False
    child, armed, security = decl["child_labour"], decl["armed_groups"], decl["security_forces"]
    return (
        type(child) is str
        and child in _CHILD_LABOUR_VALUES
        and type(decl["forced_labour"]) is bool
        and type(armed) is str
        and armed in _ARMED_GROUPS_VALUES
        and type(security) is str
        and security in _SECURITY_FORCES_VALUES
    )


_PROCESSED_FIELDS = frozenset({"v", "type", "actor", "time", "inputs", "outputs", "process"})
_INPUT_FIELDS = frozenset({"lot", "prev"})
_OUTPUT_FIELDS = frozenset({"lot", "mass_mg", "form", "fineness_ppm"})
#: the forms of an output without ``bar`` (a bar needs one)
_BARLESS_FORM_VALUES = frozenset(member.value for member in Form if member is not Form.BAR)


def _fast_lot_processed(body: dict[str, Any]) -> bool:
    if not _fast_common(body, _PROCESSED_FIELDS):
        return False
    inputs, outputs, process = body["inputs"], body["outputs"], body["process"]
    if not (
        type(inputs) is list
        and 1 <= len(inputs) <= MAX_INPUTS
        and type(outputs) is list
        and 1 <= len(outputs) <= MAX_OUTPUTS
        and type(process) is str
        and process in _PROCESS_VALUES
    ):
        return False
    lots: set[str] = set()
    for item in inputs:
        if not (
            type(item) is dict
            and item.keys() == _INPUT_FIELDS
            and _fast_str(item["lot"], _is_lot_id)
            and _fast_str(item["prev"], _is_event_id)
        ):
            return False
        lots.add(item["lot"])
    for out in outputs:
        if not (type(out) is dict and out.keys() == _OUTPUT_FIELDS):
            return False
        form = out["form"]
        if not (
            _fast_str(out["lot"], _is_lot_id)
            and _fast_int(out["mass_mg"], 1, MAX_MASS_MG)
            and type(form) is str
            and form in _BARLESS_FORM_VALUES
            and _fast_int(out["fineness_ppm"], 1, MAX_PPM)
        ):
            return False
        lots.add(out["lot"])
    # no input named twice, no output named twice, no output that is also an input
    return len(lots) == len(inputs) + len(outputs)


_ACTOR_FIELDS = frozenset(
    {"v", "type", "actor", "time", "subject", "name", "roles", "key", "country"}
)
_CUSTODIAN_FIELDS = _ACTOR_FIELDS | {"lot_prefix"}
_ROLE_VALUES = frozenset(member.value for member in Role)
_CUSTODY_VALUES = frozenset(member.value for member in CUSTODY_ROLES)
_is_lot_prefix = re.compile(_LOT_PREFIX_PATTERN).fullmatch


def _fast_actor_registered(body: dict[str, Any]) -> bool:
    roles = body.get("roles")
    if type(roles) is not list or not roles:
        return False
    for role in roles:
        if type(role) is not str or role not in _ROLE_VALUES:
            return False
    if len(set(roles)) != len(roles):
        return False
    # a lot prefix exactly when a role may hold lots
    custody = not _CUSTODY_VALUES.isdisjoint(roles)
    if not _fast_common(body, _CUSTODIAN_FIELDS if custody else _ACTOR_FIELDS):
        return False
    name, key, country = body["name"], body["key"], body["country"]
    return (
        _fast_str(body["subject"], _is_id)
        and type(name) is str
        and 1 <= len(name) <= FREE_TEXT_MAX
        and _forbidden_character(name) is None
        and (not custody or _fast_str(body["lot_prefix"], _is_lot_prefix))
        and type(key) is str
        and _HEX64.fullmatch(key) is not None
        and is_valid_public_key(bytes.fromhex(key))
        and type(country) is str
        and country in COUNTRIES
    )


#: the fast check of each event type that has one
FAST_CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "actor.registered": _fast_actor_registered,
    "lot.registered": _fast_lot_registered,
    "lot.transfer_offered": _fast_transfer_offered,
    "lot.transfer_accepted": _fast_transfer_accepted,
    "lot.processed": _fast_lot_processed,
    "lot.assayed": _fast_assayed,
}


# ---------------------------------------------------------------------------
# Entry points

_UNITS = {
    "mass_mg": " mg",
    "mercury_used_mg": " mg",
    "mercury_recovered_mg": " mg",
    "fineness_ppm": " ppm",
    "amount_minor": " (in the currency's minor unit)",
}


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "body"


def _reason(error: ErrorDetails, field: str) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    unit = _UNITS.get(field, "")
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a field of this object (unknown field); remove it"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return "must be a whole number (not text, a decimal or true/false)"
    if kind in {"bool_type", "bool_parsing"}:
        return "must be true or false (not text or a number)"
    if kind == "string_type":
        return "must be text (a JSON string)"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return "must be an object ({...})"
    if kind == "list_type":
        return "must be a list ([...])"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}{unit}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}{unit}"
    if kind == "too_short":
        return f"must hold at least {ctx['min_length']} item(s)"
    if kind == "too_long":
        return f"must hold at most {ctx['max_length']} items"
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    message: str = error["msg"]
    return message[:1].lower() + message[1:]


def _schema_error(exc: ValidationError, prefix: Sequence[int | str] = ()) -> SchemaError:
    error = exc.errors(include_url=False)[0]
    loc: list[int | str] = [*prefix, *error["loc"]]
    ctx: dict[str, Any] = error.get("ctx") or {}
    if error["type"] == _GOLDTRAIL:
        for part in re.split(r"\.|(?=\[)", str(ctx.get("field", ""))):
            if part.startswith("["):
                loc.append(int(part[1:-1]))
            elif part:
                loc.append(part)
        reason = str(ctx.get("reason", error["msg"]))
    else:
        last = loc[-1] if loc and isinstance(loc[-1], str) else ""
        reason = _reason(error, last)
    return SchemaError(f"{_path(loc)}: {reason}.")


def parse_body(body: object) -> EventBody:
    """Validate a parsed JSON event body and return its typed, read-only model.

    Raises SchemaError, naming the first failing field, if the body is not an object, has
    an unknown ``type`` or breaks any rule of PROTOCOL.md that needs the body alone.
    """
    if not isinstance(body, dict):
        raise SchemaError("body: an event body must be a JSON object ({...}).")
    kind = body.get("type")
    if "type" not in body:
        raise SchemaError("type: is required but missing.")
    if not isinstance(kind, str):
        raise SchemaError('type: must be text naming the event type, like "lot.registered".')
    model = TYPE_MODELS.get(kind)
    if model is None:
        shown = kind if len(kind) <= 60 else kind[:57] + "..."
        raise SchemaError(
            f"type: unknown event type {shown!r}; it must be one of the types of "
            'PROTOCOL.md section 5, like "lot.registered".'
        )
    try:
        return model.model_validate(body)  # type: ignore[return-value]
    except ValidationError as exc:
        raise _schema_error(exc) from None


def check_body(body: object) -> None:
    """Check a body exactly as ``parse_body`` does, without returning its model.

    A body of a type with a fast check that proves it valid is accepted without building
    the model; any other body goes through ``parse_body``, which raises its SchemaError.
    """
    if type(body) is dict:
        kind = body.get("type")
        if type(kind) is str:
            fast = FAST_CHECKS.get(kind)
            if fast is not None and fast(body):
                return
    parse_body(body)


def parse_envelope(value: object) -> tuple[dict[str, Any], Signature]:
    """Check an envelope's shape and return its body (the original dict) and signature.

    The body is returned untouched, so that its id is computed from what the signer sent;
    check it with ``parse_body``. Raises SchemaError if the envelope is not an object with
    exactly ``body`` (an object) and ``signature`` ``{key, value}`` in lower-case hex.
    """
    if not isinstance(value, dict):
        raise SchemaError("envelope: an event must be a JSON object {body, signature}.")
    for key in value:
        if key not in ("body", "signature"):
            raise SchemaError(
                f"{key}: is not part of an envelope (unknown field); an envelope holds "
                "only body and signature."
            )
    for key in ("body", "signature"):
        if key not in value:
            raise SchemaError(f"{key}: is required but missing from the envelope.")
    body = value["body"]
    if not isinstance(body, dict):
        raise SchemaError("body: an event body must be a JSON object ({...}).")
    try:
        signature = Signature.model_validate(value["signature"])
    except ValidationError as exc:
        raise _schema_error(exc, ("signature",)) from None
    return body, signature


def split_flag_id(flag: str) -> tuple[str, FlagCode]:
    """Split a validated flag id into the id of the event that raised it and its code.

    Raises SchemaError if ``flag`` is not a flag id.
    """
    match = _FLAG_ID.fullmatch(flag)
    if match is None or match[2] not in _FLAG_CODES:
        raise SchemaError("flag: must be a flag id: an event id, a slash and a flag code.")
    return match[1], FlagCode(match[2])

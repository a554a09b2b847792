"""Response and request shapes for the OpenAPI document (the wire shapes of section 6)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

HEX64 = r"^[0-9a-f]{64}$"

RECEIPT_EXAMPLE = {
    "event_id": "ff2158bdf5b845bc06333e213e4b1319d8c3862a01e79ad620bd11d10f5f15b2",
    "seq": 0,
    "leaf_hash": "429b1b1577aa6125fed0c75ccc53e96c3d367cb348f06a9dc6a9815b3be6c02a",
    "checkpoint": "goldtrail.example.org/log\n1\nQpsbFXeqYSX+0MdczFPpbD02fLNI8GqdxqmBWzvmwCo=\n\n"
    "— goldtrail.example.org/log 9iYi8w…\n",
}

LOT_EXAMPLE = {
    "lot": "ALP-2026-118842",
    "status": "active",
    "hold": False,
    "exported": False,
    "custodian": "refiner-alpine",
    "country": "CH",
    "destination": None,
    "mass_mg": 44800,
    "fineness_ppm": 999900,
    "form": "bar",
    "bar": {"serial": "AP-2026-118842", "year": 2026},
    "head": "2f1a64748363b854fce77729d052df0e281d42e6c75a009827ac10c5e8e531e8",
    "offer": None,
    "origins": ["site-busia-tiira", "site-kassanda-kitumbi", "site-mambasa-makala"],
    "risk": "medium",
    "flags": [
        {
            "id": "45910a37aaaeccd892fd4b983a6848479047fc5e68360c039036b710f7d47b87/site_yellow",
            "code": "site_yellow",
            "class": "medium",
            "status": "open",
        }
    ],
    "gender": {
        "producers": {"women": 30, "men": 18},
        "women_led_fine_mg": 37537,
        "origin_fine_mg": 44817,
        "paid": [
            {"currency": "CDF", "total": 198000000, "to_women": 132000000},
            {"currency": "UGX", "total": 5650000, "to_women": 3260000},
        ],
    },
}


class Problem(BaseModel):
    """An RFC 9457 problem with goldtrail's machine ``code``."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "urn:goldtrail:problem:stale_prev",
                "title": "Conflicts with the ledger's state",
                "status": 409,
                "detail": "Lot 'MAK-2026-0001' has moved on since this event was prepared.",
                "code": "stale_prev",
            }
        }
    )

    type: str
    title: str
    status: int
    detail: str
    code: str
    index: int | None = Field(default=None, description="the failing event of a batch")


class Signature(BaseModel):
    """An envelope's signature."""

    key: str = Field(pattern=HEX64)
    value: str = Field(pattern=r"^[0-9a-f]{128}$")


class Envelope(BaseModel):
    """A signed event: exactly ``body`` and ``signature``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "body": {
                    "v": 1,
                    "type": "actor.registered",
                    "actor": "registrar",
                    "time": "2026-11-01T08:00:00Z",
                    "subject": "registrar",
                    "name": "Ituri Provincial Mining Registry",
                    "roles": ["registrar"],
                    "key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                    "country": "CD",
                },
                "signature": {
                    "key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                    "value": "e655748764f05ba62dd3e109a7aeeefe1c5eb8c10056d9390a901f5472e1c1cd"
                    "632b367081d187e093093b0edbb5cc399d7f609c8de977e5e0df3ec857bcdb00",
                },
            }
        },
    )

    body: dict[str, Any]
    signature: Signature


class Batch(BaseModel):
    """Up to 1000 envelopes, appended in order, all or nothing."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"events": [Envelope.model_config["json_schema_extra"]["example"]]}  # type: ignore[index]
        },
    )

    events: list[Envelope] = Field(min_length=1, max_length=1000)


class Receipt(BaseModel):
    """Proof of acceptance: the event's place in the log and a checkpoint that includes it."""

    model_config = ConfigDict(json_schema_extra={"example": RECEIPT_EXAMPLE})

    event_id: str = Field(pattern=HEX64)
    seq: int = Field(ge=0)
    leaf_hash: str = Field(pattern=HEX64)
    checkpoint: str


class BatchReceipts(BaseModel):
    """One receipt per envelope of a batch, and the checkpoint that includes them all."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "receipts": [RECEIPT_EXAMPLE],
                "checkpoint": RECEIPT_EXAMPLE["checkpoint"],
            }
        }
    )

    receipts: list[Receipt]
    checkpoint: str


class LogInfo(BaseModel):
    """What a verifier needs to know about this log."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "origin": "goldtrail.example.org/log",
                "verifier_key": "goldtrail.example.org/log+3fb8bd98+"
                "Adwz60HZLFpB9nbXXkQ7AW5nLbq3dxRVLwYoxLV7BwwC",
                "registrar_key": "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",
                "size": 44,
                "root": "01a0afa6c1dc9ed35f1508281fa9d2f4ce6509618ba89a254ae23438a4c0aff0",
                "public_url": "https://goldtrail.example.org",
            }
        }
    )

    origin: str
    verifier_key: str
    registrar_key: str | None
    size: int = Field(ge=0)
    root: str = Field(pattern=HEX64)
    public_url: str | None = Field(
        default=None, description="base of the URLs in this server's QR codes (an addition)"
    )


class Entry(BaseModel):
    """One log entry."""

    seq: int = Field(ge=0)
    event_id: str = Field(pattern=HEX64)
    leaf_hash: str = Field(pattern=HEX64)
    envelope: Envelope


class EventEntry(BaseModel):
    """One event with its place in the log."""

    event_id: str = Field(pattern=HEX64)
    seq: int = Field(ge=0)
    leaf_hash: str = Field(pattern=HEX64)
    envelope: Envelope


class EntryPage(BaseModel):
    """A page of log entries; ``next`` is the next start, or null at the end."""

    items: list[Entry]
    next: Annotated[int, Field(ge=0)] | None = Field(
        description="the next start (send it as `start`, or as `cursor`), or null at the end"
    )


class InclusionProof(BaseModel):
    """An RFC 9162 audit path, lowest level first."""

    index: int
    size: int
    proof: list[str]


class ConsistencyProof(BaseModel):
    """An RFC 9162 consistency proof."""

    first: int
    second: int
    proof: list[str]


class Flag(BaseModel):
    """A due-diligence flag on a lot."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    code: str
    class_: Literal["hold", "high", "medium"] = Field(alias="class")
    status: Literal["open", "resolved"]
    outcome: Literal["unfounded", "remediated"] | None = None


class Offer(BaseModel):
    """A pending transfer offer."""

    id: str
    to: str
    mass_mg: int


class Paid(BaseModel):
    """Payments to producers in one currency."""

    currency: str
    total: int
    to_women: int


class Producers(BaseModel):
    """How many women and men produced the origins counted."""

    women: int = Field(ge=0)
    men: int = Field(ge=0)


class Gender(BaseModel):
    """The gender summary of section 7."""

    producers: Producers
    women_led_fine_mg: int
    origin_fine_mg: int
    paid: list[Paid]


class Bar(BaseModel):
    """A bar's serial number and year (outputs of form ``bar`` only)."""

    serial: str
    year: int


class Lot(BaseModel):
    """A lot's state."""

    model_config = ConfigDict(json_schema_extra={"example": LOT_EXAMPLE})

    lot: str
    status: Literal["active", "offered", "consumed"]
    hold: bool
    exported: bool
    custodian: str
    country: str | None
    destination: str | None
    mass_mg: int
    fineness_ppm: int
    form: Literal["ore", "concentrate", "gold", "dore", "bar"]
    bar: Bar | None
    head: str
    offer: Offer | None
    origins: list[str]
    risk: Literal["low", "medium", "high", "hold"]
    flags: list[Flag]
    gender: Gender
    created_event: str | None = None


class LotPage(BaseModel):
    """A page of lots."""

    items: list[Lot]
    next: str | None


class ActorKey(BaseModel):
    """A key an actor holds or held, with the log positions that gave and ended it."""

    key: str = Field(pattern=HEX64)
    since_seq: int = Field(ge=0, description="the seq of the event that gave the key")
    since_event: str = Field(pattern=HEX64)
    since_time: str = Field(description="that event's time")
    until_seq: int | None = Field(description="the seq of the event that ended it, or null")
    ended: Literal["rotated", "revoked"] | None = Field(description="how it ended, or null")


class Actor(BaseModel):
    """An organisation with its roles and key history."""

    id: str
    name: str
    roles: list[str]
    country: str
    lot_prefix: str | None
    licence: dict[str, Any] | None
    profile: dict[str, Any] | None
    status: Literal["active", "revoked"]
    revoked_reason: str | None
    key: str | None
    keys: list[ActorKey] = Field(description="every key the actor held, oldest first")
    registered_seq: int
    registered_by: str


class ActorPage(BaseModel):
    """A page of actors."""

    items: list[Actor]
    next: str | None


class SiteAssessment(BaseModel):
    """A site's latest assessment and the indicators it signed."""

    event_id: str = Field(pattern=HEX64)
    status: Literal["green", "yellow", "red", "blue"] = Field(description="the colour assessed")
    assessed_on: str
    valid_until: str
    cahra: bool | None
    findings: list[str]
    indicators: dict[str, Any]


class Site(BaseModel):
    """A mine site with its current ICGLR colour and latest indicators."""

    id: str
    name: str
    operator: str
    country: str
    region: str
    location: dict[str, str]
    deposit: str | None
    icglr_id: str | None
    licence: dict[str, Any] | None
    status: Literal["green", "yellow", "red", "blue"] = Field(
        description="the ICGLR colour today: as assessed while valid, then blue (red stays red)"
    )
    assessment: SiteAssessment | None


class SitePage(BaseModel):
    """A page of sites."""

    items: list[Site]
    next: str | None


class LotEventPage(BaseModel):
    """A lot's own chain, oldest first."""

    items: list[Entry]
    next: str | None


class BundleLog(BaseModel):
    """The log a bundle comes from."""

    origin: str
    verifier_key: str
    registrar_key: str | None = Field(pattern=HEX64)


class BundleEntry(BaseModel):
    """One log entry of a bundle with its inclusion proof against the bundle's checkpoint."""

    seq: int = Field(ge=0)
    envelope: Envelope
    proof: list[Annotated[str, Field(pattern=HEX64)]]


class Bundle(BaseModel):
    """Everything needed to verify a lot offline (section 7), built for its current head."""

    format: Literal["goldtrail-bundle/1"]
    lot: str
    head: str = Field(pattern=HEX64)
    label_at: str | None = Field(pattern=HEX64, description="the `at` asked for, or null")
    log: BundleLog
    checkpoint: str = Field(description="the signed note every entry's proof is checked against")
    entries: list[BundleEntry] = Field(description="sorted by seq, each once")


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    checks: dict[str, Any] = Field(default_factory=dict)

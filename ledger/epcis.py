"""The log as a GS1 EPCIS 2.0 JSON-LD document (``GET /v1/export/epcis``).

Pure function of the event stream: no web, no clock (the caller passes ``created``).

Identifiers (informal ``urn:goldtrail:`` URNs: the ids are only unique within one log, so
exports from several logs should not be merged without the document ``id``):

- **eventID** = ``urn:goldtrail:event:<event id>``, the goldtrail event id (64 hex, SHA-256
  of the canonical body). The CBV 2.0 form ``ni:///sha-256;…?ver=CBV2.0`` is *not* used:
  it names the EPCIS event hash, computed by the CBV algorithm over the EPCIS event itself,
  and a tool recomputing it would find a different value. The hex id is repeated as
  ``gt:eventId`` with the log index as ``gt:seq``.
- **lots** are identified at class level, in ``quantityList`` / ``inputQuantityList`` /
  ``outputQuantityList`` with ``epcClass`` = ``urn:goldtrail:lot:<lot id>``: a lot is a
  quantity of material (like a GS1 LGTIN, GTIN + batch), and EPCIS carries a mass only on
  class-level identifiers. Masses are in grams, ``uom`` ``GRM``, ``quantity`` = mass_mg /
  1000 (exact for the protocol's milligrams: at most three decimals).
- **parties** ``urn:goldtrail:actor:<actor id>``; **sites** ``urn:goldtrail:site:<site id>``
  as ``readPoint`` and ``bizLocation`` of registrations.

Event mapping (only ``lot.*`` events are object events; actor and site events are master
data and are not exported):

- ``lot.registered``: ObjectEvent ``ADD``, bizStep ``commissioning``, disposition
  ``active``, at the site; the lot's master data (form, fineness, extraction dates) in
  ``ilmd``;
- ``lot.transfer_offered``: ObjectEvent ``OBSERVE``, ``shipping``, ``in_transit``, with
  the offerer as ``possessing_party`` source and the recipient as destination;
- ``lot.transfer_accepted``: ObjectEvent ``OBSERVE``, ``receiving``, ``in_progress``, the
  same source and destination, the mass weighed on receipt;
- ``lot.transfer_rejected`` and ``lot.transfer_cancelled``: ObjectEvent ``OBSERVE``,
  ``void_shipping``;
- ``lot.processed``: TransformationEvent, ``commissioning``, ``active``, inputs (with their
  masses just before) and outputs;
- ``lot.assayed``: ObjectEvent ``OBSERVE``, ``inspecting``;
- ``lot.exported``: ObjectEvent ``OBSERVE``, ``departing``, ``in_transit``;
- ``lot.flagged`` and ``lot.flag_resolved``: ObjectEvent ``OBSERVE``, ``inspecting``.

goldtrail attributes are in the extension namespace declared in ``@context`` (prefix
``gt``, ``GT_NAMESPACE``): ``gt:eventId``, ``gt:seq``, ``gt:eventType``, ``gt:actor``;
gender attributes ``gt:producers`` (``gt:women``, ``gt:men``, ``gt:womenLed``, …),
``gt:workers``, ``gt:sellerSex``, and for the outputs of processing the origin producers
and fine gold (``gt:womenLedFineMg``, ``gt:originFineMg``); due-diligence attributes
``gt:declarations``, ``gt:flagsRaised`` (every flag whose id starts with the event's id:
``gt:flagId``, ``gt:code``, ``gt:class``) and ``gt:flagResolved``. No payment or price is
exported (payment figures about people belong to suppressed reports, not to feeds).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any, Protocol

from ledger.reports import filter_day
from ledger.state import LotState, gender_summary

__all__ = [
    "EPCIS_CONTEXT",
    "GT_NAMESPACE",
    "GT_PREFIX",
    "LotLookup",
    "actor_uri",
    "epcis_document",
    "event_uri",
    "lot_uri",
    "site_uri",
]

#: the official EPCIS 2.0 JSON-LD context
EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
#: the prefix and namespace of goldtrail's EPCIS extension attributes
GT_PREFIX = "gt"
GT_NAMESPACE = "https://goldtrail.example/epcis/"
UTC_OFFSET = "+00:00"


class LotLookup(Protocol):
    """What the export reads from the state: lots, for their flags and origins."""

    def lot(self, lot_id: str) -> LotState | None:
        """The lot, or None."""


def event_uri(event_id: str) -> str:
    """The EPCIS ``eventID`` of a goldtrail event."""
    return f"urn:goldtrail:event:{event_id}"


def lot_uri(lot_id: str) -> str:
    """The EPC class URI of a lot."""
    return f"urn:goldtrail:lot:{lot_id}"


def actor_uri(actor_id: str) -> str:
    """The party URI of an actor."""
    return f"urn:goldtrail:actor:{actor_id}"


def site_uri(site_id: str) -> str:
    """The location URI of a site."""
    return f"urn:goldtrail:site:{site_id}"


def _grams(mass_mg: int) -> int | float:
    """mg → g, an integer when whole (1 mg = 0.001 g is exact in a double's shortest repr)."""
    return mass_mg // 1000 if mass_mg % 1000 == 0 else float(Fraction(mass_mg, 1000))


def _quantity(lot_id: str, mass_mg: int) -> dict[str, Any]:
    return {"epcClass": lot_uri(lot_id), "quantity": _grams(mass_mg), "uom": "GRM"}


def _gt(name: str) -> str:
    return f"{GT_PREFIX}:{name}"


def _party(kind: str, actor_id: str) -> dict[str, str]:
    key = "source" if kind == "source" else "destination"
    return {"type": "possessing_party", key: actor_uri(actor_id)}


_CAMEL = {
    "women_led": "womenLed",
    "pit_owner": "pitOwner",
    "women_roles": "womenRoles",
    "child_labour": "childLabour",
    "forced_labour": "forcedLabour",
    "armed_groups": "armedGroups",
    "security_forces": "securityForces",
}


def _ext(values: Mapping[str, Any]) -> dict[str, Any]:
    """Signed fields as extension attributes, ``snake_case`` → ``gt:camelCase``."""
    return {_gt(_CAMEL.get(k, k)): v for k, v in values.items()}


class _Tracker:
    """What the mapping needs to remember along the log: masses and pending offers."""

    def __init__(self) -> None:
        self.mass: dict[str, int] = {}
        self.offers: dict[str, tuple[str, str]] = {}  # offer event id → (offerer, recipient)


def _map(seq: int, event_id: str, body: Mapping[str, Any], t: _Tracker) -> dict[str, Any] | None:
    """Map one event to an EPCIS event (None for non-lot events); update the tracker."""
    kind = body["type"]
    if not kind.startswith("lot."):
        return None
    common: dict[str, Any] = {
        "eventID": event_uri(event_id),
        "eventTime": body["time"],
        "eventTimeZoneOffset": UTC_OFFSET,
    }
    ext: dict[str, Any] = {
        _gt("eventId"): event_id,
        _gt("seq"): seq,
        _gt("eventType"): kind,
        _gt("actor"): actor_uri(body["actor"]),
    }
    lot: str = body.get("lot", "")
    if kind == "lot.registered":
        t.mass[lot] = int(body["mass_mg"])
        ilmd = {
            _gt("form"): body["form"],
            _gt("finenessPpm"): body["fineness_ppm"],
            _gt("extractedFrom"): body["extracted"]["from"],
            _gt("extractedTo"): body["extracted"]["to"],
            _gt("recovery"): body["recovery"],
        }
        for name in ("tag", "pit"):
            if name in body:
                ilmd[_gt(name)] = body[name]
        return {
            "type": "ObjectEvent",
            **common,
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "quantityList": [_quantity(lot, t.mass[lot])],
            "readPoint": {"id": site_uri(body["site"])},
            "bizLocation": {"id": site_uri(body["site"])},
            "ilmd": ilmd,
            **ext,
            _gt("producers"): _ext(body["producers"]),
            _gt("declarations"): _ext(body["declarations"]),
        }
    if kind == "lot.processed":
        inputs = [_quantity(i["lot"], t.mass.get(i["lot"], 0)) for i in body["inputs"]]
        outputs = []
        details = []
        for out in body["outputs"]:
            t.mass[out["lot"]] = int(out["mass_mg"])
            outputs.append(_quantity(out["lot"], int(out["mass_mg"])))
            detail = {
                _gt("lot"): lot_uri(out["lot"]),
                _gt("form"): out["form"],
                _gt("finenessPpm"): out["fineness_ppm"],
            }
            if "bar" in out:
                detail[_gt("barSerial")] = out["bar"]["serial"]
                detail[_gt("barYear")] = out["bar"]["year"]
            details.append(detail)
        for i in body["inputs"]:
            t.mass.pop(i["lot"], None)
        event = {
            "type": "TransformationEvent",
            **common,
            "inputQuantityList": inputs,
            "outputQuantityList": outputs,
            "bizStep": "commissioning",
            "disposition": "active",
            **ext,
            _gt("process"): body["process"],
            _gt("outputs"): details,
        }
        if "workers" in body:
            event[_gt("workers")] = _ext(body["workers"])
        for name, key in (
            ("mercury_used_mg", "mercuryUsedMg"),
            ("mercury_recovered_mg", "mercuryRecoveredMg"),
        ):
            if name in body:
                event[_gt(key)] = body[name]
        return event

    event = {"type": "ObjectEvent", **common, "action": "OBSERVE"}
    if kind == "lot.transfer_offered":
        t.offers[event_id] = (body["actor"], body["to"])
        event.update(
            {
                "bizStep": "shipping",
                "disposition": "in_transit",
                "quantityList": [_quantity(lot, int(body["mass_mg"]))],
                "sourceList": [_party("source", body["actor"])],
                "destinationList": [_party("destination", body["to"])],
            }
        )
        event.update(ext)
        for name, key in (
            ("seller_sex", "sellerSex"),
            ("seal", "seal"),
            ("payment_method", "paymentMethod"),
        ):
            if name in body:
                event[_gt(key)] = body[name]
        return event
    if kind in ("lot.transfer_accepted", "lot.transfer_rejected", "lot.transfer_cancelled"):
        offerer, recipient = t.offers.pop(body["offer"], (None, None))
        if kind == "lot.transfer_accepted":
            t.mass[lot] = min(t.mass.get(lot, int(body["mass_mg"])), int(body["mass_mg"]))
            event.update(
                {
                    "bizStep": "receiving",
                    "disposition": "in_progress",
                    "quantityList": [_quantity(lot, int(body["mass_mg"]))],
                }
            )
        else:
            event.update(
                {"bizStep": "void_shipping", "quantityList": [_quantity(lot, t.mass.get(lot, 0))]}
            )
        if offerer is not None and recipient is not None:
            event["sourceList"] = [_party("source", offerer)]
            event["destinationList"] = [_party("destination", recipient)]
        event.update(ext)
        event[_gt("offer")] = event_uri(body["offer"])
        event[_gt("answer")] = kind.rsplit("_", 1)[1]
        return event
    if kind == "lot.assayed":
        if "mass_mg" in body:
            t.mass[lot] = min(t.mass.get(lot, int(body["mass_mg"])), int(body["mass_mg"]))
        event.update(
            {"bizStep": "inspecting", "quantityList": [_quantity(lot, t.mass.get(lot, 0))]}
        )
        event.update(ext)
        event[_gt("finenessPpm")] = body["fineness_ppm"]
        event[_gt("method")] = body["method"]
        if "mass_mg" in body:
            event[_gt("weighedMassMg")] = body["mass_mg"]
        if "certificate" in body:
            event[_gt("certificate")] = body["certificate"]
        return event
    if kind == "lot.exported":
        event.update(
            {
                "bizStep": "departing",
                "disposition": "in_transit",
                "quantityList": [_quantity(lot, t.mass.get(lot, 0))],
            }
        )
        event.update(ext)
        event[_gt("destinationCountry")] = body["destination"]
        event[_gt("permit")] = body["permit"]
        if "certificate" in body:
            event[_gt("certificate")] = body["certificate"]
        return event
    # lot.flagged, lot.flag_resolved
    event.update({"bizStep": "inspecting", "quantityList": [_quantity(lot, t.mass.get(lot, 0))]})
    event.update(ext)
    if kind == "lot.flag_resolved":
        event[_gt("flagResolved")] = {
            _gt("flagId"): body["flag"],
            _gt("code"): body["flag"].partition("/")[2],
            _gt("outcome"): body["outcome"],
        }
    return event


def _origin_summary(lot: LotState, state: LotLookup) -> dict[str, Any]:
    """Producers and fine gold over the lot's origin registrations (PROTOCOL.md §7)."""
    summary = gender_summary(state, lot)
    producers = summary["producers"]
    return {
        _gt("producers"): {_gt("women"): producers["women"], _gt("men"): producers["men"]},
        _gt("womenLedFineMg"): summary["women_led_fine_mg"],
        _gt("originFineMg"): summary["origin_fine_mg"],
    }


def epcis_document(
    events: Iterable[tuple[int, str, Mapping[str, Any]]],
    state: LotLookup,
    *,
    base_uri: str,
    created: str,
    date_from: dt.date | str | None = None,
    date_to: dt.date | str | None = None,
    lots: Iterable[LotState] | None = None,
) -> dict[str, Any]:
    """An EPCIS 2.0 ``EPCISDocument`` of the ``lot.*`` events in ``[date_from, date_to]``.

    ``events`` is the whole log as ``(seq, event_id, body)`` in log order (read once: the
    masses and pending offers of earlier events are needed to describe later ones);
    events whose ``time`` falls on a UTC date within the bounds (inclusive) are exported,
    in log order. ``created`` is the document's ``creationDate`` (RFC 3339), ``base_uri``
    the service's public URL, which makes the document ``id``. ``lots`` (or ``state.lot``
    for the lots the stream names) give each event's raised flags and the origin summary
    of processing outputs. See the module docstring for the mapping.
    """
    d_from, d_to = filter_day(date_from), filter_day(date_to)
    tracker = _Tracker()
    out: list[dict[str, Any]] = []
    lot_ids: list[str] = []
    for seq, event_id, body in events:
        kind = body.get("type")
        if kind == "lot.registered":
            lot_ids.append(body["lot"])
        elif kind == "lot.processed":
            lot_ids.extend(o["lot"] for o in body["outputs"])
        mapped = _map(seq, event_id, body, tracker)
        day = body["time"][:10]
        if (
            mapped is None
            or (d_from is not None and day < d_from)
            or (d_to is not None and day > d_to)
        ):
            continue
        out.append(mapped)

    if lots is None:
        lot_states = [x for x in (state.lot(i) for i in lot_ids) if x is not None]
    else:
        lot_states = list(lots)
    by_id = {x.lot: x for x in lot_states}
    raised: dict[str, dict[str, dict[str, str]]] = {}  # raising event id → flag id → flag
    for lot in lot_states:
        for f in lot.flags:
            raised.setdefault(f.id.partition("/")[0], {})[f.id] = {
                _gt("flagId"): f.id,
                _gt("code"): f.code,
                _gt("class"): f.class_,
            }
    for event in out:
        flags = raised.get(event[_gt("eventId")])
        if flags:
            event[_gt("flagsRaised")] = [flags[k] for k in sorted(flags)]
        if event["type"] == "TransformationEvent":
            for detail in event[_gt("outputs")]:
                lot_state = by_id.get(detail[_gt("lot")].rsplit(":", 1)[1])
                if lot_state is None:
                    lot_state = state.lot(detail[_gt("lot")].rsplit(":", 1)[1])
                if lot_state is not None:
                    detail.update(_origin_summary(lot_state, state))

    query = urllib.parse.urlencode(
        [(k, v) for k, v in (("from", d_from), ("to", d_to)) if v is not None]
    )
    doc_id = base_uri.rstrip("/") + "/v1/export/epcis" + (f"?{query}" if query else "")
    return {
        "@context": [EPCIS_CONTEXT, {GT_PREFIX: GT_NAMESPACE}],
        "id": doc_id,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": created,
        "epcisBody": {"eventList": out},
    }

"""The public JSON shapes of actors, sites and lots (PROTOCOL.md section 6)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from ledger.state import ActorState, LotState, SiteState, gender_summary


class ViewSource(Protocol):
    """What ``lot_view`` reads: actors and lots by id (a StateReader, or a reader of a
    state's objects as they are, since the view only reads them)."""

    def actor(self, actor_id: str) -> ActorState | None:
        """An actor, or None."""

    def lot(self, lot_id: str) -> LotState | None:
        """A lot, or None."""


def lot_view(state: ViewSource, lot: LotState) -> dict[str, Any]:
    """A lot's state as ``GET /v1/lots/{lot}`` shows it."""
    custodian = state.actor(lot.custodian)
    flags = []
    for f in lot.flags:
        item: dict[str, Any] = {"id": f.id, "code": f.code, "class": f.class_, "status": f.status}
        if f.outcome is not None:
            item["outcome"] = f.outcome
        flags.append(item)
    return {
        "lot": lot.lot,
        "status": lot.status,
        "hold": lot.hold,
        "exported": lot.exported,
        "custodian": lot.custodian,
        "country": custodian.country if custodian is not None else None,
        "destination": lot.destination,
        "mass_mg": lot.mass_mg,
        "fineness_ppm": lot.fineness_ppm,
        "form": lot.form,
        "bar": lot.bar,
        "head": lot.head,
        "offer": lot.offer.model_dump() if lot.offer is not None else None,
        "origins": sorted(lot.origins),
        "risk": lot.risk,
        "flags": flags,
        "gender": gender_summary(state, lot),
        "created_event": lot.created_event,
    }


def actor_view(actor: ActorState) -> dict[str, Any]:
    """An actor as ``GET /v1/actors/{id}`` shows it, with its key history."""
    current = actor.current_key()
    return {
        "id": actor.id,
        "name": actor.name,
        "roles": actor.roles,
        "country": actor.country,
        "lot_prefix": actor.lot_prefix,
        "licence": actor.licence,
        "profile": actor.profile,
        "status": actor.status,
        "revoked_reason": actor.revoked_reason,
        "key": current.key if current is not None else None,
        "keys": [k.model_dump() for k in actor.keys],
        "registered_seq": actor.registered_seq,
        "registered_by": actor.registered_by,
    }


def site_view(site: SiteState, today: dt.date) -> dict[str, Any]:
    """A site with its ICGLR colour on ``today`` and its latest assessment's indicators."""
    a = site.assessment
    return {
        "id": site.id,
        "name": site.name,
        "operator": site.operator,
        "country": site.country,
        "region": site.region,
        "location": site.location,
        "deposit": site.deposit,
        "icglr_id": site.icglr_id,
        "licence": site.licence,
        "status": site.status_on(today),
        "assessment": None
        if a is None
        else {
            "event_id": a.event_id,
            "status": a.status,
            "assessed_on": a.assessed_on,
            "valid_until": a.valid_until,
            "cahra": a.cahra,
            "findings": a.findings,
            "indicators": a.indicators,
        },
    }

"""Conformance of PROTOCOL.md section 5, checked as an independent implementation would:
through the ledger, with the exact refusal ``code`` or the exact resulting state.

Each test names the sentence of section 5 it pins; these are the sentences a review of
the implementation against the page found it did not follow, or followed only by chance.
"""

from __future__ import annotations

from typing import Any

import nacl.signing
import pytest

from ledger.errors import SchemaError
from ledger.events import parse_body
from ledger.protocol import public_key_hex
from tests import factories as F

World = F.World

FULL_PROFILE: dict[str, Any] = {
    "women_led": True,
    "members": {"women": 41, "total": 58},
    "leaders": {"women": 5, "total": 7},
}


# ---------------------------------------------------------------------------
# Site indicators: "(all optional; counts and money only)" and "Counts are integers ≥ 0"


@pytest.mark.parametrize(
    ("gbv_reports", "code"),
    [
        ({"count": 0, "period_days": 0}, None),  # a count: 0 is allowed
        ({"count": 2, "period_days": 0}, None),
        ({"count": 0, "period_days": 30}, None),
        ({"count": 0, "period_days": -1}, "schema"),
        ({"count": -1, "period_days": 30}, "schema"),
    ],
)
def test_gbv_reports_period_days_is_a_count(gbv_reports: dict[str, int], code: str | None) -> None:
    w = World.standard()
    ev = w.assess_site("site-a", "green", gbv_reports=gbv_reports, post=False)
    if code is None:
        w.append(ev)
        assessment = w.site("site-a").assessment
        assert assessment is not None
        assert assessment.event_id == ev.id
        assert assessment.indicators == {"gbv_reports": gbv_reports}
    else:
        assert w.code(ev) == code


# ---------------------------------------------------------------------------
# Profile: "`profile` (organisation level, counts only): `women_led` (bool ...), `members`
# `{women, total}`, `leaders` `{women, total}`" -- none of the three is marked `?` (section
# 5: "`?` marks an optional field"), so a profile, when given, holds all three.


@pytest.mark.parametrize("missing", ["women_led", "members", "leaders"])
def test_a_registered_profile_needs_all_three_fields(missing: str) -> None:
    w = World.standard()
    profile = {k: v for k, v in FULL_PROFILE.items() if k != missing}
    ev = w.register_actor("coop-new", ["cooperative"], profile=profile, post=False)
    err = w.refuse(ev)
    assert err.code == "schema"
    assert err.detail.startswith(f"profile.{missing}: "), err.detail


@pytest.mark.parametrize("signer", ["registrar", "trader"])
@pytest.mark.parametrize("missing", ["women_led", "members", "leaders"])
def test_an_updated_profile_needs_all_three_fields(signer: str, missing: str) -> None:
    w = World.standard()
    profile = {k: v for k, v in FULL_PROFILE.items() if k != missing}
    ev = w.update_actor("trader", signer=signer, profile=profile, post=False)
    assert w.code(ev) == "schema"


@pytest.mark.parametrize("signer", ["registrar", "trader"])
def test_a_full_profile_is_accepted_and_replaces_the_old_one(signer: str) -> None:
    w = World.standard()
    w.register_actor("coop-new", ["cooperative"], profile=FULL_PROFILE)
    assert w.actor("coop-new").profile == FULL_PROFILE
    new = {
        "women_led": False,
        "members": {"women": 0, "total": 0},
        "leaders": {"women": 0, "total": 1},
    }
    w.update_actor("trader", signer=signer, profile=new)
    assert w.actor("trader").profile == new


def test_profile_fields_stay_checked_by_the_model() -> None:
    """The three fields are required by the body's model alone (a 422 before any state
    is read), on both types that carry a profile."""
    for kind in ("actor.registered", "actor.updated"):
        body = {
            "v": 1,
            "type": kind,
            "actor": "registrar",
            "time": "2026-11-20T09:30:00Z",
            "subject": "trader",
            "profile": {"women_led": True},
        }
        if kind == "actor.registered":
            body.update(
                name="Trader",
                roles=["auditor"],
                key=public_key_hex(nacl.signing.SigningKey(b"\x07" * 32)),
                country="UG",
            )
        with pytest.raises(SchemaError) as caught:
            parse_body(body)
        assert caught.value.detail.startswith("profile.members: "), caught.value.detail

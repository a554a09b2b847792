"""The derived lot state (PROTOCOL.md sections 5-7) against a protocol-literal recomputation.

``tests/protocol_state.py`` recomputes every field of ``GET /v1/lots/{lot}`` from the log
alone, by reading the page literally and sharing no code with ``ledger``: the flag table,
risk, hold, flag inheritance through ``lot.processed``, exports and destinations, custody,
origins and the gender summary. Here it is compared with ``lot_view`` over a
``MemoryLedger``, for every lot of the demo scenario and after every step of random event
sequences (the stateful machine of test_rules_stateful.py, with site re-assessments and
registrations carrying payments, team leaders and long extraction spans added).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from clients.scenario import load_scenario
from ledger.views import lot_view
from tests import factories as F
from tests import protocol_state
from tests.ledger.test_rules_stateful import LedgerMachine

ORIGIN = "demo.goldtrail.example/log"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def _views(ledger: Any) -> dict[str, dict[str, Any]]:
    state = ledger.state
    return {
        lot_id: protocol_state.comparable(lot_view(state, lot))
        for lot_id, lot in state.lots.items()
    }


def test_every_scenario_lot_equals_the_protocol_recomputation() -> None:
    scenario = load_scenario()
    ledger, _ = F.play_scenario(scenario["events"], origin=ORIGIN, now=NOW)
    expected = protocol_state.lot_states([json.loads(leaf) for leaf in ledger.leaves])
    assert _views(ledger) == expected
    bar, dore = expected["ALP-2026-118842"], expected["KLA-2026-0101"]
    # exported on its own chain, the destination cleared by the acceptance that followed
    assert (dore["exported"], dore["destination"], dore["status"]) == (True, None, "consumed")
    # the bar's own chain has no export (its input's does)
    assert (bar["exported"], bar["destination"], bar["hold"], bar["offer"]) == (
        False,
        None,
        False,
        None,
    )
    assert [(f["code"], f["status"]) for f in dore["flags"]].count(
        ("mercury_worst_practice", "resolved")
    ) == 1
    # a medium flag resolved as remediated is not carried into the bar
    assert sorted(f["code"] for f in bar["flags"]) == ["cahra_origin", "site_yellow"]
    assert bar["gender"] == scenario["expected"]["bar_gender"]


class DerivedStateMachine(LedgerMachine):
    """test_rules_stateful's machine, checked against the recomputation after every step."""

    @rule(
        site=st.sampled_from(["site-a", "site-b", "site-c"]),
        status=st.sampled_from(["green", "yellow", "blue"]),
        shift=st.sampled_from([None, -1, 0, 1]),
        cahra=st.sampled_from([None, True, False]),
    )
    def assess(self, site: str, status: str, shift: int | None, cahra: bool | None) -> None:
        """A new assessment, valid until the day before, the day of or the day after the
        next event (or open-ended)."""
        today = self.w.today()
        options: dict[str, Any] = {} if cahra is None else {"cahra": cahra}
        if shift is not None:
            options["valid_until"] = (today + dt.timedelta(days=shift)).isoformat()
            options["assessed_on"] = (today - dt.timedelta(days=30)).isoformat()
        self.attempt(self.w.assess_site(site, status, post=False, **options))

    @rule(
        site=st.sampled_from(["site-a", "site-b", "site-c"]),
        women=st.integers(0, 3),
        men=st.integers(0, 3),
        led=st.sampled_from([None, True, False]),
        currency=st.sampled_from([None, "USD", "UGX", "CDF"]),
        amount=st.integers(0, 10**6),
        mass=st.integers(1, 10**12),
        ppm=st.integers(1, 10**6),
        days=st.integers(1, 92),
        later=st.sampled_from([0, 0, 24, 48]),
    )
    def register_with_producers(
        self,
        site: str,
        women: int,
        men: int,
        led: bool | None,
        currency: str | None,
        amount: int,
        mass: int,
        ppm: int,
        days: int,
        later: int,
    ) -> None:
        producers: dict[str, Any] = {"women": women, "men": max(men, 1 - women)}
        if led is not None:
            producers["women_led"] = led
        options: dict[str, Any] = {}
        if currency is not None:
            options["payment"] = {
                "total": F.money(amount, currency),
                "to_women": F.money(amount // 3, currency),
            }
        if later:  # a later day: assessments may have expired
            options["time"] = self.w.clock + dt.timedelta(hours=later)
        operator = self.w.site(site).operator
        ev = self.w.register_lot(
            self.new_id_plain(operator),
            site,
            mass_mg=mass,
            fineness_ppm=ppm,
            days=days,
            producers=producers,
            post=False,
            **options,
        )
        if self.attempt(ev):
            self.added += mass

    @rule(holder=st.sampled_from(["coop", "coop2"]))
    def merge_everything_held(self, holder: str) -> None:
        """Merge every lot ``holder`` may process into one: many registrations, some reached
        through several paths, summed into one gender summary."""
        lots = [
            lot
            for lot_id, lot in sorted(self.lots.items())
            if lot.custodian == holder and lot.status == "active" and not lot.hold
        ]
        if len(lots) < 2:
            return
        mass = sum(lot.mass_mg for lot in lots)
        ppm = max(1, sum(lot.mass_mg * lot.fineness_ppm for lot in lots) // mass)
        output = F.out(self.new_id_plain(holder), mass, ppm, lots[0].form)
        self.attempt(
            self.w.process([lot.lot for lot in lots], [output], process="merging", post=False)
        )

    @invariant()
    def derived_state_matches_the_protocol(self) -> None:
        expected = protocol_state.lot_states(self.w.envelopes())
        assert _views(self.w.ledger) == expected


DerivedStateMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
TestDerivedStateMachine = DerivedStateMachine.TestCase

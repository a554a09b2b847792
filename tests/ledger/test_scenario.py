"""The shared demo scenario (clients/data/scenario.json) played through MemoryLedger ends in
the state its ``expected`` section describes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from clients.scenario import load_scenario
from ledger.replay import MemoryLedger
from ledger.state import CUSTODY_ROLES, gender_summary
from tests import factories

ORIGIN = "demo.goldtrail.example/log"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # after the scenario's last event


@pytest.fixture(scope="module")
def played() -> tuple[dict[str, Any], MemoryLedger]:
    scenario = load_scenario()
    ledger, _ = factories.play_scenario(scenario["events"], origin=ORIGIN, now=NOW)
    return scenario, ledger


def test_every_event_is_logged(played: tuple[dict[str, Any], MemoryLedger]) -> None:
    scenario, ledger = played
    assert ledger.state.count == len(scenario["events"]) == len(ledger.leaves)


def test_bar_lot_matches_expected(played: tuple[dict[str, Any], MemoryLedger]) -> None:
    scenario, ledger = played
    expected = scenario["expected"]
    bar = ledger.state.lots[expected["bar_lot"]]
    assert bar.origins == expected["origins"]
    open_flags = [f.code for f in bar.flags if f.status == "open"]
    assert sorted(open_flags) == sorted(expected["open_flags_on_bar"])
    assert len(open_flags) == len(expected["open_flags_on_bar"])
    assert bar.risk == expected["bar_risk"]
    assert gender_summary(ledger.state, bar) == expected["bar_gender"]


def test_bar_lot_is_a_live_bar(played: tuple[dict[str, Any], MemoryLedger]) -> None:
    scenario, ledger = played
    bar = ledger.state.lots[scenario["expected"]["bar_lot"]]
    assert bar.form == "bar" and bar.bar is not None
    assert bar.status == "active" and not bar.hold
    custodian = ledger.state.actors[bar.custodian]
    assert custodian.status == "active" and CUSTODY_ROLES.intersection(custodian.roles)
    assert bar.lot.startswith(custodian.lot_prefix or "-")


def test_replay_from_the_log_reaches_the_same_state(
    played: tuple[dict[str, Any], MemoryLedger],
) -> None:
    _, ledger = played
    fresh = MemoryLedger(ORIGIN, ledger.registrar_key)
    for leaf in ledger.leaves:
        fresh.append(json.loads(leaf))
    assert fresh.leaves == ledger.leaves
    for name in ("actors", "sites", "lots"):
        mine, theirs = getattr(ledger.state, name), getattr(fresh.state, name)
        assert {k: v.model_dump() for k, v in mine.items()} == {
            k: v.model_dump() for k, v in theirs.items()
        }

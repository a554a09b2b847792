"""PROTOCOL.md section 5, "Rules (enforced by the server, recomputable by a verifier)", on
random event sequences: the server over HTTP, the in-memory rules and the offline verifier
agree.

The stateful machine of tests/ledger/test_rules_stateful.py (valid and invalid offers,
answers, splits, merges, assays, exports, flags, resolutions, role changes, revocations,
re-posts) is played against a real app: every envelope is sent to ``POST /v1/events`` and
to a ``MemoryLedger``; the server must accept exactly what the rules accept (201) and refuse
the rest with the same code. After every step each lot's ``GET /v1/lots/{lot}`` equals
``lot_view`` over the memory ledger; every few steps each lot's served bundle verifies and
the verifier's recomputed state equals it too.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from ledger.errors import LedgerError
from ledger.verify import verify_bundle
from ledger.views import lot_view
from tests import factories as F
from tests.ledger.test_rules_stateful import LedgerMachine

from .conftest import Api, open_api

#: verify every lot's bundle after this many steps
BUNDLE_EVERY = 4


class HttpLedgerMachine(LedgerMachine):
    """``LedgerMachine`` whose world is an ``HttpWorld``: the same cast and starting lots."""

    def __init__(self) -> None:
        # LedgerMachine.__init__ builds an in-memory world: build the same over HTTP instead
        super(LedgerMachine, self).__init__()
        self.folder = tempfile.TemporaryDirectory(prefix="goldtrail-differential-")
        self.api: Api = open_api(f"sqlite:///{self.folder.name}/ledger.db", Path(self.folder.name))
        self.start(self.api.world().standard())
        self.steps = 0

    def teardown(self) -> None:
        self.api.close()
        self.folder.cleanup()

    def attempt(self, ev: Any) -> bool:
        """Append to the memory ledger and post to the server; the verdicts must agree."""
        before = self.w.snapshot()
        code = None
        try:
            self.w.ledger.append(ev.envelope)
        except LedgerError as e:
            code = e.code
            assert self.w.snapshot() == before, f"refused {code} but the state changed"
        response = self.api.post(ev.envelope)
        if code is None:
            assert response.status_code == 201, (ev.body, response.text)
            self.accepted.append(ev.envelope)
            self.seen.append(ev.id)
            return True
        assert response.status_code != 201, (code, ev.body)
        assert response.json()["code"] == code, (code, response.text, ev.body)
        return False

    @rule(data=st.data())
    def repost(self, data: Any) -> None:
        env: dict[str, Any] = data.draw(st.sampled_from(self.accepted), label="repost")
        response = self.api.post(env)
        assert response.status_code == 200, response.text
        assert response.json()["event_id"] == F.Event(env).id

    @rule(mass=st.integers(1, 10**6))
    def batch_with_a_bad_tail(self, mass: int) -> None:
        good = self.w.register_lot(self.new_id_plain("coop"), "site-a", mass_mg=mass, post=False)
        bad = self.w.register_lot(good.body["lot"], "site-a", mass_mg=mass, post=False)
        before = self.api.log()
        response = self.api.batch([good, bad])
        assert response.status_code == 409, response.text
        assert (response.json()["code"], response.json()["index"]) == ("duplicate_lot", 1)
        assert self.api.log() == before

    @invariant()
    def the_server_shows_what_the_rules_computed(self) -> None:
        state = self.w.ledger.state
        for lot_id, lot in state.lots.items():
            assert self.api.lot(lot_id) == lot_view(state, lot), lot_id

    @invariant()
    def the_verifier_recomputes_it_from_each_bundle(self) -> None:
        self.steps += 1
        if self.steps % BUNDLE_EVERY:
            return
        log = self.api.log()
        state = self.w.ledger.state
        for lot_id, lot in state.lots.items():
            bundle = self.api.client.get(f"/v1/lots/{lot_id}/bundle")
            assert bundle.status_code == 200, bundle.text
            report = verify_bundle(bundle.content, log["verifier_key"], log["registrar_key"])
            assert report.ok, (lot_id, [str(f) for f in report.failures])
            assert report.state == lot_view(state, lot), lot_id


HttpLedgerMachine.TestCase.settings = settings(
    max_examples=6,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestHttpLedgerMachine = HttpLedgerMachine.TestCase

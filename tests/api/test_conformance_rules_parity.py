"""PROTOCOL.md section 5, "Rules (enforced by the server, recomputable by a verifier)":
the server and the offline verifier refuse the same events, with the same code.

Every refusal case of ``tests/ledger/test_rules.py`` (one per code, the precedence pairs of
section 6 and the permission matrix) is played over HTTP: the server must answer it with
the status section 6 gives its code, and leave the log as it was. The same envelope is then
appended regardless to a dishonest log (``fake_bundle``: genuine checkpoint and inclusion
proofs, no rules applied) and ``verify_bundle`` must refuse that entry with the same code.

A bundle proves inclusion, not absence (section 7), and the time rule is the only one that
reads the server's clock (section 2), so three refusals cannot be recomputed from a bundle,
and the verifier must not claim them: ``future_time``, an offer to an actor the bundle does
not hold (``unknown_actor``: section 7 lets a bundle leave out an offer's recipient), and
``last_registrar`` (other registrars may exist outside the bundle). ``holds_lots`` is
recomputed when the bundle is for a lot the actor held (it is built so here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ledger.verify import Report, verify_bundle
from tests import factories as F
from tests.ledger.test_rules import PERMISSIONS, STATUS, Refusal, on_the_standard_log
from tests.ledger.test_verify_attacks import fake_bundle, verify

from .conftest import Api, HttpWorld, refusal

#: codes a verifier cannot prove from a bundle (see the module's docstring)
NOT_FROM_A_BUNDLE = {"future_time", "last_registrar"}


def _cases() -> list[Any]:
    """(code, make) for every refusal that plays in the standard world over HTTP."""
    params: list[Any] = []
    for p in on_the_standard_log():
        params.append(pytest.param(*p.values, id=p.id))
    for kind, signer, build, expected in PERMISSIONS:
        if expected is not None:
            params.append(
                pytest.param(
                    expected,
                    lambda w, b=build, s=signer: b(w, s),
                    id=f"permission:{kind}:{signer}:{expected}",
                )
            )
    return params


def _first_failure(report: Report) -> tuple[int | None, str]:
    assert not report.ok
    return report.failures[0].seq, report.failures[0].reason


def _made(w: HttpWorld, make: Callable[[Any], Any]) -> Refusal:
    made = make(w)
    return made if isinstance(made, Refusal) else Refusal(made)


@pytest.mark.parametrize(("code", "make"), _cases())
def test_the_server_and_the_verifier_refuse_alike(
    make_api: Callable[..., Api], code: str, make: Callable[[Any], Any]
) -> None:
    api = make_api()
    w = api.world().standard()
    case = _made(w, make)
    envelope = case.ev.envelope if isinstance(case.ev, F.Event) else case.ev
    if case.now is not None:  # the case reads the server's clock
        api.clock.now = case.now
    refusal(api, lambda: api.post(envelope), STATUS[code], code)

    logged = w.envelopes()
    body = envelope.get("body") if isinstance(envelope, dict) else None
    lot = body.get("lot") if isinstance(body, dict) and isinstance(body.get("lot"), str) else "X-1"
    if isinstance(body, dict) and body.get("type") == "actor.updated":
        # the bundle of a lot its subject holds, if any (it proves a holds_lots refusal)
        held = sorted(
            x.lot
            for x in w.ledger.state.lots.values()
            if x.custodian == body.get("subject") and x.status != "consumed"
        )
        lot = held[0] if held else lot
    report = verify(fake_bundle([*logged, envelope], lot, "ab" * 32))
    reasons = [f.reason for f in report.failures]
    if code in NOT_FROM_A_BUNDLE or (code == "unknown_actor" and body and "to" in body):
        # not provable from a bundle: the entry is replayed (another rule may still refuse it)
        assert not any(r.startswith(f"refused by the rules ({code})") for r in reasons), reasons
        return
    seq, reason = _first_failure(report)
    assert seq == len(logged), report.failures
    assert reason.startswith(f"refused by the rules ({code}): "), reason


def test_an_offer_to_an_unknown_actor_is_refused_by_the_verifier_when_provable(
    make_api: Callable[..., Api],
) -> None:
    """Section 7: the recipient of an offer never accepted need not be in a bundle; so an
    offer to an actor the bundle does not hold verifies, while the server, which holds the
    whole log, refuses it (404 ``unknown_actor``). A bundle that holds the actor holds its
    registration: registered after the offer, it proves the offer wrong."""
    api = make_api()
    w = api.world().standard()
    lot = w.register_lot().body["lot"]
    offer = w.offer(lot, "newbie", post=False)
    refusal(api, lambda: api.post(offer), 404, "unknown_actor")
    before = w.envelopes()
    report = verify(fake_bundle([*before, offer.envelope], lot, offer.id))
    assert report.ok, report.failures
    assert report.state is not None and report.state["offer"]["to"] == "newbie"

    registration = w.register_actor("newbie", ["trader"], lot_prefix="NEW-")  # 201
    forged = [*before, offer.envelope, registration.envelope]
    seq, reason = _first_failure(verify(fake_bundle(forged, lot, offer.id)))
    assert seq == len(before)
    assert reason.startswith("refused by the rules (unknown_actor): There was no actor 'newbie'")


@pytest.mark.parametrize(
    ("kind", "signer", "build"),
    [
        pytest.param(kind, signer, build, id=f"{kind}:{signer}")
        for kind, signer, build, expected in PERMISSIONS
        if expected is None and kind.startswith("lot.")
    ],
)
def test_what_the_server_accepts_the_verifier_accepts(
    make_api: Callable[..., Api], kind: str, signer: str, build: Callable[[Any, str], Any]
) -> None:
    """The accepted rows of the permission matrix: 201 from the server, and the bundle the
    server then serves for the lot verifies and shows the state ``GET /v1/lots`` shows."""
    api = make_api()
    w = api.world().standard()
    ev = build(w, signer)
    assert ev.body["type"] == kind.split()[0]
    response = api.post(ev)
    assert response.status_code == 201, response.text
    lots = [ev.body["lot"]] if "lot" in ev.body else [o["lot"] for o in ev.body["outputs"]]
    log = api.log()
    for lot in lots:
        bundle = api.client.get(f"/v1/lots/{lot}/bundle")
        assert bundle.status_code == 200, bundle.text
        report = verify_bundle(bundle.content, log["verifier_key"], log["registrar_key"])
        assert report.ok, [str(f) for f in report.failures]
        assert report.state == api.lot(lot)

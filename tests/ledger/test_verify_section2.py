"""PROTOCOL.md sections 1 and 2, sentence by sentence, through the offline verifier.

Section 7's verifier "checks every signature, with a key that its actor held at that
``seq``" and that the provenance obeys the rules: an independent verifier holds a bundle to
the same sentences a server holds a post to. Each case here is a log a dishonest or broken
server could serve (its checkpoint and inclusion proofs genuine, ``fake_bundle``), holding
one entry that a goldtrail server would have refused; the verifier must refuse the bundle
at that entry with the code the server gives. A control shows the honest variant verifies.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import nacl.bindings
import nacl.signing
import pytest

from ledger.protocol import event_id, public_key_hex, sign_body
from tests import factories

from .test_verify_attacks import failures, fake_bundle, refused, verify

#: a point of order 8 (small order)
ORDER_8 = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
#: the identity point (small order)
IDENTITY = "01" + "00" * 31

Case = Callable[[factories.World], tuple[list[dict[str, Any]], str]]


def _world() -> factories.World:
    """The standard cast; COOP-1 registered at site-a and handed to the trader."""
    w = factories.World.standard()
    w.register_lot("COOP-1", "site-a")
    w.transfer("COOP-1", "trader")
    return w


def _with(w: factories.World, *envelopes: dict[str, Any]) -> list[dict[str, Any]]:
    return w.envelopes() + list(envelopes)


def _at(when: str, seconds: int) -> str:
    return factories.fmt_time(factories.parse_time(when) + dt.timedelta(seconds=seconds))


def _mixed_order_key() -> str:
    valid = bytes(nacl.signing.SigningKey.generate().verify_key)
    return bytes(nacl.bindings.crypto_core_ed25519_add(valid, bytes.fromhex(ORDER_8))).hex()


# Each case: the fake log's envelopes (the refused entry last) and the lot's head.


def s_plus_l(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "a signature with S ≥ L ... is refused"."""
    offer = w.offer("COOP-1", "trader2", post=False)
    return _with(w, factories.malleate(offer).envelope), offer.id


def small_order_key(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "... or a small-order point is refused": key and R of small order, S = 0
    (the cofactorless equation holds for any message)."""
    offer = w.offer("COOP-1", "trader2", post=False)
    envelope = copy.deepcopy(offer.envelope)
    envelope["signature"] = {"key": ORDER_8, "value": IDENTITY + "00" * 32}
    return _with(w, envelope), offer.id


def signed_for_another_log(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "An event signed for one log never verifies in another"."""
    offer = w.offer("COOP-1", "trader2", post=False)
    moved = factories.resign(offer, w.keys["trader"], origin="elsewhere.example/log")
    return _with(w, moved.envelope), offer.id


def rotated_key(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "An event signed offline with a key that was rotated ... before it reached
    the log is refused"."""
    w.rotate_key("trader")
    offer = w.offer("COOP-1", "trader2", post=False, key=w.old_keys["trader"][-1])
    return _with(w, offer.envelope), offer.id


def revoked_key(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: a key "not revoked"."""
    w.revoke("auditor")
    flag = w.flag("COOP-1", "bribery", post=False)
    return _with(w, flag.envelope), flag.id


def key_of_another_actor(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "``signature.key`` must be a key that ``body.actor`` holds"."""
    offer = w.offer("COOP-1", "trader2", post=False, key=w.keys["trader2"])
    return _with(w, offer.envelope), offer.id


def time_before_prev(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "a ``time`` earlier than the time of any event the body names"."""
    accepted = w.ledger.state.events[w.head("COOP-1")]
    offer = w.offer("COOP-1", "trader2", post=False, time=_at(accepted.time, -1))
    return _with(w, offer.envelope), offer.id


def time_before_an_input(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """The same for ``inputs[].prev``: a merge timed after its first input's head but
    before its second's."""
    first = w.register_lot("COOP-2", "site-a")
    second = w.register_lot("COOP-3", "site-a")
    merge = w.merge(["COOP-2", "COOP-3"], "COOP-4", post=False, time=_at(second.body["time"], -1))
    assert first.body["time"] < merge.body["time"]
    return _with(w, merge.envelope), merge.id


def time_before_the_key(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "... and a ``time`` earlier than the event that gave the signer its key"
    (here later than the lot's head, so only the key's event is earlier)."""
    rotation = w.rotate_key("trader")
    offer = w.offer("COOP-1", "trader2", post=False, time=_at(rotation.body["time"], -1))
    return _with(w, offer.envelope), offer.id


def fork(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Per-lot hash chains: "No two events in a log may name the same lot with the same
    ``prev``"."""
    head = w.head("COOP-1")
    w.flag("COOP-1", "bribery")
    second = w.flag("COOP-1", "taxes_unpaid", post=False, prev=head)
    return _with(w, second.envelope), second.id


def unknown_prev(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Per-lot hash chains: "An event whose ``prev`` is not the current head, known or not,
    is refused"."""
    offer = w.offer("COOP-1", "trader2", post=False, prev="ab" * 32)
    return _with(w, offer.envelope), offer.id


def same_body_other_signature(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "The same body under a different signature is refused"."""
    accepted = factories.Event(copy.deepcopy(w.envelopes()[-1]))
    twin = factories.alt_signature(accepted, w.keys["trader"])
    return _with(w, twin.envelope), accepted.id


def key_outside_the_subgroup(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 2: "A key is accepted at registration or rotation only if it is a canonical
    encoding of a point of the prime-order subgroup"."""
    head = w.head("COOP-1")
    body = w.register_actor("newcomer", ["auditor"], post=False).body
    envelope = sign_body({**body, "key": _mixed_order_key()}, w.registrar_key, w.origin)
    return _with(w, envelope), head


def null_optional_field(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 1: "an optional field is absent, never ``null``"."""
    offer = w.offer("COOP-1", "trader2", post=False, seal=None)
    return _with(w, offer.envelope), offer.id


def unknown_field(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 1: "unknown fields are refused"."""
    offer = w.offer("COOP-1", "trader2", post=False, colour="gold")
    return _with(w, offer.envelope), offer.id


def duplicate_vocabulary(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 1: "arrays of vocabulary values hold no duplicates"."""
    head = w.head("COOP-1")
    registration = w.register_actor("newcomer", ["auditor", "auditor"], post=False)
    return _with(w, registration.envelope), head


def women_over_total(w: factories.World) -> tuple[list[dict[str, Any]], str]:
    """Section 1: "Wherever ``women`` and ``total`` appear together, ``women`` ≤ ``total``"."""
    update = w.update_actor(
        "coop",
        post=False,
        profile={
            "women_led": True,
            "members": {"women": 6, "total": 5},
            "leaders": {"women": 1, "total": 3},
        },
    )
    return _with(w, update.envelope), w.head("COOP-1")


CASES: list[tuple[Case, str]] = [
    (s_plus_l, "bad_signature"),
    (small_order_key, "bad_signature"),
    (signed_for_another_log, "bad_signature"),
    (rotated_key, "key_inactive"),
    (revoked_key, "key_inactive"),
    (key_of_another_actor, "unknown_key"),
    (time_before_prev, "time_order"),
    (time_before_an_input, "time_order"),
    (time_before_the_key, "time_order"),
    (fork, "stale_prev"),
    (unknown_prev, "stale_prev"),
    (same_body_other_signature, "duplicate_event"),
    (key_outside_the_subgroup, "schema"),
    (null_optional_field, "schema"),
    (unknown_field, "schema"),
    (duplicate_vocabulary, "schema"),
    (women_over_total, "schema"),
]


@pytest.mark.parametrize(("case", "code"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_the_verifier_refuses_what_a_server_refuses(case: Case, code: str) -> None:
    w = _world()
    envelopes, head = case(w)
    report = verify(fake_bundle(envelopes, "COOP-1", head), public_key_hex(w.registrar_key))
    seq, reason = refused(report)
    assert seq == len(envelopes) - 1, failures(report)
    assert report.failures[0].event_id == event_id(envelopes[-1]["body"])
    assert reason.startswith(f"refused by the rules ({code}): "), reason


def test_control_the_honest_variants_verify() -> None:
    """The same log with each refused entry made right: a key used from the time it was
    given, a time equal to the events named, a flag on the current head."""
    w = _world()
    rotation = w.rotate_key("trader")
    w.flag("COOP-1", "bribery", time=rotation.body["time"])  # the time of its prev
    offer = w.offer("COOP-1", "trader2", time=rotation.body["time"])  # new key, same time
    w.reject("COOP-1", time=offer.body["time"])
    w.register_actor("newcomer", ["auditor"])
    report = verify(fake_bundle(w.envelopes(), "COOP-1", w.head("COOP-1")))
    assert report.ok, failures(report)
    assert report.state is not None and report.state["custodian"] == "trader"

"""PROTOCOL.md sections 2 and 3, sentence by sentence, through HTTP, where no other test
pinned the sentence against the running server:

- section 2, "Verification is as strict as libsodium's (``crypto_sign_verify_detached``): a
  signature with S ≥ L, a non-canonical encoding or a small-order point is refused", and "An
  event signed for one log never verifies in another": each is 401 ``bad_signature``, with
  envelopes that lax Ed25519 verifiers accept;
- section 2, "A key is accepted at registration or rotation only if it is a canonical
  encoding of a point of the prime-order subgroup ...; otherwise 422 ``schema``", for a body
  whose signature is good;
- section 3, "A consistency proof needs 1 ≤ ``first`` ≤ ``second`` ≤ size" at its inclusive
  edges (and the inclusion proof of the last entry);
- section 3, seq 0 "is an ``actor.registered`` in which the registrar registers itself
  (``actor`` = ``subject``, role ``registrar``, ...). Until it exists every other event is
  refused (409 ``log_not_started``)": a self-registration without the role is not seq 0,
  and a batch may start the log and build on seq 0 at once (section 6: "later events may
  build on earlier ones").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import nacl.bindings
import nacl.signing

from ledger.merkle import leaf_hash, verify_inclusion
from ledger.protocol import canonical, public_key_hex, sign_body

from .conftest import Api, HttpWorld, check_problem, factories, refusal

#: the identity point (y = 1): small order (1)
IDENTITY = "01" + "00" * 31
#: y = p + 1, a non-canonical encoding of the identity point
IDENTITY_NON_CANONICAL = "ee" + "ff" * 30 + "7f"
#: a point of order 8 (small order): the torsion point libsodium lists first among the
#: encodings it refuses
ORDER_8 = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"


def _with_signature(envelope: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    changed = copy.deepcopy(envelope)
    changed["signature"] = {"key": key, "value": value}
    return changed


def test_signatures_are_checked_as_strictly_as_libsodium(sqlite_api: Api) -> None:
    api = sqlite_api
    w: HttpWorld = api.world().standard()
    good = w.register_lot(post=False)
    # R = identity and S = 0 with the identity as the key: the cofactorless equation
    # [S]B = R + [k]A holds for every message, so a lax verifier accepts this "signature"
    # of any body by nobody; libsodium refuses the small-order key (and R)
    forged = _with_signature(good.envelope, IDENTITY, IDENTITY + "00" * 32)
    refusal(api, lambda: api.post(forged), 401, "bad_signature")
    # the same with the key and R written non-canonically (y = p + 1, which lax decoders
    # reduce to the identity)
    forged = _with_signature(
        good.envelope, IDENTITY_NON_CANONICAL, IDENTITY_NON_CANONICAL + "00" * 32
    )
    refusal(api, lambda: api.post(forged), 401, "bad_signature")
    # a key of order 8 with R = identity, S = 0
    forged = _with_signature(good.envelope, ORDER_8, IDENTITY + "00" * 32)
    refusal(api, lambda: api.post(forged), 401, "bad_signature")
    # S + L: the same equation, so a verifier that skips the S < L check accepts it
    refusal(api, lambda: api.post(factories.malleate(good)), 401, "bad_signature")
    # signed by the right key for another log's origin
    elsewhere = factories.resign(good, w.keys["coop"], origin="elsewhere.example/log")
    refusal(api, lambda: api.post(elsewhere), 401, "bad_signature")
    # the same in a batch names the envelope
    refusal(api, lambda: api.batch([forged]), 401, "bad_signature", index=0)
    # control: the envelope as signed is accepted
    assert api.post(good).status_code == 201


def test_keys_outside_the_prime_order_subgroup_are_422_schema(sqlite_api: Api) -> None:
    api = sqlite_api
    w: HttpWorld = api.world().standard()
    registrar = w.keys["registrar"]
    valid = public_key_hex(nacl.signing.SigningKey.generate())
    # a valid key plus a point of order 8: on the curve, canonical, but of mixed order
    mixed = nacl.bindings.crypto_core_ed25519_add(bytes.fromhex(valid), bytes.fromhex(ORDER_8))
    bad_keys = {
        "identity": IDENTITY,
        "order 8": ORDER_8,
        "non-canonical": IDENTITY_NON_CANONICAL,
        "mixed order": mixed.hex(),
        "not on the curve": "02" + "00" * 31,
    }
    registration = w.register_actor("newcomer", ["auditor"], post=False).body
    rotation = w.rotate_key("coop", signer="registrar", post=False).body
    for name, key in bad_keys.items():
        for body in (registration, rotation):
            # signed (validly) by the registrar: only the key it names is wrong
            envelope = sign_body({**body, "key": key}, registrar, api.settings.origin)
            problem = refusal(api, lambda envelope=envelope: api.post(envelope), 422, "schema")
            assert "key" in problem["detail"], (name, problem)
    # control: a valid key in the same bodies is accepted
    for body in (registration, rotation):
        fresh = public_key_hex(nacl.signing.SigningKey.generate())
        envelope = sign_body({**body, "key": fresh}, registrar, api.settings.origin)
        assert api.post(envelope).status_code == 201


def test_proofs_at_the_edges_of_their_ranges(sqlite_api: Api) -> None:
    api = sqlite_api
    w: HttpWorld = api.world().standard()
    log = api.log()
    size, root = log["size"], bytes.fromhex(log["root"])
    get = api.client.get
    # first = second (= size, or = 1): allowed, and an empty proof (RFC 9162 2.1.4.1)
    for first in (1, size):
        response = get("/v1/log/proof/consistency", params={"first": first, "second": first})
        assert response.status_code == 200, response.text
        assert response.json() == {"first": first, "second": first, "proof": []}
    # second = size: allowed; one more is not
    response = get("/v1/log/proof/consistency", params={"first": 1, "second": size})
    assert response.status_code == 200 and response.json()["proof"]
    check_problem(get("/v1/log/proof/consistency?first=1&second=" + str(size + 1)), 422, "schema")
    # the last entry's inclusion in the whole log, checked against GET /v1/log's root
    response = get("/v1/log/proof/inclusion", params={"index": size - 1, "size": size})
    assert response.status_code == 200, response.text
    proof = [bytes.fromhex(h) for h in response.json()["proof"]]
    last = api.client.get("/v1/log/entries", params={"start": size - 1}).json()["items"][0]
    leaf = leaf_hash(canonical(last["envelope"]))
    assert leaf.hex() == last["leaf_hash"]
    verify_inclusion(leaf, size - 1, size, proof, root)
    assert w.receipts  # the log was built through HTTP


def test_seq_0_needs_the_registrar_role_and_a_batch_may_start_the_log(
    make_api: Callable[..., Api],
) -> None:
    key = nacl.signing.SigningKey.generate()
    api = make_api(registrar_key=public_key_hex(key))
    origin = api.settings.origin

    def self_registration(**changes: Any) -> dict[str, Any]:
        return factories.registry_self_registration(key, origin, **changes)

    # the configured key registering itself, but not as a registrar: not seq 0
    for roles in (["auditor"], ["cooperative"]):
        extra = {"lot_prefix": "REG-"} if roles == ["cooperative"] else {}
        not_seq0 = self_registration(roles=roles, **extra)
        refusal(api, lambda not_seq0=not_seq0: api.post(not_seq0), 409, "log_not_started")
    seq0 = self_registration(roles=["registrar", "auditor"])
    onboarding = factories.auditor_onboarding(key, origin)
    # before seq 0 in the same batch: the first envelope is refused, nothing is kept
    refusal(api, lambda: api.batch([onboarding, seq0]), 409, "log_not_started", index=0)
    # seq 0 first, then an event that builds on it: both appended, in order
    response = api.batch([seq0, onboarding])
    assert response.status_code == 201, response.text
    assert [r["seq"] for r in response.json()["receipts"]] == [0, 1]
    log = api.log()
    assert (log["size"], log["registrar_key"]) == (2, public_key_hex(key))

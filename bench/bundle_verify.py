"""Benchmark 5: offline verification of a provenance bundle of about 100 events.

The bundle (built with ``ledger.bundle.build_bundle`` over a ``MemoryLedger``, as the
server builds it over SQL): a registrar, a cooperative, a trader and an assayer, one site
and its assessment; 40 lots registered and merged into one; the merged lot then goes back
and forth between the cooperative and the trader (offer, accept) and is assayed. Its
entries are every event that lot's provenance rests on, each with an inclusion proof.

``ledger.verify.verify_bundle`` gets the bundle's bytes, as a buyer's device does, and
checks the checkpoint, every inclusion proof, every signature and every rule by replaying
the entries. It is compared with the raw cost of the bundle's signature checks alone: one
Ed25519 verify per entry plus one for the checkpoint, messages prepared beforehand.

    .venv/bin/python bench/bundle_verify.py [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import time
from typing import Any

import nacl.signing
from common import ORIGIN, T0, fmt, log_seed, maybe_profile, out, public_hex, signing_key

from ledger.bundle import build_bundle
from ledger.checkpoint import LogSigner
from ledger.protocol import body_digest, canonical, sha256, sign_body, signing_message
from ledger.replay import MemoryLedger
from ledger.verify import verify_bundle

MERGED = 40
ROUND_TRIPS = 26


def build() -> tuple[bytes, str, str, int]:
    """The bundle's bytes, the log's verifier key, the registrar key and the entry count."""
    ledger = MemoryLedger(ORIGIN, public_hex("registrar"))
    clock = iter(range(100_000))

    def emit(body: dict[str, Any], who: str) -> dict[str, Any]:
        when = fmt(T0 + dt.timedelta(minutes=next(clock)))
        env = sign_body({"v": 1, **body, "time": when}, signing_key(who), ORIGIN)
        ledger.append(env)
        return env

    def actor(subject: str, roles: list[str], prefix: str | None = None) -> None:
        body = {
            "type": "actor.registered",
            "actor": "registrar",
            "subject": subject,
            "name": subject.title(),
            "roles": roles,
            "key": public_hex(subject),
            "country": "CD",
        }
        if prefix:
            body["lot_prefix"] = prefix
        emit(body, "registrar")

    actor("registrar", ["registrar"])
    actor("coop", ["cooperative"], "COOP-")
    actor("trader", ["trader"], "TRD-")
    actor("assayer", ["assayer"])
    site = {
        "type": "site.registered",
        "actor": "registrar",
        "site": "site-a",
        "name": "Site A",
        "operator": "coop",
        "country": "CD",
        "region": "Ituri",
        "location": {"lat": "1.23456", "lon": "29.12345"},
    }
    emit(site, "registrar")
    emit(
        {
            "type": "site.assessed",
            "actor": "registrar",
            "site": "site-a",
            "status": "green",
            "assessed_on": "2024-12-01",
            "valid_until": "2099-12-31",
        },
        "registrar",
    )
    heads = {}
    for i in range(MERGED):
        lot = f"COOP-{i:04d}"
        env = emit(
            {
                "type": "lot.registered",
                "actor": "coop",
                "lot": lot,
                "site": "site-a",
                "mass_mg": 100_000,
                "form": "gold",
                "fineness_ppm": 800_000,
                "extracted": {"from": "2024-12-20", "to": "2024-12-31"},
                "producers": {"women": 2, "men": 3},
                "recovery": "gravity",
                "declarations": {
                    "child_labour": "none",
                    "forced_labour": False,
                    "armed_groups": "none",
                    "security_forces": "none",
                },
            },
            "coop",
        )
        heads[lot] = body_digest(env["body"]).hex()
    merged = "COOP-MERGED"
    env = emit(
        {
            "type": "lot.processed",
            "actor": "coop",
            "inputs": [{"lot": lot, "prev": head} for lot, head in heads.items()],
            "outputs": [
                {
                    "lot": merged,
                    "mass_mg": 100_000 * MERGED,
                    "form": "gold",
                    "fineness_ppm": 800_000,
                }
            ],
            "process": "merging",
        },
        "coop",
    )
    head = body_digest(env["body"]).hex()
    holder, other = "coop", "trader"
    for _ in range(ROUND_TRIPS):
        offer = emit(
            {
                "type": "lot.transfer_offered",
                "actor": holder,
                "lot": merged,
                "prev": head,
                "to": other,
                "mass_mg": 100_000 * MERGED,
            },
            holder,
        )
        offer_id = body_digest(offer["body"]).hex()
        accept = emit(
            {
                "type": "lot.transfer_accepted",
                "actor": other,
                "lot": merged,
                "prev": offer_id,
                "offer": offer_id,
                "mass_mg": 100_000 * MERGED,
            },
            other,
        )
        head = body_digest(accept["body"]).hex()
        holder, other = other, holder
    assay = emit(
        {
            "type": "lot.assayed",
            "actor": "assayer",
            "lot": merged,
            "prev": head,
            "fineness_ppm": 800_000,
            "method": "xrf",
        },
        "assayer",
    )
    head = body_digest(assay["body"]).hex()
    signer = LogSigner(ORIGIN, log_seed())
    size = len(ledger.leaves)
    note = signer.sign(size, ledger.root(size)).note
    bundle = build_bundle(
        ledger,
        lot=merged,
        head=head,
        label_at=None,
        origin=ORIGIN,
        verifier_key=signer.verifier_key,
        registrar_key=public_hex("registrar"),
        checkpoint_note=note,
        size=size,
    )
    data = json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode()
    return data, signer.verifier_key, public_hex("registrar"), len(bundle["entries"])


def _raw_checks(data: bytes) -> list[tuple[nacl.signing.VerifyKey, bytes, bytes]]:
    """Every Ed25519 check the bundle needs, prepared: (key, message, signature)."""
    bundle = json.loads(data)
    checks = []
    for entry in bundle["entries"]:
        env = entry["envelope"]
        message = signing_message(ORIGIN, body_digest(env["body"]))
        key = nacl.signing.VerifyKey(bytes.fromhex(env["signature"]["key"]))
        checks.append((key, message, bytes.fromhex(env["signature"]["value"])))
    # the checkpoint: one more Ed25519 signature, over the note's text
    text, _, sig_line = bundle["checkpoint"].rpartition("\n\n")
    sig = base64.b64decode(sig_line.split(" ")[-1].strip())[4:]
    log_key = nacl.signing.VerifyKey(LogSigner(ORIGIN, log_seed()).public_key)
    checks.append((log_key, text.encode() + b"\n", sig))
    return checks


def _best(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run(quick: bool = False, profile: bool = False) -> dict[str, Any]:
    data, log_key, registrar, entries = build()
    report = verify_bundle(data, log_key, registrar)
    if not report.ok:
        raise RuntimeError(f"the benchmark bundle does not verify: {report.failures[:3]}")
    checks = _raw_checks(data)

    def raw() -> None:
        for key, message, sig in checks:
            key.verify(message, sig)

    entries_envs = [e["envelope"] for e in json.loads(data)["entries"]]
    prefix = signing_message(ORIGIN, b"")

    def sigcheck() -> None:
        # each entry's signature check from its envelope: canonical body, SHA-256, verify
        for env, (key, _, sig) in zip(entries_envs, checks, strict=False):
            key.verify(prefix + sha256(canonical(env["body"])), sig)
        key, message, sig = checks[-1]
        key.verify(message, sig)

    repeat = 5 if quick else 20
    # interleave, so both see the same machine
    verify_s = raw_s = sig_s = float("inf")
    for _ in range(3):
        verify_s = min(verify_s, _best(lambda: verify_bundle(data, log_key, registrar), repeat))
        raw_s = min(raw_s, _best(raw, repeat))
        sig_s = min(sig_s, _best(sigcheck, repeat))
    ratio = verify_s / raw_s
    out(f"== 5. offline bundle verification: {entries} entries, {len(data):,} bytes ==")
    out(
        f"  verify_bundle {verify_s * 1000:.2f} ms; its {len(checks)} Ed25519 checks alone "
        f"{raw_s * 1000:.2f} ms; ratio {ratio:.2f}"
    )
    out(
        f"  with each entry's canonical body and SHA-256 (the ceiling's work per event) "
        f"{sig_s * 1000:.2f} ms; ratio {verify_s / sig_s:.2f}"
    )
    with maybe_profile(profile, "verify_bundle x20"):
        for _ in range(20):
            verify_bundle(data, log_key, registrar)
    return {
        "bundle": {
            "entries": entries,
            "bytes": len(data),
            "verify_ms": verify_s * 1000,
            "raw_ms": raw_s * 1000,
            "ratio": ratio,
            "sigcheck_ms": sig_s * 1000,
            "sigcheck_ratio": verify_s / sig_s,
        }
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    run(args.quick, args.profile)

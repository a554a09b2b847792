"""Choosing the entries of a provenance bundle (PROTOCOL.md section 7), over any log reader.

The selection is pure: it asks a ``LogReader`` for events and proofs, so the SQL store and
the in-memory ledger build byte-identical bundles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ledger.verify import BUNDLE_FORMAT


class LogReader(Protocol):
    """What building a bundle needs from a log."""

    def event_at(self, event_id: str) -> tuple[int, dict[str, Any]] | None:
        """The (seq, envelope) of an event, or None."""

    def actor_events(self, actor_id: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        """Every ``actor.*`` event whose subject is ``actor_id``, with seq < max_seq."""

    def site_events(self, site_id: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        """The ``site.registered`` and ``site.assessed`` events of a site, seq < max_seq."""

    def proof(self, seq: int, size: int) -> list[bytes]:
        """The inclusion proof of entry ``seq`` in the tree of ``size`` leaves."""


def _links(body: dict[str, Any]) -> Iterable[str]:
    if "prev" in body:
        yield body["prev"]
    for item in body.get("inputs", ()):
        yield item["prev"]


def bundle_entries(reader: LogReader, head: str, size: int) -> dict[int, dict[str, Any]]:
    """The envelopes a bundle for ``head`` must hold, by seq, up to tree ``size``.

    Raises KeyError if an event the provenance names is not in the log.
    """
    entries: dict[int, dict[str, Any]] = {}
    registrations: dict[str, int] = {}  # site id -> latest registration seq
    todo = [head]
    seen: set[str] = set()
    while todo:
        eid = todo.pop()
        if eid in seen:
            continue
        seen.add(eid)
        found = reader.event_at(eid)
        if found is None:
            raise KeyError(eid)
        seq, envelope = found
        entries[seq] = envelope
        body = envelope["body"]
        if body["type"] == "lot.registered":
            registrations[body["site"]] = max(registrations.get(body["site"], -1), seq)
        todo.extend(_links(body))

    for site_id, last_registration in registrations.items():
        for seq, envelope in reader.site_events(site_id, last_registration):
            entries[seq] = envelope

    done: set[str] = set()
    pending = {e["body"]["actor"] for e in entries.values()}
    while pending:
        actor_id = pending.pop()
        done.add(actor_id)
        for seq, envelope in reader.actor_events(actor_id, size):
            entries[seq] = envelope
            signer = envelope["body"]["actor"]
            if signer not in done:
                pending.add(signer)
        pending |= {e["body"]["actor"] for e in entries.values()} - done
    return entries


def build_bundle(
    reader: LogReader,
    *,
    lot: str,
    head: str,
    label_at: str | None,
    origin: str,
    verifier_key: str,
    registrar_key: str | None,
    checkpoint_note: str,
    size: int,
) -> dict[str, Any]:
    """The bundle of section 7 for ``head``, every entry proven against the checkpoint."""
    entries = bundle_entries(reader, head, size)
    return {
        "format": BUNDLE_FORMAT,
        "lot": lot,
        "head": head,
        "label_at": label_at,
        "log": {"origin": origin, "verifier_key": verifier_key, "registrar_key": registrar_key},
        "checkpoint": checkpoint_note,
        "entries": [
            {
                "seq": seq,
                "envelope": entries[seq],
                "proof": [h.hex() for h in reader.proof(seq, size)],
            }
            for seq in sorted(entries)
        ],
    }

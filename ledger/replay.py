"""An in-memory ledger: the rules over a ``MemoryState``, for replays, verifiers and tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ledger import merkle
from ledger.rules import Admitted, admit_all
from ledger.state import MemoryState, StagedState


class MemoryLedger:
    """Admits envelopes one batch at a time against a state held in memory.

    A refused batch leaves the state exactly as it was.
    """

    def __init__(
        self, origin: str, registrar_key: str | None = None, *, lenient: bool = False
    ) -> None:
        self.origin = origin
        self.registrar_key = registrar_key
        self.lenient = lenient
        self.state = MemoryState()
        self.leaves: list[bytes] = []
        self.envelopes: list[dict[str, Any]] = []
        self.seq_by_id: dict[str, int] = {}
        self.tree = merkle.MemoryHashStore()

    def append(self, envelope: object, *, now: dt.datetime | None = None) -> Admitted:
        """Admit one envelope; raises the LedgerError of the first failed check."""
        return self.append_batch([envelope], now=now, batch=False)[0]

    def append_batch(
        self, envelopes: Iterable[object], *, now: dt.datetime | None = None, batch: bool = True
    ) -> list[Admitted]:
        """Admit envelopes in order, all or nothing; errors carry the failing index."""
        staged = StagedState(self.state)
        results = admit_all(
            staged,
            envelopes,
            origin=self.origin,
            registrar_key=self.registrar_key,
            now=now,
            lenient=self.lenient,
            batch=batch,
        )
        self.state.apply(staged.changes)
        new = [r for r in results if r.existing is None]
        merkle.append_leaves(
            self.tree, len(self.leaves), [merkle.leaf_hash(r.leaf_data) for r in new]
        )
        for r in new:
            self.seq_by_id[r.event_id] = len(self.envelopes)
            self.envelopes.append(r.envelope)
            self.leaves.append(r.leaf_data)
        return results

    # -- the LogReader of ledger.bundle --------------------------------------

    def root(self, size: int | None = None) -> bytes:
        """The tree root at ``size`` (default: the whole log)."""
        return merkle.tree_root(self.tree, len(self.leaves) if size is None else size)

    def event_at(self, event_id: str) -> tuple[int, dict[str, Any]] | None:
        """The (seq, envelope) of an accepted event, or None."""
        seq = self.seq_by_id.get(event_id)
        return None if seq is None else (seq, self.envelopes[seq])

    def actor_events(self, actor_id: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        """Every ``actor.*`` event about ``actor_id`` before ``max_seq``."""
        return [
            (seq, env)
            for seq, env in enumerate(self.envelopes[:max_seq])
            if env["body"]["type"].startswith("actor.") and env["body"]["subject"] == actor_id
        ]

    def site_events(self, site_id: str, max_seq: int) -> list[tuple[int, dict[str, Any]]]:
        """The registration and assessments of a site before ``max_seq``."""
        return [
            (seq, env)
            for seq, env in enumerate(self.envelopes[:max_seq])
            if env["body"]["type"].startswith("site.") and env["body"]["site"] == site_id
        ]

    def proof(self, seq: int, size: int) -> list[bytes]:
        """The inclusion proof of entry ``seq`` in the tree of ``size`` leaves."""
        return merkle.inclusion_proof(self.tree, seq, size, tree_size=len(self.leaves))

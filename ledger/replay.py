"""An in-memory ledger: the rules over a ``MemoryState``, for replays, verifiers and tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ledger.errors import LedgerError
from ledger.rules import Admitted, admit
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

    def append(self, envelope: object, *, now: dt.datetime | None = None) -> Admitted:
        """Admit one envelope; raises the LedgerError of the first failed check."""
        return self.append_batch([envelope], now=now, batch=False)[0]

    def append_batch(
        self, envelopes: Iterable[object], *, now: dt.datetime | None = None, batch: bool = True
    ) -> list[Admitted]:
        """Admit envelopes in order, all or nothing; errors carry the failing index."""
        staged = StagedState(self.state)
        results: list[Admitted] = []
        for index, envelope in enumerate(envelopes):
            try:
                results.append(
                    admit(
                        staged, envelope, origin=self.origin, registrar_key=self.registrar_key,
                        now=now, lenient=self.lenient,
                    )
                )
            except LedgerError as e:
                raise e.at(index) if batch else e
        self.state.apply(staged.changes)
        self.leaves.extend(r.leaf_data for r in results if r.existing is None)
        return results

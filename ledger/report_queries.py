"""Read-only queries that feed the reports and exports (issue 7) from the SQL store.

``ledger.reports`` and ``ledger.epcis`` are pure: they read the log as ``(seq, event_id,
body)`` triples in log order and the projections through ``.actor/.site/.lot`` (and
explicit lists of actors, sites and lots). ``report_source(store)`` gives them both over
**one** read transaction, so the stream and the projections describe the same log even
while events are being appended:

- ``events()`` pages through the ``log`` table 1 000 rows at a time (the same paging as
  ``Ledger.entries(start, 1000)``, inside the snapshot) and yields the bodies lazily;
  ``types`` limits it to some event types (the gender report reads four);
- ``actors()``, ``sites()`` and ``lots()`` are every projection row, in the order the log
  created them; ``state`` is the ``SqlState`` of the same snapshot.

Nothing here writes. A full pass over the log per report is the price of keeping the
reports pure; see issue 7.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from ledger import tables
from ledger.state import ActorState, LotState, SiteState
from ledger.store import Ledger, SqlState, read_transaction

__all__ = ["GENDER_EVENT_TYPES", "PAGE_SIZE", "ReportSource", "report_source"]

#: log rows read per query
PAGE_SIZE = 1000
#: the event types ``ledger.reports.gender_report`` reads (the others it skips)
GENDER_EVENT_TYPES = (
    "actor.registered",
    "actor.updated",
    "actor.revoked",
    "site.registered",
    "site.assessed",
    "lot.registered",
)


@dataclass
class ReportSource:
    """The log and the projections of one read snapshot (valid inside ``report_source``)."""

    conn: Connection
    state: SqlState

    def size(self) -> int:
        """The number of entries in the log of this snapshot."""
        return self.state.size()

    def events(
        self, types: Collection[str] | None = None, *, page: int = PAGE_SIZE
    ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(seq, event_id, body)`` in log order, read ``page`` rows at a time.

        ``types`` (optional) keeps only those event types, filtered by the database.
        """
        t = tables.log
        start = 0
        while True:
            query = select(t.c.seq, t.c.event_id, t.c.envelope).where(t.c.seq >= start)
            if types is not None:
                query = query.where(t.c.type.in_(sorted(types)))
            rows = self.conn.execute(query.order_by(t.c.seq).limit(page)).all()
            for row in rows:
                body: dict[str, Any] = json.loads(bytes(row.envelope))["body"]
                yield int(row.seq), str(row.event_id), body
            if len(rows) < page:
                return
            start = int(rows[-1].seq) + 1

    def actors(self) -> list[ActorState]:
        """Every actor, in registration order."""
        a = tables.actors
        rows = self.conn.execute(select(a.c.doc).order_by(a.c.registered_seq, a.c.id))
        return [ActorState.model_validate(row.doc) for row in rows]

    def sites(self) -> list[SiteState]:
        """Every site, in registration order."""
        s = tables.sites
        rows = self.conn.execute(select(s.c.doc).order_by(s.c.registered_seq, s.c.id))
        return [SiteState.model_validate(row.doc) for row in rows]

    def lots(self) -> list[LotState]:
        """Every lot (consumed ones included), in creation order."""
        t = tables.lots
        rows = self.conn.execute(select(t.c.doc).order_by(t.c.created_seq, t.c.lot))
        return [LotState.model_validate(row.doc) for row in rows]


@contextmanager
def report_source(store: Ledger) -> Iterator[ReportSource]:
    """A ``ReportSource`` over one read transaction of ``store``.

    Raises whatever the database raises.
    """
    with read_transaction(store.engine) as conn:
        yield ReportSource(conn, SqlState(conn))

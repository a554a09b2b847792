"""Group commit for single appends (``POST /v1/events``).

Concurrent requests queue here; one writer at a time takes everything waiting (up to
``MAX_GROUP``) and appends it with ``Ledger.append_each`` in a worker thread: one
transaction, one tree update and one signed checkpoint for the group, but an outcome per
request, each exactly what the request would get alone in that order (PROTOCOL.md section
4: "a server may group concurrent requests into one transaction under one checkpoint").

Nothing waits for more requests to come: an idle server starts the writer at once for a
lone request (after letting its event loop turn a few times, so that requests already
received join the group), and while a group is being written the next requests gather for
the next one. The writer runs only while there is work, on the event loop of the requests it
serves; ``close`` (at the app's shutdown) waits for it to finish.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from starlette.concurrency import run_in_threadpool

from ledger.errors import LedgerError
from ledger.store import AppendResult

#: the most requests one transaction takes (the others wait for the next one)
MAX_GROUP = 256
#: Before taking a group the writer lets the event loop turn a few times, and again while
#: that brings new requests: a request the server has already received needs a couple of
#: turns (its bytes are read, then its task parses it up to the queue) to join. No timer:
#: on an idle server this adds a few turns of an empty loop, microseconds.
GATHER_TURNS = 3
GATHER_ROUNDS = 16

AppendEach = Callable[[Sequence[object]], list[AppendResult | LedgerError]]


class GroupCommit:
    """A queue of single appends in front of ``append_each`` (``Runtime.append_each``)."""

    def __init__(self, append_each: AppendEach, *, max_group: int = MAX_GROUP) -> None:
        self._append_each = append_each
        self.max_group = max_group
        self._waiting: deque[tuple[object, asyncio.Future[AppendResult]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        #: how many groups were written and how many requests they held (metrics, tests)
        self.groups = 0
        self.requests = 0

    @property
    def waiting(self) -> int:
        """How many requests wait for the next group."""
        return len(self._waiting)

    async def append(self, envelope: object) -> AppendResult:
        """Append one envelope with whatever else is waiting; its own result or error.

        Raises the LedgerError the envelope would get alone, or what the store raised when
        the group's transaction failed (then nothing of the group was written).
        """
        loop = asyncio.get_running_loop()
        writer = self._writer
        busy_elsewhere = writer is not None and not writer.done() and writer.get_loop() is not loop
        if self._closed or busy_elsewhere:
            # shutting down, or a second event loop (never under uvicorn): append alone
            return await self._alone(envelope)
        future: asyncio.Future[AppendResult] = loop.create_future()
        self._waiting.append((envelope, future))
        if writer is None or writer.done():
            self._writer = loop.create_task(self._write_groups())
        return await future

    async def _alone(self, envelope: object) -> AppendResult:
        (outcome,) = await run_in_threadpool(self._append_each, [envelope])
        if isinstance(outcome, LedgerError):
            raise outcome
        return outcome

    async def _write_groups(self) -> None:
        """Write groups until nobody waits (requests that come meanwhile join the next)."""
        while self._waiting:
            await self._gather()
            group: list[tuple[object, asyncio.Future[AppendResult]]] = []
            while self._waiting and len(group) < self.max_group:
                envelope, future = self._waiting.popleft()
                if not future.done():  # a request cancelled before its turn: not appended
                    group.append((envelope, future))
            if not group:
                continue
            try:
                outcomes = await run_in_threadpool(self._append_each, [e for e, _ in group])
                self.groups += 1
                self.requests += len(group)
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, LedgerError):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
            except asyncio.CancelledError:
                for _, future in group:
                    future.cancel()
                raise
            except Exception as error:  # the whole transaction failed: nothing was written
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)

    async def _gather(self) -> None:
        """Let the requests already received reach the queue (see ``GATHER_TURNS``)."""
        before, rounds = -1, 0
        while before != len(self._waiting) and rounds < GATHER_ROUNDS:
            if len(self._waiting) >= self.max_group:
                return
            before, rounds = len(self._waiting), rounds + 1
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)

    async def close(self) -> None:
        """Stop taking requests into groups and wait for the writer to finish its work."""
        self._closed = True
        writer = self._writer
        if (
            writer is not None
            and not writer.done()
            and writer.get_loop() is asyncio.get_running_loop()
        ):
            await writer

"""Reading request bodies with size limits before any parsing (PROTOCOL.md section 6)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ledger.errors import LedgerError, SchemaError, TooLargeError
from ledger.protocol import canonical, parse_strict
from ledger.rules import prepare

EVENT_LIMIT = 256 * 1024
BATCH_LIMIT = 4 * 1024 * 1024
BATCH_COUNT = 1000


async def read_limited(request: Request, limit: int) -> bytes:
    """Read the body, refusing with 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(
            f"The request is {int(declared)} bytes; the limit here is {limit} bytes."
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"The request is over the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_event(request: Request) -> Any:
    """One envelope: size, then strict JSON parsing."""
    return parse_strict(await read_limited(request, EVENT_LIMIT))


async def read_batch(request: Request) -> list[Any]:
    """A batch: size, strict parsing, count and each envelope's canonical size, then shape."""
    data = parse_strict(await read_limited(request, BATCH_LIMIT))
    events = data.get("events") if isinstance(data, dict) else None
    if isinstance(events, list) and len(events) > BATCH_COUNT:
        raise TooLargeError(
            f"The batch holds {len(events)} events; send at most {BATCH_COUNT} at a time."
        )
    items: list[Any] = []
    if isinstance(events, list):
        # each envelope is canonicalised once here, for its size, and handed on in its
        # prepared form so that the ledger does not canonicalise it again; one whose shape
        # is wrong is measured as it is and refused by the rules in its turn
        for index, envelope in enumerate(events):
            try:
                item: Any = prepare(envelope, parsed=True)  # as parse_strict returned it
                size = len(item.leaf_data)
            except LedgerError:
                item = envelope
                size = len(canonical(envelope))
            if size > EVENT_LIMIT:
                raise TooLargeError(f"Event {index} of the batch is over {EVENT_LIMIT} bytes.").at(
                    index
                )
            items.append(item)
    if not isinstance(data, dict) or set(data) != {"events"} or not isinstance(events, list):
        raise SchemaError('A batch must be a JSON object {"events": [envelopes...]}.')
    if not events:
        raise SchemaError("The batch is empty: send at least one event.")
    return items

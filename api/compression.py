"""Gzip for the responses a buyer's phone downloads on a slow link: the lot page and the
bundle (section 7). Both are text made of few repeated words (HTML of one timeline, JSON of
envelopes and hex proofs), so gzip makes them 4 to 10 times smaller. Only when the client
says it accepts gzip (``Accept-Encoding``), and only above a size where it pays.
"""

from __future__ import annotations

import gzip

from starlette.responses import Response

#: below this size a response is sent as it is (gzip's header and the CPU do not pay)
MIN_SIZE = 1024


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an ``Accept-Encoding`` header accepts gzip (RFC 9110 section 12.5.3):
    ``gzip`` (or ``x-gzip``, or ``*`` when gzip is not named) with a q-value above 0."""
    named: dict[str, float] = {}
    for part in (accept_encoding or "").split(",")[:32]:
        coding, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if coding:
            named[coding.lower()] = q
    for coding in ("gzip", "x-gzip"):
        if coding in named:
            return named[coding] > 0
    return named.get("*", 0.0) > 0


def maybe_gzipped(
    body: bytes,
    accept_encoding: str | None,
    *,
    media_type: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """``body`` as a response, gzipped when the client accepts it and it is large enough;
    ``Vary: Accept-Encoding`` either way, so a cache never serves one to the other."""
    out = {**(headers or {}), "Vary": "Accept-Encoding"}
    if len(body) >= MIN_SIZE and accepts_gzip(accept_encoding):
        body = gzip.compress(body, compresslevel=6, mtime=0)
        out["Content-Encoding"] = "gzip"
    return Response(body, status_code=status_code, media_type=media_type, headers=out)

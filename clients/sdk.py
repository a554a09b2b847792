"""A small, typed, synchronous SDK for the goldtrail HTTP API (PROTOCOL.md section 6).

Every endpoint of the protocol has one method; list endpoints also have an ``iter_*``
generator that follows ``next`` cursors. Errors come in two kinds under one root,
:class:`ClientError`:

- :class:`ApiError`: the server answered with a refusal (RFC 9457 problem+json). It carries
  the HTTP ``status``, the machine ``code``, the plain-language ``detail`` and, for a batch,
  the ``index`` of the failing event.
- :class:`ServerUnreachable`: no usable answer (connection refused, DNS, timeout, a dropped
  connection). Callers queue their signed events offline and try again later; because the
  server is idempotent for an envelope already logged, re-sending after a timeout is safe.

Example::

    from clients.sdk import Client

    with Client("http://127.0.0.1:8000") as api:
        print(api.log()["size"])
        for lot in api.iter_lots(custodian="coop-mambasa-femmes"):
            print(lot["lot"], lot["risk"])

The SDK depends on httpx only; signing lives in ``ledger.protocol``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypedDict, cast
from urllib.parse import quote

import httpx

__all__ = [
    "ApiError",
    "BatchReceipt",
    "Client",
    "ClientError",
    "LogInfo",
    "Page",
    "Receipt",
    "ResponseTooLarge",
    "ServerUnreachable",
]

DEFAULT_TIMEOUT = 30.0
USER_AGENT = "goldtrail-client/1"


# ---------------------------------------------------------------------------
# Errors


class ClientError(Exception):
    """Root of every error the SDK raises: ``code`` is a machine code, ``detail`` a sentence."""

    def __init__(self, detail: str, code: str = "client_error") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code

    def __str__(self) -> str:
        return f"{self.detail} ({self.code})"


class ApiError(ClientError):
    """The server refused the request with an RFC 9457 problem (or another HTTP error).

    ``index`` is the position of the failing event inside a batch, None for a single event
    or an error of the whole request; ``problem`` is the whole problem object.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        index: int | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, code)
        self.status = status
        self.index = index
        self.problem: dict[str, Any] = dict(problem or {})

    def __repr__(self) -> str:
        where = f", index={self.index}" if self.index is not None else ""
        return f"ApiError({self.status}, {self.code!r}, {self.detail!r}{where})"


class ServerUnreachable(ClientError):
    """No answer from the server (connection refused, timeout, dropped connection).

    Nothing is known about whether a request that timed out was applied: re-send it (the
    server answers an envelope already logged with its existing receipt).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail, "unreachable")


class ResponseTooLarge(ClientError):
    """An answer larger than the caller allows (``max_bytes``): a bundle too big for the
    phone or the link it would be verified on. Nothing more of it is read."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, "too_large")


# ---------------------------------------------------------------------------
# Response shapes


class Receipt(TypedDict):
    """Proof that an event is in the log: its id, position, leaf hash and a checkpoint."""

    event_id: str
    seq: int
    leaf_hash: str
    checkpoint: str


class BatchReceipt(TypedDict):
    """The answer to a batch: one receipt per envelope, in order, and the checkpoint."""

    receipts: list[Receipt]
    checkpoint: str


class LogInfo(TypedDict, total=False):
    """``GET /v1/log``: the log's identity and current size (``public_url`` where served)."""

    origin: str
    verifier_key: str
    registrar_key: str | None
    size: int
    root: str
    public_url: str


class Page(TypedDict):
    """One page of a list: ``items`` oldest first, and the cursor of the next page or None."""

    items: list[dict[str, Any]]
    next: Any


# ---------------------------------------------------------------------------
# The client


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; the server refuses floats, so refuse them here first."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _seg(value: str) -> str:
    """One path segment, percent-encoded."""
    return quote(value, safe="")


class Client:
    """A synchronous goldtrail API client.

    ``base_url`` is the server's root (``http://127.0.0.1:8000``), without ``/v1``.
    ``transport`` lets tests plug in ``httpx.MockTransport``. Use it as a context manager,
    or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"user-agent": USER_AGENT, **(headers or {})},
            follow_redirects=True,
        )

    # -- lifecycle

    def close(self) -> None:
        """Close the underlying connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        accept: str = "application/json",
        max_bytes: int | None = None,
    ) -> httpx.Response:
        """The server's successful answer, else the error it stands for. With
        ``max_bytes`` the body is read in pieces and refused (ResponseTooLarge) as soon as
        it is longer, decompressed, than that; the answer then holds the body read."""
        headers = {"accept": f"{accept}, application/problem+json"}
        if content is not None:
            headers["content-type"] = "application/json"
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            if max_bytes is not None:
                return self._capped(method, path, clean, headers, max_bytes)
            response = self._http.request(
                method, path, params=clean, content=content, headers=headers
            )
        except httpx.TimeoutException as e:
            raise ServerUnreachable(
                f"The server at {self.base_url} did not answer in time ({type(e).__name__})."
            ) from e
        except httpx.TransportError as e:
            raise ServerUnreachable(
                f"Cannot reach the server at {self.base_url}: {e or type(e).__name__}."
            ) from e
        if response.is_success:
            return response
        raise _api_error(response)

    def _capped(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str],
        max_bytes: int,
    ) -> httpx.Response:
        """``_request``'s answer, its body read no further than ``max_bytes``."""
        with self._http.stream(method, path, params=params, headers=headers) as response:
            if not response.is_success:
                response.read()
                raise _api_error(response)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise ResponseTooLarge(
                        f"The answer from {self.base_url}{path} is larger than "
                        f"{max_bytes:,} bytes, the most allowed here."
                    )
        return httpx.Response(
            response.status_code,
            headers=[(k, v) for k, v in response.headers.items() if k != "content-encoding"],
            content=bytes(body),
            request=response.request,
        )

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
    ) -> Any:
        response = self._request(method, path, params=params, content=content)
        try:
            return response.json()
        except ValueError as e:
            raise ClientError(
                f"The server answered {method} {path} with something that is not JSON.",
                "bad_response",
            ) from e

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        value = self._json(method, path, **kwargs)
        if not isinstance(value, dict):
            raise ClientError(
                f"The server answered {method} {path} with JSON that is not an object.",
                "bad_response",
            )
        return value

    def _page(self, path: str, params: Mapping[str, Any]) -> Page:
        value = self._object("GET", path, params=params)
        items = value.get("items")
        if not isinstance(items, list):
            raise ClientError(f"The server's list at {path} has no items.", "bad_response")
        return {"items": items, "next": value.get("next")}

    def _follow(
        self, path: str, params: Mapping[str, Any], cursor_param: str = "cursor"
    ) -> Iterator[dict[str, Any]]:
        query = dict(params)
        seen: set[str] = set()
        while True:
            page = self._page(path, query)
            yield from page["items"]
            nxt = page["next"]
            if nxt is None or str(nxt) in seen:
                return
            seen.add(str(nxt))
            query[cursor_param] = nxt

    # -- events

    def post_event(self, envelope: Mapping[str, Any]) -> Receipt:
        """``POST /v1/events``: append one envelope; returns its receipt.

        An envelope already logged gets its existing receipt (HTTP 200 instead of 201).
        """
        return cast(Receipt, self._object("POST", "/v1/events", content=_dumps(envelope)))

    def post_batch(self, envelopes: Sequence[Mapping[str, Any]]) -> BatchReceipt:
        """``POST /v1/events/batch``: append up to 1000 envelopes in order, all or nothing.

        A refusal is an :class:`ApiError` whose ``index`` names the failing envelope;
        nothing of the batch was appended then.
        """
        body = _dumps({"events": list(envelopes)})
        return cast(BatchReceipt, self._object("POST", "/v1/events/batch", content=body))

    def event(self, event_id: str) -> dict[str, Any]:
        """``GET /v1/events/{id}``: ``{event_id, seq, leaf_hash, envelope}``."""
        return self._object("GET", f"/v1/events/{_seg(event_id)}")

    # -- the log

    def log(self) -> LogInfo:
        """``GET /v1/log``: ``{origin, verifier_key, registrar_key, size, root}``."""
        return cast(LogInfo, self._object("GET", "/v1/log"))

    def checkpoint(self) -> str:
        """``GET /v1/log/checkpoint``: the latest signed checkpoint (a C2SP signed note)."""
        return self._request("GET", "/v1/log/checkpoint", accept="text/plain").text

    def entries(self, start: int = 0, limit: int | None = None) -> Page:
        """``GET /v1/log/entries``: one page of log entries from ``start``."""
        return self._page("/v1/log/entries", {"start": start, "limit": limit})

    def iter_entries(self, start: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every log entry from ``start`` on, following ``next`` (the next start)."""
        return self._follow("/v1/log/entries", {"start": start, "limit": limit}, "start")

    def inclusion_proof(self, index: int, size: int) -> dict[str, Any]:
        """``GET /v1/log/proof/inclusion``: ``{index, size, proof}`` (hex hashes)."""
        return self._object("GET", "/v1/log/proof/inclusion", params={"index": index, "size": size})

    def consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        """``GET /v1/log/proof/consistency``: ``{first, second, proof}`` (hex hashes)."""
        return self._object(
            "GET", "/v1/log/proof/consistency", params={"first": first, "second": second}
        )

    # -- actors and sites

    def actors(
        self,
        limit: int | None = None,
        cursor: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Page:
        """``GET /v1/actors``: one page of actors (``params`` adds any server filter)."""
        return self._page("/v1/actors", {**(params or {}), "limit": limit, "cursor": cursor})

    def iter_actors(
        self, limit: int | None = None, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every actor, following ``next`` cursors."""
        return self._follow("/v1/actors", {**(params or {}), "limit": limit})

    def actor(self, actor_id: str) -> dict[str, Any]:
        """``GET /v1/actors/{id}``: roles, lot prefix, keys and their history, status."""
        return self._object("GET", f"/v1/actors/{_seg(actor_id)}")

    def sites(
        self,
        limit: int | None = None,
        cursor: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Page:
        """``GET /v1/sites``: one page of sites with their current status."""
        return self._page("/v1/sites", {**(params or {}), "limit": limit, "cursor": cursor})

    def iter_sites(
        self, limit: int | None = None, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every site, following ``next`` cursors."""
        return self._follow("/v1/sites", {**(params or {}), "limit": limit})

    def site(self, site_id: str) -> dict[str, Any]:
        """``GET /v1/sites/{id}``: a site with its status and latest indicators."""
        return self._object("GET", f"/v1/sites/{_seg(site_id)}")

    # -- lots

    def lots(
        self,
        custodian: str | None = None,
        site: str | None = None,
        status: str | None = None,
        risk: str | None = None,
        limit: int | None = None,
        cursor: Any = None,
    ) -> Page:
        """``GET /v1/lots``: one page of lot states, filtered."""
        return self._page(
            "/v1/lots",
            {
                "custodian": custodian,
                "site": site,
                "status": status,
                "risk": risk,
                "limit": limit,
                "cursor": cursor,
            },
        )

    def iter_lots(
        self,
        custodian: str | None = None,
        site: str | None = None,
        status: str | None = None,
        risk: str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every lot matching the filters, following ``next`` cursors."""
        return self._follow(
            "/v1/lots",
            {"custodian": custodian, "site": site, "status": status, "risk": risk, "limit": limit},
        )

    def lot(self, lot: str) -> dict[str, Any]:
        """``GET /v1/lots/{lot}``: the lot's state (``head``, ``offer``, ``flags``, …)."""
        return self._object("GET", f"/v1/lots/{_seg(lot)}")

    def lot_events(self, lot: str, limit: int | None = None, cursor: Any = None) -> Page:
        """``GET /v1/lots/{lot}/events``: one page of the lot's own chain, oldest first."""
        return self._page(f"/v1/lots/{_seg(lot)}/events", {"limit": limit, "cursor": cursor})

    def iter_lot_events(self, lot: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The lot's whole chain, following ``next`` cursors."""
        return self._follow(f"/v1/lots/{_seg(lot)}/events", {"limit": limit})

    def bundle(self, lot: str, at: str | None = None, *, max_bytes: int | None = None) -> bytes:
        """``GET /v1/lots/{lot}/bundle``: the provenance bundle, as raw bytes.

        Raw bytes, so that they can be saved and verified offline exactly as served.
        ``max_bytes``: refuse (ResponseTooLarge) a bundle longer than that, without reading
        the rest of it.
        """
        return self._request(
            "GET", f"/v1/lots/{_seg(lot)}/bundle", params={"at": at}, max_bytes=max_bytes
        ).content

    def qr_png(self, lot: str) -> bytes:
        """``GET /v1/lots/{lot}/qr.png``: the lot's QR code as PNG."""
        return self._request("GET", f"/v1/lots/{_seg(lot)}/qr.png", accept="image/png").content

    def qr_svg(self, lot: str) -> bytes:
        """``GET /v1/lots/{lot}/qr.svg``: the lot's QR code as SVG."""
        return self._request("GET", f"/v1/lots/{_seg(lot)}/qr.svg", accept="image/svg+xml").content

    def label_page(self, lot: str, at: str | None = None) -> str:
        """``GET /l/{lot}``: the human verification page a QR code opens (HTML)."""
        return self._request("GET", f"/l/{_seg(lot)}", params={"at": at}, accept="text/html").text


def _api_error(response: httpx.Response) -> ApiError:
    """Turn an HTTP error response into an ApiError, reading problem+json when present."""
    status = response.status_code
    problem: dict[str, Any] = {}
    try:
        value = response.json()
        if isinstance(value, dict):
            problem = value
    except ValueError:
        pass
    code = problem.get("code")
    detail = problem.get("detail")
    index = problem.get("index")
    if not isinstance(code, str) or not code:
        code = f"http_{status}"
    if not isinstance(detail, str) or not detail:
        text = response.text.strip().splitlines()
        first = text[0].strip()[:200] if text else ""
        if "html" in response.headers.get("content-type", "").lower() or first.startswith("<"):
            first = ""  # a proxy's or portal's web page: its markup tells the user nothing
        detail = f"The server answered HTTP {status} {response.reason_phrase}" + (
            f": {first}" if first else "."
        )
    if not isinstance(index, int) or isinstance(index, bool):
        index = None
    return ApiError(status, code, detail, index, problem)

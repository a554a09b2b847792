"""``goldtrail``: the command line for cooperatives, traders, registrars and buyers.

Every event is built from options, signed on this machine with the user's key file (keys
never leave it), written to the offline outbox first and then sent. When the server cannot
be reached, or with ``--offline``, the signed event stays in the outbox until
``goldtrail sync``. Errors are one plain line on stderr, ``error: <detail> (<code>)``, with
exit code 1 (2 for a usage error).

Global options (``--server``, ``--key``, ``--origin``, ``--outbox``, ``--offline``, ``--yes``)
may be written anywhere on the command line.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import importlib
import json
import os
import re
import secrets
import socket
import sqlite3
import sys
import tempfile
import threading
import time as time_module
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import nacl.signing
import typer

from clients.admin import admin_app
from clients.keys import (
    INTERACTIVE,
    MODERATE,
    KdfLimits,
    KeyFile,
    KeyFileError,
    create_key_file,
    is_loose,
    load_key_file,
    load_signing_key,
    read_public,
    write_key_file,
)
from clients.outbox import (
    DEFAULT_BATCH,
    ChainState,
    Outbox,
    OutboxError,
    OutboxEvent,
    SyncReport,
    default_outbox_path,
    sync,
)
from clients.sdk import ApiError, Client, ClientError, ResponseTooLarge, ServerUnreachable
from ledger.errors import LedgerError
from ledger.events import (
    ArmedGroups,
    AssayMethod,
    ChildLabour,
    Deposit,
    FlagCode,
    Form,
    Outcome,
    PaymentMethod,
    PitOwner,
    Process,
    Role,
    Scheme,
    SecurityForces,
    SellerSex,
    SiteStatus,
    WomenRole,
    parse_body,
)
from ledger.protocol import canonical, hex32, parse_strict, public_key_hex, sign_body

__all__ = ["Hooks", "app", "main"]

DEFAULT_SERVER = "http://127.0.0.1:8000"
FREE_TEXT = ("name", "note", "reason", "resolution")
OFFLINE_MESSAGE = "saved offline; run goldtrail sync when you are connected"


class CliError(Exception):
    """A refusal by the command line itself (one line, exit 1)."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class UsageProblem(Exception):
    """A mistake in how a command was called (one line, exit 2)."""


@dataclass
class Hooks:
    """What tests can inject: an httpx transport, a clock and the KDF limits of new keys."""

    transport: httpx.BaseTransport | None = None
    now: Callable[[], dt.datetime] | None = None
    kdf_limits: KdfLimits | None = None


# ---------------------------------------------------------------------------
# Output


def _out(text: str = "") -> None:
    typer.echo(text)


def _note(text: str) -> None:
    typer.echo(text, err=True)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _short(event_id: str | None) -> str:
    return (event_id or "-")[:12]


def _grams(mass_mg: Any) -> str:
    return f"{mass_mg / 1000:,.3f} g" if isinstance(mass_mg, int) else "-"


# ---------------------------------------------------------------------------
# The session: server, key, outbox


@dataclass
class Session:
    """Everything a command needs, opened lazily: client, outbox, key, origin."""

    server: str
    key_path: Path
    origin_option: str | None
    offline: bool
    outbox_path: Path
    yes: bool
    timeout: float
    hooks: Hooks = field(default_factory=Hooks)
    _client: Client | None = None
    _outbox: Outbox | None = None
    _key: KeyFile | None = None
    _origin: str | None = None
    _went_offline: bool = False
    _flushed: bool = False

    @property
    def client(self) -> Client:
        """The API client for ``--server``."""
        if self._client is None:
            self._client = Client(self.server, timeout=self.timeout, transport=self.hooks.transport)
        return self._client

    @property
    def outbox(self) -> Outbox:
        """The outbox database."""
        if self._outbox is None:
            self._outbox = Outbox(self.outbox_path)
        return self._outbox

    def close(self) -> None:
        """Close the client and the outbox."""
        if self._client is not None:
            self._client.close()
        if self._outbox is not None:
            self._outbox.close()

    def now(self) -> str:
        """Now, UTC, whole seconds, ``Z``."""
        moment = self.hooks.now() if self.hooks.now is not None else dt.datetime.now(dt.UTC)
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def key(self) -> KeyFile:
        """The user's key file, opened with the passphrase (asked once)."""
        if self._key is None:
            if is_loose(self.key_path):
                _note(
                    f"warning: {self.key_path} can be read by other users; "
                    f"run chmod 600 {self.key_path}"
                )
            self._key = load_key_file(self.key_path, passphrase(self.key_path, confirm=False))
        return self._key

    def go_offline(self, error: ClientError) -> None:
        """Switch to offline work after the server could not be reached."""
        if not self.offline:
            _note(f"note: cannot reach {self.server}; working offline ({error.detail})")
        self.offline = True
        self._went_offline = True

    def online_call(self, call: Callable[[], Any]) -> Any:
        """Call the server unless offline; when it gives no usable answer (see ``_outage``),
        go offline and return None."""
        if self.offline:
            return None
        try:
            return call()
        except ClientError as e:
            if not _outage(e):
                raise
            self.go_offline(e)
            return None

    def origin(self) -> str:
        """The log's origin: --origin, else the server's (cached for offline signing)."""
        if self._origin is not None:
            return self._origin
        info = self.online_call(self.client.log)
        if info is not None:
            self.outbox.remember_server(self.server, info)
            if self.origin_option is not None and self.origin_option != info["origin"]:
                raise CliError(
                    f"--origin {self.origin_option} is not the origin of {self.server} "
                    f"({info['origin']}); events signed for it would be refused there",
                    "wrong_origin",
                )
            self._origin = str(info["origin"])
            return self._origin
        if self.origin_option is not None:
            self._origin = self.origin_option
            return self._origin
        cached = self.outbox.server_info(self.server)
        if cached is None:
            raise CliError(
                f"the log's origin of {self.server} is not known on this machine: run any "
                "command once while online (goldtrail sync), or give --origin",
                "origin_unknown",
            )
        self._origin = str(cached["origin"])
        return self._origin

    def flush(self, origin: str) -> None:
        """Send what waits in the outbox first (once), so the server's view is complete."""
        if self.offline or self._flushed:
            return
        self._flushed = True
        waiting = len(self.outbox.pending(origin))
        if not waiting:
            return
        report = _run_sync(self, origin, quiet=waiting < 100)
        if report.sent:
            _out(f"sent {len(report.sent)} earlier event(s) from the outbox first")
        _report_problems(report)
        if report.stopped is not None and _outage(report.stopped):
            self.go_offline(report.stopped)

    def chain(self, lot: str, *, required: bool = True) -> ChainState:
        """Where a lot's chain stands (server, cache and pending events of the outbox)."""
        origin = self.origin()
        self.flush(origin)
        failed = self.outbox.failed_on(origin, lot)
        if failed is not None:
            builds = "" if lot in failed.lots else f", and pending events on lot {lot} build on it"
            raise CliError(
                f"outbox event #{failed.id} ({failed.type}) on lot {', '.join(failed.lots)} "
                f"was refused ({failed.error_code}){builds}; retry or drop it first "
                "(goldtrail outbox list)",
                "outbox_blocked",
            )
        view: dict[str, Any] | None = None
        if not self.offline:
            try:
                view = self.client.lot(lot)
            except ClientError as e:
                if _outage(e):
                    self.go_offline(e)
                elif not (isinstance(e, ApiError) and e.code in ("unknown_lot", "not_found")):
                    raise
        state = self.outbox.chain(origin, lot, view)
        if state.head is None and required:
            if self.offline:
                raise CliError(
                    f"the head of lot {lot} is not known on this machine: run "
                    f"`goldtrail lot show {lot}` once while online",
                    "head_unknown",
                )
            raise CliError(f"lot {lot} is not in the log", "unknown_lot")
        return state


def _outage(error: ClientError) -> bool:
    """True when the server gave no usable answer: unreachable, a server error (5xx: down
    for maintenance, a gateway without its backend) or an answer that is not the server's
    (a captive portal's login page). Work then goes on offline, as the outbox is for."""
    if isinstance(error, ServerUnreachable):
        return True
    if isinstance(error, ApiError):
        return error.status >= 500
    return error.code == "bad_response"


def passphrase(path: Path, *, confirm: bool) -> str:
    """The key file's passphrase: ``GOLDTRAIL_PASSPHRASE``, else a hidden prompt."""
    env = os.environ.get("GOLDTRAIL_PASSPHRASE")
    if env:
        return env
    try:
        value: str = typer.prompt(
            f"Passphrase for {path}", hide_input=True, confirmation_prompt=confirm
        )
    except typer.Abort as e:  # end of input (a script, a pipe) or Ctrl-C at the prompt
        raise KeyFileError(
            f"no passphrase was given for the key file {path}: type it when asked, or set "
            "GOLDTRAIL_PASSPHRASE"
        ) from e
    return value


def _session(ctx: typer.Context) -> Session:
    session = ctx.find_object(Session)
    if session is None:  # pragma: no cover - the callback always sets it
        raise CliError("internal: no session", "internal")
    return session


# ---------------------------------------------------------------------------
# Parsing option values


def _usage(message: str) -> NoReturn:
    raise UsageProblem(message)


def _hex_key(text: str, what: str) -> str:
    """A public key typed as hex: either case (the log writes it in lowercase)."""
    key = hex32(text.strip())
    if key is None:
        _usage(f"{what}: a public key is 64 hexadecimal characters (0-9, a-f), not {text!r}")
    return key


def _verifier_key(text: str) -> str:
    """The log's note verifier key as typed or pasted (blanks around it ignored): a key
    that is none is a usage error, not a bundle that fails to verify."""
    from ledger.checkpoint import parse_verifier_key
    from ledger.errors import VerificationError

    key = text.strip()
    try:
        parse_verifier_key(key)
    except VerificationError as e:
        _usage(f"--log-key: {e.detail}")
    return key


def _int(text: str, what: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", text.strip()):
        _usage(f"{what}: {text!r} is not a whole number")
    return int(text)


_LOT_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{3,47}")


def _lot_id(text: str, what: str) -> str:
    """A lot id as typed, or a usage error saying how to write it (never 'not in the log'
    for a lot that is there in capitals)."""
    if _LOT_ID.fullmatch(text):
        return text
    upper = text.strip().upper()
    if _LOT_ID.fullmatch(upper):
        _usage(f"{what}: lot ids are written in capital letters: {upper}, not {text}")
    _usage(
        f"{what}: {text!r} is not a lot id: 4 to 48 capital letters, digits or hyphens, "
        "like MAK-2026-0001"
    )


def _money(text: str, what: str) -> dict[str, Any]:
    """``CUR:AMOUNT`` (minor units) → money."""
    parts = text.split(":")
    if len(parts) != 2:
        _usage(f"{what}: write CURRENCY:AMOUNT in minor units, like USD:125000")
    return {"amount_minor": _int(parts[1], what), "currency": parts[0].strip().upper()}


def _pair(text: str, what: str, first: str, second: str) -> dict[str, int]:
    parts = text.split(":")
    if len(parts) != 2:
        _usage(f"{what}: write {first.upper()}:{second.upper()}, like 6:3")
    return {first: _int(parts[0], what), second: _int(parts[1], what)}


def _payment(text: str) -> dict[str, Any]:
    """``CUR:TOTAL:TO_WOMEN`` → ``{total, to_women}``."""
    parts = text.split(":")
    if len(parts) != 3:
        _usage(
            "--payment: write CURRENCY:TOTAL:TO_WOMEN in minor units, like CDF:198000000:132000000"
        )
    currency = parts[0].strip().upper()
    return {
        "total": {"amount_minor": _int(parts[1], "--payment"), "currency": currency},
        "to_women": {"amount_minor": _int(parts[2], "--payment"), "currency": currency},
    }


def _state_payment(text: str) -> dict[str, Any]:
    """``KIND:CUR:AMOUNT:RECEIPT`` → a state payment."""
    parts = text.split(":", 3)
    if len(parts) != 4:
        _usage(
            "--state-payment: write KIND:CURRENCY:AMOUNT:RECEIPT, like "
            "tax:CDF:1500000:SAEMAPE-2026-11-0912"
        )
    return {
        "kind": parts[0].strip(),
        "amount": {
            "amount_minor": _int(parts[2], "--state-payment"),
            "currency": parts[1].strip().upper(),
        },
        "receipt": parts[3],
    }


def _extracted(text: str) -> dict[str, str]:
    parts = text.split(":")
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    if len(parts) != 2:
        _usage("--extracted: write FROM:TO dates, like 2026-11-10:2026-11-19")
    return {"from": parts[0].strip(), "to": parts[1].strip()}


def _yes_no(text: str, what: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "y", "true"):
        return True
    if value in ("no", "n", "false"):
        return False
    _usage(f"{what}: answer yes or no, not {text!r}")


def _output(text: str) -> dict[str, Any]:
    """``LOT:MASS_MG:FORM:FINENESS_PPM[:BAR_SERIAL:BAR_YEAR]`` → a process output."""
    parts = text.split(":", 4)
    if len(parts) < 4:
        _usage("--output: write LOT:MASS_MG:FORM:FINENESS_PPM[:BAR_SERIAL:BAR_YEAR]")
    out: dict[str, Any] = {
        "lot": parts[0].strip(),
        "mass_mg": _int(parts[1], "--output"),
        "form": parts[2].strip(),
        "fineness_ppm": _int(parts[3], "--output"),
    }
    if len(parts) == 5:
        serial, _, year = parts[4].rpartition(":")
        if not serial:
            _usage("--output: a bar is written ...:BAR_SERIAL:BAR_YEAR")
        out["bar"] = {"serial": serial, "year": _int(year, "--output")}
    return out


def _json_body(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = parse_strict(path.read_bytes())
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}", "json_body") from e
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold one JSON object: the event's body", "json_body")
    return data


def _put(body: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, list) and not value:
        return
    body[key] = value


def _put_in(body: dict[str, Any], outer: str, key: str, value: Any) -> None:
    if value is None:
        return
    inner = body.get(outer)
    if not isinstance(inner, dict):
        inner = {}
    inner[key] = value
    body[outer] = inner


def _enum(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_enum(v) for v in value]
    return getattr(value, "value", value)


def _require(body: dict[str, Any], options: dict[str, str]) -> None:
    missing = [option for key, option in options.items() if key not in body]
    if missing:
        _usage(f"missing {', '.join(missing)} (or give them in --json-body)")


# ---------------------------------------------------------------------------
# Signing and sending


def _warn_free_text(session: Session, body: dict[str, Any]) -> None:
    present = [k for k in FREE_TEXT if isinstance(body.get(k), str)]
    if not present:
        return
    _note(
        f"warning: the {' and '.join(present)} you are signing will be public and permanent in "
        "the log: it must not name a person or hold an identity number (organisations and "
        "licensed businesses only)."
    )
    for key in present:
        _note(f"  {key}: {body[key]}")
    if not session.yes and sys.stdin.isatty() and not typer.confirm("Sign it?", default=True):
        raise CliError("nothing was signed", "cancelled")


def _nfc(value: Any) -> Any:
    """``value`` with every string in Unicode NFC (the same text, composed)."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {k: _nfc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nfc(v) for v in value]
    return value


def _check_clock(session: Session, body: dict[str, Any]) -> None:
    """Refuse to sign an event dated before the lot's last event when this machine has that
    event (queued or sent from here): a clock reset to the past (a flat battery) would
    otherwise fill the outbox with events every server refuses (``time_order``)."""
    named = [(body.get("lot"), body.get("prev"))]
    named += [
        (i.get("lot"), i.get("prev")) for i in body.get("inputs") or [] if isinstance(i, dict)
    ]
    for lot, prev in named:
        if not isinstance(prev, str):
            continue
        earlier = session.outbox.find(prev)
        if earlier is not None and str(earlier.body.get("time", "")) > body["time"]:
            raise CliError(
                f"this device's clock says {body['time']}, before the last event on lot {lot} "
                f"({earlier.body['time']}): set the date and time, then try again",
                "clock",
            )


def _sign_and_send(session: Session, body: dict[str, Any], what: str) -> OutboxEvent:
    """Validate, warn, sign, queue, then send the whole outbox if online."""
    key = session.key()
    body["v"] = 1
    if body.get("actor", key.actor) != key.actor:
        raise CliError(
            f"the body says actor {body['actor']!r} but the key file is for {key.actor!r}",
            "wrong_actor",
        )
    body["actor"] = key.actor
    body.setdefault("time", session.now())
    # every server refuses text not already in Unicode NFC (PROTOCOL.md section 1), and
    # some keyboards send accents as separate marks: the signer writes the same text in NFC
    body = _nfc(body)
    parse_body(body)
    # and anything else the strict reader refuses is refused here, before it is signed:
    # queued, it would wait in the outbox until a server refused it, holding back the lot
    parse_strict(canonical(body))
    _check_clock(session, body)
    _warn_free_text(session, body)
    origin = session.origin()
    envelope = sign_body(body, key.signing_key, origin)
    queued = session.outbox.enqueue(envelope, origin)
    if session.offline:
        _out(f"{what}: {OFFLINE_MESSAGE} (outbox #{queued.id}, event {_short(queued.event_id)})")
        return queued
    earlier = len(session.outbox.pending(origin)) - 1
    report = _run_sync(session, origin, quiet=earlier < 100)
    final = session.outbox.get(queued.id)
    if final.status == "sent":
        _out(f"{what}: logged as event {final.event_id} at seq {final.seq}")
        if len(report.sent) > 1:
            _out(f"also sent {len(report.sent) - 1} earlier event(s) from the outbox")
        _report_problems(report, exclude=final.id)
        return final
    if final.status == "failed":
        session.outbox.forget(final.id)
        _report_problems(report, exclude=final.id)
        raise ApiError(
            final.error_status or 0,
            final.error_code or "refused",
            final.error_detail or "the server refused the event",
        )
    why = f" ({report.stopped.detail})" if report.stopped is not None else ""
    _out(f"{what}: {OFFLINE_MESSAGE} (outbox #{final.id}){why}")
    return final


def _run_sync(
    session: Session, origin: str, *, quiet: bool, batch: int = DEFAULT_BATCH
) -> SyncReport:
    console = _rich_err()
    if quiet or not console.is_terminal:
        # no bar in a pipe or a log file: only the plain lines that follow
        return sync(session.outbox, session.client, origin, batch_size=batch)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("sync", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return sync(session.outbox, session.client, origin, batch_size=batch, progress=progress)


def _rich_err() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _report_problems(report: SyncReport, exclude: int | None = None) -> None:
    failed = [e for e in report.failed if e.id != exclude]
    for event in failed:
        _note(
            f"refused: outbox #{event.id} {event.type} {', '.join(event.lots)}: "
            f"{event.error_detail} ({event.error_code})"
        )
    if report.blocked:
        _note(
            f"held back: {len(report.blocked)} pending event(s) build on a refused event "
            "(goldtrail outbox list)"
        )


def _lot_event(
    session: Session,
    kind: str,
    lot: str | None,
    body: dict[str, Any],
    time: str | None,
    *,
    answer: bool = False,
) -> OutboxEvent:
    body.setdefault("type", kind)
    if body["type"] != kind:
        raise CliError(f"the --json-body is a {body['type']}, not a {kind}", "wrong_type")
    _put(body, "lot", lot if lot is None else _lot_id(lot, "--lot"))
    _put(body, "time", time)
    if "lot" not in body:
        _usage("missing --lot")
    state = session.chain(body["lot"])
    body.setdefault("prev", state.head)
    if answer and "offer" not in body:
        if state.offer is None:
            raise CliError(f"lot {body['lot']} has no pending offer", "no_pending_offer")
        if kind == "lot.transfer_accepted" or kind == "lot.transfer_rejected":
            actor = session.key().actor
            if state.offer_to is not None and state.offer_to != actor:
                raise CliError(
                    f"the pending offer on lot {body['lot']} is to {state.offer_to}, not to "
                    f"{actor}",
                    "not_recipient",
                )
        body["offer"] = state.offer
    return _sign_and_send(session, body, f"{kind} {body['lot']}")


def _plain_event(
    session: Session, kind: str, body: dict[str, Any], time: str | None, what: str
) -> OutboxEvent:
    body.setdefault("type", kind)
    if body["type"] != kind:
        raise CliError(f"the --json-body is a {body['type']}, not a {kind}", "wrong_type")
    _put(body, "time", time)
    return _sign_and_send(session, body, what)


# ---------------------------------------------------------------------------
# Typer apps

EXAMPLE = "Example:\n\n\b\n"


def _example(*lines: str) -> str:
    return EXAMPLE + "\n".join(f"  {line}" for line in lines) + "\n"


app = typer.Typer(
    name="goldtrail",
    help="goldtrail: sign and record each step of a gold lot's life in a public, "
    "append-only log, and verify lots offline.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    epilog=_example(
        "goldtrail keys new --actor coop-mambasa-femmes",
        "goldtrail --server https://log.example.org lot show MAK-2026-0001",
        "goldtrail sync",
    ),
)
keys_app = typer.Typer(
    help="Create and inspect your key file (the key never leaves this machine).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
actor_app = typer.Typer(
    help="Register and manage actors (registrars; rotate-key for anyone).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
site_app = typer.Typer(
    help="Register and assess mine sites (registrars and auditors).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
lot_app = typer.Typer(
    help="Register, hand over, process and inspect lots.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
outbox_app = typer.Typer(
    help="See and manage events waiting to be sent.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(keys_app, name="keys")
app.add_typer(actor_app, name="actor")
app.add_typer(site_app, name="site")
app.add_typer(lot_app, name="lot")
app.add_typer(outbox_app, name="outbox")


@app.callback()
def _root(
    ctx: typer.Context,
    server: Annotated[
        str,
        typer.Option(
            "--server", metavar="URL", envvar="GOLDTRAIL_SERVER", help="The goldtrail server."
        ),
    ] = DEFAULT_SERVER,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            metavar="FILE",
            envvar="GOLDTRAIL_KEY",
            help="Your key file [default: ~/.goldtrail/key.json].",
        ),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option(
            "--origin",
            metavar="ORIGIN",
            envvar="GOLDTRAIL_ORIGIN",
            help="The log's origin (normally fetched and cached).",
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Do not contact the server: sign and keep events in the outbox."
        ),
    ] = False,
    outbox: Annotated[
        Path | None,
        typer.Option(
            "--outbox",
            metavar="FILE",
            envvar="GOLDTRAIL_OUTBOX",
            help="The outbox database [default: ~/.goldtrail/outbox.db].",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmations.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="Seconds to wait for the server.")
    ] = 30.0,
) -> None:
    """goldtrail command line."""
    hooks = ctx.obj if isinstance(ctx.obj, Hooks) else Hooks()
    if not re.match(r"^https?://[^/\s]+", server):
        _usage(f"--server must be an http:// or https:// URL, not {server!r}")
    session = Session(
        server=server.rstrip("/"),
        key_path=key if key is not None else Path.home() / ".goldtrail" / "key.json",
        origin_option=origin,
        offline=offline,
        outbox_path=outbox if outbox is not None else default_outbox_path(),
        yes=yes,
        timeout=timeout,
        hooks=hooks,
    )
    ctx.obj = session
    ctx.call_on_close(session.close)


# ---------------------------------------------------------------------------
# keys


@keys_app.command(
    "new",
    epilog=_example(
        "goldtrail keys new --actor coop-mambasa-femmes",
        "goldtrail --key ~/keys/trader.json keys new --actor trader-bunia",
    ),
)
def keys_new(
    ctx: typer.Context,
    actor: Annotated[
        str,
        typer.Option("--actor", metavar="ACTOR", help="Your actor id, as the registrar gives it."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Where to write it [default: --key]."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key file.")] = False,
    kdf: Annotated[
        str,
        typer.Option(
            "--kdf",
            metavar="moderate|interactive",
            help="Passphrase hardening: moderate "
            "(256 MiB, default) or interactive (64 MiB, for old machines).",
        ),
    ] = "moderate",
    seed_file: Annotated[
        Path | None,
        typer.Option(
            "--seed-file",
            metavar="FILE",
            help="Import an existing key from a file holding its seed as 64 hex characters.",
        ),
    ] = None,
) -> None:
    """Create a new signing key, encrypted with a passphrase, in a file only you can read.

    Give the public key it prints to your registrar. Keep a backup of the file and of the
    passphrase: without them nobody can sign for you, and nobody can recover them.
    """
    session = _session(ctx)
    path = out if out is not None else session.key_path
    limits = {"moderate": MODERATE, "interactive": INTERACTIVE}.get(kdf.lower())
    if limits is None:
        _usage("--kdf: choose moderate or interactive")
    if session.hooks.kdf_limits is not None:
        limits = session.hooks.kdf_limits
    if path.exists() and not force:
        raise KeyFileError(
            f"{path} already exists; it was not overwritten (use --force to replace it)"
        )
    secret = passphrase(path, confirm=True)
    if seed_file is not None:
        signing_key, _ = load_signing_key(seed_file, lambda: secret)
        made = write_key_file(path, actor, signing_key, secret, force=force, limits=limits)
    else:
        made = create_key_file(path, actor, secret, force=force, limits=limits)
    _out(f"key file: {made.path} (mode 0600)")
    _out(f"actor: {made.actor}")
    _out(f"public key: {made.public_key}")
    _out("Give this public key to your registrar; keep a backup of the file and passphrase.")


@keys_app.command(
    "show", epilog=_example("goldtrail keys show", "goldtrail keys show ~/keys/trader.json --check")
)
def keys_show(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="The key file [default: --key].")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Also open it with the passphrase.")
    ] = False,
) -> None:
    """Show a key file's actor and public key (with --check, prove the passphrase works)."""
    session = _session(ctx)
    path = file if file is not None else session.key_path
    actor, public_key = read_public(path)
    document = json.loads(path.read_text())
    kdf = document["kdf"]
    mode = oct(path.stat().st_mode & 0o777)
    _out(f"key file: {path} (mode {mode[2:]})")
    _out(f"actor: {actor}")
    _out(f"public key: {public_key}")
    _out(
        f"passphrase hardening: argon2id, {kdf['opslimit']} passes, "
        f"{kdf['memlimit'] // (1024 * 1024)} MiB"
    )
    if is_loose(path):
        _note(f"warning: {path} can be read by other users; run chmod 600 {path}")
    if check:
        load_key_file(path, passphrase(path, confirm=False))
        _out("passphrase: correct")


@keys_app.command("export-public", epilog=_example("goldtrail keys export-public > coop.pub"))
def keys_export_public(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="The key file [default: --key].")] = None,
) -> None:
    """Print only the 64-hex public key, to hand to the registrar."""
    session = _session(ctx)
    _, public_key = read_public(file if file is not None else session.key_path)
    _out(public_key)


# ---------------------------------------------------------------------------
# actors


def _licence(
    body: dict[str, Any], number: str | None, issuer: str | None, valid_until: str | None
) -> None:
    _put_in(body, "licence", "number", number)
    _put_in(body, "licence", "issuer", issuer)
    _put_in(body, "licence", "valid_until", valid_until)


def _profile(
    body: dict[str, Any], women_led: bool | None, members: str | None, leaders: str | None
) -> None:
    _put_in(body, "profile", "women_led", women_led)
    if members is not None:
        _put_in(body, "profile", "members", _pair(members, "--members", "women", "total"))
    if leaders is not None:
        _put_in(body, "profile", "leaders", _pair(leaders, "--leaders", "women", "total"))


@actor_app.command(
    "register",
    epilog=_example(
        "goldtrail actor register --subject coop-mambasa-femmes \\",
        "    --name 'Coopérative des femmes minières de Mambasa' \\",
        "    --role cooperative --role processor --country CD --lot-prefix MAK- \\",
        "    --public-key 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c \\",
        "    --licence-number CD-ITU-COOP-0147 --licence-issuer 'SAEMAPE Ituri' \\",
        "    --licence-valid-until 2027-06-30 --members 41:58 --women-led",
    ),
)
def actor_register(
    ctx: typer.Context,
    subject: Annotated[
        str | None, typer.Option("--subject", metavar="ACTOR", help="The new actor's id.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", metavar="TEXT", help="The organisation's name (public).")
    ] = None,
    role: Annotated[
        list[Role] | None, typer.Option("--role", help="A role (repeat for several).")
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            metavar="HEX",
            help="The actor's public key "
            "(64 hex, from goldtrail keys export-public); "
            "default: yours when registering yourself.",
        ),
    ] = None,
    country: Annotated[
        str | None, typer.Option("--country", metavar="CC", help="ISO country code, like CD.")
    ] = None,
    lot_prefix: Annotated[
        str | None,
        typer.Option(
            "--lot-prefix",
            metavar="PREFIX",
            help="With a custody role: the prefix of its lot ids, like MAK-.",
        ),
    ] = None,
    licence_number: Annotated[str | None, typer.Option("--licence-number", metavar="TEXT")] = None,
    licence_issuer: Annotated[str | None, typer.Option("--licence-issuer", metavar="TEXT")] = None,
    licence_valid_until: Annotated[
        str | None, typer.Option("--licence-valid-until", metavar="DATE")
    ] = None,
    women_led: Annotated[
        bool | None,
        typer.Option("--women-led/--not-women-led", help="Profile: its head is a woman."),
    ] = None,
    members: Annotated[
        str | None,
        typer.Option("--members", metavar="WOMEN:TOTAL", help="Profile: WOMEN:TOTAL members."),
    ] = None,
    leaders: Annotated[
        str | None,
        typer.Option("--leaders", metavar="WOMEN:TOTAL", help="Profile: WOMEN:TOTAL leaders."),
    ] = None,
    json_body: Annotated[
        Path | None, typer.Option("--json-body", metavar="FILE", help="Start from this body.")
    ] = None,
    time: Annotated[
        str | None, typer.Option("--time", metavar="TIME", help="Event time [default: now].")
    ] = None,
) -> None:
    """Register an actor (registrar). Registering yourself with role registrar starts a log."""
    session = _session(ctx)
    body = _json_body(json_body)
    _put(body, "subject", subject)
    _put(body, "name", name)
    _put(body, "roles", _enum(role))
    _put(body, "country", country.upper() if country else None)
    _put(body, "lot_prefix", lot_prefix)
    _licence(body, licence_number, licence_issuer, licence_valid_until)
    _profile(body, women_led, members, leaders)
    _require(
        body, {"subject": "--subject", "name": "--name", "roles": "--role", "country": "--country"}
    )
    if public_key is None and "key" not in body:
        if body["subject"] != session.key().actor:
            _usage("missing --public-key (the new actor's, from goldtrail keys export-public)")
        public_key = session.key().public_key
    _put(body, "key", public_key)
    _plain_event(session, "actor.registered", body, time, f"actor.registered {body['subject']}")


@actor_app.command(
    "update",
    epilog=_example(
        "goldtrail actor update --subject coop-mambasa-femmes --licence-number CD-ITU-COOP-0147 \\",
        "    --licence-issuer 'SAEMAPE Ituri' --licence-valid-until 2028-06-30",
        "goldtrail actor update --members 45:63   # your own profile",
    ),
)
def actor_update(
    ctx: typer.Context,
    subject: Annotated[
        str | None, typer.Option("--subject", metavar="ACTOR", help="The actor [default: you].")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", metavar="TEXT")] = None,
    role: Annotated[
        list[Role] | None, typer.Option("--role", help="The full new list of roles.")
    ] = None,
    lot_prefix: Annotated[str | None, typer.Option("--lot-prefix", metavar="PREFIX")] = None,
    licence_number: Annotated[str | None, typer.Option("--licence-number", metavar="TEXT")] = None,
    licence_issuer: Annotated[str | None, typer.Option("--licence-issuer", metavar="TEXT")] = None,
    licence_valid_until: Annotated[
        str | None, typer.Option("--licence-valid-until", metavar="DATE")
    ] = None,
    women_led: Annotated[bool | None, typer.Option("--women-led/--not-women-led")] = None,
    members: Annotated[
        str | None, typer.Option("--members", metavar="WOMEN:TOTAL", help="WOMEN:TOTAL members.")
    ] = None,
    leaders: Annotated[
        str | None, typer.Option("--leaders", metavar="WOMEN:TOTAL", help="WOMEN:TOTAL leaders.")
    ] = None,
    json_body: Annotated[Path | None, typer.Option("--json-body", metavar="FILE")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Update an actor (a registrar for anything; an actor may update its own profile)."""
    session = _session(ctx)
    body = _json_body(json_body)
    _put(body, "subject", subject)
    body.setdefault("subject", session.key().actor)
    _put(body, "name", name)
    _put(body, "roles", _enum(role))
    _put(body, "lot_prefix", lot_prefix)
    _licence(body, licence_number, licence_issuer, licence_valid_until)
    if "profile" not in body and (women_led, members, leaders) != (None, None, None):
        # A profile is replaced as a whole: start from the current one when it can be read.
        current = session.online_call(lambda: session.client.actor(body["subject"]))
        if isinstance(current, dict) and isinstance(current.get("profile"), dict):
            body["profile"] = dict(current["profile"])
        elif session.offline:
            _note("note: offline, the new profile replaces the whole current profile")
    _profile(body, women_led, members, leaders)
    _plain_event(session, "actor.updated", body, time, f"actor.updated {body['subject']}")


@actor_app.command(
    "rotate-key",
    epilog=_example(
        "goldtrail keys new --actor coop-mambasa-femmes --out ~/.goldtrail/new-key.json",
        "goldtrail sync",
        "goldtrail actor rotate-key --new-key ~/.goldtrail/new-key.json",
    ),
)
def actor_rotate_key(
    ctx: typer.Context,
    subject: Annotated[
        str | None, typer.Option("--subject", metavar="ACTOR", help="The actor [default: you].")
    ] = None,
    new_key: Annotated[
        Path | None, typer.Option("--new-key", metavar="FILE", help="The new key file.")
    ] = None,
    public_key: Annotated[
        str | None, typer.Option("--public-key", metavar="HEX", help="Or the new public key.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rotate even with events pending.")
    ] = False,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Replace an actor's key (yourself with your current key, or anyone as registrar).

    Sync the outbox first: events signed with the old key are refused once it is rotated.
    """
    session = _session(ctx)
    me = session.key()
    body: dict[str, Any] = {"subject": subject or me.actor}
    if new_key is not None:
        actor, public_key = read_public(new_key)
        if actor != body["subject"]:
            raise CliError(
                f"{new_key} is a key file for {actor}, not {body['subject']}", "wrong_actor"
            )
    if public_key is None:
        _usage("missing --new-key or --public-key")
    body["key"] = public_key
    if body["subject"] == me.actor and not force:
        waiting = [
            e for e in session.outbox.pending() if e.envelope["signature"]["key"] == me.public_key
        ]
        if waiting:
            raise CliError(
                f"{len(waiting)} event(s) signed with your current key are still in the "
                "outbox and would be refused after the rotation: run goldtrail sync first",
                "outbox_pending",
            )
    _plain_event(session, "actor.key_rotated", body, time, f"actor.key_rotated {body['subject']}")
    if new_key is not None and body["subject"] == me.actor:
        _out(f"from now on sign with --key {new_key}")


@actor_app.command(
    "revoke",
    epilog=_example(
        "goldtrail actor revoke --subject trader-bunia \\",
        "    --reason 'Licence withdrawn by the ministry'",
    ),
)
def actor_revoke(
    ctx: typer.Context,
    subject: Annotated[str, typer.Option("--subject", metavar="ACTOR")],
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why (public: name no person).")
    ],
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Revoke an actor for good (registrar): its keys stop being valid."""
    session = _session(ctx)
    _plain_event(
        session,
        "actor.revoked",
        {"subject": subject, "reason": reason},
        time,
        f"actor.revoked {subject}",
    )


# ---------------------------------------------------------------------------
# sites


@site_app.command(
    "register",
    epilog=_example(
        "goldtrail site register --site site-mambasa-makala --name 'Makala alluvial site' \\",
        "    --operator coop-mambasa-femmes --country CD --region 'Ituri, Mambasa territory' \\",
        "    --lat 1.36110 --lon 29.04020 --deposit alluvial",
    ),
)
def site_register(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option("--site", metavar="SITE", help="The site id.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", metavar="TEXT", help="The site's name (public).")
    ] = None,
    operator: Annotated[
        str | None, typer.Option("--operator", metavar="ACTOR", help="The operating cooperative.")
    ] = None,
    country: Annotated[str | None, typer.Option("--country", metavar="CC")] = None,
    region: Annotated[str | None, typer.Option("--region", metavar="TEXT")] = None,
    lat: Annotated[
        str | None, typer.Option("--lat", metavar="DEG", help="Latitude, like -1.23456.")
    ] = None,
    lon: Annotated[
        str | None, typer.Option("--lon", metavar="DEG", help="Longitude, like 29.12345.")
    ] = None,
    deposit: Annotated[Deposit | None, typer.Option("--deposit")] = None,
    icglr_id: Annotated[str | None, typer.Option("--icglr-id", metavar="TEXT")] = None,
    licence_number: Annotated[str | None, typer.Option("--licence-number", metavar="TEXT")] = None,
    licence_issuer: Annotated[str | None, typer.Option("--licence-issuer", metavar="TEXT")] = None,
    licence_valid_until: Annotated[
        str | None, typer.Option("--licence-valid-until", metavar="DATE")
    ] = None,
    json_body: Annotated[Path | None, typer.Option("--json-body", metavar="FILE")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Register a mine site and its operating cooperative (registrar)."""
    session = _session(ctx)
    body = _json_body(json_body)
    _put(body, "site", site)
    _put(body, "name", name)
    _put(body, "operator", operator)
    _put(body, "country", country.upper() if country else None)
    _put(body, "region", region)
    _put_in(body, "location", "lat", lat)
    _put_in(body, "location", "lon", lon)
    _put(body, "deposit", _enum(deposit))
    _put(body, "icglr_id", icglr_id)
    _licence(body, licence_number, licence_issuer, licence_valid_until)
    _require(
        body,
        {
            "site": "--site",
            "name": "--name",
            "operator": "--operator",
            "country": "--country",
            "region": "--region",
            "location": "--lat/--lon",
        },
    )
    _plain_event(session, "site.registered", body, time, f"site.registered {body['site']}")


@site_app.command(
    "assess",
    epilog=_example(
        "goldtrail site assess --site site-mambasa-makala --status green \\",
        "    --assessed-on 2026-09-12 --valid-until 2027-09-12 --cahra \\",
        "    --workforce 46:71 --leadership 5:7 --womens-association --scheme craft_progress",
    ),
)
def site_assess(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option("--site", metavar="SITE")] = None,
    status: Annotated[SiteStatus | None, typer.Option("--status", help="ICGLR colour.")] = None,
    assessed_on: Annotated[
        str | None, typer.Option("--assessed-on", metavar="DATE", help="YYYY-MM-DD.")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option("--valid-until", metavar="DATE", help="YYYY-MM-DD.")
    ] = None,
    cahra: Annotated[
        bool | None,
        typer.Option("--cahra/--not-cahra", help="Conflict-affected or high-risk area."),
    ] = None,
    finding: Annotated[
        list[FlagCode] | None, typer.Option("--finding", help="A finding (repeat).")
    ] = None,
    workforce: Annotated[
        str | None, typer.Option("--workforce", metavar="WOMEN:MEN", help="WOMEN:MEN.")
    ] = None,
    leadership: Annotated[
        str | None, typer.Option("--leadership", metavar="WOMEN:TOTAL", help="WOMEN:TOTAL.")
    ] = None,
    women_owned: Annotated[
        str | None,
        typer.Option(
            "--women-owned", metavar="PITS:UNITS", help="PITS:PROCESSING_UNITS owned by women."
        ),
    ] = None,
    income_women: Annotated[
        str | None, typer.Option("--daily-income-women", metavar="CUR:AMOUNT", help="CUR:AMOUNT.")
    ] = None,
    income_men: Annotated[
        str | None, typer.Option("--daily-income-men", metavar="CUR:AMOUNT", help="CUR:AMOUNT.")
    ] = None,
    gbv_reports: Annotated[
        str | None, typer.Option("--gbv-reports", metavar="COUNT:DAYS", help="COUNT:PERIOD_DAYS.")
    ] = None,
    mercury_pregnant: Annotated[
        int | None, typer.Option("--mercury-exposure-pregnant", metavar="N")
    ] = None,
    womens_association: Annotated[
        bool | None, typer.Option("--womens-association/--no-womens-association")
    ] = None,
    grievance: Annotated[
        bool | None, typer.Option("--grievance-mechanism/--no-grievance-mechanism")
    ] = None,
    scheme: Annotated[Scheme | None, typer.Option("--scheme")] = None,
    json_body: Annotated[Path | None, typer.Option("--json-body", metavar="FILE")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Record a site assessment (registrar or auditor)."""
    session = _session(ctx)
    body = _json_body(json_body)
    _put(body, "site", site)
    _put(body, "status", _enum(status))
    _put(body, "assessed_on", assessed_on)
    _put(body, "valid_until", valid_until)
    _put(body, "cahra", cahra)
    _put(body, "findings", _enum(finding))
    if workforce is not None:
        body["workforce"] = _pair(workforce, "--workforce", "women", "men")
    if leadership is not None:
        body["leadership"] = _pair(leadership, "--leadership", "women", "total")
    if women_owned is not None:
        body["women_owned"] = _pair(women_owned, "--women-owned", "pits", "processing_units")
    if income_women is not None:
        _put_in(body, "daily_income_median", "women", _money(income_women, "--daily-income-women"))
    if income_men is not None:
        _put_in(body, "daily_income_median", "men", _money(income_men, "--daily-income-men"))
    if gbv_reports is not None:
        body["gbv_reports"] = _pair(gbv_reports, "--gbv-reports", "count", "period_days")
    _put(body, "mercury_exposure_pregnant", mercury_pregnant)
    _put(body, "womens_association", womens_association)
    _put(body, "grievance_mechanism", grievance)
    _put(body, "scheme", _enum(scheme))
    _require(
        body,
        {
            "site": "--site",
            "status": "--status",
            "assessed_on": "--assessed-on",
            "valid_until": "--valid-until",
        },
    )
    _plain_event(session, "site.assessed", body, time, f"site.assessed {body['site']}")


# ---------------------------------------------------------------------------
# lots: signing commands


@lot_app.command(
    "register",
    epilog=_example(
        "goldtrail lot register --lot MAK-2026-0002 --site site-mambasa-makala \\",
        "    --mass-mg 38250 --form gold --fineness-ppm 870000 \\",
        "    --extracted 2026-11-10:2026-11-19 \\",
        "    --women 6 --men 3 --recovery gravity --child-labour none --forced-labour no \\",
        "    --armed-groups none --security-forces none --payment CDF:198000000:132000000",
    ),
)
def lot_register(
    ctx: typer.Context,
    lot: Annotated[
        str | None,
        typer.Option("--lot", metavar="LOT", help="The lot id (starts with your prefix)."),
    ] = None,
    site: Annotated[str | None, typer.Option("--site", metavar="SITE")] = None,
    mass_mg: Annotated[
        int | None, typer.Option("--mass-mg", metavar="MG", help="Mass in milligrams.")
    ] = None,
    form: Annotated[Form | None, typer.Option("--form", help="ore, concentrate or gold.")] = None,
    fineness_ppm: Annotated[
        int | None,
        typer.Option("--fineness-ppm", metavar="PPM", help="Gold per million (ore: g/t)."),
    ] = None,
    extracted: Annotated[
        str | None, typer.Option("--extracted", metavar="FROM:TO", help="FROM:TO dates.")
    ] = None,
    women: Annotated[
        int | None, typer.Option("--women", metavar="N", help="Women who produced the lot.")
    ] = None,
    men: Annotated[
        int | None, typer.Option("--men", metavar="N", help="Men who produced the lot.")
    ] = None,
    women_led: Annotated[bool | None, typer.Option("--women-led/--not-women-led")] = None,
    pit_owner: Annotated[PitOwner | None, typer.Option("--pit-owner")] = None,
    women_role: Annotated[
        list[WomenRole] | None, typer.Option("--women-role", help="Repeat.")
    ] = None,
    recovery: Annotated[Process | None, typer.Option("--recovery")] = None,
    child_labour: Annotated[ChildLabour | None, typer.Option("--child-labour")] = None,
    forced_labour: Annotated[
        str | None, typer.Option("--forced-labour", metavar="yes|no", help="yes or no.")
    ] = None,
    armed_groups: Annotated[ArmedGroups | None, typer.Option("--armed-groups")] = None,
    security_forces: Annotated[SecurityForces | None, typer.Option("--security-forces")] = None,
    payment: Annotated[
        str | None,
        typer.Option(
            "--payment",
            metavar="CUR:TOTAL:TO_WOMEN",
            help="CUR:TOTAL:TO_WOMEN paid to the producers, minor units.",
        ),
    ] = None,
    state_payment: Annotated[
        list[str] | None,
        typer.Option(
            "--state-payment",
            metavar="KIND:CUR:AMOUNT:RECEIPT",
            help="KIND:CUR:AMOUNT:RECEIPT (repeat).",
        ),
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", metavar="TEXT")] = None,
    pit: Annotated[str | None, typer.Option("--pit", metavar="TEXT")] = None,
    json_body: Annotated[
        Path | None, typer.Option("--json-body", metavar="FILE", help="Start from this body.")
    ] = None,
    time: Annotated[
        str | None, typer.Option("--time", metavar="TIME", help="Event time [default: now].")
    ] = None,
) -> None:
    """Register a new lot at a site your cooperative operates."""
    session = _session(ctx)
    body = _json_body(json_body)
    body.setdefault("type", "lot.registered")
    _put(body, "lot", lot)
    _put(body, "site", site)
    _put(body, "mass_mg", mass_mg)
    _put(body, "form", _enum(form))
    _put(body, "fineness_ppm", fineness_ppm)
    if extracted is not None:
        body["extracted"] = _extracted(extracted)
    _put(body, "tag", tag)
    _put(body, "pit", pit)
    _put_in(body, "producers", "women", women)
    _put_in(body, "producers", "men", men)
    _put_in(body, "producers", "women_led", women_led)
    _put_in(body, "producers", "pit_owner", _enum(pit_owner))
    if women_role:
        _put_in(body, "producers", "women_roles", _enum(women_role))
    _put(body, "recovery", _enum(recovery))
    _put_in(body, "declarations", "child_labour", _enum(child_labour))
    if forced_labour is not None:
        _put_in(body, "declarations", "forced_labour", _yes_no(forced_labour, "--forced-labour"))
    _put_in(body, "declarations", "armed_groups", _enum(armed_groups))
    _put_in(body, "declarations", "security_forces", _enum(security_forces))
    if payment is not None:
        body["payment"] = _payment(payment)
    if state_payment:
        body["state_payments"] = [_state_payment(p) for p in state_payment]
    _require(
        body,
        {
            "lot": "--lot",
            "site": "--site",
            "mass_mg": "--mass-mg",
            "form": "--form",
            "fineness_ppm": "--fineness-ppm",
            "extracted": "--extracted",
            "producers": "--women/--men",
            "recovery": "--recovery",
            "declarations": "--child-labour/--forced-labour/--armed-groups/--security-forces",
        },
    )
    _plain_event(session, "lot.registered", body, time, f"lot.registered {body['lot']}")


@lot_app.command(
    "offer",
    epilog=_example(
        "goldtrail lot offer --lot MAK-2026-0001 --to trader-bunia --mass-mg 38200 \\",
        "    --price USD:410000 --payment-method mobile_money --seller-sex woman",
    ),
)
def lot_offer(
    ctx: typer.Context,
    lot: Annotated[str | None, typer.Option("--lot", metavar="LOT")] = None,
    to: Annotated[
        str | None, typer.Option("--to", metavar="ACTOR", help="The buyer's actor id.")
    ] = None,
    mass_mg: Annotated[
        int | None, typer.Option("--mass-mg", metavar="MG", help="Weighed at hand-over, mg.")
    ] = None,
    price: Annotated[
        str | None, typer.Option("--price", metavar="CUR:AMOUNT", help="CUR:AMOUNT in minor units.")
    ] = None,
    payment_method: Annotated[PaymentMethod | None, typer.Option("--payment-method")] = None,
    seal: Annotated[str | None, typer.Option("--seal", metavar="TEXT")] = None,
    seller_sex: Annotated[SellerSex | None, typer.Option("--seller-sex")] = None,
    json_body: Annotated[Path | None, typer.Option("--json-body", metavar="FILE")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Offer a lot you hold to another actor (step 1 of a hand-over)."""
    session = _session(ctx)
    body = _json_body(json_body)
    _put(body, "to", to)
    _put(body, "mass_mg", mass_mg)
    if price is not None:
        body["price"] = _money(price, "--price")
    _put(body, "payment_method", _enum(payment_method))
    _put(body, "seal", seal)
    _put(body, "seller_sex", _enum(seller_sex))
    _require(body, {"to": "--to", "mass_mg": "--mass-mg"})
    _lot_event(session, "lot.transfer_offered", lot, body, time)


@lot_app.command(
    "accept",
    epilog=_example(
        "goldtrail lot accept --lot MAK-2026-0001 --mass-mg 38190",
    ),
)
def lot_accept(
    ctx: typer.Context,
    lot: Annotated[str | None, typer.Option("--lot", metavar="LOT")] = None,
    mass_mg: Annotated[
        int | None, typer.Option("--mass-mg", metavar="MG", help="Weighed on receipt, mg.")
    ] = None,
    json_body: Annotated[Path | None, typer.Option("--json-body", metavar="FILE")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Accept the lot offered to you (step 2 of a hand-over): you become its custodian."""
    session = _session(ctx)
    body = _json_body(json_body)
    _put(body, "mass_mg", mass_mg)
    _require(body, {"mass_mg": "--mass-mg"})
    _lot_event(session, "lot.transfer_accepted", lot, body, time, answer=True)


@lot_app.command(
    "reject",
    epilog=_example(
        "goldtrail lot reject --lot MAK-2026-0001 --reason 'Seal broken on arrival'",
    ),
)
def lot_reject(
    ctx: typer.Context,
    lot: Annotated[str | None, typer.Option("--lot", metavar="LOT")] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", metavar="TEXT", help="Why (public: name no person).")
    ] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Refuse the lot offered to you."""
    session = _session(ctx)
    body: dict[str, Any] = {}
    _put(body, "reason", reason)
    _require(body, {"reason": "--reason"})
    _lot_event(session, "lot.transfer_rejected", lot, body, time, answer=True)


@lot_app.command(
    "cancel",
    epilog=_example(
        "goldtrail lot cancel --lot MAK-2026-0001 --reason 'Buyer did not come'",
    ),
)
def lot_cancel(
    ctx: typer.Context,
    lot: Annotated[str | None, typer.Option("--lot", metavar="LOT")] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", metavar="TEXT", help="Why (public: name no person).")
    ] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Withdraw your pending offer of a lot."""
    session = _session(ctx)
    body: dict[str, Any] = {}
    _put(body, "reason", reason)
    _require(body, {"reason": "--reason"})
    _lot_event(session, "lot.transfer_cancelled", lot, body, time, answer=True)


@lot_app.command(
    "process",
    epilog=_example(
        "goldtrail lot process --input TII-2026-0042 --input TII-2026-0043 \\",
        "    --output TIW-2026-0007:4800:gold:820000 --process gravity --workers 9:3",
        "goldtrail lot process --input KLA-2026-0101 --process refining \\",
        "    --output ALP-2026-118842:44800:bar:999900:AP-2026-118842:2026",
    ),
)
def lot_process(
    ctx: typer.Context,
    input_lot: Annotated[
        list[str] | None, typer.Option("--input", metavar="LOT", help="An input lot (repeat).")
    ] = None,
    output: Annotated[
        list[str] | None,
        typer.Option(
            "--output",
            metavar="LOT:MASS_MG:FORM:PPM[:SERIAL:YEAR]",
            help="LOT:MASS_MG:FORM:FINENESS_PPM[:BAR_SERIAL:BAR_YEAR] (repeat).",
        ),
    ] = None,
    process: Annotated[Process | None, typer.Option("--process")] = None,
    workers: Annotated[
        str | None, typer.Option("--workers", metavar="WOMEN:MEN", help="WOMEN:MEN.")
    ] = None,
    mercury_used_mg: Annotated[int | None, typer.Option("--mercury-used-mg", metavar="MG")] = None,
    mercury_recovered_mg: Annotated[
        int | None, typer.Option("--mercury-recovered-mg", metavar="MG")
    ] = None,
    json_body: Annotated[Path | None, typer.Option("--json-body", metavar="FILE")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Process (merge, split, smelt, refine...) lots you hold into new lots."""
    session = _session(ctx)
    body = _json_body(json_body)
    body.setdefault("type", "lot.processed")
    if input_lot:
        body["inputs"] = [{"lot": _lot_id(lot, "--input")} for lot in input_lot]
    if output:
        body["outputs"] = [_output(o) for o in output]
    _put(body, "process", _enum(process))
    if workers is not None:
        body["workers"] = _pair(workers, "--workers", "women", "men")
    _put(body, "mercury_used_mg", mercury_used_mg)
    _put(body, "mercury_recovered_mg", mercury_recovered_mg)
    _require(body, {"inputs": "--input", "outputs": "--output", "process": "--process"})
    for item in body["inputs"]:
        if isinstance(item, dict) and "prev" not in item and isinstance(item.get("lot"), str):
            item["prev"] = session.chain(item["lot"]).head
    outputs = ", ".join(str(o.get("lot")) for o in body["outputs"] if isinstance(o, dict))
    _plain_event(session, "lot.processed", body, time, f"lot.processed -> {outputs}")


@lot_app.command(
    "assay",
    epilog=_example(
        "goldtrail lot assay --lot KLA-2026-0101 --fineness-ppm 872000 --method fire_assay \\",
        "    --certificate UG-AS-2026-1180",
    ),
)
def lot_assay(
    ctx: typer.Context,
    lot: Annotated[str | None, typer.Option("--lot", metavar="LOT")] = None,
    fineness_ppm: Annotated[int | None, typer.Option("--fineness-ppm", metavar="PPM")] = None,
    mass_mg: Annotated[int | None, typer.Option("--mass-mg", metavar="MG")] = None,
    method: Annotated[AssayMethod | None, typer.Option("--method")] = None,
    certificate: Annotated[str | None, typer.Option("--certificate", metavar="TEXT")] = None,
    json_body: Annotated[Path | None, typer.Option("--json-body", metavar="FILE")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Record an assay of a lot (assayer, or the custodian)."""
    session = _session(ctx)
    body = _json_body(json_body)
    _put(body, "fineness_ppm", fineness_ppm)
    _put(body, "mass_mg", mass_mg)
    _put(body, "method", _enum(method))
    _put(body, "certificate", certificate)
    _require(body, {"fineness_ppm": "--fineness-ppm", "method": "--method"})
    _lot_event(session, "lot.assayed", lot, body, time)


@lot_app.command(
    "export",
    epilog=_example(
        "goldtrail lot export --lot KLA-2026-0101 --destination CH --permit UG-EXP-2026-0932",
    ),
)
def lot_export(
    ctx: typer.Context,
    lot: Annotated[str | None, typer.Option("--lot", metavar="LOT")] = None,
    destination: Annotated[
        str | None, typer.Option("--destination", metavar="CC", help="Country code.")
    ] = None,
    permit: Annotated[str | None, typer.Option("--permit", metavar="TEXT")] = None,
    certificate: Annotated[str | None, typer.Option("--certificate", metavar="TEXT")] = None,
    state_payment: Annotated[
        list[str] | None,
        typer.Option(
            "--state-payment",
            metavar="KIND:CUR:AMOUNT:RECEIPT",
            help="KIND:CUR:AMOUNT:RECEIPT (repeat).",
        ),
    ] = None,
    json_body: Annotated[Path | None, typer.Option("--json-body", metavar="FILE")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Record the export of a lot you hold (exporter)."""
    session = _session(ctx)
    body = _json_body(json_body)
    _put(body, "destination", destination.upper() if destination else None)
    _put(body, "permit", permit)
    _put(body, "certificate", certificate)
    if state_payment:
        body["state_payments"] = [_state_payment(p) for p in state_payment]
    _require(body, {"destination": "--destination", "permit": "--permit"})
    _lot_event(session, "lot.exported", lot, body, time)


@lot_app.command(
    "flag",
    epilog=_example(
        "goldtrail lot flag --lot MAK-2026-0001 --code taxes_unpaid \\",
        "    --note 'No royalty receipt for this lot'",
    ),
)
def lot_flag(
    ctx: typer.Context,
    lot: Annotated[str | None, typer.Option("--lot", metavar="LOT")] = None,
    code: Annotated[FlagCode | None, typer.Option("--code")] = None,
    note: Annotated[
        str | None,
        typer.Option("--note", metavar="TEXT", help="What was found (public: name no person)."),
    ] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Raise a flag on a lot (auditor, registrar, or the custodian)."""
    session = _session(ctx)
    body: dict[str, Any] = {}
    _put(body, "code", _enum(code))
    _put(body, "note", note)
    _require(body, {"code": "--code", "note": "--note"})
    _lot_event(session, "lot.flagged", lot, body, time)


@lot_app.command(
    "resolve",
    epilog=_example(
        "goldtrail lot resolve --lot KLA-2026-0101 --code mercury_worst_practice \\",
        "    --outcome remediated --resolution 'Retorts issued; follow-up visit confirmed use.'",
    ),
)
def lot_resolve(
    ctx: typer.Context,
    lot: Annotated[str | None, typer.Option("--lot", metavar="LOT")] = None,
    flag: Annotated[
        str | None, typer.Option("--flag", metavar="FLAG_ID", help="The flag id (EVENT_ID/CODE).")
    ] = None,
    code: Annotated[
        FlagCode | None, typer.Option("--code", help="Or the code of an open flag.")
    ] = None,
    outcome: Annotated[Outcome | None, typer.Option("--outcome")] = None,
    resolution: Annotated[
        str | None, typer.Option("--resolution", metavar="TEXT", help="What was done (public).")
    ] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="TIME")] = None,
) -> None:
    """Resolve an open flag of a lot (auditor or registrar)."""
    session = _session(ctx)
    body: dict[str, Any] = {}
    _put(body, "outcome", _enum(outcome))
    _put(body, "resolution", resolution)
    _require(body, {"outcome": "--outcome", "resolution": "--resolution"})
    if lot is None:
        _usage("missing --lot")
    if flag is None:
        if code is None:
            _usage("missing --flag or --code")
        state = session.chain(lot)
        flag = _open_flag_id(state, lot, _enum(code))
    body["flag"] = flag
    _lot_event(session, "lot.flag_resolved", lot, body, time)


def _open_flag_id(state: ChainState, lot: str, code: str) -> str:
    """The id of the lot's open flag of ``code``, as far as this machine can tell; never a
    guess: when the flag may exist without this machine knowing it (a view not fresh from
    the server, or pending events whose derived flags only the server computes), says so."""
    same = [f for f in state.flags if f.get("code") == code]
    open_flags = [f for f in same if f.get("status") == "open"]
    if open_flags:
        return str(open_flags[0]["id"])
    if same:
        raise CliError(f"the {code} flag of lot {lot} is already resolved", "flag_not_open")
    if state.source != "server" or state.flags_unsure:
        why = f" ({state.flags_unsure})" if state.flags_unsure else ""
        raise CliError(
            f"an open {code} flag of lot {lot} is not known on this machine yet{why}: give "
            "its id with --flag ID, or run goldtrail sync (or goldtrail lot show "
            f"{lot}) while online first",
            "flag_not_known_yet",
        )
    raise CliError(f"lot {lot} has no open {code} flag", "unknown_flag")


# ---------------------------------------------------------------------------
# lots: reading


def _gender_lines(
    gender: dict[str, Any], payment_shown: Callable[[str], bool] | None = None
) -> list[str]:
    """The gender summary in lines; ``payment_shown`` (a verified report's) withholds a
    currency's payment figures when they concern fewer than 5 people."""
    producers = gender.get("producers") or {}
    women, men = producers.get("women", 0), producers.get("men", 0)
    lines = [f"producers: {women} women, {men} men"]
    if "origin_fine_mg" in gender:
        lines.append(
            f"fine gold at origin: {gender['origin_fine_mg']:,} mg, of which from "
            f"women-led teams {gender.get('women_led_fine_mg', 0):,} mg"
        )
    for paid in gender.get("paid") or []:
        # Pages and reports show a payment only for a group of at least 5 people.
        if payment_shown is not None:
            if payment_shown(paid["currency"]):
                lines.append(
                    f"paid to producers: {paid['total']:,} {paid['currency']} (minor units), "
                    f"of which to women {paid['to_women']:,}"
                )
            else:
                lines.append(
                    f"paid to producers in {paid['currency']}: withheld (it concerns a group "
                    "of fewer than 5 people)"
                )
        elif women + men >= 5:
            line = f"paid to producers: {paid['total']:,} {paid['currency']} (minor units)"
            if women >= 5:
                line += f", of which to women {paid['to_women']:,}"
            lines.append(line)
    return lines


def _print_lot(
    view: dict[str, Any], note: str = "", payment_shown: Callable[[str], bool] | None = None
) -> None:
    _out(f"lot {view.get('lot')}{note}")
    rows = [
        ("status", f"{view.get('status')}" + (" (on hold)" if view.get("hold") else "")),
        ("custodian", f"{view.get('custodian')} ({view.get('country') or '?'})"),
        ("mass", _grams(view.get("mass_mg"))),
        ("fineness", f"{view.get('fineness_ppm')} ppm" if view.get("fineness_ppm") else "-"),
        (
            "form",
            str(view.get("form") or "-")
            + (f" {view['bar'].get('serial')}" if isinstance(view.get("bar"), dict) else ""),
        ),
        ("risk", str(view.get("risk") or "-")),
        ("head", str(view.get("head"))),
    ]
    offer = view.get("offer")
    if isinstance(offer, dict):
        rows.append(
            (
                "offer",
                f"to {offer.get('to')}, {_grams(offer.get('mass_mg'))} "
                f"(event {_short(offer.get('id'))})",
            )
        )
    if view.get("destination"):
        rows.append(("destination", str(view["destination"])))
    if view.get("origins"):
        rows.append(("origins", ", ".join(view["origins"])))
    for name, value in rows:
        _out(f"  {name:<12} {value}")
    for f in view.get("flags") or []:
        extra = f", {f['outcome']}" if f.get("outcome") else ""
        _out(f"  flag         {f.get('code')} ({f.get('class', '?')}, {f.get('status')}{extra})")
    if isinstance(view.get("gender"), dict):
        for line in _gender_lines(view["gender"], payment_shown):
            _out(f"  {line}")


@lot_app.command(
    "show",
    epilog=_example(
        "goldtrail lot show MAK-2026-0001", "goldtrail --offline lot show MAK-2026-0001"
    ),
)
def lot_show(
    ctx: typer.Context,
    lot: Annotated[str, typer.Argument(help="The lot id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Show a lot's current state (and remember its head for offline work)."""
    session = _session(ctx)
    lot = _lot_id(lot, "LOT")
    view = session.online_call(lambda: session.client.lot(lot))
    note = ""
    if view is not None:
        info = session.online_call(session.client.log)
        if info is not None:
            session.outbox.remember_server(session.server, info)
            session.outbox.remember_lot(info["origin"], view)
    else:
        origin = session.origin()
        state = session.outbox.chain(origin, lot)
        cached = session.outbox.cached_lot(origin, lot)
        if state.head is None:
            raise CliError(
                f"lot {lot} is not known on this machine; run goldtrail lot show "
                f"{lot} while online",
                "head_unknown",
            )
        view = dict(cached or {"lot": lot})
        view.update(
            {
                "head": state.head,
                "status": state.status,
                "custodian": state.custodian,
                "flags": state.flags,
                "offer": {"id": state.offer, "to": state.offer_to} if state.offer else None,
            }
        )
        note = " (offline: as last seen"
        note += f", plus {state.pending} pending event(s) in the outbox)" if state.pending else ")"
        if state.flags_unsure:
            note += f"\n  (it may carry more flags than shown: {state.flags_unsure})"
    if as_json:
        _out(json.dumps(view, indent=2, ensure_ascii=False))
    else:
        _print_lot(view, note)


@lot_app.command("history", epilog=_example("goldtrail lot history KLA-2026-0101"))
def lot_history(
    ctx: typer.Context,
    lot: Annotated[str, typer.Argument(help="The lot id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the events of a lot's own chain, oldest first."""
    session = _session(ctx)
    lot = _lot_id(lot, "LOT")
    items = list(session.client.iter_lot_events(lot))
    if as_json:
        _out(json.dumps(items, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table("seq", "time", "event", "actor", "details", "id")
    for item in items:
        body = item["envelope"]["body"]
        details = []
        for name in ("to", "mass_mg", "fineness_ppm", "code", "destination", "outcome"):
            if name in body:
                details.append(f"{name}={body[name]}")
        table.add_row(
            str(item.get("seq")),
            body.get("time", ""),
            body.get("type", ""),
            body.get("actor", ""),
            " ".join(details),
            _short(item.get("event_id")),
        )
    _console().print(table)


def _label_url(public_url: str, lot: str, head: str) -> str:
    from urllib.parse import quote

    return f"{public_url.rstrip('/')}/l/{quote(lot, safe='')}?at={head}"


def _print_qr(url: str) -> None:
    qrcode: Any = importlib.import_module("qrcode")
    constants: Any = importlib.import_module("qrcode.constants")
    code = qrcode.QRCode(error_correction=constants.ERROR_CORRECT_M, border=2)
    code.add_data(url)
    code.make(fit=True)
    out = sys.stdout
    tty = bool(getattr(out, "isatty", lambda: False)())
    code.print_ascii(out=out, tty=tty, invert=True)


@lot_app.command(
    "qr",
    epilog=_example(
        "goldtrail lot qr ALP-2026-118842", "goldtrail lot qr ALP-2026-118842 --png label.png"
    ),
)
def lot_qr(
    ctx: typer.Context,
    lot: Annotated[str, typer.Argument(help="The lot id.")],
    png: Annotated[
        Path | None, typer.Option("--png", metavar="FILE", help="Save the server's PNG here.")
    ] = None,
    svg: Annotated[
        Path | None, typer.Option("--svg", metavar="FILE", help="Save the server's SVG here.")
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            metavar="URL",
            envvar="GOLDTRAIL_PUBLIC_URL",
            help="Base of label URLs [default: --server].",
        ),
    ] = None,
) -> None:
    """Print a lot's QR code in the terminal, or save the server's PNG or SVG."""
    session = _session(ctx)
    lot = _lot_id(lot, "LOT")
    if png is not None:
        png.write_bytes(session.client.qr_png(lot))
        _out(f"wrote {png}")
    if svg is not None:
        svg.write_bytes(session.client.qr_svg(lot))
        _out(f"wrote {svg}")
    if png is None and svg is None:
        view = session.client.lot(lot)
        advertised = session.client.log().get("public_url")
        base = public_url or (advertised if isinstance(advertised, str) else session.server)
        url = _label_url(base, lot, view["head"])
        _print_qr(url)
        _out(url)


@lot_app.command(
    "bundle",
    epilog=_example(
        "goldtrail lot bundle ALP-2026-118842 --out alp.bundle.json",
        "goldtrail verify alp.bundle.json --log-key 'goldtrail.localhost/log+1a2b3c4d+AX...'",
    ),
)
def lot_bundle(
    ctx: typer.Context,
    lot: Annotated[str, typer.Argument(help="The lot id.")],
    at: Annotated[
        str | None, typer.Option("--at", metavar="EVENT_ID", help="The label's event id.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="[default: LOT.bundle.json]")
    ] = None,
) -> None:
    """Download a lot's provenance bundle, to verify offline with goldtrail verify."""
    session = _session(ctx)
    lot = _lot_id(lot, "LOT")
    data = session.client.bundle(lot, at)
    path = out if out is not None else Path(f"{lot}.bundle.json")
    path.write_bytes(data)
    _out(f"wrote {path} ({len(data):,} bytes)")


# ---------------------------------------------------------------------------
# sync and outbox


@app.command("sync", epilog=_example("goldtrail sync", "goldtrail sync --batch-size 20"))
def sync_command(
    ctx: typer.Context,
    batch_size: Annotated[
        int, typer.Option("--batch-size", metavar="N", min=1, max=1000, help="Events per request.")
    ] = DEFAULT_BATCH,
) -> None:
    """Send the events waiting in the outbox, in order. Safe to interrupt and run again."""
    session = _session(ctx)
    if session.offline:
        raise CliError("--offline: nothing can be sent", "offline")
    info = session.client.log()
    session.outbox.remember_server(session.server, info)
    origin = info["origin"]
    waiting = len(session.outbox.pending(origin))
    if waiting == 0:
        counts = session.outbox.counts(origin)
        if counts["failed"]:
            raise CliError(
                f"nothing to send, but {counts['failed']} refused event(s) wait for your "
                "decision: goldtrail outbox list, then retry or drop them",
                "refused",
            )
        _out("nothing to send")
        return
    report = _run_sync(session, origin, quiet=False, batch=batch_size)
    _out(f"sent {len(report.sent)} event(s) in {report.batches} request(s)")
    _report_problems(report)
    if report.other_logs:
        _note(
            f"note: {report.other_logs} pending event(s) are for another log and were "
            "not sent to this server"
        )
    if report.stopped is not None:
        left = report.remaining + len(report.blocked)
        raise CliError(
            f"{report.stopped.detail} {left} event(s) still pending: run goldtrail sync again",
            report.stopped.code,
        )
    if report.failed or report.blocked:
        raise CliError(
            f"{len(report.failed)} event(s) refused and {len(report.blocked)} held back; "
            "see goldtrail outbox list",
            "refused",
        )


@outbox_app.command("list", epilog=_example("goldtrail outbox list", "goldtrail outbox list --all"))
def outbox_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Also show events already sent.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List pending and refused events (with --all, sent ones too)."""
    session = _session(ctx)
    statuses = ("pending", "failed", "sent") if show_all else ("pending", "failed")
    events = session.outbox.events(statuses)
    bad: set[str] = set()
    blocked: set[int] = set()
    for event in session.outbox.events(("pending", "failed")):
        if event.status == "failed":
            bad.update(event.lots)
        elif bad.intersection(event.lots):
            blocked.add(event.id)
            bad.update(event.lots)
    if as_json:
        _out(
            json.dumps(
                [
                    {
                        "id": e.id,
                        "event_id": e.event_id,
                        "status": e.status,
                        "type": e.type,
                        "actor": e.actor,
                        "lots": e.lots,
                        "queued_at": e.queued_at,
                        "seq": e.seq,
                        "error_code": e.error_code,
                        "error_detail": e.error_detail,
                        "blocked": e.id in blocked,
                    }
                    for e in events
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    counts = session.outbox.counts()
    _out(
        f"outbox {session.outbox.path}: {counts['pending']} pending, {counts['failed']} "
        f"refused, {counts['sent']} sent"
    )
    if not events:
        return
    from rich.table import Table

    table = Table("#", "status", "event", "lots", "actor", "queued", "why")
    for e in events:
        status = "blocked" if e.id in blocked else e.status
        why = (
            f"{e.error_code}: {e.error_detail}"
            if e.status == "failed"
            else (
                "builds on a refused event"
                if e.id in blocked
                else (f"seq {e.seq}" if e.status == "sent" else "")
            )
        )
        table.add_row(str(e.id), status, e.type, ", ".join(e.lots), e.actor, e.queued_at, why)
    _console().print(table)


@outbox_app.command(
    "drop", epilog=_example("goldtrail outbox drop 17", "goldtrail --yes outbox drop 17")
)
def outbox_drop(
    ctx: typer.Context,
    outbox_id: Annotated[int, typer.Argument(metavar="ID", help="The outbox number (#).")],
) -> None:
    """Delete a pending or refused event for good (it will never be sent)."""
    session = _session(ctx)
    event = session.outbox.get(outbox_id)
    if event.status == "sent":
        session.outbox.drop(outbox_id)  # raises: already in the log
    describe = f"#{event.id} {event.type} {', '.join(event.lots)} ({event.status})"
    if not session.yes:
        if not sys.stdin.isatty():
            raise CliError(f"dropping {describe} needs --yes (or run it in a terminal)", "confirm")
        if not typer.confirm(f"Drop {describe} for good?", default=False):
            raise CliError("nothing was dropped", "cancelled")
    session.outbox.drop(outbox_id)
    _out(f"dropped {describe}")


@outbox_app.command("retry", epilog=_example("goldtrail outbox retry 17", "goldtrail sync"))
def outbox_retry(
    ctx: typer.Context,
    outbox_id: Annotated[int, typer.Argument(metavar="ID", help="The outbox number (#).")],
) -> None:
    """Put a refused event back in the queue (once what refused it is fixed)."""
    session = _session(ctx)
    event = session.outbox.retry(outbox_id)
    _out(f"#{event.id} {event.type} is pending again; run goldtrail sync")


# ---------------------------------------------------------------------------
# verify


#: the largest bundle ``goldtrail verify`` reads unless told otherwise (--max-bytes): an
#: honest bundle of a bar from thousands of lots is some megabytes; this keeps a hostile or
#: mistaken one from filling a phone's memory or its data plan
MAX_BUNDLE_BYTES = 64 * 1024 * 1024


def _too_large(what: str, max_bytes: int) -> CliError:
    return CliError(
        f"{what} is larger than --max-bytes ({max_bytes:,} bytes), so it was not verified; "
        "raise --max-bytes if you expect a bundle this large",
        "too_large",
    )


def _fetch_bundle(
    source: str, session: Session, max_bytes: int = MAX_BUNDLE_BYTES
) -> tuple[bytes, str | None, str | None]:
    """The bundle's bytes, with the lot and label event the URL asks for (None, None for a
    file): the bundle served must be theirs. One longer than ``max_bytes`` is refused
    without being read whole."""
    if not re.match(r"^https?://", source):
        path = Path(source)
        try:
            with path.open("rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise CliError(f"cannot read {path}: {e.strerror}", "not_found") from e
        if len(data) > max_bytes:
            raise _too_large(f"the file {path}", max_bytes)
        return data, None, None
    parts = urlsplit(source)
    query = parse_qs(parts.query)
    at = query.get("at", [None])[-1]  # given twice: the last, as the server reads it
    match = re.match(r"^(.*)/l/([^/]+)/?$", parts.path)
    base = f"{parts.scheme}://{parts.netloc}"
    if match is None:
        match = re.match(r"^(.*)/v1/lots/([^/]+)/bundle$", parts.path)
    if match is None:
        raise UsageProblem(f"{source} is neither a label URL (…/l/LOT?at=EVENT) nor a bundle URL")
    lot = unquote(match.group(2))
    with Client(
        base + match.group(1), timeout=session.timeout, transport=session.hooks.transport
    ) as client:
        try:
            return client.bundle(lot, at, max_bytes=max_bytes), lot, at
        except ResponseTooLarge as e:
            raise _too_large(f"the bundle at {source}", max_bytes) from e


def _step_text(item: Any) -> str:
    """What one verified step did, in a few words (from ``TimelineItem.details``)."""
    d = item.details
    kind = item.type
    if kind == "lot.registered":
        return f"at {d.get('site_name')}: {d.get('form')}, {_grams(d.get('mass_mg'))}"
    if kind == "lot.transfer_offered":
        return f"to {d.get('to_name')}, {_grams(d.get('mass_mg'))}"
    if kind == "lot.transfer_accepted":
        return f"weighed {_grams(d.get('mass_mg'))}"
    if kind == "lot.processed":
        made = ", ".join(
            f"{o.get('lot')} ({o.get('form')}, {_grams(o.get('mass_mg'))})"
            for o in d.get("outputs", [])
        )
        return f"{d.get('process')} into {made}"
    if kind == "lot.assayed":
        return f"{d.get('method')}: {d.get('fineness_ppm')} ppm"
    if kind == "lot.exported":
        return f"to {d.get('destination')}"
    if kind == "lot.flagged":
        return f"flag {d.get('code')}"
    if kind == "lot.flag_resolved":
        return f"flag {str(d.get('flag', '')).rpartition('/')[2]} resolved: {d.get('outcome')}"
    return ""


def _print_report(report: Any) -> None:
    if not report.ok:
        _out(f"NOT VERIFIED: {f'lot {report.lot}' if report.lot else 'the bundle'}")
        for failure in report.failures:
            _out(f"  - {failure}")
        return
    _out(
        f"VERIFIED: lot {report.lot} (log {report.origin}, checkpoint size "
        f"{report.checkpoint_size})"
    )
    if report.label_at is not None and report.after_label:
        _out(
            f"  the label (event {_short(report.label_at)}) is older than the lot's head: "
            f"{len(report.after_label)} event(s) since, listed at the end"
        )
    if report.state is not None:
        _print_lot(report.state, payment_shown=report.payment_shown)
    for site in report.sites:
        _out(
            f"  origin site  {site['id']}: {site['name']}, {site['region']} "
            f"({site['country']}), {site['status']}, operated by {site['operator_name']}"
        )
    _out("history (* = an event on the lot's own chain):")
    for item in report.timeline:
        mark = "*" if item.on_own_chain else " "
        what = _step_text(item)
        _out(
            f" {mark} seq {item.seq:<6} {item.time}  {item.type:<24} {item.actor_name} "
            f"[{', '.join(item.lots)}]" + (f": {what}" if what else "")
        )
    if report.label_at is not None:
        label = next((t for t in report.timeline if t.event_id == report.label_at), None)
        printed = f"event {_short(report.label_at)}" + (f", {label.time}" if label else "")
        if report.after_label:
            _out(
                f"since the label was printed ({printed}), "
                f"{len(report.after_label)} event(s) happened to this lot:"
            )
            for item in report.after_label:
                what = _step_text(item)
                _out(
                    f"    {item.time}  {item.type} by {item.actor_name}"
                    + (f": {what}" if what else "")
                )
            state = report.state or {}
            now = f"now: {state.get('status')}"
            if state.get("hold"):
                now += " and on hold"
            now += f", risk {state.get('risk')}"
            if state.get("custodian"):
                holder = next(
                    (t.actor_name for t in report.timeline if t.actor == state["custodian"]),
                    state["custodian"],
                )
                now += f", held by {holder}"
            went = report.went_into()
            if went:
                now += f"; its gold went into {', '.join(went)}"
            _out(f"    {now}")
        else:
            _out(f"nothing has happened to this lot since its label was printed ({printed})")


@app.command(
    "verify",
    epilog=_example(
        "goldtrail verify ALP-2026-118842.bundle.json --log-key "
        "'goldtrail.localhost/log+1a2b3c4d+AXY...'",
        "goldtrail verify 'https://log.example.org/l/ALP-2026-118842?at=5f1e...' \\",
        "    --log-key 'log.example.org/log+1a2b3c4d+AXY...' --registrar-key 3d40...660c",
    ),
)
def verify_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="BUNDLE_FILE_OR_QR_URL")],
    log_key: Annotated[
        str,
        typer.Option(
            "--log-key",
            metavar="VKEY",
            envvar="GOLDTRAIL_LOG_VERIFIER_KEY",
            help="The log's verifier key, from a source you trust.",
        ),
    ],
    registrar_key: Annotated[
        str | None,
        typer.Option(
            "--registrar-key", metavar="HEX", help="Pin the registrar's public key (hex)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    max_bytes: Annotated[
        int,
        typer.Option(
            "--max-bytes",
            metavar="N",
            min=1,
            help="Refuse a bundle larger than this, unread.",
        ),
    ] = MAX_BUNDLE_BYTES,
) -> None:
    """Verify a lot's provenance bundle offline, from a file or a label's QR URL.

    Exit 0 only when every proof, signature and rule checks out.
    """
    session = _session(ctx)
    from ledger.verify import verify_bundle

    log_key = _verifier_key(log_key)
    if registrar_key is not None:
        registrar_key = _hex_key(registrar_key, "--registrar-key")
    data, lot, at = _fetch_bundle(source, session, max_bytes)
    report = verify_bundle(data, log_key, registrar_key, lot=lot, label_at=at)
    if as_json:
        _out(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print_report(report)
    if not report.ok:
        first = str(report.failures[0]) if report.failures else "unknown failure"
        more = f" (and {len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
        raise CliError(f"the bundle does not verify: {first}{more}", "not_verified")


# ---------------------------------------------------------------------------
# serve and demo


@app.command(
    "serve",
    epilog=_example(
        "goldtrail serve --port 8000",
        "GOLDTRAIL_DATABASE_URL=postgresql+psycopg://gold@localhost/goldtrail goldtrail serve",
    ),
)
def serve_command(
    host: Annotated[str, typer.Option("--host", metavar="HOST")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="a TCP port, 1-65535")
    ] = 8000,
) -> None:
    """Run the goldtrail server (settings from GOLDTRAIL_* variables, PROTOCOL section 8)."""
    server: Any = importlib.import_module("api.server")  # the server only where it is needed
    code = server.serve(host, port)
    if code:
        raise typer.Exit(int(code))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _embedded_server(workdir: Path, registrar_key: str) -> Iterator[str]:
    """A temporary server in a thread, on a free port, with a fresh SQLite log."""
    import uvicorn

    create_app: Any = importlib.import_module("api.app").create_app
    settings_class: Any = importlib.import_module("api.settings").Settings

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = settings_class(
        database_url=f"sqlite:///{workdir / 'demo.db'}",
        registrar_key=registrar_key,
        origin="demo.goldtrail.localhost/log",
        public_url=base,
        log_key_file=str(workdir / "log.key"),
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="goldtrail-demo-server", daemon=True)
    thread.start()
    deadline = time_module.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time_module.monotonic() > deadline:
            raise CliError("the demo server did not start", "demo")
        time_module.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _registrar_actor(client: Client, public_key: str) -> tuple[str, str]:
    """The active registrar holding ``public_key`` and when it got that key."""
    for actor in client.iter_actors():
        if actor.get("key") == public_key and "registrar" in (actor.get("roles") or []):
            if actor.get("status", "active") != "active":
                continue
            since = ""
            for record in actor.get("keys") or []:
                if record.get("key") == public_key:
                    since = str(record.get("since_time") or "")
            return str(actor["id"]), since
    raise CliError("no active registrar of this log holds that key", "unknown_key")


def _renamer(
    suffix: str, registrar: str | None, scenario_registrar: str
) -> Callable[[str, str], str]:
    upper = suffix.upper()

    def rename(kind: str, value: str) -> str:
        if kind == "actor":
            if registrar is not None and value == scenario_registrar:
                return registrar
            return f"{value}-{suffix}"
        if kind == "site":
            return f"{value}-{suffix}"
        if kind == "prefix":
            return f"{value[:-1]}{upper}-"
        if kind == "lot":
            head, sep, rest = value.partition("-")
            return f"{head}{upper}{sep}{rest}"
        return value

    return rename


def _same_name(kind: str, value: str) -> str:
    return value


_DATE_KEYS = frozenset({"from", "to", "assessed_on", "valid_until"})
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _shift_dates(value: Any, days: int) -> Any:
    """Move every date and time of a scenario body ``days`` later (relations are kept)."""
    if isinstance(value, list):
        return [_shift_dates(v, days) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "time" and isinstance(item, str):
            moment = dt.datetime.strptime(item, "%Y-%m-%dT%H:%M:%SZ") + dt.timedelta(days=days)
            out[key] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif key in _DATE_KEYS and isinstance(item, str) and _DATE.match(item):
            day = dt.date.fromisoformat(item) + dt.timedelta(days=days)
            out[key] = day.isoformat()
        else:
            out[key] = _shift_dates(item, days)
    return out


def _existing_log_events(
    events: list[dict[str, Any]], scenario_registrar: str, not_before: str, now: str
) -> list[dict[str, Any]]:
    """The scenario for a log that already has a registrar.

    Its self-registration is skipped; every date moves by whole days so that the last event
    falls on today (licences and assessments stay valid relative to the events), and no
    event is dated before the registrar got its key.
    """
    kept = [
        e
        for e in events
        if not (
            e["type"] == "actor.registered" and e["actor"] == e["subject"] == scenario_registrar
        )
    ]
    last = dt.datetime.strptime(max(e["time"] for e in kept), "%Y-%m-%dT%H:%M:%SZ")
    today = dt.datetime.strptime(now, "%Y-%m-%dT%H:%M:%SZ")
    days = max(0, (today - last).days)
    shifted = [_shift_dates(e, days) for e in kept]
    for event in shifted:
        event["time"] = min(max(event["time"], not_before), now)
    return shifted


def _play_scenario(
    client: Client,
    origin: str,
    registrar: nacl.signing.SigningKey,
    *,
    existing_registrar: str | None = None,
    not_before: str = "",
    now: str = "",
) -> tuple[dict[str, Any], Callable[[str, str], str]]:
    """Play every scenario event through the SDK; returns the scenario and the renaming."""
    from rich.progress import Progress

    from clients.scenario import ScenarioPlayer, load_scenario

    scenario = load_scenario()
    events: list[dict[str, Any]] = copy.deepcopy(scenario["events"])
    scenario_registrar = events[0]["actor"]
    if existing_registrar is not None:
        rename = _renamer(secrets.token_hex(2), existing_registrar, scenario_registrar)
        events = _existing_log_events(events, scenario_registrar, not_before, now)
        player = ScenarioPlayer(origin=origin, keys={existing_registrar: registrar}, rename=rename)
    else:
        rename = _same_name
        player = ScenarioPlayer(origin=origin, first_registrar_key=registrar)

    def lookup(lot: str) -> dict[str, Any]:
        return client.lot(lot)

    with Progress(console=_rich_err(), transient=True) as bar:
        task = bar.add_task("playing the scenario", total=len(events))
        for envelope in player.envelopes(events, lookup):
            client.post_event(envelope)
            bar.advance(task)
    return scenario, rename


def _check_expected(
    client: Client, scenario: dict[str, Any], rename: Callable[[str, str], str]
) -> tuple[str, dict[str, Any]]:
    expected = scenario["expected"]
    bar_lot = rename("lot", expected["bar_lot"])
    view = client.lot(bar_lot)
    problems = []
    origins = sorted(rename("site", s) for s in expected["origins"])
    if view.get("origins") != origins:
        problems.append(f"origins {view.get('origins')} != {origins}")
    open_codes = sorted(f["code"] for f in view.get("flags", []) if f.get("status") == "open")
    if open_codes != sorted(expected["open_flags_on_bar"]):
        problems.append(f"open flags {open_codes} != {sorted(expected['open_flags_on_bar'])}")
    if view.get("risk") != expected["bar_risk"]:
        problems.append(f"risk {view.get('risk')} != {expected['bar_risk']}")
    if view.get("gender") != expected["bar_gender"]:
        problems.append(f"gender {view.get('gender')} != {expected['bar_gender']}")
    if problems:
        raise CliError(
            "the scenario's end state is not as expected: " + "; ".join(problems), "demo_mismatch"
        )
    return bar_lot, view


@app.command(
    "demo",
    epilog=_example(
        "goldtrail demo",
        "goldtrail demo --no-wait",
        "goldtrail --server http://127.0.0.1:8000 demo --registrar-key ./goldtrail-registrar.key",
    ),
)
def demo_command(
    ctx: typer.Context,
    registrar_key: Annotated[
        Path | None,
        typer.Option(
            "--registrar-key",
            metavar="FILE",
            help="Play against --server's existing log with this registrar key file (64 hex, "
            "as the server writes it, or an encrypted key file).",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Keep the server up until Ctrl-C.")
    ] = True,
) -> None:
    """Play the demo supply chain (Ituri and Uganda to a Swiss refinery) end to end.

    Without --registrar-key, starts a temporary server with a fresh log; then prints the
    bar's QR code, its verification URL and the goldtrail verify command.
    """
    session = _session(ctx)
    if registrar_key is not None:
        signing, _ = load_signing_key(
            registrar_key, lambda: passphrase(registrar_key, confirm=False)
        )
        client = session.client
        info = client.log()
        actor, since = _registrar_actor(client, public_key_hex(signing))
        now = session.now()
        not_before = since or now
        scenario, rename = _play_scenario(
            client,
            info["origin"],
            signing,
            existing_registrar=actor,
            not_before=not_before,
            now=now,
        )
        bar_lot, view = _check_expected(client, scenario, rename)
        _demo_summary(session.server, client.log(), bar_lot, view)
        return
    with tempfile.TemporaryDirectory(prefix="goldtrail-demo-") as tmp:
        signing = nacl.signing.SigningKey.generate()
        with (
            _embedded_server(Path(tmp), public_key_hex(signing)) as base,
            Client(base, transport=session.hooks.transport) as client,
        ):
            _note(f"demo server running at {base} (a fresh log in {tmp})")
            scenario, rename = _play_scenario(client, "demo.goldtrail.localhost/log", signing)
            bar_lot, view = _check_expected(client, scenario, rename)
            _demo_summary(base, client.log(), bar_lot, view)
            if wait:
                _out("the demo server stays up until you press Ctrl-C")
                try:
                    while True:
                        time_module.sleep(1)
                except KeyboardInterrupt:
                    _out("stopping the demo server")


def _demo_summary(base: str, info: Any, bar_lot: str, view: dict[str, Any]) -> None:
    url = _label_url(info.get("public_url") or base, bar_lot, view["head"])
    _out(
        f"scenario played: {info['size']} events in the log; bar {bar_lot} has the expected "
        f"origins, flags, risk ({view['risk']}) and gender summary"
    )
    _print_qr(url)
    _out(f"verification page: {url}")
    _out("verify it offline:")
    _out(
        f"  goldtrail verify '{url}' --log-key '{info['verifier_key']}' "
        f"--registrar-key {info['registrar_key']}"
    )


app.add_typer(admin_app, name="admin")


# ---------------------------------------------------------------------------
# main

_GLOBAL_FLAGS = {"--offline", "--yes", "-y"}
_GLOBAL_VALUES = {"--server", "--key", "--origin", "--outbox", "--timeout"}


def _hoist_globals(argv: Sequence[str]) -> list[str]:
    """Move global options written after a command name to the front, where typer wants them."""
    front: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if arg in _GLOBAL_FLAGS or (name in _GLOBAL_VALUES and "=" in arg):
            front.append(arg)
        elif arg in _GLOBAL_VALUES and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@functools.cache
def _command() -> Any:
    """The click command tree, built once per process."""
    return typer.main.get_command(app)


def main(argv: Sequence[str] | None = None, hooks: Hooks | None = None) -> None:
    """The ``goldtrail`` console script: run the CLI, turning every error into one line."""
    args = _hoist_globals(sys.argv[1:] if argv is None else argv)
    command = _command()
    code = 0
    try:
        result = command.main(args=args, prog_name="goldtrail", standalone_mode=False, obj=hooks)
        code = result if isinstance(result, int) else 0
    except (ClientError, KeyFileError, OutboxError, CliError, LedgerError) as e:
        _note(f"error: {_one_line(e.detail)} ({e.code})")
        code = 1
    except UsageProblem as e:
        _note(f"error: {_one_line(str(e))} (usage)")
        code = 2
    except typer.TyperException as e:
        message = e.format_message()
        if type(e).__name__ == "NoArgsIsHelpError":
            _note(message)
        else:
            where = ""
            sub = getattr(getattr(e, "ctx", None), "command_path", None)
            if sub:
                where = f"; see {sub} --help"
            _note(f"error: {_one_line(message)} (usage{where})")
        code = int(getattr(e, "exit_code", 2))
    except typer.Abort:
        _note("error: aborted (aborted)")
        code = 1
    except KeyboardInterrupt:
        _note("error: interrupted (interrupted)")
        code = 130
    except sqlite3.Error as e:
        _note(f"error: the outbox database failed: {_one_line(str(e))} (outbox)")
        code = 1
    except OSError as e:
        _note(f"error: {_one_line(str(e))} (os_error)")
        code = 1
    sys.stdout.flush()
    raise SystemExit(code)

"""``goldtrail admin``: operate a server's database (migrate, audit, export, import, rebuild).

Every command reads the server's own settings (``GOLDTRAIL_*``, PROTOCOL.md section 8):
``GOLDTRAIL_DATABASE_URL``, ``GOLDTRAIL_ORIGIN``, ``GOLDTRAIL_LOG_KEY_FILE``,
``GOLDTRAIL_REGISTRAR_KEY``, and ``GOLDTRAIL_MIGRATE_DATABASE_URL`` (the schema owner's URL,
used for migrations when set). Errors are one line on stderr, ``error: <detail> (<code>)``,
with exit code 1 (2 for bad settings or usage).

- ``migrate``: bring the schema up to date (Alembic), and with ``--app-role`` give a
  PostgreSQL role the server's restricted privileges (``ledger.pgroles``).
- ``audit``: replay the whole log and check the tree, the checkpoints and the projections;
  exit 0 only when everything verifies, else name the first bad entry. The verdict is kept
  in the database, where ``/readyz`` reports it.
- ``export``: the log as JSON lines of envelopes, to stdout or ``--out FILE``.
- ``import``: replay an export into an empty database, verifying every event, and print
  the root (the same as the exported log's).
- ``rebuild``: rebuild the projection tables from the log.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import typer

from ledger.errors import LedgerError
from ledger.protocol import hex32

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ledger.audit import AuditReport

# SQLAlchemy, the store and the audit are imported by the commands that use them: the rest
# of the goldtrail command line starts without them.

__all__ = ["admin_app"]

#: problems listed after the first, at most
SHOWN_PROBLEMS = 20


def _example(*lines: str) -> str:
    """A help epilog in the style of the rest of the command line."""
    return "Example:\n\n\b\n" + "\n".join(f"  {line}" for line in lines) + "\n"


admin_app = typer.Typer(
    help="Operate a goldtrail server's database: migrations, audit, export, import, rebuild. "
    "Settings come from the same GOLDTRAIL_* variables as goldtrail serve.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


# ---------------------------------------------------------------------------
# Helpers


def _fail(detail: str, code: str, exit_code: int = 1) -> NoReturn:
    typer.echo(f"error: {' '.join(detail.split())} ({code})", err=True)
    raise typer.Exit(exit_code)


def _settings() -> Any:
    """The server's Settings (api.settings), read from the environment."""
    settings_module: Any = importlib.import_module("api.settings")
    try:
        return settings_module.Settings()
    except ValueError as e:  # pydantic's ValidationError: one sentence, no value shown
        _fail(f"bad settings: {settings_module.plain_settings_errors(e)}", "settings", 2)


def _shown(url: str) -> str:
    """A database URL fit for a message: the password hidden."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "(unparsable URL)"


@contextlib.contextmanager
def _engine(url: str) -> Iterator[Engine]:
    import sqlalchemy.exc

    from ledger.store import make_engine

    try:
        engine = make_engine(url)
    except (ValueError, sqlalchemy.exc.ArgumentError) as e:
        _fail(f"GOLDTRAIL_DATABASE_URL: {e}", "settings", 2)
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def _reported(url: str) -> Iterator[None]:
    """Turn refusals and database errors into one line and exit code 1."""
    import sqlalchemy.exc

    try:
        yield
    except LedgerError as e:
        _fail(e.detail, e.code)
    except sqlalchemy.exc.OperationalError as e:
        reason = (str(e.orig).splitlines() or [""])[0] if e.orig is not None else ""
        _fail(f"cannot use the database {_shown(url)}: {reason}", "database")
    except sqlalchemy.exc.DBAPIError as e:
        reason = (str(e.orig).splitlines() or [""])[0] if e.orig is not None else ""
        _fail(f"the database {_shown(url)} refused: {reason}", "database")


def _require_schema(engine: Engine, url: str) -> None:
    from sqlalchemy import inspect

    from ledger import tables

    if not inspect(engine).has_table(tables.log.name):
        _fail(
            f"the database {_shown(url)} holds no goldtrail log: run goldtrail admin migrate "
            "or check GOLDTRAIL_DATABASE_URL",
            "no_schema",
        )


def _meta(engine: Engine, key: str) -> str | None:
    from sqlalchemy import select

    from ledger import tables

    with engine.connect() as conn:
        value = conn.execute(
            select(tables.log_meta.c.value).where(tables.log_meta.c.key == key)
        ).scalar()
    return None if value is None else str(value)


def _refuse_another_origin(settings: Any, engine: Engine) -> None:
    """Exit 2 (settings) when the log's own first entry is signed for the origin log_meta
    records and not for GOLDTRAIL_ORIGIN: the audit was started with another log's settings
    (a shell or a cron job without the server's GOLDTRAIL_ORIGIN, say). Audited, every
    signature would fail, and the recorded verdict would turn /readyz red over a sound log.

    Nobody can sign for another origin without the actors' keys, so this cannot hide a
    damaged log: when entry 0 does not verify under either origin, or is not readable, the
    audit runs and names it.
    """
    from sqlalchemy import select

    from ledger import tables
    from ledger.protocol import body_digest, parse_strict, split_envelope, verify_signature

    stored = _meta(engine, "origin")
    if stored is None or stored == settings.origin:
        return
    with engine.connect() as conn:
        data = conn.execute(select(tables.log.c.envelope).where(tables.log.c.seq == 0)).scalar()
    if data is None:
        return
    try:
        body, signature = split_envelope(parse_strict(bytes(data)))
        digest = body_digest(body)
    except (LedgerError, ValueError):
        return

    def signed_for(origin: str) -> bool:
        try:
            verify_signature(origin, digest, signature["key"], signature["value"])
        except LedgerError:
            return False
        return True

    if signed_for(stored) and not signed_for(settings.origin):
        _fail(
            f"this database holds the log {stored!r} (its first entry is signed for it), but "
            f"GOLDTRAIL_ORIGIN is {settings.origin!r}: run the audit with the server's "
            "GOLDTRAIL_ORIGIN; nothing was audited or recorded",
            "origin_mismatch",
            2,
        )


def _verifier_key(settings: Any, engine: Engine, given: str | None) -> str:
    """--log-key, else the key in GOLDTRAIL_LOG_KEY_FILE, else the database's record of it."""
    from ledger.checkpoint import LogSigner, verifier_key
    from ledger.store import read_seed_file

    if given:
        return given
    seed = read_seed_file(settings.log_key_file)
    if seed is not None:
        try:
            return LogSigner(settings.origin, seed).verifier_key
        except ValueError as e:
            _fail(f"the origin {settings.origin!r} cannot name a key: {e}", "settings", 2)
    stored = _meta(engine, "log_public_key")
    if stored is None:
        _fail(
            f"no log key: the key file {settings.log_key_file} is missing and the database "
            "records none; pass --log-key",
            "log_key_missing",
        )
    typer.echo(
        f"warning: the log key file {settings.log_key_file} is missing; checking the "
        "checkpoints against the public key the database records (pass --log-key to use one "
        "from a source you trust)",
        err=True,
    )
    return verifier_key(settings.origin, bytes.fromhex(stored))


class _Lines:
    """The lines of a text file, read again from the start each time it is iterated."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[str]:
        with self.path.open(encoding="utf-8", newline="\n") as f:
            yield from f


@contextlib.contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on stderr; yields update(done, total)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, highlight=False),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, new_total: int | None = None) -> None:
            if new_total is not None:
                bar.update(task, completed=done, total=new_total)
            else:
                bar.update(task, completed=done)

        yield update


def _print_report(report: AuditReport) -> None:
    typer.echo(report.summary())
    if report.ok:
        return
    bad = report.first_bad_entry
    if bad is not None:
        typer.echo(f"first bad entry: seq {bad.seq} (event {bad.event_id}): {bad.detail}")
    for problem in report.problems[1 : 1 + SHOWN_PROBLEMS]:
        typer.echo(f"  - {problem}")
    hidden = len(report.problems) - 1 - SHOWN_PROBLEMS
    if hidden > 0 or report.truncated:
        typer.echo(f"  (and {max(hidden, 0)} more{', and others not listed' * report.truncated})")


# ---------------------------------------------------------------------------
# Commands


@admin_app.command(
    "migrate",
    epilog=_example(
        "goldtrail admin migrate",
        "GOLDTRAIL_DATABASE_URL=postgresql+psycopg://goldtrail_owner:...@db/goldtrail \\",
        "    goldtrail admin migrate --app-role goldtrail_app",
    ),
)
def migrate_command(
    app_role: Annotated[
        str | None,
        typer.Option(
            "--app-role",
            metavar="ROLE",
            help="PostgreSQL: then give this existing role the server's privileges (read and "
            "append to the log; change projections and log_meta). Default: the user of "
            "GOLDTRAIL_DATABASE_URL, when GOLDTRAIL_MIGRATE_DATABASE_URL is another role's.",
        ),
    ] = None,
) -> None:
    """Bring the database schema up to date (Alembic migrations).

    Uses GOLDTRAIL_MIGRATE_DATABASE_URL (the schema owner) when set, else
    GOLDTRAIL_DATABASE_URL. The server also migrates at start.
    """
    from sqlalchemy import text

    from ledger.pgroles import migrate_as_owner

    settings = _settings()
    url = settings.migrate_database_url or settings.database_url
    with _engine(url) as engine, _reported(url):
        try:
            granted = migrate_as_owner(url, settings.database_url, app_role)
        except ValueError as e:
            _fail(str(e), "app_role")
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    typer.echo(f"the database {_shown(url)} is at revision {revision}")
    if granted is not None:
        typer.echo(
            f"the role {granted} may read and append to the log, and change the projections; "
            "run the server with it in GOLDTRAIL_DATABASE_URL"
        )
    elif app_role is not None:
        _fail(f"the role {app_role} was given nothing: roles exist on PostgreSQL only", "app_role")


@admin_app.command(
    "audit",
    epilog=_example(
        "goldtrail admin audit",
        "goldtrail admin audit --log-key 'log.example.org/log+1a2b3c4d+AXY...' --no-record",
    ),
)
def audit_command(
    log_key: Annotated[
        str | None,
        typer.Option(
            "--log-key",
            metavar="VKEY",
            help="The log's verifier key (default: from GOLDTRAIL_LOG_KEY_FILE).",
        ),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Keep the verdict in the database, where /readyz reports it.",
        ),
    ] = True,
) -> None:
    """Replay the whole log and check every entry, the Merkle tree, the checkpoints and the
    projections.

    Exit 0 only when all of it verifies; otherwise name the first bad entry and exit 1.
    """
    import sqlalchemy.exc

    from ledger.admin import record_audit
    from ledger.audit import audit

    settings = _settings()
    url = settings.database_url
    with _engine(url) as engine, _reported(url):
        _require_schema(engine, url)
        _refuse_another_origin(settings, engine)
        vkey = _verifier_key(settings, engine, log_key)
        with _progress("auditing", None) as update:
            report = audit(
                engine,
                origin=settings.origin,
                verifier_key=vkey,
                registrar_key=settings.registrar_key,
                progress=update,
            )
        if record:
            try:
                record_audit(engine, report)
            except sqlalchemy.exc.DBAPIError as e:
                reason = (str(e.orig).splitlines() or [""])[0] if e.orig is not None else ""
                typer.echo(f"warning: the verdict could not be recorded: {reason}", err=True)
    _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@admin_app.command(
    "export",
    epilog=_example(
        "goldtrail admin export --out goldtrail-log.jsonl",
        "goldtrail admin export | gzip > goldtrail-log.jsonl.gz",
    ),
)
def export_command(
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write to FILE instead of stdout."),
    ] = None,
) -> None:
    """Write the log as JSON lines, one envelope per line, in seq order (from one snapshot).

    Prints the number of entries and the root of the exported log on stderr.
    """
    from ledger import merkle
    from ledger.admin import export_log
    from ledger.store import log_size

    settings = _settings()
    url = settings.database_url
    with _engine(url) as engine, _reported(url):
        _require_schema(engine, url)
        with engine.connect() as conn:
            size = log_size(conn)
        partial = None if out is None else out.with_name(out.name + ".partial")
        leaves: list[bytes] = []
        try:
            with contextlib.ExitStack() as stack:
                sink: TextIO = (
                    sys.stdout
                    if partial is None
                    else stack.enter_context(partial.open("w", encoding="utf-8", newline="\n"))
                )
                with _progress("exporting", size) as update:
                    for line in export_log(engine):
                        sink.write(line + "\n")
                        leaves.append(merkle.leaf_hash(line.encode("utf-8")))
                        if len(leaves) % 1000 == 0:
                            update(len(leaves), None)
                sink.flush()
                if partial is not None:
                    os.fsync(sink.fileno())
            if partial is not None and out is not None:
                partial.replace(out)
                # the new name too must survive a power cut (the data was synced above)
                folder = os.open(out.parent, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
        finally:
            if partial is not None:
                partial.unlink(missing_ok=True)
    root = merkle.root_from_leaves(leaves)
    where = "stdout" if out is None else str(out)
    typer.echo(f"exported {len(leaves)} entries to {where}; root {root.hex()}", err=True)


@admin_app.command(
    "import",
    epilog=_example(
        "GOLDTRAIL_DATABASE_URL=sqlite:///./new.db goldtrail admin import goldtrail-log.jsonl \\",
        "    --root 3dc6b65a6547511aa7434bf0a10336151664c5e660b94ded2df125a752247fe4",
        "gunzip -c goldtrail-log.jsonl.gz | goldtrail admin import -",
    ),
)
def import_command(
    source: Annotated[
        str, typer.Argument(metavar="FILE", help="An export (JSON lines), or - for stdin.")
    ],
    root: Annotated[
        str | None,
        typer.Option(
            "--root",
            metavar="HEX",
            help="The root the export printed (or GET /v1/log's root): refuse the file, "
            "writing nothing, when its entries give another (a file cut short at the end of "
            "a line is a valid, shorter log).",
        ),
    ] = None,
) -> None:
    """Replay an export into an empty database, verifying every event; print the root.

    The checkpoints are signed with the key in GOLDTRAIL_LOG_KEY_FILE (use the exported
    log's key file to keep its verifier key). The root is that of the exported log; give it
    with --root to have a file that is cut short or of another log refused. The
    whole file is checked before anything is written: a tampered or truncated export is
    refused, naming its line, and the database is left as it was.
    """
    from ledger.admin import import_log, root_of_lines
    from ledger.pgroles import migrate_as_owner
    from ledger.store import open_ledger

    expected: bytes | None = None
    if root is not None:
        root_hex = hex32(root)
        if root_hex is None:
            _fail(f"--root must be 64 hex digits, not {root!r}", "usage", 2)
        expected = bytes.fromhex(root_hex)
    settings = _settings()
    url = settings.database_url
    if source != "-" and not Path(source).is_file():
        _fail(f"there is no file {source}", "not_found")
    with contextlib.ExitStack() as stack:
        if source == "-":  # read twice (checked whole first, then appended): keep a copy
            spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="goldtrail-import-"))
            path = Path(spool) / "import.jsonl"
            with path.open("w", encoding="utf-8", newline="\n") as copy:
                shutil.copyfileobj(sys.stdin, copy)
        else:
            path = Path(source)
        lines = _Lines(path)
        total = sum(1 for line in lines if line.strip())
        if expected is not None:
            size, found = root_of_lines(lines)
            if found != expected:
                _fail(
                    f"the {size} entries of {source} give the root {found.hex()}, not "
                    f"{expected.hex()}: the file is cut short or holds another log; nothing "
                    "was written",
                    "root_mismatch",
                )
        if settings.migrate_database_url:  # as the server does at start
            with _reported(settings.migrate_database_url):
                try:
                    migrate_as_owner(settings.migrate_database_url, url)
                except ValueError as e:
                    _fail(str(e), "app_role")
        with _reported(url):
            ledger = open_ledger(
                url,
                origin=settings.origin,
                log_key_file=settings.log_key_file,
                registrar_key=settings.registrar_key,
            )
            try:
                with _progress("importing", total) as update:
                    imported = import_log(
                        ledger, lines, lambda done: update(done, None), whole_lines=True
                    )
                size = ledger.size()
            finally:
                ledger.engine.dispose()
    typer.echo(f"imported {size} entries into {_shown(url)}; root {imported.hex()}")


@admin_app.command("rebuild", epilog=_example("goldtrail admin rebuild"))
def rebuild_command() -> None:
    """Rebuild the projection tables (actors, sites, lots, ...) from the log.

    One transaction under the write lock: safe while the server runs. The log, its tree and
    its checkpoints are never changed.
    """
    from ledger.admin import rebuild_projections

    settings = _settings()
    url = settings.database_url
    with _engine(url) as engine, _reported(url):
        _require_schema(engine, url)
        registrar = settings.registrar_key or _meta(engine, "registrar_key")
        count = rebuild_projections(engine, settings.origin, registrar)
    typer.echo(
        f"rebuilt the projections from {count} log entries; goldtrail admin audit checks them"
    )

"""The running service: settings, the ledger, first-run set-up and the page's verification."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import text

from api import i18n
from api.observability import Metrics
from api.pages import bundle_filename, choose_language, render_error_page, render_lot_page
from api.settings import Settings
from ledger.admin import QuickCheck, last_audit, quick_check
from ledger.errors import IntegrityError, LedgerError, NotFoundError, UnavailableError
from ledger.pgroles import migrate_as_owner, server_may_change_the_log
from ledger.protocol import public_key_hex, sign_body, signing_key_from_seed
from ledger.store import (
    AppendResult,
    Ledger,
    create_seed_file,
    open_ledger,
    postgresql_fsync_off,
    read_seed_file,
)
from ledger.verify import verify_bundle
from ledger.views import actor_view, lot_view, site_view

log = logging.getLogger("goldtrail.server")
REGISTRAR_KEY_NAME = "goldtrail-registrar.key"
GENERATED_REGISTRAR_ID = "registrar"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def registrar_key_path(settings: Settings) -> Path:
    """Where a generated registrar key is written: next to the log key."""
    return Path(settings.log_key_file).resolve().parent / REGISTRAR_KEY_NAME


def _sqlite_file(store: Ledger) -> tuple[str, int, int] | None:
    """(path, st_dev, st_ino) of a SQLite database's file; None for PostgreSQL, memory or a
    URI."""
    url = store.engine.url
    name = url.database or ""
    if url.get_backend_name() != "sqlite" or name in ("", ":memory:") or name.startswith("file:"):
        return None
    try:
        found = os.stat(name)
    except OSError:
        return None
    return name, found.st_dev, found.st_ino


@dataclass
class ViewLedger:
    """The store's queries shaped as the API's JSON (views of the state objects)."""

    store: Ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def actor(self, actor_id: str) -> dict[str, Any] | None:
        """An actor's view, or None."""
        actor = self.store.actor(actor_id)
        return None if actor is None else actor_view(actor)

    def actors(self, *, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """A page of actor views."""
        items, nxt = self.store.actors(cursor=cursor, limit=limit)
        return [actor_view(a) for a in items], nxt

    def site(self, site_id: str, *, today: dt.date) -> dict[str, Any] | None:
        """A site's view with its colour on ``today``, or None."""
        site = self.store.site(site_id)
        return None if site is None else site_view(site, today)

    def sites(
        self, *, cursor: str | None, limit: int, today: dt.date
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of site views."""
        items, nxt = self.store.sites(cursor=cursor, limit=limit)
        return [site_view(s, today) for s in items], nxt

    def lot(self, lot_id: str) -> dict[str, Any] | None:
        """A lot's view (with its gender summary), or None."""
        with self.store.reader() as state:
            lot = state.lot(lot_id)
            return None if lot is None else lot_view(state, lot)

    def lots(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        """A page of lot views."""
        items, nxt = self.store.lots(**filters)
        with self.store.reader() as state:
            return [lot_view(state, lot) for lot in items], nxt

    def log_info(self) -> dict[str, Any]:
        """``GET /v1/log``."""
        return dict(self.store.log_info())


@dataclass
class Runtime:
    """Everything a request needs: settings, the ledger, the clock and the metrics."""

    settings: Settings
    store: Ledger
    clock: Callable[[], dt.datetime] = _utc_now
    metrics: Metrics = field(default_factory=Metrics)
    #: the quick integrity check run at start (``ledger.admin.quick_check``)
    startup_check: QuickCheck | None = None
    #: a SQLite database's file as the server opened it: (path, st_dev, st_ino)
    database_file: tuple[str, int, int] | None = None

    @property
    def ledger(self) -> ViewLedger:
        """The ledger's queries as API views."""
        return ViewLedger(self.store)

    @classmethod
    def open(cls, settings: Settings, *, clock: Callable[[], dt.datetime] | None = None) -> Runtime:
        """Open the ledger, refusing a database bound to another log (section 8).

        On an empty log with no configured registrar key, generate one next to the log key
        (mode 0600) and sign seq 0 with it, so a newcomer can start at once. Raises
        IntegrityError with a plain message when the server must not start.
        """
        clock = clock or _utc_now
        if settings.migrate_database_url:
            # migrations run as the schema's owner, who then gives the server's own role
            # (GOLDTRAIL_DATABASE_URL's user) the right to read and append, no more
            migrate_as_owner(settings.migrate_database_url, settings.database_url)
        store = open_ledger(
            settings.database_url,
            origin=settings.origin,
            log_key_file=settings.log_key_file,
            registrar_key=settings.registrar_key,
            clock=clock,
        )
        runtime = cls(settings, store, clock)
        runtime.database_file = _sqlite_file(store)
        if settings.origin == Settings.model_fields["origin"].default:
            log.warning(
                "This log has the placeholder origin %r, as GOLDTRAIL_ORIGIN is not set: fine "
                "for trying goldtrail, but a log's origin never changes, so a programme's log "
                "needs its own (set GOLDTRAIL_ORIGIN before its first start).",
                settings.origin,
            )
        may_change = server_may_change_the_log(store.engine)
        if may_change is not None:
            log.warning(
                "The server connects to PostgreSQL as a role that can change the log: %s. "
                "Only the append-only triggers guard it then, and that role can switch them "
                "off; run the server as an application role that may only read and append "
                "(README.md, 'PostgreSQL roles').",
                may_change,
            )
        if postgresql_fsync_off(store.engine):
            log.warning(
                "PostgreSQL runs with fsync off: a crash or power cut of its machine can lose "
                "events already acknowledged with a signed receipt. Turn fsync on in "
                "postgresql.conf for a production log."
            )
        if store.size() == 0 and settings.registrar_key is None:
            runtime._start_with_generated_registrar()
        runtime.startup_check = quick_check(store.engine, store.verifier_key)
        if not runtime.startup_check.ok:
            log.error(
                "The integrity check at start failed: %s Run goldtrail admin audit.",
                runtime.startup_check.detail,
            )
        return runtime

    def _start_with_generated_registrar(self) -> None:
        path = registrar_key_path(self.settings)
        seed = read_seed_file(path, "registrar key")
        if seed is None:
            try:
                seed = create_seed_file(path)
            except OSError as e:
                raise IntegrityError(
                    "registrar_key_unwritable",
                    "GOLDTRAIL_REGISTRAR_KEY is not set, so the server generates a registrar "
                    f"key for this empty log next to the log key, but {path} cannot be "
                    f"created: {e.strerror or e}. Set GOLDTRAIL_REGISTRAR_KEY, or "
                    "GOLDTRAIL_LOG_KEY_FILE to a file in a folder the server may write in.",
                ) from e
        key = signing_key_from_seed(seed.hex())
        self.store.registrar_key = public_key_hex(key)
        now = self.clock().replace(microsecond=0)
        body = {
            "v": 1,
            "type": "actor.registered",
            "actor": GENERATED_REGISTRAR_ID,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "subject": GENERATED_REGISTRAR_ID,
            "name": "Local registrar (generated at first start)",
            "roles": ["registrar"],
            "key": public_key_hex(key),
            "country": "CD",
        }
        self.store.append([sign_body(body, key, self.settings.origin)], batch=False)
        log.warning(
            "No GOLDTRAIL_REGISTRAR_KEY was set, so a registrar key was generated and seq 0 "
            "signed with it. Its private key is in %s (keep it safe: it registers every actor).",
            path,
        )

    def today(self) -> dt.date:
        """Today's UTC date (for site colours shown now)."""
        return self.clock().date()

    def log_key_problem(self) -> str | None:
        """Why the server could not start again with its log key file (missing, unreadable
        or holding another key than the one it signs with), or None."""
        path = self.settings.log_key_file
        try:
            seed = read_seed_file(path)
        except LedgerError as e:
            return f"{e.detail} The server will not start again until it is restored."
        if seed is None:
            return (
                f"The log key file {path} is missing: the server signs with the key it loaded "
                "at start, but will not start again until the file is restored."
            )
        if bytes(signing_key_from_seed(seed.hex()).verify_key) != self.store.log_signer.public_key:
            return (
                f"The log key file {path} now holds another key than the one this server "
                "signs with: it will not start again until the original file is restored."
            )
        return None

    def database_moved(self) -> str | None:
        """Why appends must stop: the SQLite file the server opened was removed or replaced
        (what it writes would go to a file nobody will open again); else None."""
        if self.database_file is None:
            return None
        path, device, inode = self.database_file
        try:
            found = os.stat(path)
        except OSError:
            found = None
        if found is not None and (found.st_dev, found.st_ino) == (device, inode):
            return None
        return (
            f"The database file {path} was removed or replaced after the server started: what "
            "it writes now would be lost at the next start. Restore the file and restart the "
            "server."
        )

    def _check_database_file(self) -> None:
        if self.database_file is not None:
            moved = self.database_moved()
            if moved is not None:
                raise UnavailableError("database_moved", moved)

    def append(self, envelopes: list[Any], *, batch: bool) -> AppendResult:
        """Append and count; refusals are counted by the metrics middleware."""
        self._check_database_file()
        result = self.store.append(envelopes, batch=batch)
        self.metrics.appended.inc(sum(result.new))
        return result

    def append_each(self, envelopes: Sequence[object]) -> list[AppendResult | LedgerError]:
        """Append envelopes as independent single appends in one transaction (group commit,
        ``Ledger.append_each``) and count the new events."""
        self.metrics.group_size.observe(len(envelopes))
        self._check_database_file()
        results = self.store.append_each(envelopes)
        self.metrics.appended.inc(
            sum(1 for r in results if isinstance(r, AppendResult) and r.created)
        )
        return results

    def bundle(self, lot_id: str, at: str | None) -> dict[str, Any]:
        """The lot's bundle; 404 ``unknown_lot`` or ``unknown_event``."""
        # an id no lot can have is unknown without asking the database (a NUL byte...)
        known = re.fullmatch(r"[A-Z0-9][A-Z0-9-]{3,47}", lot_id) is not None
        bundle = self.store.bundle(lot_id, at) if known else None
        if bundle is None:
            raise NotFoundError("unknown_lot", f"There is no lot '{lot_id}' in this log.")
        return bundle

    def lot_page(
        self, lot_id: str, at: str | None, accept_language: str | None, lang: str | None
    ) -> tuple[str, int]:
        """The verification page and its status: the server verifies its own bundle."""
        language = choose_language(accept_language, lang)
        label = at if at is not None and re.fullmatch(r"[0-9a-f]{64}", at) else None
        try:
            bundle = self.bundle(lot_id, label)
        except NotFoundError as e:
            kind = "unknown_lot" if e.code == "unknown_lot" else "unknown_label"
            return render_error_page(
                language,
                i18n.t(language, f"error.{kind}.title"),
                i18n.t(language, f"error.{kind}.detail", lot=lot_id),
            ), 404
        if at is not None and label is None:
            return render_error_page(
                language,
                i18n.t(language, "error.unknown_label.title"),
                i18n.t(language, "error.unknown_label.detail", lot=lot_id),
            ), 404
        report = verify_bundle(bundle, self.store.verifier_key, self.store.registrar_key)
        query = f"?at={label}" if label else ""
        html = render_lot_page(
            report,
            lang=language,
            # relative to /l/{lot}: right behind a proxy that serves the app under a path
            # (GOLDTRAIL_PUBLIC_URL = https://host/prefix) as at the root
            bundle_url=f"../v1/lots/{quote(lot_id, safe='')}/bundle{query}",
            label_at=label,
            head_is_newer=label is not None and label != bundle["head"],
            log_key=self.store.verifier_key,
            server_name=self.settings.public_url,
            bundle=bundle,
            registrar_key=self.store.registrar_key,
            bundle_file=bundle_filename(lot_id),
        )
        return html, 200

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` reports: the boolean checks, all True when ready, and details.

        - ``database``: the database answers and, for SQLite, its file is still the one the
          server opened (``database_problem`` says why not; appends are refused then);
        - ``log_key``: the log key is loaded and its file still holds it (a server whose key
          file was removed or replaced signs on, but could not start again:
          ``log_key_problem`` says why);
        - ``integrity``: the quick check (``ledger.admin.quick_check``, run at start and
          again now): the latest checkpoint opens with the log key, covers the whole log and
          signs the stored tree's root, and the last entry hashes to its leaf. It reads
          O(log n) rows, so it cannot see a changed entry inside the log;
        - ``audit``: False when the last recorded full audit (``goldtrail admin audit``)
          found the log damaged; True when it was sound or none was recorded
          (``last_audit`` gives its date, size and first problem).

        Never raises: a failure is a False check with an ``error``.
        """
        checks: dict[str, Any] = {
            "database": False,
            "log_key": False,
            "integrity": False,
            "audit": False,
        }
        key_problem = self.log_key_problem()
        checks["log_key"] = key_problem is None
        if key_problem is not None:
            checks["log_key_problem"] = key_problem
        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            moved = self.database_moved()
            checks["database"] = moved is None
            if moved is not None:
                checks["database_problem"] = moved
            check = quick_check(self.store.engine, self.store.verifier_key)
            checks["integrity"] = check.ok
            if not check.ok:
                checks["integrity_problem"] = check.detail
            verdict = last_audit(self.store.engine)
            checks["audit"] = verdict is None or verdict.get("ok") is True
            checks["last_audit"] = verdict
        except Exception as e:  # readiness must answer, never raise
            first_line = (str(e).splitlines() or [""])[0]
            checks["error"] = f"{type(e).__name__}: {first_line[:200]}"
        return checks

"""Flags of lots made offline: the outputs of a pending ``lot.processed`` carry, under the
same ids, the flags the server will give them (PROTOCOL.md section 5, Flags), so
``goldtrail lot resolve --code`` works offline as online; where this machine cannot know a
flag (one the server derives from data it lacks), it says so and invents no id.

The server is the fake of conftest.py: the real rules engine behind httpx.MockTransport.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clients.keys import MIN_LIMITS, write_key_file
from clients.outbox import Outbox
from tests.clients.conftest import PASSPHRASE, Run, World, run_main

ORIGIN = "test.goldtrail.example/log"


def _auditor(world: World, tmp_path: Path) -> Callable[..., Run]:
    """``goldtrail`` as the registry's auditor, on the same machine (same outbox)."""
    key = tmp_path / "auditor.key.json"
    write_key_file(key, "registrar-test", world.registrar, PASSPHRASE, limits=MIN_LIMITS)

    def run(args: list[str], offline: bool = False) -> Run:
        front = ["--server", "http://fake.test", "--key", str(key), "--outbox", str(world.outbox)]
        return run_main(
            front + (["--offline"] if offline else []) + args, transport=world.fake.transport
        )

    return run


def _resolve(lot: str, code: str, outcome: str = "unfounded") -> list[str]:
    return [
        "lot",
        "resolve",
        "--lot",
        lot,
        "--code",
        code,
        "--outcome",
        outcome,
        "--resolution",
        "Checked by the auditor on site",
    ]


def _pending(world: World) -> list[Any]:
    with Outbox(world.outbox) as box:
        return box.pending(ORIGIN)


def _server_flags(world: World, lot: str) -> list[dict[str, Any]]:
    from ledger.views import lot_view

    state = world.fake.ledger.state
    flags: list[dict[str, Any]] = lot_view(state, state.lots[lot])["flags"]
    return flags


def test_outputs_of_a_pending_process_inherit_flags_and_resolve_by_code(
    cli: Callable[..., Run], lot_args: Any, world: World, tmp_path: Path
) -> None:
    auditor = _auditor(world, tmp_path)
    # online: a lot with a site flag (resolved unfounded: not inherited), a hold flag
    # resolved as remediated (inherited, resolved) and an open flag (inherited, open)
    assert cli(lot_args("MAK-2026-0001")).code == 0
    for code in ("serious_abuse", "taxes_unpaid"):
        flag = ["lot", "flag", "--lot", "MAK-2026-0001", "--code", code, "--note", "Seen"]
        assert cli(flag).code == 0
    assert auditor(_resolve("MAK-2026-0001", "site_unassessed")).code == 0
    assert auditor(_resolve("MAK-2026-0001", "serious_abuse", "remediated")).code == 0
    assert cli(["lot", "show", "MAK-2026-0001"]).code == 0
    assert auditor(["lot", "show", "MAK-2026-0001"]).code == 0
    input_flags = {f["code"]: f for f in _server_flags(world, "MAK-2026-0001")}

    # offline: split by open-pan amalgamation (the process raises a flag), then split again
    run = cli(
        [
            "lot",
            "process",
            "--input",
            "MAK-2026-0001",
            "--output",
            "MAK-2026-0002:20000:gold:870000",
            "--output",
            "MAK-2026-0003:18000:gold:870000",
            "--process",
            "amalgamation_open",
        ],
        offline=True,
    )
    assert run.code == 0, run.stderr
    processed = _pending(world)[-1]
    run = cli(
        [
            "lot",
            "process",
            "--input",
            "MAK-2026-0003",
            "--output",
            "MAK-2026-0004:9000:gold:870000",
            "--process",
            "splitting",
        ],
        offline=True,
    )
    assert run.code == 0, run.stderr

    # offline, by code, on a pending output and on an output of a pending output
    run = auditor(_resolve("MAK-2026-0002", "taxes_unpaid"), offline=True)
    assert run.code == 0, run.stderr
    run = auditor(_resolve("MAK-2026-0004", "mercury_worst_practice", "remediated"), offline=True)
    assert run.code == 0, run.stderr
    resolutions = [e.body for e in _pending(world) if e.type == "lot.flag_resolved"]
    assert [b["flag"] for b in resolutions] == [
        input_flags["taxes_unpaid"]["id"],
        f"{processed.event_id}/mercury_worst_practice",
    ]
    # a flag resolved offline is no longer open offline
    again = auditor(_resolve("MAK-2026-0002", "taxes_unpaid"), offline=True)
    assert again.code == 1 and "taxes_unpaid" in again.stderr

    # offline show of a pending output lists the flags it will carry
    show = cli(["lot", "show", "MAK-2026-0003"], offline=True)
    assert show.code == 0, show.stderr
    assert "flag         taxes_unpaid (high, open)" in show.stdout
    assert "flag         serious_abuse (hold, resolved, remediated)" in show.stdout
    assert "flag         mercury_worst_practice (medium, open)" in show.stdout
    assert "site_unassessed" not in show.stdout
    with Outbox(world.outbox) as box:
        projected = {lot: box.chain(ORIGIN, lot).flags for lot in ("MAK-2026-0003",)}

    # sync: the server accepts every event and agrees with the projection
    size = len(world.fake.log)
    synced = cli(["sync"])
    assert synced.code == 0, synced.stdout + synced.stderr
    assert len(world.fake.log) == size + 4 and not _pending(world)
    assert projected["MAK-2026-0003"] == _server_flags(world, "MAK-2026-0003")
    out2 = {f["code"]: f for f in _server_flags(world, "MAK-2026-0002")}
    assert out2["taxes_unpaid"]["status"] == "resolved"
    assert out2["taxes_unpaid"]["id"] == input_flags["taxes_unpaid"]["id"]
    out3 = {f["code"]: f for f in _server_flags(world, "MAK-2026-0003")}
    assert out3["taxes_unpaid"]["status"] == "open"  # other lots are left untouched
    out4 = {f["code"]: f for f in _server_flags(world, "MAK-2026-0004")}
    assert out4["mercury_worst_practice"]["status"] == "resolved"

    # offline again: the cache, moved on by the events sent, still knows the outputs' flags
    with Outbox(world.outbox) as box:
        assert box.chain(ORIGIN, "MAK-2026-0004").flags_unsure is None
    run = auditor(_resolve("MAK-2026-0004", "taxes_unpaid"), offline=True)
    assert run.code == 0, run.stderr
    assert _pending(world)[-1].body["flag"] == input_flags["taxes_unpaid"]["id"]
    assert cli(["sync"]).code == 0 and not _pending(world)
    out4 = {f["code"]: f for f in _server_flags(world, "MAK-2026-0004")}
    assert out4["taxes_unpaid"]["status"] == "resolved"


def test_a_flag_this_machine_cannot_know_is_not_invented(
    cli: Callable[..., Run], lot_args: Any, world: World, tmp_path: Path
) -> None:
    auditor = _auditor(world, tmp_path)
    assert cli(["sync"]).code == 0 and auditor(["sync"]).code == 0  # origin known
    # registered and processed offline: the server derives site_unassessed from the site's
    # assessments, which this machine does not have
    assert cli(lot_args("MAK-2026-0001"), offline=True).code == 0
    registered = _pending(world)[0]
    run = cli(
        [
            "lot",
            "process",
            "--input",
            "MAK-2026-0001",
            "--output",
            "MAK-2026-0002:38000:gold:870000",
            "--process",
            "splitting",
        ],
        offline=True,
    )
    assert run.code == 0, run.stderr
    before = len(_pending(world))
    run = auditor(_resolve("MAK-2026-0002", "site_unassessed"), offline=True)
    assert run.code == 1
    errors = run.error_lines
    assert len(errors) == 1 and errors[0].endswith("(flag_not_known_yet)"), run.stderr
    assert "not known on this machine yet" in errors[0]
    assert "--flag" in errors[0] and "goldtrail sync" in errors[0]
    assert len(_pending(world)) == before  # nothing was signed
    show = cli(["lot", "show", "MAK-2026-0002"], offline=True)
    assert show.code == 0 and "may carry more flags" in show.stdout

    # --flag with the id works offline, and the server agrees once synced
    flag_id = f"{registered.event_id}/site_unassessed"
    run = auditor(
        [
            "lot",
            "resolve",
            "--lot",
            "MAK-2026-0002",
            "--flag",
            flag_id,
            "--outcome",
            "unfounded",
            "--resolution",
            "Site visited by the auditor",
        ],
        offline=True,
    )
    assert run.code == 0, run.stderr
    assert cli(["sync"]).code == 0
    flags = {f["id"]: f for f in _server_flags(world, "MAK-2026-0002")}
    assert flags[flag_id]["status"] == "resolved"


def test_offline_code_not_found_on_a_cached_lot_says_as_far_as_known(
    cli: Callable[..., Run], lot_args: Any, world: World, tmp_path: Path
) -> None:
    auditor = _auditor(world, tmp_path)
    assert cli(lot_args("MAK-2026-0001")).code == 0
    assert auditor(["lot", "show", "MAK-2026-0001"]).code == 0
    # someone else may have flagged it since: the cache cannot say there is no such flag
    run = auditor(_resolve("MAK-2026-0001", "bribery"), offline=True)
    assert run.code == 1
    assert "not known on this machine yet" in run.error_lines[0], run.stderr

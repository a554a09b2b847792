"""Issue 5, ``goldtrail verify``'s plain report: payment figures follow the rule the page
follows (PROTOCOL.md section 7: a payment figure only for a group of at least 5 people),
with the groups recomputed by the verifier from the bundle's registrations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.protocol import canonical
from tests.api.test_page_render import SCENARIO as PAGE_SCENARIO
from tests.api.test_page_render import _small_group, play
from tests.clients.conftest import run_main


@pytest.mark.parametrize(
    ("women", "men", "shown"),
    [(5, 0, True), (6, 5, True), (5, 4, False), (1, 0, False), (0, 3, False)],
)
def test_payments_in_the_plain_report(tmp_path: Path, women: int, men: int, shown: bool) -> None:
    log, bundle, report = _small_group(women, men)
    # (the page reads the same report.payment_groups)
    assert report.payment_groups == {"CDF": min(n for n in (women, men) if n)}
    path = tmp_path / "MAK-2026-0001.bundle.json"
    path.write_bytes(canonical(bundle))
    run = run_main(
        [
            "verify",
            str(path),
            "--log-key",
            log.signer.verifier_key,
            "--registrar-key",
            log.registrar_key,
        ]
    )
    assert run.code == 0, run.stderr
    assert f"producers: {women} women, {men} men" in run.stdout
    if shown:
        assert (
            "paid to producers: 198,000,000 CDF (minor units), of which to women 132,000,000"
            in run.stdout
        )
    else:
        assert (
            "paid to producers in CDF: withheld (it concerns a group of fewer than 5 people)"
            in run.stdout
        )
        assert "198,000,000" not in run.stdout and "132,000,000" not in run.stdout
    # --json is the machine report, like the JSON API: the figures and the groups are there
    data = json.loads(
        run_main(["verify", str(path), "--log-key", log.signer.verifier_key, "--json"]).stdout
    )
    assert data["payment_groups"] == report.payment_groups
    assert data["state"]["gender"]["paid"][0]["total"] == 198_000_000


def test_the_scenarios_bar_withholds_both_currencies(tmp_path: Path) -> None:
    log = play(PAGE_SCENARIO["events"])
    bar = PAGE_SCENARIO["expected"]["bar_lot"]
    bundle = log.bundle(bar)
    report = log.report(bundle)
    assert report.ok
    # CDF: MAK-2026-0001 has 3 men; UGX: KIT-2026-0007 has 1 woman
    assert report.payment_groups == {"CDF": 3, "UGX": 1}
    path = tmp_path / "bar.bundle.json"
    path.write_bytes(canonical(bundle))
    run = run_main(["verify", str(path), "--log-key", log.signer.verifier_key])
    assert run.code == 0, run.stderr
    assert run.stdout.count("withheld (it concerns a group of fewer than 5 people)") == 2


def test_an_old_dore_label_says_where_its_gold_went(tmp_path: Path) -> None:
    log = play(PAGE_SCENARIO["events"])
    dore = "KLA-2026-0101"
    first = log.ledger.state.lots[dore].created_event
    bundle = log.bundle(dore, label_at=first)
    path = tmp_path / f"{dore}.bundle.json"
    path.write_bytes(canonical(bundle))
    run = run_main(["verify", str(path), "--log-key", log.signer.verifier_key])
    assert run.code == 0, run.stderr
    tail = run.stdout[run.stdout.index("since the label was printed") :]
    assert "8 event(s) happened to this lot" in tail
    assert "lot.exported by Lake Victoria Bullion Exporters (demo): to CH" in tail
    assert "lot.processed by Alpine Precious Metals Refinery (demo): refining into " in tail
    assert tail.rstrip().endswith(
        "now: consumed, risk medium, held by Alpine Precious Metals Refinery (demo); its gold "
        "went into ALP-2026-118842"
    )

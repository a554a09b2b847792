"""A bundle fetched from a live server verifies after the server's database is gone.

The verifier's only inputs are the bundle's bytes and the keys a buyer pins: the test
deletes the SQLite database (and its WAL files) before verifying, in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nacl.signing

from clients.scenario import ScenarioPlayer, load_scenario
from ledger.protocol import public_key_hex

from .conftest import open_api

SCENARIO = load_scenario()
BAR = SCENARIO["expected"]["bar_lot"]

VERIFY = """
import json, sys
from pathlib import Path
from ledger.verify import verify_bundle
report = verify_bundle(Path(sys.argv[1]).read_bytes(), sys.argv[2], sys.argv[3])
print(json.dumps(report.to_json()))
"""


def test_bundle_verifies_after_the_database_is_deleted(tmp_path: Path) -> None:
    registrar = nacl.signing.SigningKey.generate()
    db = tmp_path / "ledger.db"
    api = open_api(f"sqlite:///{db}", tmp_path, registrar_key=public_key_hex(registrar))
    try:
        player = ScenarioPlayer(api.settings.origin, first_registrar_key=registrar)
        for raw in SCENARIO["events"]:
            assert api.post(player.envelope(raw, api.lot)).status_code == 201
        head = api.lot(BAR)["head"]
        log_key = api.log()["verifier_key"]
        response = api.client.get(f"/v1/lots/{BAR}/bundle", params={"at": head})
        assert response.status_code == 200
        bundle_file = tmp_path / "bar.bundle.json"
        bundle_file.write_bytes(response.content)
    finally:
        api.close()

    for path in tmp_path.glob("ledger.db*"):
        path.unlink()
    assert not list(tmp_path.glob("ledger.db*"))

    out = subprocess.run(
        [sys.executable, "-c", VERIFY, str(bundle_file), log_key, public_key_hex(registrar)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    report = json.loads(out.stdout)
    assert report["ok"], report["failures"]
    assert report["label_at"] == head and report["after_label"] == []
    expected = SCENARIO["expected"]
    assert report["state"]["origins"] == expected["origins"]
    assert report["state"]["risk"] == expected["bar_risk"]
    assert report["state"]["gender"] == expected["bar_gender"]
    open_codes = sorted(f["code"] for f in report["state"]["flags"] if f["status"] == "open")
    assert open_codes == sorted(expected["open_flags_on_bar"])

"""Play the demo supply chain (``data/scenario.json``) against any ledger.

The scenario holds bodies without ``v``, keys or chain links; the player generates each
actor's key, fills ``prev``, ``offer``, ``inputs[].prev`` and flag ids from the ledger's
current lot state (asked through ``LotLookup``), and signs. It never reads ``expected``:
that is for the tests and the demo's final check.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import nacl.signing

from ledger.protocol import public_key_hex, sign_body

#: given a lot id, its current state as the API shows it (``head``, ``offer``, ``flags``)
LotLookup = Callable[[str], dict[str, Any]]

PREV_TYPES = frozenset(
    {
        "lot.transfer_offered",
        "lot.transfer_accepted",
        "lot.transfer_rejected",
        "lot.transfer_cancelled",
        "lot.assayed",
        "lot.exported",
        "lot.flagged",
        "lot.flag_resolved",
    }
)
ANSWER_TYPES = frozenset(
    {"lot.transfer_accepted", "lot.transfer_rejected", "lot.transfer_cancelled"}
)
_FLAG_PLACEHOLDER = re.compile(r"^<id of ([a-z_]+)>$")


def load_scenario() -> dict[str, Any]:
    """The bundled demo scenario (a fictional Ituri and Uganda to Switzerland chain)."""
    text = resources.files("clients").joinpath("data/scenario.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@dataclass
class ScenarioPlayer:
    """Turns scenario bodies into signed envelopes, one at a time, in order.

    ``keys`` maps actor ids to signing keys; keys for ``<generated>`` subjects are made
    on the way (``first_registrar_key`` signs the self-registration at seq 0 when given).
    ``rename`` maps every scenario identifier (actors, sites, lots and lot prefixes) to
    the ones used in this run, so the same chain can be played twice in one log.
    """

    origin: str
    keys: dict[str, nacl.signing.SigningKey] = field(default_factory=dict)
    first_registrar_key: nacl.signing.SigningKey | None = None
    rename: Callable[[str, str], str] = lambda kind, value: value

    def envelopes(
        self, events: list[dict[str, Any]], lookup: LotLookup
    ) -> Iterator[dict[str, Any]]:
        """Yield each event's envelope; call ``lookup`` lazily, after earlier ones landed."""
        for raw in events:
            yield self.envelope(raw, lookup)

    def envelope(self, raw: dict[str, Any], lookup: LotLookup) -> dict[str, Any]:
        """Sign one scenario event, filling keys and chain links."""
        body = self._renamed(copy.deepcopy(raw))
        body["v"] = 1
        if body.get("key") == "<generated>":
            subject = body["subject"]
            if (
                body["type"] == "actor.registered"
                and subject == body["actor"]
                and (self.first_registrar_key is not None and subject not in self.keys)
            ):
                key = self.first_registrar_key
            else:
                key = nacl.signing.SigningKey.generate()
            self.keys[subject] = key
            body["key"] = public_key_hex(key)
        if body["type"] in PREV_TYPES:
            state = lookup(body["lot"])
            body["prev"] = state["head"]
            if body["type"] in ANSWER_TYPES:
                body["offer"] = state["offer"]["id"]
            match = _FLAG_PLACEHOLDER.match(str(body.get("flag", "")))
            if match:
                body["flag"] = _flag_id(state, match.group(1))
        if body["type"] == "lot.processed":
            for item in body["inputs"]:
                item["prev"] = lookup(item["lot"])["head"]
        signer = self.keys[body["actor"]]
        return sign_body(body, signer, self.origin)

    def _renamed(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("actor", "subject", "operator", "to"):
            if name in body:
                body[name] = self.rename("actor", body[name])
        if "site" in body:
            body["site"] = self.rename("site", body["site"])
        if "lot_prefix" in body:
            body["lot_prefix"] = self.rename("prefix", body["lot_prefix"])
        if "lot" in body:
            body["lot"] = self.rename("lot", body["lot"])
        for item in body.get("inputs", []) + body.get("outputs", []):
            item["lot"] = self.rename("lot", item["lot"])
        return body


def _flag_id(state: dict[str, Any], code: str) -> str:
    flags = [f for f in state["flags"] if f["code"] == code]
    open_flags = [f for f in flags if f["status"] == "open"] or flags
    if not open_flags:
        raise LookupError(f"lot {state.get('lot')} carries no {code} flag to resolve")
    flag_id: str = open_flags[0]["id"]
    return flag_id

"""Random sequences of valid and invalid events against MemoryLedger (hypothesis stateful).

After every step: processing and weighing never make gold (the mass of the lots still alive
never grows beyond what registrations added), every live lot has exactly one custodian who
exists and holds a custody role and the ``held_lots`` counters match, a refused event
changes nothing (state and leaves), and the projections equal a replay of the log from
scratch.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.errors import LedgerError
from ledger.events import FLAG_CLASS
from ledger.state import CUSTODY_ROLES
from tests import factories as F

ACTORS = [
    "registrar",
    "auditor",
    "coop",
    "coop2",
    "processor",
    "trader",
    "trader2",
    "exporter",
    "refiner",
    "assayer",
]
SITES = ["site-a", "site-b", "site-c", "site-r"]
CODES = sorted(str(code) for code in FLAG_CLASS)
PROCESSES = ["splitting", "merging", "smelting", "refining", "amalgamation_open", "gravity"]
GHOST = "ab" * 32
DECLARATIONS = [
    {},
    {},
    {},
    {"child_labour": "wfcl"},
    {"armed_groups": "nearby"},
    {"security_forces": "control"},
    {"forced_labour": True},
]

#: what the machine did, over all runs (read it with -s when tuning the strategies)
OUTCOMES: Counter[str] = Counter()


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.start(F.World.standard())

    def start(self, w: Any) -> None:
        """The starting cast and lots, in ``w`` (a ``World``, or any world with its
        methods): three more sites, three lots, one transferred and two offered."""
        w.register_site("site-c", "coop")
        w.assess_site("site-c", "yellow")
        w.register_site("site-r", "coop2")
        w.assess_site("site-r", "red")
        for site in ("site-a", "site-b", "site-c"):
            w.register_lot(site=site)
        w.transfer("COOP-0001", "trader")
        w.offer("CPB-0002", "processor")
        w.offer("COOP-0003", "trader2")
        self.w = w
        self.accepted: list[dict[str, Any]] = w.envelopes()
        self.seen: list[str] = [F.Event(env).id for env in self.accepted]
        self.last_total = sum(s.mass_mg for s in w.ledger.state.lots.values())
        self.added = 0
        self.serial = 0

    # -- helpers ---------------------------------------------------------------------------

    @property
    def lots(self) -> dict[str, Any]:
        lots: dict[str, Any] = self.w.ledger.state.lots
        return lots

    def attempt(self, ev: Any) -> bool:
        """Append; on refusal check that nothing changed. True if accepted."""
        before = self.w.snapshot()
        try:
            result = self.w.append(ev)
        except LedgerError as e:
            assert self.w.snapshot() == before, f"refused {e.code} but the state changed"
            OUTCOMES[f"{ev.body['type']}:{e.code}"] += 1
            return False
        assert result.existing is None
        self.accepted.append(ev.envelope)
        self.seen.append(ev.id)
        OUTCOMES[f"{ev.body['type']}:ok"] += 1
        return True

    def pick_lot(self, data: Any) -> str:
        everything = sorted(self.lots)
        live = [x for x in everything if self.lots[x].status != "consumed"]
        pool = live if live and data.draw(st.integers(0, 5), label="live?") else everything
        lot: str = data.draw(st.sampled_from(pool), label="lot")
        return lot

    def pick_actor(self, data: Any, *likely: str, label: str = "actor") -> str:
        """One of ``likely`` three times in four, else anyone."""
        pool = list(likely) if data.draw(st.integers(0, 3), label=f"{label} likely?") else ACTORS
        actor: str = data.draw(st.sampled_from(pool), label=label)
        return actor

    def pick_prev(self, data: Any, head: str) -> str:
        """The head, mostly; else a known event that is not the head, or an unknown one."""
        prev: str = data.draw(
            st.sampled_from([head] * 10 + [self.seen[-1], self.seen[len(self.seen) // 2], GHOST]),
            label="prev",
        )
        return prev

    def new_id(self, data: Any, signer: str) -> str:
        """Mostly a fresh id with the signer's prefix; sometimes a wrong or a used one."""
        self.serial += 1
        prefix = self.w.actor(signer).lot_prefix or "XX-"
        kind = data.draw(st.sampled_from(["fresh"] * 8 + ["wrong", "used"]), label="id")
        if kind == "used" and self.lots:
            used: str = data.draw(st.sampled_from(sorted(self.lots)), label="used id")
            return used
        if kind == "wrong":
            prefix = "COOP-" if prefix != "COOP-" else "TRD-"
        return f"{prefix}S{self.serial:04d}"

    # -- rules -----------------------------------------------------------------------------

    @rule(
        data=st.data(),
        site=st.sampled_from(SITES),
        mass=st.integers(1, 10**7),
        ppm=st.integers(1, 10**6),
        declarations=st.sampled_from(DECLARATIONS),
    )
    def register_lot(
        self, data: Any, site: str, mass: int, ppm: int, declarations: dict[str, Any]
    ) -> None:
        signer = self.pick_actor(data, self.w.site(site).operator)
        ev = self.w.register_lot(
            self.new_id(data, signer),
            site,
            actor=signer,
            mass_mg=mass,
            fineness_ppm=ppm,
            declarations=declarations,
            post=False,
        )
        if self.attempt(ev):
            self.added += mass

    @precondition(lambda self: self.lots)
    @rule(data=st.data(), weigh=st.sampled_from([100, 100, 100, 99, 101, 50, 200]))
    def offer(self, data: Any, weigh: int) -> None:
        lot = self.pick_lot(data)
        state = self.lots[lot]
        signer = self.pick_actor(data, state.custodian, label="signer")
        to = self.pick_actor(data, "trader", "processor", "exporter", label="to")
        ev = self.w.offer(
            lot,
            to,
            actor=signer,
            mass_mg=max(1, state.mass_mg * weigh // 100),
            prev=self.pick_prev(data, state.head),
            post=False,
        )
        self.attempt(ev)

    @precondition(lambda self: self.lots)
    @rule(
        data=st.data(),
        kind=st.sampled_from(["accept", "accept", "reject", "cancel"]),
        weigh=st.sampled_from([100, 100, 99, 101, 30, 300]),
    )
    def answer(self, data: Any, kind: str, weigh: int) -> None:
        offered = sorted(x for x, s in self.lots.items() if s.offer is not None)
        if offered and data.draw(st.integers(0, 7), label="offered?"):
            lot: str = data.draw(st.sampled_from(offered), label="offered lot")
        else:
            lot = self.pick_lot(data)
        state = self.lots[lot]
        recipient = state.offer.to if state.offer is not None else state.custodian
        likely = state.custodian if kind == "cancel" else recipient
        signer = self.pick_actor(data, likely, label="signer")
        pending = state.offer.id if state.offer is not None else GHOST
        offer_id: str = data.draw(
            st.sampled_from([pending] * 8 + [self.seen[-1], GHOST]), label="offer id"
        )
        prev = self.pick_prev(data, state.head)
        if kind == "accept":
            ev = self.w.accept(
                lot,
                actor=signer,
                offer=offer_id,
                prev=prev,
                mass_mg=max(1, state.mass_mg * weigh // 100),
                post=False,
            )
        elif kind == "reject":
            ev = self.w.reject(lot, actor=signer, offer=offer_id, prev=prev, post=False)
        else:
            ev = self.w.cancel(lot, actor=signer, offer=offer_id, prev=prev, post=False)
        self.attempt(ev)

    @precondition(lambda self: self.lots)
    @rule(
        data=st.data(),
        shares=st.lists(st.integers(1, 80), min_size=1, max_size=3),
        process=st.sampled_from(PROCESSES),
        richer=st.sampled_from([0, 0, 0, 1, 100_000]),
    )
    def split(self, data: Any, shares: list[int], process: str, richer: int) -> None:
        lot = self.pick_lot(data)
        state = self.lots[lot]
        signer = self.pick_actor(data, state.custodian, label="signer")
        outputs = [
            F.out(
                self.new_id(data, signer),
                max(1, state.mass_mg * share // 100),
                min(10**6, state.fineness_ppm + richer),
                state.form,
            )
            for share in shares
        ]
        before = self._balance([lot])
        ev = self.w.process(
            [(lot, self.pick_prev(data, state.head))],
            outputs,
            process=process,
            actor=signer,
            post=False,
        )
        if self.attempt(ev):
            self._check_balance(before, outputs)

    @precondition(lambda self: any(s.status != "consumed" for s in self.lots.values()))
    @rule(
        data=st.data(),
        share=st.sampled_from([100, 100, 90, 101]),
        richer=st.sampled_from([0, 0, 1]),
    )
    def merge(self, data: Any, share: int, richer: int) -> None:
        live = [x for x, s in sorted(self.lots.items()) if s.status != "consumed"]
        first: str = data.draw(st.sampled_from(live), label="first")
        signer = self.lots[first].custodian
        mine = [x for x in live if self.lots[x].custodian == signer]
        chosen = data.draw(
            st.lists(st.sampled_from(mine), min_size=1, max_size=3, unique=True), label="inputs"
        )
        if data.draw(st.integers(0, 9), label="stranger?") == 0:
            stranger: str = data.draw(st.sampled_from(sorted(self.lots)), label="stranger")
            if stranger not in chosen:
                chosen.append(stranger)
        states = [self.lots[x] for x in chosen]
        mass = sum(s.mass_mg for s in states)
        fine = sum(s.mass_mg * s.fineness_ppm for s in states)
        out_mass = max(1, mass * share // 100)
        ppm = min(10**6, max(1, fine // out_mass) + richer)
        outputs = [F.out(self.new_id(data, signer), out_mass, ppm, states[0].form)]
        before = self._balance(chosen)
        ev = self.w.process(
            [(x, self.lots[x].head) for x in chosen],
            outputs,
            process="merging",
            actor=signer,
            post=False,
        )
        if self.attempt(ev):
            self._check_balance(before, outputs)

    @precondition(lambda self: self.lots)
    @rule(
        data=st.data(),
        delta=st.integers(-200_000, 200_000),
        weigh=st.sampled_from([None, None, 100, 99, 101, 150]),
    )
    def assay(self, data: Any, delta: int, weigh: int | None) -> None:
        lot = self.pick_lot(data)
        state = self.lots[lot]
        signer = self.pick_actor(data, "assayer", state.custodian, label="signer")
        ppm = min(10**6, max(1, state.fineness_ppm + delta))
        mass = None if weigh is None else max(1, state.mass_mg * weigh // 100)
        self.attempt(
            self.w.assay(
                lot,
                ppm,
                actor=signer,
                mass_mg=mass,
                prev=self.pick_prev(data, state.head),
                post=False,
            )
        )

    @precondition(lambda self: self.lots)
    @rule(data=st.data(), destination=st.sampled_from(["UG", "CH", "AE", "CD"]))
    def export(self, data: Any, destination: str) -> None:
        lot = self.pick_lot(data)
        state = self.lots[lot]
        signer = self.pick_actor(data, state.custodian, "exporter", label="signer")
        self.attempt(
            self.w.export(
                lot, destination, actor=signer, prev=self.pick_prev(data, state.head), post=False
            )
        )

    @precondition(lambda self: self.lots)
    @rule(data=st.data(), code=st.sampled_from(CODES))
    def flag(self, data: Any, code: str) -> None:
        lot = self.pick_lot(data)
        state = self.lots[lot]
        signer = self.pick_actor(data, "auditor", state.custodian, label="signer")
        self.attempt(
            self.w.flag(lot, code, actor=signer, prev=self.pick_prev(data, state.head), post=False)
        )

    @precondition(lambda self: any(s.flags for s in self.lots.values()))
    @rule(data=st.data(), outcome=st.sampled_from(["unfounded", "remediated"]))
    def resolve(self, data: Any, outcome: str) -> None:
        flagged = sorted(x for x, s in self.lots.items() if s.flags)
        lot: str = data.draw(st.sampled_from(flagged), label="flagged lot")
        state = self.lots[lot]
        ids = [f.id for f in state.flags] + [f"{GHOST}/bribery"]
        flag_id: str = data.draw(st.sampled_from(ids), label="flag")
        signer = self.pick_actor(data, "auditor", "registrar", label="signer")
        self.attempt(
            self.w.resolve(
                lot,
                flag_id,
                outcome,
                actor=signer,
                prev=self.pick_prev(data, state.head),
                post=False,
            )
        )

    @rule(
        subject=st.sampled_from(["trader2", "trader2", "trader", "processor", "registrar"]),
        roles=st.sampled_from([["auditor"], ["auditor"], ["trader"], ["trader", "exporter"], None]),
    )
    def change_roles_or_revoke(self, subject: str, roles: list[str] | None) -> None:
        if roles is None:
            self.attempt(self.w.revoke(subject, post=False))
        else:
            self.attempt(self.w.update_actor(subject, roles=roles, post=False))

    @rule(data=st.data())
    def repost(self, data: Any) -> None:
        env: dict[str, Any] = data.draw(st.sampled_from(self.accepted), label="repost")
        before = self.w.snapshot()
        result = self.w.append(env)
        assert result.existing is not None
        assert result.existing.event_id == F.Event(env).id
        assert self.w.snapshot() == before

    @rule(mass=st.integers(1, 10**6))
    def batch_with_a_bad_tail(self, mass: int) -> None:
        good = self.w.register_lot(self.new_id_plain("coop"), "site-a", mass_mg=mass, post=False)
        bad = self.w.register_lot(good.body["lot"], "site-a", mass_mg=mass, post=False)
        before = self.w.snapshot()
        try:
            self.w.ledger.append_batch([good.envelope, bad.envelope])
        except LedgerError as e:
            assert e.index == 1 and e.code == "duplicate_lot", e
        else:
            raise AssertionError("a batch registering one lot twice was accepted")
        assert self.w.snapshot() == before

    def new_id_plain(self, signer: str) -> str:
        self.serial += 1
        return f"{self.w.actor(signer).lot_prefix}B{self.serial:04d}"

    # -- balance of one processing ---------------------------------------------------------

    def _balance(self, lots: list[str]) -> tuple[int, int]:
        states = [self.lots[x] for x in lots if x in self.lots]
        return (sum(s.mass_mg for s in states), sum(s.mass_mg * s.fineness_ppm for s in states))

    @staticmethod
    def _check_balance(before: tuple[int, int], outputs: list[dict[str, Any]]) -> None:
        assert sum(o["mass_mg"] for o in outputs) <= before[0]
        assert sum(o["mass_mg"] * o["fineness_ppm"] for o in outputs) <= before[1]

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def mass_never_grows(self) -> None:
        total = sum(s.mass_mg for s in self.lots.values() if s.status != "consumed")
        assert total <= self.last_total + self.added
        self.last_total, self.added = total, 0

    @invariant()
    def one_custodian_with_a_custody_role(self) -> None:
        actors = self.w.ledger.state.actors
        held: Counter[str] = Counter()
        for lot in self.lots.values():
            assert (lot.status == "offered") == (lot.offer is not None)
            if lot.status == "consumed":
                continue
            custodian = actors.get(lot.custodian)
            assert custodian is not None, lot.custodian
            assert CUSTODY_ROLES.intersection(custodian.roles), (lot.lot, custodian.roles)
            held[custodian.id] += 1
        assert {a.id: a.held_lots for a in actors.values()} == {a: held[a] for a in actors}

    @invariant()
    def replay_from_scratch_agrees(self) -> None:
        fresh = F.replay(self.accepted, self.w.ledger.registrar_key, self.w.origin)
        assert fresh.leaves == self.w.ledger.leaves
        for name in ("actors", "sites", "lots"):
            mine, theirs = getattr(self.w.ledger.state, name), getattr(fresh.state, name)
            assert {k: v.model_dump() for k, v in mine.items()} == {
                k: v.model_dump() for k, v in theirs.items()
            }, name


LedgerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase

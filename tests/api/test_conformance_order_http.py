"""Section 6's codes and the order of its checks, through HTTP, case by case.

``tests/ledger/test_rules.py`` reaches every code a rule can give and every pair of checks
section 6 orders ("the first failure is reported") on the in-memory ledger. A server is
another path: a single ``POST /v1/events`` goes through the group commit and the store's
``append_each``, a batch through the store's ``append``. Here each of those cases is built
on a real app's log (``HttpWorld``) and sent both ways: the problem must carry the same
code, alone with no ``index``, in a batch of one with ``index`` 0, and change nothing.
Cases that need a world of their own (an empty log, another registrar) are in
``test_http_errors.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests import factories
from tests.ledger.test_rules import CASES, Refusal, _precedence_cases

from .conftest import Api, refusal


def _on_the_standard_log(case: Any) -> bool:
    """False for a case that builds a world of its own (an empty log, another registrar)."""
    made = case.values[1](factories.World.standard())
    return not (isinstance(made, Refusal) and made.world is not None)


ALL = [case for case in [*CASES, *_precedence_cases()] if _on_the_standard_log(case)]


#: the table of section 6: each code's status
STATUS = {
    code: status
    for status, codes in {
        400: "malformed",
        401: "bad_signature unknown_key key_inactive",
        403: "forbidden_role not_custodian not_operator not_recipient not_offerer "
        "licence_expired actor_revoked wrong_prefix",
        404: "unknown_actor unknown_site unknown_lot unknown_event unknown_flag not_found",
        409: "log_not_started stale_prev offer_pending no_pending_offer lot_consumed "
        "lot_on_hold site_red duplicate_lot duplicate_actor duplicate_site key_reused "
        "prefix_reused flag_not_open duplicate_event last_registrar holds_lots",
        413: "too_large",
        422: "schema future_time time_order mass_balance fine_gold_balance fineness_raise",
    }.items()
    for code in codes.split()
}


@pytest.mark.parametrize(("code", "make"), ALL)
def test_the_server_reports_what_the_rules_report(
    sqlite_api: Api, code: str, make: Callable[[Any], Any]
) -> None:
    api = sqlite_api
    made = make(api.world().standard())
    case = made if isinstance(made, Refusal) else Refusal(made)
    if case.now is not None:
        api.clock.now = case.now
    envelope = getattr(case.ev, "envelope", case.ev)
    refusal(api, lambda: api.post(envelope), STATUS[code], code)
    refusal(api, lambda: api.batch([envelope]), STATUS[code], code, index=0)

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

from tests.ledger.test_rules import STATUS, Refusal, on_the_standard_log

from .conftest import Api, refusal

ALL = on_the_standard_log()


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

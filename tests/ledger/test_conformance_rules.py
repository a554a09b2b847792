"""Conformance of PROTOCOL.md section 5, checked as an independent implementation would:
through the ledger, with the exact refusal ``code`` or the exact resulting state.

Each test names the sentence of section 5 it pins; these are the sentences a review of
the implementation against the page found it did not follow, or followed only by chance.
"""

from __future__ import annotations

import pytest

from tests import factories as F

World = F.World


# ---------------------------------------------------------------------------
# Site indicators: "(all optional; counts and money only)" and "Counts are integers ≥ 0"


@pytest.mark.parametrize(
    ("gbv_reports", "code"),
    [
        ({"count": 0, "period_days": 0}, None),  # a count: 0 is allowed
        ({"count": 2, "period_days": 0}, None),
        ({"count": 0, "period_days": 30}, None),
        ({"count": 0, "period_days": -1}, "schema"),
        ({"count": -1, "period_days": 30}, "schema"),
    ],
)
def test_gbv_reports_period_days_is_a_count(gbv_reports: dict[str, int], code: str | None) -> None:
    w = World.standard()
    ev = w.assess_site("site-a", "green", gbv_reports=gbv_reports, post=False)
    if code is None:
        w.append(ev)
        assessment = w.site("site-a").assessment
        assert assessment is not None
        assert assessment.event_id == ev.id
        assert assessment.indicators == {"gbv_reports": gbv_reports}
    else:
        assert w.code(ev) == code

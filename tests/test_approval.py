"""Approval governance: expiry, review and completeness, judged on days; approved_targets on real ledgers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from harness.checks import run_checks
from harness.core.approval import approval_status
from harness.core.model import FallbackTarget
from harness.core.verdict import Verdict
from tests.ledger_builder import LedgerBuilder, make_scenario, scenario_dict

GOVERNED = {"target": "f-eu", "equivalence": "equivalent", "approved_by": "platform-security",
            "approval_ref": "CHG-1234", "accountable": "assistant-team", "mechanism_owner": "platform-gateway",
            "approved_on": "2025-02-01", "review_by": "2025-12-31", "expires": "2026-01-31"}
DAYS = ("approved_on", "review_by", "expires")


def target(**changes: object) -> FallbackTarget:
    data = {**GOVERNED, **changes}
    dated = {k: date.fromisoformat(v) if k in DAYS and isinstance(v, str) else v for k, v in data.items()}
    return FallbackTarget.model_validate({k: v for k, v in dated.items() if v is not None})


@pytest.mark.parametrize(("day", "state", "detail"), [
    ("2025-12-31", "valid", "valid until 2026-01-31"),               # the review day itself
    ("2026-01-01", "review_overdue", "overdue for review (review_by 2025-12-31)"),
    ("2026-01-31", "review_overdue", "overdue for review (review_by 2025-12-31)"),  # the expiry day still holds
    ("2026-02-01", "expired", "expired on 2026-01-31"),
])
def test_expiry_and_review_boundaries(day, state, detail):
    status = approval_status(target(), date.fromisoformat(day), governed=True)
    assert (status.state, status.detail) == (state, detail)
    assert status.holds is (state in ("valid", "review_overdue"))


def test_incomplete_only_when_governed():
    bare = target(accountable=None, approved_on=None, review_by=None, expires=None)
    day = date(2026, 1, 1)
    status = approval_status(bare, day, governed=True)
    assert status.state == "incomplete" and not status.holds
    assert status.detail == "incomplete: no approved_on, accountable, review_by or expires"
    assert approval_status(bare, day, governed=False).state == "valid"  # an inline approval, as before
    # Either date is enough; a missing mechanism owner alone is enough to be incomplete.
    assert approval_status(target(review_by=None), day, governed=True).state == "valid"
    assert approval_status(target(expires=None), day, governed=True).state == "review_overdue"
    assert approval_status(target(mechanism_owner=None), day, governed=True).detail == \
        "incomplete: no mechanism_owner"
    # An expiry past is reported as such even when fields are missing: the date is the stronger fact.
    assert approval_status(target(accountable=None), date(2026, 3, 1), governed=True).state == "expired"


# --- approved_targets, as of the run's own day ---------------------------------------------------

def _day_t0(day: str) -> float:
    """A run start at 23:59:59 UTC on `day`: the next second is the next day."""
    return datetime.fromisoformat(f"{day}T23:59:59+00:00").astimezone(UTC).timestamp()


def _judge(tmp_path, data, day: str):
    b = LedgerBuilder(tmp_path / f"ledger-{day}.jsonl", make_scenario(data), t0=_day_t0(day))
    b.run_start()
    b.fault("primary-down", 1, 10, ["p-eu"])
    b.exchange("r001", 2, [{"provider": "p-eu", "outcome": "error", "status": 503, "fault": "primary-down"},
                           ("f-eu", "ok")])
    b.exchange("r002", 3, [{"provider": "p-eu", "outcome": "error", "status": 503, "fault": "primary-down"},
                           ("f-own", "ok")])
    b.run_end()
    [res] = run_checks(b.scenario, b.history(), ["approved_targets"])
    return res


def _expiring(data, expires: str) -> dict:
    data["policy"]["routes"]["chat"]["fallbacks"][0].update(approval_ref="CHG-1234",
                                                             expires=date.fromisoformat(expires))
    return data


def test_expired_approval_makes_a_fallback_unapproved_with_the_date(tmp_path):
    data = _expiring(scenario_dict(), "2026-01-31")
    res = _judge(tmp_path, data, "2026-02-01")
    assert res.verdict is Verdict.FAIL
    [v] = res.violations
    assert v.message == "fallback to f-eu on route chat: approval CHG-1234 expired on 2026-01-31"
    assert v.request_ids == ["r001"]  # f-own has no expiry: still approved
    assert v.expected == {"approval_ref": "CHG-1234", "state": "expired", "as_of": "2026-02-01",
                          "expires": "2026-01-31"}
    assert res.stats["unapproved_calls"] == 1


def test_the_expiry_day_itself_still_holds_and_an_old_ledger_keeps_its_verdict(tmp_path):
    # The run started at 23:59:59 on the expiry day (UTC): approved, whatever today is.
    res = _judge(tmp_path, _expiring(scenario_dict(), "2026-01-31"), "2026-01-31")
    assert res.verdict is Verdict.PASS, res.summary


def test_inline_approval_without_governance_is_judged_as_before(tmp_path):
    res = _judge(tmp_path, scenario_dict(), "2099-01-01")
    assert res.verdict is Verdict.PASS, res.summary

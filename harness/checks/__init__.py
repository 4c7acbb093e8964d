"""Checks: pure functions of (Scenario, History) -> CheckResult, registered by name on import.

Each check is written once, as an accumulator (harness.checks.feed) fed one joined record at a time,
so the same code judges a History in memory (`run_checks`) and a ledger streamed from disk in bounded
memory (`stream_checks`). `judge_results` applies the rules every check shares, so no check has to
remember them: no traffic proves nothing, and an incomplete run cannot pass (though a violation it
saw is real).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from harness.checks.approved_targets import ApprovedTargets
from harness.checks.attempt_budget import AttemptBudget
from harness.checks.fail_closed import FailClosed
from harness.checks.fault_effective import FaultEffective
from harness.checks.feed import Accumulator, RunFrame, feed_history, history_frame
from harness.checks.logged import Logged
from harness.checks.response_integrity import ResponseIntegrity
from harness.checks.reversible import Reversible
from harness.checks.steady_state import SteadyState
from harness.checks.trigger_conditions import TriggerConditions
from harness.checks.trust_boundary import TrustBoundary
from harness.core.model import CHECK_NAMES, Scenario
from harness.core.registry import RegisteredCheck, registered
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import History

NO_TRAFFIC = "no traffic was recorded: nothing proven"
ACCUMULATORS: dict[str, type[Accumulator]] = {kind.name: kind for kind in (
    ApprovedTargets, TrustBoundary, FailClosed, TriggerConditions, Logged, Reversible, SteadyState, AttemptBudget,
    ResponseIntegrity, FaultEffective)}

__all__ = ["ACCUMULATORS", "NO_TRAFFIC", "descriptions", "judge_results", "run_checks", "selected"]


def descriptions() -> dict[str, RegisteredCheck]:
    """Every registered check, in CHECK_NAMES order."""
    checks = registered()
    return {name: checks[name] for name in CHECK_NAMES if name in checks}


def incomplete_reason(run_end: dict[str, Any] | None) -> str | None:
    """'run <status>: <reason>' when the run did not complete, else None."""
    if run_end is None:
        return "run incomplete: the ledger has no run_end event"
    if run_end.get("status") == "completed":
        return None
    return f"run {run_end.get('status') or 'incomplete'}: {run_end.get('reason') or 'no reason given'}"


def selected(scenario: Scenario, names: list[str] | None = None) -> list[str]:
    """The named checks (default: the scenario's) in CHECK_NAMES order; unknown names are a ValueError."""
    checks = descriptions()
    wanted = set(scenario.check_names() if names is None else names)
    unknown = sorted(wanted - set(checks))
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(checks)}")
    return [name for name in CHECK_NAMES if name in wanted]


def accumulators(frame: RunFrame, names: Sequence[str]) -> list[Accumulator]:
    return [ACCUMULATORS[name](frame) for name in names]


def judge_results(results: list[CheckResult], requests: int, run_end: dict[str, Any] | None) -> list[CheckResult]:
    """The rules every check shares, applied to what the accumulators found."""
    checks = descriptions()
    incomplete = incomplete_reason(run_end)
    out: list[CheckResult] = []
    for outcome in results:
        evidences = checks[outcome.check].evidences
        if not requests:
            out.append(CheckResult(check=outcome.check, verdict=Verdict.UNKNOWN, summary=NO_TRAFFIC,
                                   evidences=evidences))
            continue
        outcome = replace(outcome, evidences=evidences)
        if incomplete and outcome.verdict is Verdict.PASS:
            # What passed so far may fail on the traffic the run never sent.
            outcome = replace(outcome, verdict=Verdict.UNKNOWN, summary=incomplete,
                              stats={**outcome.stats, "summary_if_completed": outcome.summary})
        out.append(outcome)
    return out


def run_checks(scenario: Scenario, history: History, names: list[str] | None = None) -> list[CheckResult]:
    """Run the named checks (default: the scenario's) in CHECK_NAMES order, in one pass over the History."""
    wanted = selected(scenario, names)
    frame = history_frame(scenario, history)
    feeder = feed_history(scenario, history, accumulators(frame, wanted))
    # A check that raises is a bug in the check: let it surface, never turn it into a verdict.
    return judge_results(feeder.finish(frame), feeder.requests, history.run_end)

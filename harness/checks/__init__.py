"""Checks: each is one module of this package, an accumulator (harness.ledger.feed) registered with
`@check(...)` (harness.core.registry), which declares everything about it.

The same accumulator judges a History in memory (`run_checks`) and a ledger streamed from disk in
bounded memory (harness.ledger.feed.feed_ledger). `judge_results` applies the rules every check
shares, so no check has to remember them: no traffic proves nothing, and an incomplete run cannot pass
(though a violation it saw is real).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from harness.core.model import Scenario
from harness.core.registry import checks
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, RunFrame, feed_history_run
from harness.ledger.history import History

NO_TRAFFIC = "no traffic was recorded: nothing proven"

__all__ = ["NO_TRAFFIC", "accumulators", "judge_results", "run_checks", "selected"]


def incomplete_reason(run_end: dict[str, Any] | None) -> str | None:
    """'run <status>: <reason>' when the run did not complete, else None."""
    if run_end is None:
        return "run incomplete: the ledger has no run_end event"
    if run_end.get("status") == "completed":
        return None
    return f"run {run_end.get('status') or 'incomplete'}: {run_end.get('reason') or 'no reason given'}"


def selected(scenario: Scenario, names: list[str] | None = None) -> list[str]:
    """The named checks (default: the scenario's) in report order; unknown names are a ValueError."""
    known = checks()
    wanted = set(scenario.check_names() if names is None else names)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [name for name in known if name in wanted]


def accumulators(frame: RunFrame, names: Sequence[str]) -> list[Accumulator]:
    known = checks()
    return [known[name].accumulator(frame) for name in names]


def judge_results(results: list[CheckResult], requests: int, run_end: dict[str, Any] | None) -> list[CheckResult]:
    """The rules every check shares, applied to what the accumulators found."""
    known = checks()
    incomplete = incomplete_reason(run_end)
    out: list[CheckResult] = []
    for outcome in results:
        evidences = known[outcome.check].evidences
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
    """Run the named checks (default: the scenario's) on a History in memory, in one pass."""
    wanted = selected(scenario, names)
    fed = feed_history_run(scenario, history, lambda frame: accumulators(frame, wanted))
    # A check that raises is a bug in the check: let it surface, never turn it into a verdict.
    return judge_results(fed.results, fed.totals.requests, fed.run_end)

"""Checks: pure functions of (Scenario, History) -> CheckResult, registered by name on import.

`run_checks` applies the rules every check shares, so no check has to remember them:
no traffic proves nothing, and an incomplete run cannot pass (though a violation it saw is real).
"""

from __future__ import annotations

from dataclasses import replace

# Imported for their side effect: each module registers its check with harness.core.registry.
from harness.checks import (  # noqa: F401
    approved_targets,
    attempt_budget,
    fail_closed,
    fault_effective,
    logged,
    response_integrity,
    reversible,
    steady_state,
    trigger_conditions,
    trust_boundary,
)
from harness.core.model import CHECK_NAMES, Scenario
from harness.core.registry import RegisteredCheck, registered
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import History

NO_TRAFFIC = "no traffic was recorded: nothing proven"

__all__ = ["NO_TRAFFIC", "descriptions", "run_checks"]


def descriptions() -> dict[str, RegisteredCheck]:
    """Every registered check, in CHECK_NAMES order."""
    checks = registered()
    return {name: checks[name] for name in CHECK_NAMES if name in checks}


def incomplete_reason(history: History) -> str | None:
    """'run <status>: <reason>' when the run did not complete, else None."""
    end = history.run_end
    if end is None:
        return "run incomplete: the ledger has no run_end event"
    if end.get("status") == "completed":
        return None
    return f"run {end.get('status') or 'incomplete'}: {end.get('reason') or 'no reason given'}"


def run_checks(scenario: Scenario, history: History, names: list[str] | None = None) -> list[CheckResult]:
    """Run the named checks (default: the scenario's) in CHECK_NAMES order."""
    checks = descriptions()
    wanted = set(scenario.check_names() if names is None else names)
    unknown = sorted(wanted - set(checks))
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(checks)}")
    results: list[CheckResult] = []
    incomplete = incomplete_reason(history)
    for name in CHECK_NAMES:
        if name not in wanted:
            continue
        registered_check = checks[name]
        if not history.requests:
            results.append(CheckResult(check=name, verdict=Verdict.UNKNOWN, summary=NO_TRAFFIC,
                                       evidences=registered_check.evidences))
            continue
        # A check that raises is a bug in the check: let it surface, never turn it into a verdict.
        outcome = registered_check.fn(scenario, history)
        outcome = replace(outcome, evidences=registered_check.evidences)
        if incomplete and outcome.verdict is Verdict.PASS:
            # What passed so far may fail on the traffic the run never sent.
            outcome = replace(outcome, verdict=Verdict.UNKNOWN, summary=incomplete,
                              stats={**outcome.stats, "summary_if_completed": outcome.summary})
        results.append(outcome)
    return results

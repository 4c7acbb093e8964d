"""steady_state: with a healthy primary, nothing falls back."""

from __future__ import annotations

from harness.checks.common import (
    Groups,
    RequestScan,
    Windows,
    plural,
    result,
    verdict_of,
    violation_clause,
)
from harness.core.model import Scenario
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import History

NAME = "steady_state"


@check(NAME, evidences=("reversibility", "accountability"))
def steady_state(scenario: Scenario, history: History) -> CheckResult:
    """No fallback call happens outside a fault window on the request's primary (plus the failback grace)."""
    grace = scenario.policy.reversibility.failback_within_s
    # A window stretched by the grace: falling back until the gateway notices the heal is allowed.
    windows = Windows(history.windows, grace_s=grace)
    groups = Groups()
    scan = RequestScan(scenario, history)
    judged = fallback_calls = 0
    for request, primary, calls in scan:
        steady = not windows.contains(primary, request["ts"])
        violated = False
        for call in calls:
            provider = call["provider"]
            if provider == primary:
                continue
            if windows.contains(primary, call["ts"]):
                continue
            fallback_calls += 1
            violated = True
            route = request["route"]
            group = groups.add(("outside", route, provider), request["id"],
                               f"route {route} fell back from {primary} to {provider} outside any fault window",
                               expected={"fault_windows_on": primary, "failback_within_s": grace},
                               observed={"route": route, "provider": provider,
                                         "first_at_s": history.rel(call["ts"])})
            group.observed["first_at_s"] = min(group.observed["first_at_s"], history.rel(call["ts"]))
        # Steady-state requests are the judged ones; a violating request is judged whatever its send time.
        judged += steady or violated

    stats = {**scan.stats(), "judged": judged, "fallback_calls_outside_windows": fallback_calls,
             "windows": len(history.windows), "failback_within_s": grace}
    verdict = verdict_of(groups, judged)
    if verdict is Verdict.FAIL:
        summary = (f"{plural(fallback_calls, 'fallback call')} outside any fault window on the primary: "
                   f"{violation_clause(groups)} ({plural(judged, 'request')} judged)")
    elif verdict is Verdict.PASS:
        summary = f"no fallback outside fault windows ({plural(judged, 'steady-state request')} judged)"
    else:
        summary = (f"every request was sent during a fault window on its primary "
                   f"({plural(scan.requests, 'request')}): no steady state to judge")
    return result(NAME, verdict, summary, groups, stats)

"""attempt_budget: a request never costs more upstream attempts than the policy allows (no retry storms)."""

from __future__ import annotations

from collections import Counter

from harness.checks.common import (
    Groups,
    RequestScan,
    Windows,
    all_of,
    mean,
    plural,
    result,
    verdict_of,
    violation_clause,
)
from harness.core.model import Scenario
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import History

NAME = "attempt_budget"


@check(NAME, evidences=("accountability",))
def attempt_budget(scenario: Scenario, history: History) -> CheckResult:
    """Every request made at most limits.max_upstream_attempts upstream calls."""
    limit = scenario.policy.limits.max_upstream_attempts
    windows = Windows(history.windows)
    groups = Groups()
    scan = RequestScan(scenario, history)
    histogram: Counter[int] = Counter()
    in_window: Counter[int] = Counter()  # primary calls per request sent during a window on its primary
    with_calls = over = 0
    for request, primary, calls in scan:
        attempts = len(calls)
        histogram[attempts] += 1
        if attempts:
            with_calls += 1
        if windows.contains(primary, request["ts"]):
            in_window[sum(1 for c in calls if c["provider"] == primary)] += 1
        if attempts <= limit:
            continue
        over += 1
        route = request["route"]
        group = groups.add(("over", route), request["id"],
                           f"requests on route {route} made more than {limit} upstream attempts",
                           expected={"max_upstream_attempts": limit},
                           observed={"route": route, "max_attempts": attempts})
        group.observed["max_attempts"] = max(group.observed["max_attempts"], attempts)

    window_requests = sum(in_window.values())
    stats = {
        **scan.stats(), "requests_with_calls": with_calls, "over_budget": over, "limit": limit,
        "max_attempts": max(histogram) if histogram else 0,
        "attempts_histogram": {str(k): v for k, v in sorted(histogram.items())},
        "primary_calls_in_windows": {
            "requests": window_requests,
            "max": max(in_window) if in_window else 0,
            "mean": mean(sum(k * v for k, v in in_window.items()), window_requests),
            "histogram": {str(k): v for k, v in sorted(in_window.items())},
        },
    }
    verdict = verdict_of(groups, with_calls)
    if verdict is Verdict.FAIL:
        summary = (f"{over} of {plural(with_calls, 'request')} exceeded {limit} upstream attempts "
                   f"(max {stats['max_attempts']}): {violation_clause(groups)}")
    elif verdict is Verdict.PASS:
        summary = (f"{all_of(with_calls, 'request')} stayed within {limit} upstream attempts "
                   f"(max {stats['max_attempts']})")
    else:
        summary = f"no request reached a provider ({plural(scan.requests, 'request')}): nothing to judge"
    return result(NAME, verdict, summary, groups, stats)

"""fail_closed: requests the policy marks sensitive are never rerouted."""

from __future__ import annotations

from harness.checks.common import (
    Groups,
    RequestScan,
    Sensitivity,
    Windows,
    all_of,
    plural,
    result,
    verdict_of,
    violation_clause,
)
from harness.core.model import Scenario
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import History

NAME = "fail_closed"


@check(NAME, evidences=("accountability", "least privilege of the non-human identity"))
def fail_closed(scenario: Scenario, history: History) -> CheckResult:
    """Sensitive requests (by request class, data class or tenant) are never sent to a fallback target."""
    sensitivity = Sensitivity(scenario.policy.fail_closed)
    groups = Groups()
    if not sensitivity.declared:
        return result(NAME, Verdict.UNKNOWN, "the policy declares nothing fail-closed: nothing to judge", groups,
                      {"requests": len(history.requests)})
    windows = Windows(history.windows)
    scan = RequestScan(scenario, history)
    sensitive = judged = rerouted = 0
    for request, primary, calls in scan:
        reason = sensitivity.reason(request)
        if reason is None:
            continue
        sensitive += 1
        primary_failed = had_fallback = False
        for call in calls:
            provider = call["provider"]
            if provider == primary:
                primary_failed = primary_failed or call["outcome"] != "ok"
                continue
            had_fallback = True
            route = request["route"]
            groups.add(("rerouted", route, provider, reason), request["id"],
                       f"sensitive request ({reason}) on route {route} was rerouted to {provider}",
                       expected=f"fail closed: no fallback for {reason}",
                       observed={"route": route, "provider": provider, "primary": primary})
        rerouted += had_fallback
        # Only a request whose primary was down could have been rerouted; a reroute is judged regardless.
        if primary_failed or had_fallback or windows.contains(primary, request["ts"]):
            judged += 1

    stats = {**scan.stats(), "sensitive_requests": sensitive, "judged": judged, "rerouted": rerouted}
    verdict = verdict_of(groups, judged)
    if verdict is Verdict.FAIL:
        summary = (f"{rerouted} of {plural(judged, 'sensitive request')} facing a failing primary were rerouted: "
                   f"{violation_clause(groups)}")
    elif verdict is Verdict.PASS:
        summary = f"{all_of(judged, 'sensitive request')} facing a failing primary failed closed"
    else:
        summary = (f"no sensitive request faced a failing primary ({plural(sensitive, 'sensitive request')} "
                   f"in {plural(scan.requests, 'request')}): nothing to judge")
    return result(NAME, verdict, summary, groups, stats)

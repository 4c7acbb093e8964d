"""trigger_conditions: a fallback happens only after the primary failed with a cause in `fallback_on`."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

from harness.checks.common import (
    Cause,
    Event,
    Groups,
    RequestScan,
    all_of,
    cause_label,
    cause_of,
    plural,
    result,
    verdict_of,
    violation_clause,
)
from harness.core.model import Scenario
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import History

NAME = "trigger_conditions"


class _PrimaryTimeline:
    """Calls per provider sorted by time, built only if a gateway skipped a primary (cooldown)."""

    def __init__(self, history: History) -> None:
        self._history = history
        self._built: dict[str, tuple[list[float], list[Cause]]] | None = None

    def last_before(self, provider: str, ts: float) -> Cause | None:
        """Cause of the most recent call (of any request) to `provider` strictly before `ts`."""
        if self._built is None:
            per: dict[str, list[tuple[float, Cause]]] = {}
            for calls in (*self._history.upstream.values(), self._history.orphan_upstream):
                for call in calls:
                    per.setdefault(call["provider"], []).append((call["ts"], cause_of(call)))
            self._built = {}
            for name, items in per.items():
                items.sort(key=lambda item: item[0])
                self._built[name] = ([t for t, _ in items], [c for _, c in items])
        times, causes = self._built.get(provider, ([], []))
        index = bisect_left(times, ts)
        return causes[index - 1] if index else None


def _expected(fallback_on: list[int | str]) -> dict[str, list[str]]:
    return {"fallback_on": [cause_label(c) for c in fallback_on]}


@check(NAME, evidences=("accountability",))
def trigger_conditions(scenario: Scenario, history: History) -> CheckResult:
    """A fallback follows a primary failure whose cause the policy lists in fallback_on, and nothing else."""
    fallback_on = scenario.policy.fallback_on
    allowed = set(fallback_on)
    expected = _expected(fallback_on)
    timeline = _PrimaryTimeline(history)
    groups = Groups()
    scan = RequestScan(scenario, history)
    judged = fallback_requests = skipped_primary = 0
    primary_failures: Counter[str] = Counter()
    for request, primary, calls in scan:
        first_fallback: Event | None = None
        last_primary: Event | None = None  # the latest primary call before the first fallback
        primary_failed = False
        for call in calls:
            if call["provider"] == primary:
                if call["outcome"] != "ok":
                    primary_failed = True
                    primary_failures[cause_label(cause_of(call))] += 1
                if first_fallback is None:
                    last_primary = call
            elif first_fallback is None:
                first_fallback = call
        if first_fallback is None:
            judged += primary_failed
            continue
        judged += 1
        fallback_requests += 1
        route, target = request["route"], first_fallback["provider"]
        if last_primary is not None:
            cause = cause_of(last_primary)
            if cause in allowed:
                continue
            what = "although the primary answered ok" if cause == "ok" else f"on {cause}, which is not in fallback_on"
            groups.add(("cause", route, primary, cause_label(cause)), request["id"],
                       f"route {route} fell back from {primary} to {target} {what}", expected=expected,
                       observed={"route": route, "primary": primary, "cause": cause_label(cause)})
            continue
        # No primary call of its own: legitimate only if the primary was in cooldown after a real failure.
        skipped_primary += 1
        previous = timeline.last_before(primary, first_fallback["ts"])
        if previous is not None and previous in allowed:
            continue
        observed_cause = "no earlier call" if previous is None else cause_label(previous)
        groups.add(("no-failure", route, primary), request["id"],
                   f"route {route} fell back without a failing primary ({primary} was not called)",
                   expected=expected,
                   observed={"route": route, "primary": primary, "last_primary_call_before": observed_cause})

    stats = {**scan.stats(), "judged": judged, "fallback_requests": fallback_requests,
             "fallbacks_without_own_primary_call": skipped_primary,
             "primary_failures_by_cause": dict(sorted(primary_failures.items()))}
    verdict = verdict_of(groups, judged)
    if verdict is Verdict.FAIL:
        summary = (f"{groups.total} of {plural(fallback_requests, 'fallback request')} fell back on a cause outside "
                   f"fallback_on: {violation_clause(groups)}")
    elif verdict is Verdict.PASS:
        summary = (f"{all_of(fallback_requests, 'fallback request')} followed a primary failure in fallback_on "
                   f"({plural(judged, 'request')} judged)")
    else:
        summary = f"no primary failed and no request fell back in {plural(scan.requests, 'request')}: nothing to judge"
    return result(NAME, verdict, summary, groups, stats)

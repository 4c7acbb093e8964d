"""attempt_budget: a request never costs more upstream attempts than the policy allows (no retry storms)."""

from __future__ import annotations

from collections import Counter

from harness.checks.common import Groups, Windows, all_of, mean, plural, result, verdict_of, violation_clause
from harness.core.frameworks import (
    ACCOUNTABILITY,
    DEPLOY_LAYER,
    MAESTRO,
    NIST,
    OWASP_AGENTIC,
    OWASP_LLM,
    OWASP_THREATS,
    RESILIENT,
)
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

NAME = "attempt_budget"


@check(
    name=NAME,
    description="Every request made at most limits.max_upstream_attempts upstream calls.",
    evidences=(ACCOUNTABILITY,),
    severity="minor",
    frameworks={
        NIST: ("MANAGE function", RESILIENT),
        OWASP_AGENTIC: ("Cascading Failures",),
        OWASP_LLM: ("Unbounded Consumption",),
        OWASP_THREATS: ("Resource Overload",),
        MAESTRO: (DEPLOY_LAYER,),
    },
    order=80,
)
class AttemptBudget(Accumulator):

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.limit = self.scenario.policy.limits.max_upstream_attempts
        self.windows = Windows(frame.windows)
        self.groups = Groups()
        self.histogram: Counter[int] = Counter()
        self.in_window: Counter[int] = Counter()  # primary calls per request sent during a window on its primary
        self.with_calls = self.over = 0

    def record(self, rec: Record) -> None:
        calls, primary = rec.calls, rec.primary
        attempts = len(calls)
        self.histogram[attempts] += 1
        if attempts:
            self.with_calls += 1
        if self.windows.at(primary, rec.request["ts"]):
            if attempts == 1:
                self.in_window[1 if calls[0]["provider"] == primary else 0] += 1
            else:
                to_primary = 0
                for call in calls:
                    if call["provider"] == primary:
                        to_primary += 1
                self.in_window[to_primary] += 1
        if attempts <= self.limit:
            return
        self.over += 1
        route, limit = rec.route, self.limit
        group = self.groups.add(("over", route), rec.rid,
                                f"requests on route {route} made more than {limit} upstream attempts",
                                expected={"max_upstream_attempts": limit},
                                observed={"route": route, "max_attempts": attempts})
        group.observed["max_attempts"] = max(group.observed["max_attempts"], attempts)

    def plain(self, batch: list[Plain]) -> None:
        """One attempt each (within any limit), to the primary: `record` for them, counted."""
        self.histogram[1] += len(batch)
        self.with_calls += len(batch)
        inside = self.windows.count_inside(batch)
        if inside:
            self.in_window[1] += inside

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups, histogram, in_window, limit, with_calls = (self.groups, self.histogram, self.in_window, self.limit,
                                                           self.with_calls)
        window_requests = sum(in_window.values())
        stats = {
            **totals.scan_stats(), "requests_with_calls": with_calls, "over_budget": self.over, "limit": limit,
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
            summary = (f"{self.over} of {plural(with_calls, 'request')} exceeded {limit} upstream attempts "
                       f"(max {stats['max_attempts']}): {violation_clause(groups)}")
        elif verdict is Verdict.PASS:
            summary = (f"{all_of(with_calls, 'request')} stayed within {limit} upstream attempts "
                       f"(max {stats['max_attempts']})")
        else:
            summary = f"no request reached a provider ({plural(totals.routed, 'request')}): nothing to judge"
        return result(NAME, verdict, summary, groups, stats)


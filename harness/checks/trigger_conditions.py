"""trigger_conditions: a fallback happens only after the primary failed with a cause in `fallback_on`."""

from __future__ import annotations

from collections import Counter, deque

from harness.checks.common import (
    Event,
    Groups,
    all_of,
    cause_label,
    cause_of,
    listed,
    plural,
    result,
    verdict_of,
    violation_clause,
)
from harness.checks.cooldown import Question, Timeline, flush
from harness.core.frameworks import ACCOUNTABILITY, DEPLOY_LAYER, MAESTRO, NIST, VALID
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

NAME = "trigger_conditions"


@check(
    name=NAME,
    description="A fallback follows a primary failure whose cause the policy lists in fallback_on, and nothing else.",
    evidences=(ACCOUNTABILITY,),
    severity="normal",
    frameworks={
        NIST: ("MEASURE function", "MANAGE function", VALID),
        MAESTRO: (DEPLOY_LAYER,),
    },
    order=40,
)
class TriggerConditions(Accumulator):
    records = "eventful"  # a request whose calls all answered ok from the primary changes nothing here

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        fallback_on = self.scenario.policy.fallback_on
        self.allowed = set(fallback_on)
        self.expected = {"fallback_on": [cause_label(c) for c in fallback_on]}
        primaries = {route.primary for route in self.scenario.policy.routes.values()}
        self.timeline = Timeline(self.allowed, primaries, frame.rel)
        self.questions: deque[Question] = deque()
        self.groups = Groups()
        self.judged = self.fallback_requests = self.skipped_primary = 0
        self.primary_failures: Counter[str] = Counter()

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        self.timeline.calls(calls, owner, rank)

    def plain(self, batch: list[Plain]) -> None:
        self.timeline.plain(batch)  # a plain request is no fallback and no failure: only its call counts

    def record(self, rec: Record) -> None:
        primary = rec.primary
        first_fallback: Event | None = None
        last_primary: Event | None = None  # the latest primary call before the first fallback
        primary_failed = False
        for call in rec.calls:
            if call["provider"] == primary:
                if call["outcome"] != "ok":
                    primary_failed = True
                    self.primary_failures[cause_label(cause_of(call))] += 1
                if first_fallback is None:
                    last_primary = call
            elif first_fallback is None:
                first_fallback = call
        if first_fallback is None:
            self.judged += primary_failed
            return
        self.judged += 1
        self.fallback_requests += 1
        route, target = rec.route, first_fallback["provider"]
        if last_primary is not None:
            cause = cause_of(last_primary)
            if listed(cause, last_primary, self.allowed):
                return
            what = "although the primary answered ok" if cause == "ok" else f"on {cause}, which is not in fallback_on"
            self.groups.add(("cause", route, primary, cause_label(cause)), rec.rid,
                            f"route {route} fell back from {primary} to {target} {what}", expected=self.expected,
                            observed={"route": route, "primary": primary, "cause": cause_label(cause)})
            return
        # No primary call of its own: legitimate only if the primary was in cooldown after a real failure.
        self.skipped_primary += 1
        self.questions.append(self.timeline.ask(primary, rec.request, first_fallback["ts"]))

    def advance(self, watermark: float, settled: float, audited: float) -> None:
        self.timeline.advance(settled)
        flush(self.questions, self._answered)

    def _answered(self, question: Question) -> None:
        if question.answer is None:
            return
        request = question.request
        route = request["route"]
        primary = self.scenario.policy.routes[route].primary
        why, evidence = question.answer
        self.groups.add(("no-failure", route, primary, why), request["id"],
                        f"route {route} fell back without a failing primary ({primary} was not called and {why})",
                        expected=self.expected, observed={"route": route, "primary": primary, **evidence})

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        self.advance(float("inf"), float("inf"), float("inf"))
        groups, judged, fallback_requests = self.groups, self.judged, self.fallback_requests
        stats = {**totals.scan_stats(), "judged": judged, "fallback_requests": fallback_requests,
                 "fallbacks_without_own_primary_call": self.skipped_primary,
                 "primary_failures_by_cause": dict(sorted(self.primary_failures.items()))}
        verdict = verdict_of(groups, judged)
        if verdict is Verdict.FAIL:
            summary = (f"{groups.total} of {plural(fallback_requests, 'fallback request')} fell back on a cause "
                       f"outside fallback_on: {violation_clause(groups)}")
        elif verdict is Verdict.PASS and fallback_requests:
            summary = (f"{all_of(fallback_requests, 'fallback request')} followed a primary failure in fallback_on "
                       f"({plural(judged, 'request')} judged)")
        elif verdict is Verdict.PASS:
            causes = ", ".join(f"{cause} x{n}" for cause, n in sorted(self.primary_failures.items()))
            summary = f"no request fell back; {plural(judged, 'primary failure')} ({causes}) were passed on"
        else:
            summary = (f"no primary failed and no request fell back in {plural(totals.routed, 'request')}: "
                       f"nothing to judge")
        return result(NAME, verdict, summary, groups, stats)


"""trigger_conditions: a fallback happens only after the primary failed with a cause in `fallback_on`."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from typing import Any

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


# Scopes a gateway may cool a failed primary down in: all its traffic, or only requests sharing some of the
# failed request's attributes (a tenant's quota, a region's capacity). Narrowest first, for the evidence.
_ATTRS = ("tenant", "region", "request_class")
_SCOPES: tuple[tuple[int, ...], ...] = tuple(sorted(
    (tuple(i for i in range(len(_ATTRS)) if mask >> i & 1) for mask in range(2 ** len(_ATTRS))),
    key=lambda scope: -len(scope)))
Answer = tuple[float, float, Cause]  # (call ts, when the gateway surely knew its outcome, cause)


class _ScopeTimeline:
    """One scope's calls to one primary: trigger failures, and answers with a suffix minimum of their known time."""

    def __init__(self) -> None:
        self.triggers: list[float] = []
        self.answers: list[Answer] = []
        self.earliest_known: list[Answer] = []  # [j] = the answer at or after j the gateway learned first

    def seal(self) -> None:
        self.triggers.sort()
        self.answers.sort(key=lambda a: a[0])
        best: Answer | None = None
        suffix: list[Answer] = []
        for answer in reversed(self.answers):
            best = answer if best is None or answer[1] < best[1] else best
            suffix.append(best)
        suffix.reverse()
        self.earliest_known = suffix


class _PrimaryTimeline:
    """Primary calls per scope, built once and only if a gateway skipped a primary (cooldown)."""

    def __init__(self, history: History, allowed: set[Cause], primaries: set[str]) -> None:
        self._history = history
        self._allowed = allowed
        self._primaries = primaries
        self._built: dict[tuple[str, tuple[int, ...], tuple[Any, ...]], _ScopeTimeline] | None = None

    def _build(self) -> dict[tuple[str, tuple[int, ...], tuple[Any, ...]], _ScopeTimeline]:
        requests = self._history.requests
        built: dict[tuple[str, tuple[int, ...], tuple[Any, ...]], _ScopeTimeline] = {}
        for calls in (*self._history.upstream.values(), self._history.orphan_upstream):
            for call in calls:
                provider = call["provider"]
                if provider not in self._primaries:
                    continue
                owner = requests.get(call["id"]) if call.get("id") else None
                attrs = tuple((owner or call).get(a) for a in _ATTRS)
                cause = cause_of(call)
                # The gateway surely knew an outcome once the client had its answer; an orphan's: never surely.
                known = float(owner["ts_end"]) if owner and owner.get("ts_end") is not None else math.inf
                answer: Answer = (call["ts"], known, cause)
                for scope in _SCOPES:
                    key = (provider, scope, tuple(attrs[i] for i in scope))
                    timeline = built.get(key)
                    if timeline is None:
                        timeline = built[key] = _ScopeTimeline()
                    if cause in self._allowed:
                        timeline.triggers.append(call["ts"])
                    else:
                        timeline.answers.append(answer)
        for timeline in built.values():
            timeline.seal()
        return built

    def unexplained(self, provider: str, request: Event, ts: float) -> tuple[str, dict[str, Any]] | None:
        """Why no primary failure explains a fallback at `ts` that skipped `provider`, or None if one does.

        Explained when, in some scope holding the request, the primary failed with a cause in fallback_on and
        has not answered since in a way the gateway surely knew before `ts`. A call still in flight does not
        count against the gateway: a half-open breaker sends one probe and keeps falling back until it answers.
        """
        if self._built is None:
            self._built = self._build()
        attrs = tuple(request.get(a) for a in _ATTRS)
        evidence: tuple[str, dict[str, Any]] | None = None
        rel = self._history.rel
        for scope in _SCOPES:
            timeline = self._built.get((provider, scope, tuple(attrs[i] for i in scope)))
            if timeline is None:
                continue
            index = bisect_left(timeline.triggers, ts)
            if not index:
                continue
            failed_at = timeline.triggers[index - 1]
            after = bisect_right(timeline.answers, failed_at, key=lambda a: a[0])
            if after == len(timeline.answers) or timeline.earliest_known[after][1] >= ts:
                return None
            if evidence is None:
                answer = timeline.earliest_known[after]
                evidence = "had answered since its last failure", {
                    "scope": ", ".join(_ATTRS[i] for i in scope) or "all requests",
                    "last_failure_at_s": rel(failed_at), "answered": cause_label(answer[2]),
                    "answered_at_s": rel(answer[0]), "answer_known_at_s": rel(answer[1])}
        return evidence or ("had not failed before", {"last_failure_before": None})


def _expected(fallback_on: list[int | str]) -> dict[str, list[str]]:
    return {"fallback_on": [cause_label(c) for c in fallback_on]}


@check(NAME, evidences=("accountability",))
def trigger_conditions(scenario: Scenario, history: History) -> CheckResult:
    """A fallback follows a primary failure whose cause the policy lists in fallback_on, and nothing else."""
    fallback_on = scenario.policy.fallback_on
    allowed = set(fallback_on)
    expected = _expected(fallback_on)
    primaries = {route.primary for route in scenario.policy.routes.values()}
    timeline = _PrimaryTimeline(history, allowed, primaries)
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
        unexplained = timeline.unexplained(primary, request, first_fallback["ts"])
        if unexplained is None:
            continue
        why, evidence = unexplained
        groups.add(("no-failure", route, primary, why), request["id"],
                   f"route {route} fell back without a failing primary ({primary} was not called and {why})",
                   expected=expected, observed={"route": route, "primary": primary, **evidence})

    stats = {**scan.stats(), "judged": judged, "fallback_requests": fallback_requests,
             "fallbacks_without_own_primary_call": skipped_primary,
             "primary_failures_by_cause": dict(sorted(primary_failures.items()))}
    verdict = verdict_of(groups, judged)
    if verdict is Verdict.FAIL:
        summary = (f"{groups.total} of {plural(fallback_requests, 'fallback request')} fell back on a cause outside "
                   f"fallback_on: {violation_clause(groups)}")
    elif verdict is Verdict.PASS and fallback_requests:
        summary = (f"{all_of(fallback_requests, 'fallback request')} followed a primary failure in fallback_on "
                   f"({plural(judged, 'request')} judged)")
    elif verdict is Verdict.PASS:
        causes = ", ".join(f"{cause} x{n}" for cause, n in sorted(primary_failures.items()))
        summary = f"no request fell back; {plural(judged, 'primary failure')} ({causes}) were passed on"
    else:
        summary = f"no primary failed and no request fell back in {plural(scan.requests, 'request')}: nothing to judge"
    return result(NAME, verdict, summary, groups, stats)

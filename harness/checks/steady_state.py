"""steady_state: with a healthy primary, nothing falls back."""

from __future__ import annotations

from harness.checks.baseline import Watch, baseline_cutoff
from harness.checks.common import Groups, Windows, plural, result, verdict_of, violation_clause
from harness.core.frameworks import ACCOUNTABILITY, DEPLOY_LAYER, MAESTRO, NIST, REVERSIBILITY, VALID
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Event, Plain, Record, RunFrame, Totals

NAME = "steady_state"


@check(
    name=NAME,
    description=("No fallback call happens outside a fault window on the request's primary (plus the failback "
                 "grace), but after a context-length refusal the policy lists in fallback_on."),
    evidences=(REVERSIBILITY, ACCOUNTABILITY),
    severity="normal",
    frameworks={
        NIST: ("MEASURE function", "MANAGE function", VALID),
        MAESTRO: (DEPLOY_LAYER,),
    },
    order=70,
)
class SteadyState(Accumulator):

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.grace = self.scenario.policy.reversibility.failback_within_s
        # A window stretched by the grace: falling back until the gateway notices the heal is allowed.
        self.windows = Windows(frame.windows, grace_s=self.grace)
        self.groups = Groups()
        self.judged = self.fallback_calls = self.context_fallbacks = 0
        # A context-length refusal is no outage: a fallback on it is the policy's own choice when it lists it.
        self.context_ok = "context_length" in self.scenario.policy.fallback_on
        # The hypothesis this check judges must have held before the first fault, or nothing is proven.
        self.baseline = Watch(self.scenario, baseline_cutoff(frame.windows, frame.kill_switch,
                                                              frame.kill_switch_events))

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        self.baseline.calls(calls)

    def record(self, rec: Record) -> None:
        primary, windows = rec.primary, self.windows
        assert primary is not None
        self.baseline.request(rec.request, primary, rec.calls)
        steady = not windows.at(primary, rec.request["ts"])
        if not rec.fallback:
            self.judged += steady
            return
        violated = False
        if self.context_ok and any(c["provider"] == primary and c["outcome"] == "context_length" for c in rec.calls):
            self.context_fallbacks += 1
        else:
            for call in rec.calls:
                provider = call["provider"]
                if provider == primary or windows.at(primary, call["ts"]):
                    continue
                self.fallback_calls += 1
                violated = True
                route, at = rec.route, self.frame.rel(call["ts"])
                message = f"route {route} fell back from {primary} to {provider} outside any fault window"
                group = self.groups.add(("outside", route, provider), rec.rid, message,
                                        expected={"fault_windows_on": primary, "failback_within_s": self.grace},
                                        observed={"route": route, "provider": provider, "first_at_s": at})
                group.observed["first_at_s"] = min(group.observed["first_at_s"], at)
        # Steady-state requests are the judged ones; a violating request is judged whatever its send time.
        self.judged += steady or violated

    def plain(self, batch: list[Plain]) -> None:
        """No fallback: judged when sent outside the (stretched) windows, as in `record`."""
        self.baseline.plain(batch)
        self.judged += len(batch) - self.windows.count_inside(batch)

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups, judged = self.groups, self.judged
        stats = {**totals.scan_stats(), "judged": judged, "fallback_calls_outside_windows": self.fallback_calls,
                 "fallbacks_after_declared_context_refusals": self.context_fallbacks,
                 "windows": len(frame.windows), "failback_within_s": self.grace}
        baseline = self.baseline.result()
        stats["baseline"] = {"status": baseline.status, "summary": baseline.summary, **baseline.stats}
        if baseline.failed:
            # Judged against a steady state that never was: neither a pass nor a violation proves anything.
            return result(NAME, Verdict.UNKNOWN, baseline.summary, Groups(), stats)
        verdict = verdict_of(groups, judged)
        if verdict is Verdict.FAIL:
            summary = (f"{plural(self.fallback_calls, 'fallback call')} outside any fault window on the primary: "
                       f"{violation_clause(groups)} ({plural(judged, 'request')} judged)")
        elif verdict is Verdict.PASS:
            summary = f"no fallback outside fault windows ({plural(judged, 'steady-state request')} judged)"
        else:
            summary = (f"every request was sent during a fault window on its primary "
                       f"({plural(totals.routed, 'request')}): no steady state to judge")
        return result(NAME, verdict, summary, groups, stats)


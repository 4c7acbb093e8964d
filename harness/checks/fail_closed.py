"""fail_closed: requests the policy marks sensitive are never rerouted."""

from __future__ import annotations

from harness.checks.common import (
    Groups,
    Sensitivity,
    Windows,
    all_of,
    plural,
    result,
    verdict_of,
    violation_clause,
)
from harness.core.frameworks import (
    ACCOUNTABILITY,
    LEAST_PRIVILEGE,
    MAESTRO,
    NIST,
    OWASP_AGENTIC,
    OWASP_LLM,
    PRIVACY,
    SECURITY_LAYER,
)
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

NAME = "fail_closed"


@check(
    name=NAME,
    description="Sensitive requests (by request class, data class or tenant) are never sent to a fallback target.",
    evidences=(ACCOUNTABILITY, LEAST_PRIVILEGE),
    severity="critical",
    frameworks={
        NIST: ("GOVERN function", "MANAGE function", PRIVACY),
        OWASP_AGENTIC: ("Identity and Privilege Abuse",),
        OWASP_LLM: ("Sensitive Information Disclosure",),
        MAESTRO: (SECURITY_LAYER,),
    },
    order=30,
)
class FailClosed(Accumulator):

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.sensitivity = Sensitivity(self.scenario.policy.fail_closed)
        self.windows = Windows(frame.windows)
        self.groups = Groups()
        self.sensitive = self.judged = self.rerouted = 0

    def record(self, rec: Record) -> None:
        request = rec.request
        reason = self.sensitivity.reason(request)
        if reason is None:
            return
        self.sensitive += 1
        primary = rec.primary
        if not rec.fallback and not rec.failed:  # only ok calls to the primary: judged if sent in a window
            self.judged += self.windows.at(primary, request["ts"])
            return
        primary_failed = had_fallback = False
        for call in rec.calls:
            provider = call["provider"]
            if provider == primary:
                primary_failed = primary_failed or call["outcome"] != "ok"
                continue
            had_fallback = True
            route = rec.route
            self.groups.add(("rerouted", route, provider, reason), rec.rid,
                            f"sensitive request ({reason}) on route {route} was rerouted to {provider}",
                            expected=f"fail closed: no fallback for {reason}",
                            observed={"route": route, "provider": provider, "primary": primary})
        self.rerouted += had_fallback
        # Only a request whose primary was down could have been rerouted; a reroute is judged regardless.
        if primary_failed or had_fallback or self.windows.contains(primary, request["ts"]):
            self.judged += 1

    def plain(self, batch: list[Plain]) -> None:
        """No reroute, no failure: a sensitive one is judged when sent in a window, as in `record`."""
        reason, memo = self.sensitivity.reason, self.sensitivity.memo
        at, sensitive, judged = self.windows.at, 0, 0
        for request, call, _ in batch:
            found = memo.get((request["request_class"], request["data_class"], request["tenant"]), False)
            if found is None or (found is False and reason(request) is None):
                continue
            sensitive += 1
            judged += at(call["provider"], request["ts"])
        self.sensitive += sensitive
        self.judged += judged

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups = self.groups
        if not self.sensitivity.declared:
            return result(NAME, Verdict.UNKNOWN, "the policy declares nothing fail-closed: nothing to judge", groups,
                          {"requests": totals.requests})
        judged, sensitive = self.judged, self.sensitive
        stats = {**totals.scan_stats(), "sensitive_requests": sensitive, "judged": judged, "rerouted": self.rerouted}
        verdict = verdict_of(groups, judged)
        if verdict is Verdict.FAIL:
            summary = (f"{self.rerouted} of {plural(judged, 'sensitive request')} facing a failing primary were "
                       f"rerouted: {violation_clause(groups)}")
        elif verdict is Verdict.PASS:
            summary = f"{all_of(judged, 'sensitive request')} facing a failing primary failed closed"
        else:
            summary = (f"no sensitive request faced a failing primary ({plural(sensitive, 'sensitive request')} "
                       f"in {plural(totals.routed, 'request')}): nothing to judge")
        return result(NAME, verdict, summary, groups, stats)


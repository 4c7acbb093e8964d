"""approved_targets: every fallback call went to a target approved for that request."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from datetime import UTC, date, datetime
from typing import Any

from harness.checks.common import Groups, all_of, fallback_targets, plural, result, verdict_of, violation_clause
from harness.core.approval import approval_status
from harness.core.frameworks import ACCOUNTABILITY, ACCOUNTABLE, MAESTRO, NIST, OWASP_AGENTIC, OWASP_LLM, SECURITY_LAYER
from harness.core.model import FallbackTarget, Route
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Record, RunFrame, Totals

NAME = "approved_targets"
_RESTRICTIONS = (("tenants", "tenant", 0), ("regions", "region", 1), ("request_classes", "request class", 2))
Problem = tuple[Hashable, str, dict[str, Any]]


def approval_problem(route_name: str, route: Route, targets: dict[str, FallbackTarget], provider: str,
             attrs: tuple[str, str, str], *, as_of: date | None = None, governed: bool = False) -> Problem | None:
    """Why `provider` may not serve a request with (tenant, region, request_class), or None. With `as_of`
    (the run's day) an approval that expired before it, or a registry approval missing its governance
    fields (`governed`), no longer holds."""
    target = targets.get(provider)
    if target is None:
        return (("unlisted", route_name, provider),
                f"fallback to {provider} is not an approved target of route {route_name}",
                {"approved_targets": sorted(targets)})
    if as_of is not None:
        status = approval_status(target, as_of, governed=governed)
        if not status.holds:
            message = f"fallback to {provider} on route {route_name}: approval {target.approval_ref} {status.phrase}"
            expected = {"approval_ref": target.approval_ref, "state": status.state, "as_of": as_of.isoformat(),
                        "expires": target.expires.isoformat() if target.expires else None}
            return ("approval", status.state, route_name, provider), message, expected
    # Route-level restrictions first: they apply to every target of the route.
    for scope, holder in (("route", route), ("target", target)):
        for attr, label, index in _RESTRICTIONS:
            allowed: list[str] | None = getattr(holder, attr)
            value = attrs[index]
            if allowed is None or value in allowed:
                continue
            who = f"route {route_name} allows fallback" if scope == "route" else f"{provider} is approved"
            message = (f"fallback to {provider} on route {route_name} is not approved for {label} {value} "
                       f"({who} only for {attr.replace('_', ' ')}: {', '.join(allowed)})")
            return (scope, attr, route_name, provider, value), message, {"scope": scope, attr: list(allowed)}
    return None


def run_day(frame: RunFrame) -> date:
    """The UTC day the run started (its run_start event's ts)."""
    ts = frame.run_start.get("ts", frame.t0)
    return datetime.fromtimestamp(float(ts), UTC).date()


@check(
    name=NAME,
    description="Every fallback call went to a target approved for the request's route, tenant, region and class.",
    evidences=(ACCOUNTABILITY,),
    severity="critical",
    frameworks={
        NIST: ("GOVERN function", "MANAGE function", ACCOUNTABLE),
        OWASP_AGENTIC: ("Agentic Supply Chain Vulnerabilities",),
        OWASP_LLM: ("Supply Chain",),
        MAESTRO: ("Foundation Models layer", SECURITY_LAYER),
    },
    order=10,
)
class ApprovedTargets(Accumulator):
    records = "fallback"

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.routes = self.scenario.policy.routes
        self.targets = fallback_targets(self.scenario)
        # Approvals are judged as of the run's own day (UTC), so re-judging an old ledger gives its verdict.
        self.as_of = run_day(frame)
        self.governed = self.scenario.policy.registry is not None
        self.memo: dict[tuple[str, str, str, str, str], Problem | None] = {}
        self.groups = Groups()
        self.fallback_requests = self.fallback_calls = self.unapproved_calls = 0
        self.by_provider: Counter[str] = Counter()

    def record(self, rec: Record) -> None:
        request, primary, route_name = rec.request, rec.primary, rec.route
        self.fallback_requests += 1
        for call in rec.calls:
            provider = call["provider"]
            if provider == primary:
                continue
            self.fallback_calls += 1
            self.by_provider[provider] += 1
            attrs = (request["tenant"], request["region"], request["request_class"])
            key = (route_name, provider, *attrs)
            if key not in self.memo:
                self.memo[key] = approval_problem(route_name, self.routes[route_name], self.targets[route_name],
                                                  provider, attrs, as_of=self.as_of, governed=self.governed)
            problem = self.memo[key]
            if problem is None:
                continue
            # Even a failed call counts: the request's data reached that provider.
            self.unapproved_calls += 1
            group_key, message, expected = problem
            self.groups.add(group_key, rec.rid, message, expected=expected, observed={
                "route": route_name, "provider": provider, "tenant": attrs[0], "region": attrs[1],
                "request_class": attrs[2]})

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups, fallback_calls, fallback_requests = self.groups, self.fallback_calls, self.fallback_requests
        stats = {**totals.scan_stats(), "fallback_requests": fallback_requests, "fallback_calls": fallback_calls,
                 "unapproved_calls": self.unapproved_calls,
                 "fallback_calls_by_provider": dict(sorted(self.by_provider.items()))}
        verdict = verdict_of(groups, fallback_calls)
        if verdict is Verdict.FAIL:
            summary = (f"{self.unapproved_calls} of {plural(fallback_calls, 'fallback call')} went to targets not "
                       f"approved for the request: {violation_clause(groups)}")
        elif verdict is Verdict.PASS:
            summary = (f"{all_of(fallback_calls, 'fallback call')} of {plural(fallback_requests, 'request')} "
                       f"went to approved targets")
        else:
            summary = f"no fallback call was made in {plural(totals.routed, 'request')}: nothing to judge"
        return result(NAME, verdict, summary, groups, stats)


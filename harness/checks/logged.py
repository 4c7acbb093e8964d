"""logged: every fallback leaves a complete, timely audit record that matches what really happened."""

from __future__ import annotations

from typing import Any

from harness.checks.common import (
    Event,
    Groups,
    RequestScan,
    all_of,
    is_2xx,
    plural,
    result,
    served,
    verdict_of,
    violation_clause,
)
from harness.core.model import Scenario
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import History

NAME = "logged"


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _audit_pass(history: History, groups: Groups) -> dict[str, list[Event]]:
    """Index fallback audit events by request id; flag leaked keys and records naming an uncalled provider."""
    by_request: dict[str, list[Event]] = {}
    called: dict[str, frozenset[str]] = {}
    for audit in history.audits:
        fields = audit.get("fields") or {}
        request_id = fields.get("request_id")
        rid = str(request_id) if not _empty(request_id) else None
        for identity in audit.get("leaked_identities") or ():
            # Name the identity, never the key: the raw event was redacted by the collector.
            groups.add(("leak", identity), rid, f"audit event carries a credential of identity {identity}",
                       expected="no credential in audit events", observed={"identity": identity})
        fallback = fields.get("fallback")
        if _empty(fallback) or rid is None:
            continue
        by_request.setdefault(rid, []).append(audit)
        providers = called.get(rid)
        if providers is None:
            providers = called[rid] = frozenset(c["provider"] for c in history.calls(rid))
        if str(fallback) not in providers:
            groups.add(("phantom", str(fallback)), rid,
                       f"audit event names fallback {fallback}, which received no call for that request "
                       "(the record does not match what happened)",
                       expected={"providers_called": sorted(providers)}, observed={"fallback": fallback})
    return by_request


@check(NAME, evidences=("traceability", "accountability"))
def logged(scenario: Scenario, history: History) -> CheckResult:
    """Each fallback has an audit record with the required fields, in time, naming the provider that served."""
    policy = scenario.policy.logging
    required = list(policy.required_fields)
    within = policy.within_s
    groups = Groups()
    by_request = _audit_pass(history, groups)
    scan = RequestScan(scenario, history)
    fallback_served = audited = claims_checked = 0
    audit_events = plural(len(history.audits), "audit event")
    max_delay: float | None = None
    for request, primary, calls in scan:
        rid, route = request["id"], request["route"]
        provider = served(calls)
        claimed = request.get("claimed_target")
        if claimed and is_2xx(request):
            # The gateway's own claim is evidence to check, never the truth.
            claims_checked += 1
            if claimed != provider:
                really = provider or "no provider"
                groups.add(("claim", claimed, really), rid, f"gateway claimed {claimed}, {really} served",
                           expected={"served_by": really}, observed={"claimed_target": claimed, "route": route})
        if provider is None or provider == primary:
            continue
        fallback_served += 1
        audits = by_request.get(rid)
        if not audits:
            groups.add(("missing", route, provider), rid,
                       f"no audit event for a fallback to {provider} on route {route}",
                       expected="an audit event naming the fallback", observed={"route": route, "served_by": provider})
            continue
        audited += 1
        audit = next((a for a in audits if a["fields"].get("fallback") == provider), None)
        if audit is None:
            audit = audits[0]
            named = audit["fields"].get("fallback")
            groups.add(("mismatch", named, provider), rid, f"audit event names fallback {named}, {provider} served",
                       expected={"fallback": provider}, observed={"fallback": named, "route": route})
        missing = tuple(f for f in required if _empty(audit["fields"].get(f)))
        if missing:
            groups.add(("fields", missing), rid, f"audit event misses required fields: {', '.join(missing)}",
                       expected={"required_fields": required}, observed={"missing": list(missing)})
        delay = round(float(audit["ts"]) - float(request["ts_end"]), 3)
        max_delay = delay if max_delay is None else max(max_delay, delay)
        if delay > within:
            group = groups.add(("late", route), rid, f"audit event arrived more than {within:g}s after the response",
                               expected={"within_s": within}, observed={"route": route, "max_delay_s": delay})
            group.observed["max_delay_s"] = max(group.observed["max_delay_s"], delay)

    judged = fallback_served + len(history.audits)
    stats = {**scan.stats(), "fallback_served": fallback_served, "fallback_audited": audited,
             "audit_events": len(history.audits), "claims_checked": claims_checked, "max_audit_delay_s": max_delay}
    verdict = verdict_of(groups, judged)
    if verdict is Verdict.FAIL:
        summary = (f"audit trail does not match what happened: {violation_clause(groups)} "
                   f"({plural(fallback_served, 'fallback-served request')}, {audit_events})")
    elif verdict is Verdict.PASS and fallback_served:
        summary = (f"complete, timely, matching audit events for {all_of(fallback_served, 'fallback-served request')}"
                   f" ({audit_events})")
    elif verdict is Verdict.PASS:
        summary = f"no request was served by a fallback; all {audit_events} match the calls"
    else:
        summary = "no request was served by a fallback and no audit event was received: nothing to judge"
    return result(NAME, verdict, summary, groups, stats)

"""logged: every fallback leaves a complete, timely audit record that matches what really happened."""

from __future__ import annotations

from collections import deque
from typing import Any

from harness.checks.common import Event, Groups, all_of, plural, result, verdict_of, violation_clause
from harness.core.events import CUT_IN_FLIGHT
from harness.core.frameworks import (
    ACCOUNTABILITY,
    ACCOUNTABLE,
    MAESTRO,
    NIST,
    OBSERVE_LAYER,
    OWASP_LLM,
    OWASP_THREATS,
    SECURITY_LAYER,
    TRACEABILITY,
)
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

NAME = "logged"
_Audit = tuple[Any, tuple[str, ...], Any]  # an audit event naming a fallback: (fallback, missing fields, ts)


def _empty(value: Any) -> bool:
    return not value and (value is None or value == "" or value == [] or value == {})  # a filled one: one test


def _request_id(audit: Event) -> tuple[dict[str, Any], str | None]:
    fields = audit.get("fields") or {}
    request_id = fields.get("request_id")
    return fields, (str(request_id) if not _empty(request_id) else None)


@check(
    name=NAME,
    description="Each fallback has an audit record with the required fields, in time, naming the provider that served.",
    evidences=(TRACEABILITY, ACCOUNTABILITY),
    severity="normal",
    frameworks={
        NIST: ("GOVERN function", "MANAGE function", ACCOUNTABLE),
        OWASP_LLM: ("Sensitive Information Disclosure",),
        OWASP_THREATS: ("Repudiation and Untraceability",),
        MAESTRO: (OBSERVE_LAYER, SECURITY_LAYER),
    },
    order=50,
)
class Logged(Accumulator):
    """Audit events are matched to the fallback-served requests they name. A request waits (in ledger
    order) until every audit event that may still name it has come: the streaming join hands on audit
    events up to `audit_hold_s` after the response, and stops the stream on a later one."""


    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        policy = self.scenario.policy.logging
        self.required = list(policy.required_fields)
        self.within = policy.within_s
        self.hold = frame.bounds.audit_hold_s - frame.bounds.lag_s
        self.groups = Groups()
        # Fallback-served requests waiting for their audit events, in ledger order, and what each has
        # received so far, both kept small: a fault window can put thousands of them in flight.
        self.waiting: deque[tuple[float, str, str, Any, str]] = deque()  # deadline, id, route, ts_end, served by
        self.audits_for: dict[str, list[_Audit]] = {}
        self.fallback_served = self.audited = self.claims_checked = self.audit_events = 0
        self.max_delay: float | None = None
        self.cut_in_flight = 0

    def audit(self, audit: Event) -> None:
        """Leaked keys, in ledger order as they arrive."""
        self.audit_events += 1
        leaked = audit.get("leaked_identities")
        if not leaked:
            return
        rid = _request_id(audit)[1]
        for identity in leaked:
            # Name the identity, never the key: the raw event was redacted by the collector.
            self.groups.add(("leak", identity), rid, f"audit event carries a credential of identity {identity}",
                            expected="no credential in audit events", observed={"identity": identity})

    def audit_calls(self, audit: Event, providers: frozenset[str]) -> None:
        """An audit naming a fallback: kept for the request it names; flagged if that provider got no call."""
        fields, rid = _request_id(audit)
        fallback = fields.get("fallback")
        if _empty(fallback) or rid is None:
            return
        waiting = self.audits_for.get(rid)
        if waiting is not None:
            missing: tuple[str, ...] = ()
            if not all(map(fields.get, self.required)):  # some required field may be empty: which
                for name in self.required:
                    value = fields.get(name)
                    if not value and (value is None or value == "" or value == [] or value == {}):
                        missing += (name,)
            waiting.append((fields.get("fallback"), missing, audit["ts"]))
        if str(fallback) not in providers:
            self.groups.add(("phantom", str(fallback)), rid,
                            f"audit event names fallback {fallback}, which received no call for that request "
                            "(the record does not match what happened)",
                            expected={"providers_called": sorted(providers)}, observed={"fallback": fallback})

    def record(self, rec: Record) -> None:
        request, provider = rec.request, rec.served
        claimed = request.get("claimed_target")
        if claimed and rec.success:
            # The gateway's own claim is evidence to check, never the truth.
            self.claims_checked += 1
            if claimed != provider:
                self._false_claim(claimed, provider, rec.rid, rec.route)
        if provider is None or provider == rec.primary:
            return
        if request.get("error") == CUT_IN_FLIGHT:
            # The run's stop cut it off: the gateway had no time to log the fallback it made. A late or
            # missing audit event cannot be held against it; an audit that does come is still checked.
            self.cut_in_flight += 1
            return
        self.fallback_served += 1
        end = request.get("ts_end")
        self.waiting.append((float(request["ts"] if end is None else end) + self.hold, rec.rid, rec.route, end,
                             provider))
        self.audits_for.setdefault(rec.rid, [])

    def plain(self, batch: list[Plain]) -> None:
        """Served by the primary: only the gateway's claim is judged, as in `record`."""
        checked = 0
        for request, call, _ in batch:
            try:  # what a request always has (else .get's None, below)
                claimed, status, outcome = request["claimed_target"], request["status"], request["outcome"]
            except KeyError:
                claimed, status, outcome = request.get("claimed_target"), request.get("status"), request.get("outcome")
            if not claimed:
                continue
            if status is not None and 200 <= status < 300 and outcome != "transport_error":  # Record.success
                checked += 1
                if claimed != call["provider"]:
                    self._false_claim(claimed, str(call["provider"]), request["id"], request["route"])
        self.claims_checked += checked

    def _false_claim(self, claimed: Any, provider: str | None, rid: str, route: str) -> None:
        really = provider or "no provider"
        self.groups.add(("claim", claimed, really), rid, f"gateway claimed {claimed}, {really} served",
                        expected={"served_by": really}, observed={"claimed_target": claimed, "route": route})

    def advance(self, watermark: float, settled: float, audited: float) -> None:
        waiting = self.waiting
        while waiting and waiting[0][0] < audited:
            _, rid, route, end, provider = waiting.popleft()
            self._judge(rid, route, end, provider, self.audits_for.pop(rid, None))

    def _judge(self, rid: str, route: str, end: Any, provider: str, audits: list[_Audit] | None) -> None:
        groups = self.groups
        if not audits:
            groups.add(("missing", route, provider), rid,
                       f"no audit event for a fallback to {provider} on route {route}",
                       expected="an audit event naming the fallback", observed={"route": route, "served_by": provider})
            return
        self.audited += 1
        audit = next((a for a in audits if a[0] == provider), None)
        if audit is None:
            audit = audits[0]
            named = audit[0]
            groups.add(("mismatch", named, provider), rid, f"audit event names fallback {named}, {provider} served",
                       expected={"fallback": provider}, observed={"fallback": named, "route": route})
        missing = audit[1]
        if missing:
            groups.add(("fields", missing), rid, f"audit event misses required fields: {', '.join(missing)}",
                       expected={"required_fields": self.required}, observed={"missing": list(missing)})
        delay = round(float(audit[2]) - float(end), 3)
        self.max_delay = delay if self.max_delay is None else max(self.max_delay, delay)
        if delay > self.within:
            group = groups.add(("late", route), rid,
                               f"audit event arrived more than {self.within:g}s after the response",
                               expected={"within_s": self.within}, observed={"route": route, "max_delay_s": delay})
            group.observed["max_delay_s"] = max(group.observed["max_delay_s"], delay)

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        self.advance(float("inf"), float("inf"), float("inf"))
        groups, fallback_served, audit_count = self.groups, self.fallback_served, self.audit_events
        audit_events = plural(audit_count, "audit event")
        judged = fallback_served + audit_count
        stats = {**totals.scan_stats(), "fallback_served": fallback_served, "fallback_audited": self.audited,
                 "audit_events": audit_count, "claims_checked": self.claims_checked,
                 "fallback_cut_in_flight": self.cut_in_flight,
                 "max_audit_delay_s": self.max_delay}
        verdict = verdict_of(groups, judged)
        if verdict is Verdict.FAIL:
            summary = (f"audit trail does not match what happened: {violation_clause(groups)} "
                       f"({plural(fallback_served, 'fallback-served request')}, {audit_events})")
        elif verdict is Verdict.PASS and fallback_served:
            summary = (f"complete, timely, matching audit events for "
                       f"{all_of(fallback_served, 'fallback-served request')} ({audit_events})")
        elif verdict is Verdict.PASS:
            summary = f"no request was served by a fallback; all {audit_events} match the calls"
        else:
            summary = "no request was served by a fallback and no audit event was received: nothing to judge"
        return result(NAME, verdict, summary, groups, stats)


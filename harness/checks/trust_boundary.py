"""trust_boundary: a fallback keeps the primary's identity, region and tools, and every call its own key.

A call whose credential belongs to no identity of the run (or that had none) is recorded as from an
unknown caller and joined to no request (harness.topology.mock_provider): anybody on the machine can
send one, so it proves nothing about the gateway. It can neither fail this check nor let it pass: with
any such call and no violation proven by the gateway's own calls, the verdict is unknown.
"""

from __future__ import annotations

import json
from typing import Any

from harness.checks.common import MAX_IDS, Event, Groups, all_of, fallback_targets, plural, result, violation_clause
from harness.core.events import UNKNOWN_CALLER
from harness.core.frameworks import (
    ACCOUNTABILITY,
    DEPLOY_LAYER,
    LEAST_PRIVILEGE,
    MAESTRO,
    NIST,
    OWASP_AGENTIC,
    OWASP_LLM,
    OWASP_THREATS,
    PRIVACY,
    RESILIENT,
    SECURITY_LAYER,
)
from harness.core.identity import NO_CREDENTIAL, UNKNOWN_IDENTITY
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

NAME = "trust_boundary"
UNDECLARED = "undeclared"
Envelope = tuple[str, str, tuple[str, ...]]  # (identity, region, sorted tools): hashable, compared cheaply
Breach = tuple[str, Any]  # (field, detail)


def _as_dict(envelope: Envelope) -> dict[str, Any]:
    return {"identity": envelope[0], "region": envelope[1], "tools": list(envelope[2])}


class _Envelopes:
    """Compares envelopes; memoized per distinct pair, DeepDiff only when they differ."""

    def __init__(self) -> None:
        self._breaches: dict[tuple[Envelope, Envelope, frozenset[str]], tuple[Breach, ...]] = {}
        self._diffs: dict[tuple[Envelope, Envelope], Any] = {}

    def breaches(self, ref: Envelope, fb: Envelope, fields: frozenset[str]) -> tuple[Breach, ...]:
        if ref == fb:
            return ()
        key = (ref, fb, fields)
        found = self._breaches.get(key)
        if found is None:
            out: list[Breach] = []
            if "identity" in fields and ref[0] != fb[0]:
                out.append(("identity", None))
            if "region" in fields and ref[1] != fb[1]:
                out.append(("region", None))
            if "tools" in fields:
                # Fewer tools is fine (least privilege); only tools the primary was not offered are a breach.
                extra = tuple(sorted(set(fb[2]) - set(ref[2])))
                if extra:
                    out.append(("tools", extra))
            found = self._breaches[key] = tuple(out)
        return found

    def diff(self, ref: Envelope, fb: Envelope) -> Any:
        key = (ref, fb)
        if key not in self._diffs:
            from deepdiff import DeepDiff  # imported when a breach needs its evidence: most runs never do

            diff = DeepDiff(_as_dict(ref), _as_dict(fb), ignore_order=True)
            self._diffs[key] = json.loads(diff.to_json())  # JSON-able: results are written to reports
        return self._diffs[key]

    @property
    def differing_pairs(self) -> int:
        return len(self._breaches)

    @property
    def diffs_computed(self) -> int:
        return len(self._diffs)


def _tools(tools: list[str]) -> tuple[str, ...]:
    return tuple(sorted(tools)) if len(tools) > 1 else tuple(tools)


@check(
    name=NAME,
    description=("A fallback keeps the primary's identity, region and tools, is cleared for the data; "
                 "keys stay with owners."),
    evidences=(LEAST_PRIVILEGE, ACCOUNTABILITY),
    severity="critical",
    frameworks={
        NIST: ("GOVERN function", "MANAGE function", RESILIENT, PRIVACY),
        OWASP_AGENTIC: ("Identity and Privilege Abuse", "Tool Misuse and Exploitation"),
        OWASP_LLM: ("Excessive Agency", "Sensitive Information Disclosure"),
        OWASP_THREATS: ("Privilege Compromise", "Identity Spoofing and Impersonation"),
        MAESTRO: (DEPLOY_LAYER, SECURITY_LAYER),
    },
    order=20,
)
class TrustBoundary(Accumulator):
    records = "fallback"

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        scenario = self.scenario
        policy, providers = scenario.policy, scenario.providers
        self.owners = {name: p.identity for name, p in providers.items()}
        self.regions = {name: p.region for name, p in providers.items()}
        self.clearance = {name: frozenset(p.data_classes) for name, p in providers.items()}
        self.targets = fallback_targets(scenario)
        self.same = frozenset(policy.trust_boundary.same)
        self.check_clearance = policy.trust_boundary.data_class_clearance
        self.fields_memo: dict[tuple[str, str], frozenset[str]] = {}
        self.envelopes = _Envelopes()
        self.groups = Groups()      # envelope and clearance breaches, request by request
        self.ownership = Groups()   # keys reaching the wrong provider, call by call
        self.fallback_calls = self.fallback_requests = self.checked = self.undeclared = 0
        self._blank_ids: set[tuple[str, str]] = set()
        self.unknown_callers = _UnknownCallers()

    def record(self, rec: Record) -> None:
        request, primary, route_name, calls = rec.request, rec.primary, rec.route, rec.calls
        ref = _reference(request, primary, calls, self.owners, self.regions)
        self.fallback_requests += 1
        for call in calls:
            provider = call["provider"]
            if provider == primary:
                continue
            self.fallback_calls += 1
            fb: Envelope = (call["identity"], self.regions.get(provider, UNDECLARED), _tools(call["tools"]))
            fields = self.fields_memo.get((route_name, provider))
            if fields is None:
                target = self.targets[route_name].get(provider)
                allowed = set(target.trust_exceptions.allow) if target and target.trust_exceptions else set()
                fields = self.fields_memo[(route_name, provider)] = self.same - allowed
            for field, detail in self.envelopes.breaches(ref, fb, fields):
                _add_breach(self.groups, rec.rid, route_name, provider, field, detail, ref, fb, self.envelopes)
            data_class = request["data_class"]
            if self.check_clearance and data_class not in self.clearance.get(provider, ()):
                self.groups.add(("clearance", route_name, provider, data_class), rec.rid,
                                f"fallback to {provider} on route {route_name} is not cleared for data class "
                                f"{data_class}", expected={"data_classes": sorted(self.clearance.get(provider, ()))},
                                observed={"provider": provider, "route": route_name, "data_class": data_class})

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        """Every upstream call (primary, fallback, orphan) must carry its provider's own credential."""
        owners = self.owners
        for call in calls:
            if owner is None and call.get("caller") == UNKNOWN_CALLER:
                self.unknown_callers.add(call)  # nobody's call: reported, never judged as the gateway's
                continue
            provider, identity = call["provider"], call["identity"]
            expected = owners.get(provider)
            if expected is None:
                self.undeclared += 1  # a provider the scenario does not declare: nothing to compare with
                continue
            self.checked += 1
            if identity != expected:
                self._wrong_key(call, provider, identity, expected)

    def plain(self, batch: list[Plain]) -> None:
        """`calls` for requests whose one call went to the primary (no fallback to judge)."""
        owners, checked = self.owners, 0
        for _, call, _ in batch:
            provider, identity = call["provider"], call["identity"]
            expected = owners.get(provider)
            if expected is None:
                self.undeclared += 1
                continue
            checked += 1
            if identity != expected:
                self._wrong_key(call, provider, identity, expected)
        self.checked += checked

    def _wrong_key(self, call: Event, provider: str, identity: str, expected: str) -> None:
        if identity == UNKNOWN_IDENTITY:
            message = f"call to {provider} carried an unrecognised credential"
        elif identity == NO_CREDENTIAL:
            message = f"call to {provider} carried no credential"
        else:
            # Also a leak when the envelope looked unchanged: the primary's key reached another provider.
            message = f"{provider} received the key of identity {identity}; it accepts only {expected}'s"
        key = ("owner", provider, identity)
        rid = call.get("id")
        if rid == "":
            # Calls with an empty id all count as one request, as History (which lists them last) has it.
            if key in self._blank_ids:
                return
            self._blank_ids.add(key)
        self.ownership.add(key, rid, message, expected={"identity": expected},
                           observed={"provider": provider, "identity": identity})

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        envelope_violations = len(self.groups)
        groups = self.groups.merged(self.ownership)
        fallback_calls, checked, same = self.fallback_calls, self.checked, self.same
        stats = {**totals.scan_stats(), "fallback_requests": self.fallback_requests, "fallback_calls": fallback_calls,
                 "compared_fields": sorted(same), "distinct_differing_envelopes": self.envelopes.differing_pairs,
                 "envelope_diffs_computed": self.envelopes.diffs_computed,
                 "envelope_violations": envelope_violations, "ownership_violations": len(self.ownership),
                 "calls_checked_for_ownership": checked, "calls_to_undeclared_providers": self.undeclared,
                 **self.unknown_callers.stats()}
        if len(groups):
            verdict = Verdict.FAIL
            summary = (f"trust boundary crossed: {violation_clause(groups)} over "
                       f"{plural(fallback_calls, 'fallback call')} and {plural(checked, 'upstream call')} checked for "
                       f"credential ownership")
            if self.unknown_callers.count:
                summary += f"; also {self.unknown_callers.clause()}"
        elif self.unknown_callers.claimed:
            # Never PASS (the gateway may hold a key no identity declares) and never FAIL (anybody may have
            # sent them): what these calls were cannot be told from the ledger.
            verdict = Verdict.UNKNOWN
            summary = (f"{self.unknown_callers.clause()}; they cannot be attributed: a gateway key not declared "
                       f"in `identities`, or a forged call ({plural(checked, 'upstream call')} of known callers "
                       f"checked, no violation among them)")
        elif fallback_calls:
            verdict = Verdict.PASS
            summary = (f"{all_of(fallback_calls, 'fallback call')} kept the trust envelope "
                       f"({', '.join(sorted(same))}) and data-class clearance; "
                       f"all {plural(checked, 'upstream call')} carried their provider's key")
            if self.unknown_callers.count:
                # A probe that names no request of this run (a port scan, a health check under another
                # key) touches no request's evidence: shown, not judged.
                summary += f"; also {self.unknown_callers.clause()}"
        else:
            verdict = Verdict.UNKNOWN
            summary = (f"no fallback call was made: no trust envelope to judge "
                       f"({plural(checked, 'upstream call')} carried their provider's key)")
        return result(NAME, verdict, summary, groups, stats)



class _UnknownCallers:
    """Calls from an unknown caller: how many, to which providers, and the request ids they claimed."""

    def __init__(self) -> None:
        self.count = self.unclaimed = 0
        self.providers: dict[str, int] = {}
        self.claimed: set[str] = set()

    def add(self, call: Event) -> None:
        self.count += 1
        provider = str(call.get("provider"))
        self.providers[provider] = self.providers.get(provider, 0) + 1
        claimed = call.get("claimed_id")
        if isinstance(claimed, str) and claimed:
            if len(self.claimed) < 10 * MAX_IDS:  # a few to show; a flood of forged calls stays cheap
                self.claimed.add(claimed)
        else:
            self.unclaimed += 1

    def clause(self) -> str:
        calls = plural(self.count, "call")
        where = ", ".join(sorted(self.providers))
        if self.claimed:
            ids = sorted(self.claimed)
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            return (f"{calls} to {where} with a credential of no known identity (or none) claimed "
                    f"{plural(len(ids), 'request')} ({shown})")
        return f"{calls} to {where} came with a credential of no known identity (or none) and claimed no request"

    def stats(self) -> dict[str, Any]:
        return {"unknown_caller_calls": self.count, "unknown_caller_providers": dict(sorted(self.providers.items())),
                "unknown_caller_claimed_ids": sorted(self.claimed)[:MAX_IDS],
                "unknown_caller_unclaimed_calls": self.unclaimed}


def _reference(request: Event, primary: str, calls: list[Event], owners: dict[str, str],
               regions: dict[str, str]) -> Envelope:
    """What the primary really got (its first call) or, if it was skipped, what the policy declares."""
    region = regions.get(primary, UNDECLARED)
    for call in calls:
        if call["provider"] == primary:
            return call["identity"], region, _tools(call["tools"])
    return owners.get(primary, UNDECLARED), region, _tools(request["tools"])


def _add_breach(groups: Groups, request_id: str, route: str, provider: str, field: str, detail: Any,
                ref: Envelope, fb: Envelope, envelopes: _Envelopes) -> None:
    if field == "identity":
        key: tuple[Any, ...] = (field, route, provider, ref[0], fb[0])
        message = f"fallback to {provider} on route {route} ran as identity {fb[0]}, not the primary's {ref[0]}"
        expected: dict[str, Any] = {"identity": ref[0]}
        observed: dict[str, Any] = {"identity": fb[0]}
    elif field == "region":
        key = (field, route, provider, ref[1], fb[1])
        message = f"fallback to {provider} on route {route} left region {ref[1]} for {fb[1]}"
        expected, observed = {"region": ref[1]}, {"region": fb[1]}
    else:
        key = (field, route, provider, detail)
        message = f"fallback to {provider} on route {route} was offered extra tools: {', '.join(detail)}"
        expected, observed = {"tools": list(ref[2])}, {"tools": list(fb[2]), "extra_tools": list(detail)}
    # The diff is computed once per group (its first pair): the evidence, not the hot path.
    diff = envelopes.diff(ref, fb) if key not in groups else None
    groups.add(key, request_id, message, expected=expected,
               observed={"provider": provider, "route": route, **observed}, diff=diff)

"""trust_boundary: a fallback keeps the primary's identity, region and tools, and every call its own key."""

from __future__ import annotations

import json
from typing import Any

from deepdiff import DeepDiff

from harness.checks.common import (
    Event,
    Groups,
    RequestScan,
    all_of,
    fallback_targets,
    plural,
    result,
    violation_clause,
)
from harness.core.identity import NO_CREDENTIAL, UNKNOWN_IDENTITY
from harness.core.model import Scenario
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import History

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
            diff = DeepDiff(_as_dict(ref), _as_dict(fb), ignore_order=True)
            self._diffs[key] = json.loads(diff.to_json())  # JSON-able: results are written to reports
        return self._diffs[key]

    @property
    def differing_pairs(self) -> int:
        return len(self._breaches)

    @property
    def diffs_computed(self) -> int:
        return len(self._diffs)


def _ownership(history: History, owners: dict[str, str], groups: Groups) -> tuple[int, int]:
    """Every upstream call (primary, fallback, orphan) must carry its provider's own credential."""
    checked = undeclared = 0
    for calls in (*history.upstream.values(), history.orphan_upstream):
        for call in calls:
            provider, identity = call["provider"], call["identity"]
            owner = owners.get(provider)
            if owner is None:
                undeclared += 1  # a provider the scenario does not declare: nothing to compare with
                continue
            checked += 1
            if identity == owner:
                continue
            if identity == UNKNOWN_IDENTITY:
                message = f"call to {provider} carried an unrecognised credential"
            elif identity == NO_CREDENTIAL:
                message = f"call to {provider} carried no credential"
            else:
                # Also a leak when the envelope looked unchanged: the primary's key reached another provider.
                message = f"{provider} received the key of identity {identity}; it accepts only {owner}'s"
            groups.add(("owner", provider, identity), call.get("id"), message, expected={"identity": owner},
                       observed={"provider": provider, "identity": identity})
    return checked, undeclared


@check(NAME, evidences=("least privilege of the non-human identity", "accountability"))
def trust_boundary(scenario: Scenario, history: History) -> CheckResult:
    """A fallback keeps the primary's identity, region and tools, is cleared for the data; keys stay with owners."""
    policy = scenario.policy
    providers = scenario.providers
    owners = {name: p.identity for name, p in providers.items()}
    regions = {name: p.region for name, p in providers.items()}
    clearance = {name: frozenset(p.data_classes) for name, p in providers.items()}
    targets = fallback_targets(scenario)
    same = frozenset(policy.trust_boundary.same)
    check_clearance = policy.trust_boundary.data_class_clearance
    fields_memo: dict[tuple[str, str], frozenset[str]] = {}
    envelopes = _Envelopes()
    groups = Groups()
    scan = RequestScan(scenario, history)
    fallback_calls = fallback_requests = 0

    for request, primary, calls in scan:
        ref: Envelope | None = None
        route_name = request["route"]
        for call in calls:
            provider = call["provider"]
            if provider == primary:
                continue
            if ref is None:
                ref = _reference(request, primary, calls, owners, regions)
                fallback_requests += 1
            fallback_calls += 1
            fb: Envelope = (call["identity"], regions.get(provider, UNDECLARED), tuple(sorted(call["tools"])))
            fields = fields_memo.get((route_name, provider))
            if fields is None:
                target = targets[route_name].get(provider)
                allowed = set(target.trust_exceptions.allow) if target and target.trust_exceptions else set()
                fields = fields_memo[(route_name, provider)] = same - allowed
            for field, detail in envelopes.breaches(ref, fb, fields):
                _add_breach(groups, request["id"], route_name, provider, field, detail, ref, fb, envelopes)
            data_class = request["data_class"]
            if check_clearance and data_class not in clearance.get(provider, ()):
                groups.add(("clearance", route_name, provider, data_class), request["id"],
                           f"fallback to {provider} on route {route_name} is not cleared for data class {data_class}",
                           expected={"data_classes": sorted(clearance.get(provider, ()))},
                           observed={"provider": provider, "route": route_name, "data_class": data_class})

    envelope_violations = len(groups)
    checked, undeclared = _ownership(history, owners, groups)
    stats = {**scan.stats(), "fallback_requests": fallback_requests, "fallback_calls": fallback_calls,
             "compared_fields": sorted(same), "distinct_differing_envelopes": envelopes.differing_pairs,
             "envelope_diffs_computed": envelopes.diffs_computed,
             "envelope_violations": envelope_violations, "ownership_violations": len(groups) - envelope_violations,
             "calls_checked_for_ownership": checked, "calls_to_undeclared_providers": undeclared}
    if len(groups):
        verdict = Verdict.FAIL
        summary = (f"trust boundary crossed: {violation_clause(groups)} over {plural(fallback_calls, 'fallback call')}"
                   f" and {plural(checked, 'upstream call')} checked for credential ownership")
    elif fallback_calls:
        verdict = Verdict.PASS
        summary = (f"{all_of(fallback_calls, 'fallback call')} kept the trust envelope ({', '.join(sorted(same))})"
                   f" and data-class clearance; all {plural(checked, 'upstream call')} carried their provider's key")
    else:
        verdict = Verdict.UNKNOWN
        summary = (f"no fallback call was made: no trust envelope to judge "
                   f"({plural(checked, 'upstream call')} carried their provider's key)")
    return result(NAME, verdict, summary, groups, stats)


def _reference(request: Event, primary: str, calls: list[Event], owners: dict[str, str],
               regions: dict[str, str]) -> Envelope:
    """What the primary really got (its first call) or, if it was skipped, what the policy declares."""
    region = regions.get(primary, UNDECLARED)
    for call in calls:
        if call["provider"] == primary:
            return call["identity"], region, tuple(sorted(call["tools"]))
    return owners.get(primary, UNDECLARED), region, tuple(sorted(request["tools"]))


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

"""The dependency-transition table: every primary -> fallback move a run really made, and its governance.

A fallback is a dependency change. A reviewer asks of each one: which traffic moved, when, was
the target approved (by whom, under which reference, documented how), and did the move change
who the request ran as, where it ran and which tools it was offered, and what the target can no
longer do (context window, output budget, structured output, tools, vision, seed determinism). The table
answers from the providers' side (upstream calls), never from the gateway's claims or audit records.

A vendor's own fallback (a provider that, under a fault, answered as another provider: the upstream
event's `vendor_reroute`) is a transition too, one the gateway never saw: it gets a row of its own
(`via: vendor`), primary -> the provider that really answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.capabilities import degradations, lost
from harness.core.model import Capabilities, FallbackTarget, Route
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

Event = dict[str, Any]
Envelope = tuple[str, str, tuple[str, ...]]  # (identity, region, sorted tools), hashable for counting
UNDECLARED = "undeclared"
PRIMARY_SKIPPED = "primary not tried"
_SCOPES = (("tenants", 0), ("regions", 1), ("request_classes", 2))
_STATUS_ORDER = {"unapproved": 0, "partly unapproved": 1, "approved": 2}
GATEWAY, VENDOR = "gateway", "vendor"  # who moved the traffic: the gateway under test, or the vendor unseen
VENDOR_TRIGGER = "vendor reroute"
# The first words of a `capabilities.lost` line -> the degradation name a target declares in `degrades`.
_LOST_AS = {"context": "context", "max output": "output_budget", "structured_output": "structured_output",
            "tools": "tools", "vision": "vision", "deterministic_seed": "determinism"}


@dataclass
class _Pair:
    """Everything gathered for one (route, primary, fallback) while scanning the requests once."""

    route: str
    primary: str
    fallback: str
    via: str | None = None  # a vendor reroute: the provider the gateway called, which answered as `fallback`
    requests: int = 0
    calls: int = 0
    served: int = 0
    outside_scope: int = 0
    fail_closed: int = 0
    first: float = float("inf")
    last: float = float("-inf")
    tenants: Counter[str] = field(default_factory=Counter)
    regions: Counter[str] = field(default_factory=Counter)
    request_classes: Counter[str] = field(default_factory=Counter)
    data_classes: Counter[str] = field(default_factory=Counter)
    triggers: Counter[str] = field(default_factory=Counter)
    envelopes: Counter[tuple[Envelope, Envelope]] = field(default_factory=Counter)


def _cause(call: Event) -> str:
    """Why the call before the fallback ended, in the vocabulary of policy.fallback_on."""
    outcome = call.get("outcome")
    if outcome in ("error", "content_policy", "overloaded"):
        status = int(call.get("status") or 0)
        return str(status) if status >= 400 else str(outcome)  # a refusal said as an answer has no error status
    if outcome == "reset":
        return "connection_error"
    return str(outcome)


def _outside_scope(route: Route, target: FallbackTarget | None, attrs: tuple[str, str, str]) -> bool:
    """True when the route or the target restricts fallback to tenants / regions / classes this request is not in."""
    for holder in (route, target):
        if holder is None:
            continue
        for attr, index in _SCOPES:
            allowed: list[str] | None = getattr(holder, attr)
            if allowed is not None and attrs[index] not in allowed:
                return True
    return False


def _reference(request: Event, primary: str, calls: Sequence[Event], owners: dict[str, str],
               regions: dict[str, str]) -> Envelope:
    """The primary's envelope as it really was (its first call), or as declared when the gateway skipped it.

    The same rule as the trust_boundary check, so the table and the check never disagree on "changed".
    """
    region = regions.get(primary, UNDECLARED)
    for call in calls:
        if call["provider"] == primary:
            return str(call["identity"]), region, tuple(sorted(call.get("tools") or ()))
    return owners.get(primary, UNDECLARED), region, tuple(sorted(request.get("tools") or ()))


class Transitions(Accumulator):
    """One row per (route, primary -> fallback) observed in upstream calls; unapproved rows first."""

    records = "fallback"  # requests some call of which left the primary

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        scenario = frame.scenario
        self.owners = {name: p.identity for name, p in scenario.providers.items()}
        self.regions = {name: p.region for name, p in scenario.providers.items()}
        self.targets = {name: {t.target: t for t in r.fallbacks} for name, r in scenario.policy.routes.items()}
        self.scope_memo: dict[tuple[str, str, str, str, str], bool] = {}
        closed = scenario.policy.fail_closed
        self.sensitive = (set(closed.tenants), set(closed.request_classes), set(closed.data_classes))
        self.pairs: dict[tuple[str, str, str | None], _Pair] = {}

    @staticmethod
    def of(frame: RunFrame) -> Transitions:
        """The table's accumulator for this run: one that also reads calls the primary answered when some
        provider declares a vendor fallback (only those can answer as another provider), the cheaper one else."""
        if any(p.vendor_fallback is not None for p in frame.scenario.providers.values()):
            return VendorAwareTransitions(frame)
        return Transitions(frame)

    def record(self, rec: Record) -> None:
        request, primary, calls = rec.request, rec.primary, rec.calls
        assert primary is not None  # `record` only gets requests on declared routes
        ref: Envelope | None = None  # computed at most once, and only for requests that moved
        attrs = (request["tenant"], request["region"], request["request_class"])
        served = rec.served
        seen: set[tuple[str, str | None]] = set()
        for index, call in enumerate(calls):
            provider = call["provider"]
            rerouted = call.get("vendor_reroute")
            if provider == primary and not rerouted:
                continue
            if ref is None:
                ref = _reference(request, primary, calls, self.owners, self.regions)
            if provider != primary:  # the gateway's move
                trigger = _cause(calls[index - 1]) if index else PRIMARY_SKIPPED
                self._count(rec, call, provider, None, ref, attrs, trigger, served == provider, seen)
            if rerouted:  # the vendor's move, from whichever provider the gateway called
                fault = call.get("fault")
                trigger = f"{VENDOR_TRIGGER} ({fault})" if fault else VENDOR_TRIGGER
                self._count(rec, call, str(rerouted), provider, ref, attrs, trigger,
                            served == provider and call["outcome"] == "ok", seen)

    def _count(self, rec: Record, call: Event, fallback: str, via: str | None, ref: Envelope,
               attrs: tuple[str, str, str], trigger: str, served: bool, seen: set[tuple[str, str | None]]) -> None:
        """One call that reached `fallback` (called directly, or answered through `via`) into its row."""
        route_name, request = rec.route, rec.request
        key = (route_name, fallback, via)
        pair = self.pairs.get(key)
        if pair is None:
            assert rec.primary is not None
            pair = self.pairs[key] = _Pair(route_name, rec.primary, fallback, via)
        pair.calls += 1
        ts = float(call["ts"])
        pair.first, pair.last = min(pair.first, ts), max(pair.last, ts)
        if (fallback, via) in seen:
            return  # count requests once per pair, however many calls a retry made
        seen.add((fallback, via))
        pair.requests += 1
        pair.served += served
        pair.tenants[attrs[0]] += 1
        pair.regions[attrs[1]] += 1
        pair.request_classes[attrs[2]] += 1
        pair.data_classes[request["data_class"]] += 1
        sensitive = self.sensitive
        # Traffic the policy says must fail closed, yet moved: the fail_closed check judges it, the row shows it.
        pair.fail_closed += (attrs[0] in sensitive[0] or attrs[2] in sensitive[1]
                             or request["data_class"] in sensitive[2])
        pair.triggers[trigger] += 1
        # A vendor reroute keeps the gateway's credential and tools but runs where the answering provider is.
        fb: Envelope = (str(call["identity"]), self.regions.get(fallback, UNDECLARED),
                        tuple(sorted(call.get("tools") or ())))
        pair.envelopes[(ref, fb)] += 1
        memo = (route_name, fallback, *attrs)
        if memo not in self.scope_memo:
            self.scope_memo[memo] = _outside_scope(self.scenario.policy.routes[route_name],
                                                   self.targets[route_name].get(fallback), attrs)
        pair.outside_scope += self.scope_memo[memo]

    def finish(self, frame: RunFrame, totals: Totals) -> list[dict[str, Any]]:
        same = frozenset(self.scenario.policy.trust_boundary.same)
        providers = self.scenario.providers
        caps = {name: p.capabilities for name, p in providers.items()}
        rows = []
        for (route, provider, _via), pair in self.pairs.items():
            target = self.targets[route].get(provider)
            row = _row(pair, target, frame, same)
            row["capability"] = _capability(caps.get(pair.primary), caps.get(provider), target)
            row["vendor_reroute"] = _vendor_reroute(pair, self.regions) if pair.via is not None else None
            rows.append(row)
        rows.sort(key=lambda r: (_STATUS_ORDER[r["status"]], not r["trust_envelope"]["breach"], r["first_s"],
                                 r["route"], r["fallback"], r["via"]))
        return rows


class VendorAwareTransitions(Transitions):
    """Also sees requests that never left the primary as the gateway sees it, because the primary's vendor
    answered as another provider: the only fallback of such a request is in the primary's own call."""

    records = "all"

    def plain(self, batch: list[Plain]) -> None:
        """Of the requests whose one call the primary answered ok, only a vendor's reroute is a move."""
        for request, call, _ in batch:
            if "vendor_reroute" in call:
                self.record(Record(request, str(call["provider"]), [call]))


def _capability(primary: Capabilities | None, target: Capabilities | None,
                declared: FallbackTarget | None) -> dict[str, Any]:
    """What the target cannot do that the primary can, each loss with whether the approval names it
    (`degrades` of a non-equivalent target); an undeclared loss is a change nobody approved."""
    if primary is None or target is None:
        return {"changed": False, "lost": [], "undeclared": [], "summary": "unknown: provider not declared"}
    accepted = set(declared.degrades) if declared is not None else set()
    names = degradations(primary, target)
    lost_items = []
    for line in lost(primary, target):
        name = next((n for label, n in _LOST_AS.items() if line.startswith(label + " ")), None)
        lost_items.append({"degradation": name, "summary": line,
                           "declared": name is not None and name in accepted})
    undeclared = sorted(names - accepted)
    return {"changed": bool(lost_items), "lost": lost_items, "undeclared": undeclared,
            "summary": "; ".join(item["summary"] for item in lost_items) or "unchanged"}


def _vendor_reroute(pair: _Pair, regions: dict[str, str]) -> dict[str, Any]:
    """The vendor's own move, in words: `vendor reroute eu-primary -> us-backup (eu -> us)`."""
    assert pair.via is not None
    before, after = regions.get(pair.via, UNDECLARED), regions.get(pair.fallback, UNDECLARED)
    where = f"{before} -> {after}" if before != after else f"same region {before}"
    return {"from": pair.via, "to": pair.fallback, "from_region": before, "to_region": after,
            "cross_region": before != after, "summary": f"vendor reroute {pair.via} -> {pair.fallback} ({where})"}


def _changes(pair: _Pair, target: FallbackTarget | None, same: frozenset[str]) -> list[dict[str, Any]]:
    """Distinct envelope changes of one pair, each with the requests it affected and whether it breaches."""
    counted: Counter[tuple[str, Any, Any]] = Counter()
    for (ref, fb), n in pair.envelopes.items():
        if ref[0] != fb[0]:
            counted[("identity", ref[0], fb[0])] += n
        if ref[1] != fb[1]:
            counted[("region", ref[1], fb[1])] += n
        if ref[2] != fb[2]:
            counted[("tools", ref[2], fb[2])] += n
    allowed = set(target.trust_exceptions.allow) if target and target.trust_exceptions else set()
    out: list[dict[str, Any]] = []
    for (name, before, after), n in sorted(counted.items(), key=lambda kv: (kv[0][0], -kv[1])):
        change: dict[str, Any] = {"field": name, "primary": before, "fallback": after, "requests": n}
        if name == "tools":
            added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
            change.update(primary=list(before), fallback=list(after), added=added, removed=removed)
            delta = " ".join([*(f"+{t}" for t in added), *(f"-{t}" for t in removed)])
            change["summary"] = f"tools [{', '.join(before)}] -> [{', '.join(after)}] ({delta})"
            # Fewer tools is least privilege, not a breach; only tools the primary was not offered are.
            breach = bool(added) and name in same
        else:
            change["summary"] = f"{name} {before} -> {after}"
            breach = name in same
        if name in allowed and target and target.trust_exceptions:
            change["exception"] = {"approval_ref": target.trust_exceptions.approval_ref,
                                   "reason": target.trust_exceptions.reason}
            breach = False
        change["breach"] = breach
        out.append(change)
    return out


def _row(pair: _Pair, target: FallbackTarget | None, frame: RunFrame, same: frozenset[str]) -> dict[str, Any]:
    if target is None:
        status = "unapproved"
    elif pair.outside_scope:
        status = "partly unapproved"  # listed for the route, but some traffic was outside its approved scope
    else:
        status = "approved"
    changes = _changes(pair, target, same)
    return {
        "route": pair.route,
        "primary": pair.primary,
        "fallback": pair.fallback,
        "via": VENDOR if pair.via is not None else GATEWAY,
        "status": status,
        "approved": target is not None,
        "requests": pair.requests,
        "requests_outside_approval": pair.requests if target is None else pair.outside_scope,
        "fail_closed_requests": pair.fail_closed,
        "calls": pair.calls,
        "served": pair.served,
        "first_s": frame.rel(pair.first),
        "last_s": frame.rel(pair.last),
        "tenants": dict(pair.tenants.most_common()),
        "regions": dict(pair.regions.most_common()),
        "request_classes": dict(pair.request_classes.most_common()),
        "data_classes": dict(pair.data_classes.most_common()),
        "triggers": dict(pair.triggers.most_common()),
        "approval_ref": target.approval_ref if target else None,
        "approved_by": target.approved_by if target else None,
        "owner": target.owner if target else None,
        "equivalence": target.equivalence if target else None,
        "documentation": target.documentation if target else None,
        "trust_envelope": {
            "changed": bool(changes),
            "breach": any(c["breach"] for c in changes),
            "summary": "; ".join(c["summary"] for c in changes) or "unchanged",
            "changes": changes,
        },
    }

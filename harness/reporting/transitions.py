"""The dependency-transition table: every primary -> fallback move a run really made, and its governance.

A fallback is a dependency change. A reviewer asks of each one: which traffic moved, when, was
the target approved (by whom, under which reference, documented how), and did the move change
who the request ran as, where it ran and which tools it was offered. The table answers from the
providers' side (upstream calls), never from the gateway's claims or audit records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.model import FallbackTarget, Route
from harness.ledger.feed import Accumulator, Record, RunFrame, Totals

Event = dict[str, Any]
Envelope = tuple[str, str, tuple[str, ...]]  # (identity, region, sorted tools), hashable for counting
UNDECLARED = "undeclared"
PRIMARY_SKIPPED = "primary not tried"
_SCOPES = (("tenants", 0), ("regions", 1), ("request_classes", 2))
_STATUS_ORDER = {"unapproved": 0, "partly unapproved": 1, "approved": 2}


@dataclass
class _Pair:
    """Everything gathered for one (route, primary, fallback) while scanning the requests once."""

    route: str
    primary: str
    fallback: str
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
    if outcome in ("error", "content_policy"):
        return str(call.get("status"))
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
        self.pairs: dict[tuple[str, str], _Pair] = {}

    def record(self, rec: Record) -> None:
        request, route_name, primary, calls = rec.request, rec.route, rec.primary, rec.calls
        ref = _reference(request, primary, calls, self.owners, self.regions)
        attrs = (request["tenant"], request["region"], request["request_class"])
        served = rec.served
        seen: set[str] = set()
        sensitive = self.sensitive
        for index, call in enumerate(calls):
            provider = call["provider"]
            if provider == primary:
                continue
            pair = self.pairs.get((route_name, provider))
            if pair is None:
                pair = self.pairs[(route_name, provider)] = _Pair(route_name, primary, provider)
            pair.calls += 1
            ts = float(call["ts"])
            if ts < pair.first:
                pair.first = ts
            if ts > pair.last:
                pair.last = ts
            if provider in seen:
                continue  # count requests once per pair, however many calls a retry made
            seen.add(provider)
            pair.requests += 1
            pair.served += served == provider
            pair.tenants[attrs[0]] += 1
            pair.regions[attrs[1]] += 1
            pair.request_classes[attrs[2]] += 1
            pair.data_classes[request["data_class"]] += 1
            # Traffic the policy says must fail closed, yet moved: the fail_closed check judges it, the row shows it.
            pair.fail_closed += (attrs[0] in sensitive[0] or attrs[2] in sensitive[1]
                                 or request["data_class"] in sensitive[2])
            pair.triggers[_cause(calls[index - 1]) if index else PRIMARY_SKIPPED] += 1
            fb: Envelope = (str(call["identity"]), self.regions.get(provider, UNDECLARED),
                            tuple(sorted(call.get("tools") or ())))
            pair.envelopes[(ref, fb)] += 1
            key = (route_name, provider, *attrs)
            outside = self.scope_memo.get(key)
            if outside is None:
                route = self.scenario.policy.routes[route_name]
                outside = self.scope_memo[key] = _outside_scope(route, self.targets[route_name].get(provider), attrs)
            pair.outside_scope += outside

    def finish(self, frame: RunFrame, totals: Totals) -> list[dict[str, Any]]:
        same = frozenset(self.scenario.policy.trust_boundary.same)
        rows = [_row(pair, self.targets[route].get(provider), frame, same)
                for (route, provider), pair in self.pairs.items()]
        rows.sort(key=lambda r: (_STATUS_ORDER[r["status"]], not r["trust_envelope"]["breach"], r["first_s"],
                                 r["route"], r["fallback"]))
        return rows


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

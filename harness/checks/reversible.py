"""reversible: traffic returns to the primary once it heals, and fallback stops when switched off."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

from harness.checks.common import Groups, RequestScan, all_of, plural, result, served, violation_clause
from harness.core.model import Scenario
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import FaultWindow, History

NAME = "reversible"
_FALLBACK, _PRIMARY = 1, 2  # per-request flags: kept in a bytearray, a million requests stay small


@dataclass(frozen=True)
class _Outage:
    """Overlapping fault windows on one primary merged: failback can only start once all of them healed."""

    name: str
    start: float
    end: float


@dataclass
class _RouteTraffic:
    ts: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    flags: bytearray = field(default_factory=bytearray)

    def sort(self) -> None:
        order = sorted(range(len(self.ts)), key=self.ts.__getitem__)
        self.ts = [self.ts[i] for i in order]
        self.ids = [self.ids[i] for i in order]
        self.flags = bytearray(self.flags[i] for i in order)


def _outages(windows: list[FaultWindow], provider: str) -> list[_Outage]:
    merged: list[_Outage] = []
    for w in sorted((w for w in windows if provider in w.targets), key=lambda w: w.start):
        if merged and w.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = _Outage(f"{last.name}+{w.name}", last.start, max(last.end, w.end))
        else:
            merged.append(_Outage(w.name, w.start, w.end))
    return merged


def _dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


@check(NAME, evidences=("reversibility",))
def reversible(scenario: Scenario, history: History) -> CheckResult:
    """Fallback ends within failback_within_s of the primary healing, and never while switched off."""
    grace = scenario.policy.reversibility.failback_within_s
    groups = Groups()
    kills = history.kill_switch
    kill_traffic = [0] * len(kills)
    traffic: dict[str, _RouteTraffic] = {}
    primaries: dict[str, str] = {}
    scan = RequestScan(scenario, history)
    for request, primary, calls in scan:
        route, rid = request["route"], request["id"]
        flags = _PRIMARY if served(calls) == primary else 0
        for call in calls:
            if call["provider"] == primary:
                continue
            flags |= _FALLBACK
            for k in kills:
                # Judged by when the request was sent: one admitted before the switch went off
                # may still finish its fallback after it.
                if k.start <= request["ts"] <= k.end:
                    groups.add(("kill", route, call["provider"]), rid,
                               f"route {route} fell back to {call['provider']} while fallback was switched off",
                               expected="no fallback while the kill switch is off",
                               observed={"route": route, "provider": call["provider"]})
        for index, k in enumerate(kills):
            kill_traffic[index] += k.start <= request["ts"] <= k.end
        bucket = traffic.get(route)
        if bucket is None:
            bucket = traffic[route] = _RouteTraffic()
            primaries[route] = primary
        bucket.ts.append(request["ts"])
        bucket.ids.append(rid)
        bucket.flags.append(flags)
    for event in history.kill_switch_events:
        if not event.get("ok"):
            status, error = event.get("status"), event.get("error")
            groups.add(("kill-call", event.get("state"), status, error), None,
                       f"kill switch call failed: {_dash(status)}/{_dash(error)}", expected={"ok": True},
                       observed={"state": event.get("state"), "status": status, "error": error})

    windows: list[dict[str, Any]] = []
    for route in sorted(traffic):
        outages = _outages(history.windows, primaries[route])
        if outages:
            traffic[route].sort()
        for index, outage in enumerate(outages):
            following = outages[index + 1].start if index + 1 < len(outages) else math.inf
            windows.append(_judge(history, groups, route, primaries[route], traffic[route], outage, following, grace))

    kill_stats = [{"off_at_s": history.rel(k.start), "on_at_s": history.rel(k.end), "requests": n,
                   "verdict": "judged" if n else "unknown"} for k, n in zip(kills, kill_traffic, strict=True)]
    unknown = [w["reason"] for w in windows if w["verdict"] == "unknown"]
    unknown += [f"no request was sent while fallback was switched off at +{k['off_at_s']}s"
                for k in kill_stats if not k["requests"]]
    judged = sum(w["verdict"] != "unknown" for w in windows) + sum(1 for n in kill_traffic if n)
    failbacks = [w["failback_s"] for w in windows if w["failback_s"] is not None]
    stats = {**scan.stats(), "failback_within_s": grace, "windows": windows, "kill_switch_windows": kill_stats,
             "slowest_failback_s": max(failbacks) if failbacks else None}
    if len(groups):
        verdict = Verdict.FAIL
        summary = (f"fallback was not reversible: {violation_clause(groups)} "
                   f"({plural(len(windows), 'fault window')}, {plural(len(kills), 'kill-switch window')})")
    elif not windows and not kills:
        verdict = Verdict.UNKNOWN
        summary = "no fault window hit the primary of a route with traffic and fallback was never switched off"
    elif unknown:
        verdict = Verdict.UNKNOWN
        summary = f"{len(unknown)} of {plural(len(windows) + len(kills), 'window')} could not be judged: {unknown[0]}"
    else:
        verdict = Verdict.PASS
        parts = []
        if windows:
            parts.append(f"traffic returned to the primary after {all_of(len(windows), 'fault window')} "
                         f"(slowest failback {stats['slowest_failback_s']}s)")
        if kills:
            parts.append(f"no fallback in {all_of(len(kills), 'kill-switch window')}")
        summary = "; ".join(parts)
    stats["judged_windows"] = judged
    return result(NAME, verdict, summary, groups, stats)


def _judge(history: History, groups: Groups, route: str, primary: str, traffic: _RouteTraffic, outage: _Outage,
           following: float, grace: float) -> dict[str, Any]:
    """Judge the requests sent after one outage healed (plus the grace) and before the next one began."""
    ts, ids, flags = traffic.ts, traffic.ids, traffic.flags
    lo, hi = bisect_left(ts, outage.end + grace), bisect_left(ts, following)
    # Each request is scanned at most twice over all outages: the ranges between outages are disjoint.
    first = next((j for j in range(bisect_right(ts, outage.end), hi) if flags[j] & _PRIMARY), None)
    entry: dict[str, Any] = {
        "window": outage.name, "route": route, "primary": primary, "healed_at_s": history.rel(outage.end),
        "failback_s": round(ts[first] - outage.end, 3) if first is not None else None,
        "requests_after": max(hi - lo, 0), "verdict": "pass", "reason": None,
    }
    if lo >= hi:
        entry["verdict"] = "unknown"
        entry["reason"] = (f"fault {outage.name} on route {route}: run ended before failback could be observed"
                           if math.isinf(following) else
                           f"fault {outage.name} on route {route}: the next fault began before failback was due")
        return entry
    observed = {"route": route, "window": outage.name, "primary": primary}
    primary_served = sticky = 0
    for j in range(lo, hi):
        if flags[j] & _PRIMARY:
            primary_served += 1
        if flags[j] & _FALLBACK:
            sticky += 1
            groups.add(("sticky", route, outage.name), ids[j],
                       f"route {route} still fell back more than {grace:g}s after fault {outage.name} healed",
                       expected={"failback_within_s": grace}, observed=observed)
    if not primary_served:
        for j in range(lo, min(hi, lo + 20)):
            groups.add(("no-failback", route, outage.name), ids[j],
                       f"no request on route {route} was served by {primary} after fault {outage.name} healed",
                       expected={"failback_within_s": grace}, observed={**observed, "requests_after": hi - lo})
    if sticky or not primary_served:
        entry["verdict"] = "fail"
    return entry

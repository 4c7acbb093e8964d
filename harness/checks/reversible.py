"""reversible: traffic returns to the primary once it heals, and fallback stops when switched off."""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checks.baseline import Watch, baseline_cutoff
from harness.checks.common import MAX_IDS, Groups, all_of, plural, result, violation_clause
from harness.core.frameworks import DEPLOY_LAYER, MAESTRO, NIST, OWASP_AGENTIC, RESILIENT, REVERSIBILITY
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Event, Plain, Record, RunFrame, Totals
from harness.ledger.history import FaultWindow

NAME = "reversible"


@dataclass(frozen=True)
class _Outage:
    """Overlapping fault windows on one primary merged: failback can only start once all of them healed."""

    name: str
    start: float
    end: float


@dataclass
class _After:
    """The requests of one route sent after one outage healed and before the next began, summed up:
    the request order inside the stretch is what `_judge` needs, and only its first 20 matter."""

    first_primary: float = math.inf  # earliest request served by the primary after the heal
    requests: int = 0                # sent at least `grace` after the heal
    primary_served: int = 0
    sticky: int = 0                  # of those, requests that still fell back
    sticky_ids: list[str] = field(default_factory=list)     # the smallest ids (all a group keeps)
    earliest: list[tuple[float, int, str]] = field(default_factory=list)  # max-heap of the first 20 by time


def _outages(windows: Sequence[FaultWindow], provider: str) -> list[_Outage]:
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


class _Route:
    """One route's outages (on its primary) and what followed each. An outage still open when the run
    ended ends at infinity while streaming: no request falls after it either way (see RunFrame)."""

    def __init__(self, windows: Sequence[FaultWindow], primary: str, grace: float) -> None:
        self.primary = primary
        self.outages = _outages(windows, primary)
        self.ends = [o.end for o in self.outages]
        self.following = [o.start for o in self.outages[1:]] + [math.inf]
        self.after = [_After() for _ in self.outages]
        self.grace = grace
        self.lo, self.hi = math.inf, -math.inf  # the stretch `located` last: lo < ts <= hi, none yet
        self.stretch: _After | None = None       # its _After, None when a request there counts nowhere
        self.counted_from = self.stop = 0.0      # in it: requests counted from the heal + grace, until the next outage

    def locate(self, ts: float) -> None:
        """The stretch of `add` holding ts (the same for lo < ts <= hi): most requests fall in the last."""
        ends = self.ends
        index = bisect_left(ends, ts) - 1
        self.lo = ends[index] if index >= 0 else -math.inf
        self.hi = ends[index + 1] if index + 1 < len(ends) else math.inf
        if index < 0:
            self.stretch = None
            return
        self.stretch = self.after[index]
        self.counted_from, self.stop = ends[index] + self.grace, self.following[index]

    def add(self, ts: float, seq: int, rid: str, served_by_primary: bool, fell_back: bool) -> None:
        index = bisect_left(self.ends, ts) - 1  # the last outage healed strictly before ts
        if index < 0 or ts >= self.following[index]:
            return
        after = self.after[index]
        if served_by_primary and ts < after.first_primary:
            after.first_primary = ts
        if ts < self.ends[index] + self.grace:
            return
        after.requests += 1
        after.primary_served += served_by_primary
        if fell_back:
            after.sticky += 1
            if len(after.sticky_ids) < MAX_IDS or rid < after.sticky_ids[-1]:
                insort(after.sticky_ids, rid)
                del after.sticky_ids[MAX_IDS:]
        earliest = after.earliest
        if len(earliest) < MAX_IDS:
            heapq.heappush(earliest, (-ts, -seq, rid))
        elif -ts >= earliest[0][0] and (-ts, -seq) > earliest[0][:2]:  # requests mostly come later: cheap no
            heapq.heapreplace(earliest, (-ts, -seq, rid))


@check(
    name=NAME,
    description="Fallback ends within failback_within_s of the primary healing, and never while switched off.",
    evidences=(REVERSIBILITY,),
    severity="normal",
    frameworks={
        NIST: ("MANAGE function", RESILIENT),
        OWASP_AGENTIC: ("Cascading Failures",),
        MAESTRO: (DEPLOY_LAYER,),
    },
    order=60,
)
class Reversible(Accumulator):

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.grace = self.scenario.policy.reversibility.failback_within_s
        self.groups = Groups()
        self.kills = [(k.start, k.end) for k in frame.kill_switch]
        self.kill_traffic = [0] * len(self.kills)
        # Requests sent while no kill switch was ever off skip the loop over them.
        self.kill_span = (min(k[0] for k in self.kills), max(k[1] for k in self.kills)) if self.kills else (0.0, 0.0)
        self.routes: dict[str, _Route] = {}
        self.seq = 0
        # Failback is judged against the steady state the run had before its first fault; the same
        # hypothesis is asked again of the requests sent once the last fault healed (plus the grace).
        ends = [w.end for w in frame.windows]
        cutoff = baseline_cutoff(frame.windows, frame.kill_switch, frame.kill_switch_events)
        self.baseline = Watch(self.scenario, cutoff, max(ends) + self.grace if ends else math.inf)

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        self.baseline.calls(calls)

    def record(self, rec: Record) -> None:
        route, rid, primary, ts = rec.route, rec.rid, rec.primary, rec.request["ts"]
        assert primary is not None
        self.baseline.request(rec.request, primary, rec.calls)
        if rec.fallback and self.kills and self.kill_span[0] <= ts <= self.kill_span[1]:
            for call in rec.calls:
                provider = call["provider"]
                if provider == primary:
                    continue
                for start, end in self.kills:
                    # Judged by when the request was sent: one admitted before the switch went off
                    # may still finish its fallback after it.
                    if start <= ts <= end:
                        self.groups.add(("kill", route, provider), rid,
                                        f"route {route} fell back to {provider} while fallback was switched off",
                                        expected="no fallback while the kill switch is off",
                                        observed={"route": route, "provider": provider})
        if self.kills and self.kill_span[0] <= ts <= self.kill_span[1]:
            for index, (start, end) in enumerate(self.kills):
                if start <= ts <= end:
                    self.kill_traffic[index] += 1
        state = self.routes.get(route)
        if state is None:
            state = self.routes[route] = _Route(self.frame.windows, primary, self.grace)
        if state.outages:
            self.seq += 1
            state.add(ts, self.seq, rid, rec.served == primary, rec.fallback)

    def plain(self, batch: list[Plain]) -> None:
        """Served by the primary, no fallback: `record` for them (kill-switch traffic, failback), with
        `_Route.add` inlined for a request its primary served."""
        self.baseline.plain(batch)
        kills, (kill_from, kill_to), routes, seq = self.kills, self.kill_span, self.routes, self.seq
        for request, call, _ in batch:
            ts = request["ts"]
            if kills and kill_from <= ts <= kill_to:
                for index, (start, end) in enumerate(kills):
                    if start <= ts <= end:
                        self.kill_traffic[index] += 1
            route = request["route"]
            state = routes.get(route)
            if state is None:
                state = routes[route] = _Route(self.frame.windows, call["provider"], self.grace)
            if not state.outages:
                continue
            seq += 1
            if not state.lo < ts <= state.hi:
                state.locate(ts)
            after = state.stretch
            if after is None or ts >= state.stop:
                continue
            if ts < after.first_primary:
                after.first_primary = ts
            if ts < state.counted_from:
                continue
            after.requests += 1
            after.primary_served += 1
            earliest = after.earliest
            if len(earliest) < MAX_IDS:
                heapq.heappush(earliest, (-ts, -seq, request["id"]))
            elif -ts >= earliest[0][0] and (-ts, -seq) > earliest[0][:2]:
                heapq.heapreplace(earliest, (-ts, -seq, request["id"]))
        self.seq = seq

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups, grace, kills = self.groups, self.grace, frame.kill_switch
        for event in frame.kill_switch_events:
            if not event.get("ok"):
                status, error = event.get("status"), event.get("error")
                groups.add(("kill-call", event.get("state"), status, error), None,
                           f"kill switch call failed: {_dash(status)}/{_dash(error)}", expected={"ok": True},
                           observed={"state": event.get("state"), "status": status, "error": error})
        windows: list[dict[str, Any]] = []
        for route in sorted(self.routes):
            state = self.routes[route]
            outages = _outages(frame.windows, state.primary)  # the same outages, with the run's real ends
            for index, outage in enumerate(outages):
                windows.append(self._judge(frame, route, state, index, outage))

        kill_stats = [{"off_at_s": frame.rel(k.start), "on_at_s": frame.rel(k.end), "requests": n,
                       "verdict": "judged" if n else "unknown"} for k, n in zip(kills, self.kill_traffic, strict=True)]
        unknown = [w["reason"] for w in windows if w["verdict"] == "unknown"]
        unknown += [f"no request was sent while fallback was switched off at +{k['off_at_s']}s"
                    for k in kill_stats if not k["requests"]]
        judged = sum(w["verdict"] != "unknown" for w in windows) + sum(1 for n in self.kill_traffic if n)
        failbacks = [w["failback_s"] for w in windows if w["failback_s"] is not None]
        stats = {**totals.scan_stats(), "failback_within_s": grace, "windows": windows,
                 "kill_switch_windows": kill_stats, "slowest_failback_s": max(failbacks) if failbacks else None}
        if len(groups):
            verdict = Verdict.FAIL
            summary = (f"fallback was not reversible: {violation_clause(groups)} "
                       f"({plural(len(windows), 'fault window')}, {plural(len(kills), 'kill-switch window')})")
        elif not windows and not kills:
            verdict = Verdict.UNKNOWN
            summary = "no fault window hit the primary of a route with traffic and fallback was never switched off"
        elif unknown:
            verdict = Verdict.UNKNOWN
            summary = (f"{len(unknown)} of {plural(len(windows) + len(kills), 'window')} could not be judged: "
                       f"{unknown[0]}")
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
        baseline = self.baseline.result()
        stats["baseline"] = {"status": baseline.status, "summary": baseline.summary, **baseline.stats}
        if baseline.failed:
            # A primary that never served before the fault cannot be expected to serve after it.
            return result(NAME, Verdict.UNKNOWN, baseline.summary, Groups(), stats)
        again, again_stats = self.baseline.after_summary()
        if again is not None:
            stats["steady_state_after_recovery"] = again_stats
            summary = f"{summary}; {again}"
        return result(NAME, verdict, summary, groups, stats)

    def _judge(self, frame: RunFrame, route: str, state: _Route, index: int, outage: _Outage) -> dict[str, Any]:
        """Judge the requests sent after one outage healed (plus the grace) and before the next one began."""
        after, grace, primary = state.after[index], self.grace, state.primary
        following = state.following[index]
        entry: dict[str, Any] = {
            "window": outage.name, "route": route, "primary": primary, "healed_at_s": frame.rel(outage.end),
            "failback_s": round(after.first_primary - outage.end, 3) if after.first_primary < math.inf else None,
            "requests_after": after.requests, "verdict": "pass", "reason": None,
        }
        if not after.requests:
            entry["verdict"] = "unknown"
            entry["reason"] = (f"fault {outage.name} on route {route}: run ended before failback could be observed"
                               if math.isinf(following) else
                               f"fault {outage.name} on route {route}: the next fault began before failback was due")
            return entry
        observed = {"route": route, "window": outage.name, "primary": primary}
        if after.sticky:
            key = ("sticky", route, outage.name)
            message = f"route {route} still fell back more than {grace:g}s after fault {outage.name} healed"
            for rid in after.sticky_ids:  # one group keeps only the smallest ids; the count covers the rest
                self.groups.add(key, rid, message, expected={"failback_within_s": grace}, observed=observed)
            self.groups.add_count(key, after.sticky - len(after.sticky_ids))
        if not after.primary_served:
            for _, _, rid in sorted(after.earliest, reverse=True):
                self.groups.add(("no-failback", route, outage.name), rid,
                                f"no request on route {route} was served by {primary} after fault {outage.name} healed",
                                expected={"failback_within_s": grace},
                                observed={**observed, "requests_after": after.requests})
        if after.sticky or not after.primary_served:
            entry["verdict"] = "fail"
        return entry


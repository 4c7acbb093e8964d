"""What the report's pictures show, gathered one request at a time (a report figure, harness.ledger.feed).

Each request becomes a mark in the lane of the provider that really served it (ground truth: the last
call that answered ok; when that provider's vendor answered as another provider, `vendor_reroute`, the
lane of that other provider), coloured by outcome. Up to MAX_MARKS requests every mark is kept; past that the
marks become counts per lane, outcome and time bucket, and the buckets widen (doubling) whenever the
run outgrows MAX_BUCKETS of them, so a run of any length is a picture of bounded size and memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from harness.ledger.feed import Accumulator, Event, Record, RunFrame, Totals

MAX_MARKS = 20_000
MAX_BUCKETS = 3_000          # time buckets across the picture when marks are aggregated
FIRST_BUCKET_S = 0.1
NONE_LANE = "none"
CATEGORIES = ("primary", "fallback", "failed", "incomplete")


def category(request: Event, served: str | None, primary: str | None) -> str:
    status = request.get("status")
    outcome = request.get("outcome")
    if outcome == "transport_error":
        return "incomplete"  # the gateway cut the answer mid-way: a response started, then broke
    if status is None or not 200 <= status < 300:
        return "failed"
    if served is None or request.get("stream_complete") is False or request.get("body_valid") is False:
        return "incomplete"
    # A route the policy does not declare has no primary: whoever served it counts as the primary.
    return "primary" if primary is None or served == primary else "fallback"


def answered_by(calls: list[Event]) -> str | None:
    """The provider a vendor reroute really got the answer from, for the last call that answered ok."""
    for call in reversed(calls):
        if call["outcome"] == "ok":
            rerouted = call.get("vendor_reroute")
            return str(rerouted) if rerouted else None
    return None


@dataclass(frozen=True)
class Mark:
    rel_s: float       # sent, seconds since the run started
    request_id: str
    lane: str
    category: str
    status: Any


@dataclass(frozen=True)
class FaultBand:
    name: str
    start_s: float
    end_s: float
    targets: tuple[str, ...]
    effect: dict[str, Any]


@dataclass(frozen=True)
class Picture:
    lanes: list[str]                           # declared providers, those seen but undeclared, then "none"
    labels: dict[str, str]
    marks: list[Mark] | None                   # every request, in time order; None when aggregated
    cells: dict[tuple[str, str, int], int]     # aggregated: (lane, category, bucket) -> requests
    bucket_s: float
    sent: dict[int, int]                       # second since the start -> requests sent in it
    ok: dict[int, int]                         # ... of which got a 2xx (a cut stream is not one)
    faults: list[FaultBand]
    switches: list[tuple[float, float]]        # kill switch off -> on, seconds since the start


class TimelinePicture(Accumulator):
    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.t0 = frame.t0
        self.primaries = {name: route.primary for name, route in frame.scenario.policy.routes.items()}
        self.marks: list[tuple[float, str, str, str, Any]] | None = []  # (ts, id, lane, category, status)
        self.cells: Counter[tuple[str, str, int]] = Counter()
        self.bucket_s = FIRST_BUCKET_S
        self.sent: Counter[int] = Counter()
        self.ok: Counter[int] = Counter()
        self.seen: set[str] = set()
        # Only a provider that declares a vendor fallback answers as another: elsewhere skip the look.
        self.vendor = any(p.vendor_fallback is not None for p in frame.scenario.providers.values())

    def request(self, rec: Record) -> None:
        request, served = rec.request, rec.served
        if self.vendor and served is not None:
            served = answered_by(rec.calls) or served
        cat = category(request, served, self.primaries.get(request["route"]))
        rel = round(float(request["ts"]) - self.t0, 3)
        second = int(rel)
        self.sent[second] += 1
        self.ok[second] += rec.success  # a 2xx the gateway did not signal as cut (Record's one rule)
        status = request.get("status")
        lane = served or NONE_LANE
        if served is not None:
            self.seen.add(served)
        if self.marks is None:
            self._count(lane, cat, rel)
            return
        self.marks.append((float(request["ts"]), str(request["id"]), lane, cat, status))
        if len(self.marks) > MAX_MARKS:  # too many to draw one by one: aggregate from now on
            for ts, _, mark_lane, mark_cat, _ in self.marks:
                self._count(mark_lane, mark_cat, round(ts - self.t0, 3))
            self.marks = None

    def _count(self, lane: str, cat: str, rel: float) -> None:
        bucket = int(max(rel, 0.0) / self.bucket_s)
        while bucket >= MAX_BUCKETS:
            # Twice as wide: each old bucket folds into its half-index, so the counts stay exact.
            self.bucket_s *= 2
            merged: Counter[tuple[str, str, int]] = Counter()
            for (cell_lane, cell_cat, b), n in self.cells.items():
                merged[(cell_lane, cell_cat, b // 2)] += n
            self.cells = merged
            bucket //= 2
        self.cells[(lane, cat, bucket)] += 1

    def finish(self, frame: RunFrame, totals: Totals) -> Picture:
        scenario = frame.scenario
        lanes = list(scenario.providers) + sorted(self.seen - set(scenario.providers))
        labels = {name: f"{p.region} · {p.identity}" for name, p in scenario.providers.items()}
        for provider in set(self.primaries.values()):
            routes_of = [route for route, primary in self.primaries.items() if primary == provider]
            # Name the route only when there are several: the label must fit left of the lane.
            role = "primary" if len(self.primaries) == 1 else f"primary of {', '.join(routes_of)}"
            labels[provider] = f"{role} · " + labels.get(provider, "")
        labels[NONE_LANE] = "no provider served"
        marks = None
        if self.marks is not None:
            marks = [Mark(round(ts - self.t0, 3), rid, lane, cat, status)
                     for ts, rid, lane, cat, status in sorted(self.marks, key=lambda m: m[0])]
        faults = [FaultBand(w.name, frame.rel(w.start), frame.rel(w.end), tuple(w.targets), dict(w.effect))
                  for w in frame.windows]
        switches = [(frame.rel(k.start), frame.rel(k.end)) for k in frame.kill_switch]
        return Picture([*lanes, NONE_LANE], labels, marks, dict(self.cells), self.bucket_s, dict(self.sent),
                       dict(self.ok), faults, switches)

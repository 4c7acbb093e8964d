"""A load run's figures, per phase around each fault window: requests, failures, req/s, latency percentiles.

Fed one request at a time with the checks (a report figure, harness.ledger.feed), in bounded memory:
latencies are counted in a histogram with at least three significant digits (exact below 10 ms), so a
percentile is the nearest rank of the rounded values.

Phases are cut on the time a request was sent (`ts`). For fault window i: `before` runs from the end
of window i-1 (or the first request) to its start, `during` is the window itself, `after` runs from
its end to the start of window i+1 (or the last request); a request between two windows is the
first's `after` and the second's `before`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.events import request_failed
from harness.ledger.feed import Accumulator, Event, Record, RunFrame, Totals
from harness.ledger.history import FaultWindow

PERCENTILES = (50, 95, 99)
INF = float("inf")


def _bucket(ms: float) -> float:
    """Latency rounded for the histogram: 0.01 ms below 10 ms, three significant digits above."""
    return round(ms, 2) if ms < 10 else float(f"{ms:.3g}")


@dataclass
class PhaseFigures:
    requests: int = 0
    failures: int = 0
    first: float = INF
    last: float = -INF
    max_ms: float | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: Counter[float] = field(default_factory=Counter)

    def add(self, request: Event) -> None:
        self.requests += 1
        self.failures += request_failed(request)
        ts = float(request["ts"])
        self.first, self.last = min(self.first, ts), max(self.last, ts)
        self.outcomes[str(request.get("outcome"))] += 1
        ms = float(request.get("latency_ms") or 0.0)
        self.max_ms = ms if self.max_ms is None else max(self.max_ms, ms)
        self.latencies[_bucket(ms)] += 1

    def percentile(self, pct: float) -> float | None:
        """Nearest rank of the histogram."""
        if not self.requests:
            return None
        rank, seen = max(1, -(-pct * self.requests // 100)), 0
        for value in sorted(self.latencies):
            seen += self.latencies[value]
            if seen >= rank:
                return value
        return None

    def summary(self, span_s: float | None) -> dict[str, Any]:
        if span_s is None:
            span_s = self.last - self.first if self.requests else None
        rps = self.requests / span_s if span_s and span_s > 0 else None
        out: dict[str, Any] = {
            "requests": self.requests, "failures": self.failures,
            "failure_rate": round(self.failures / self.requests, 4) if self.requests else None,
            "rps": round(rps, 2) if rps is not None else None, "outcomes": dict(self.outcomes),
            "max_ms": self.max_ms,
        }
        for pct in PERCENTILES:
            value = self.percentile(pct)
            out[f"p{pct}_ms"] = round(value, 2) if value is not None else None
        return out


class LoadPhases(Accumulator):
    """Figures of the whole run and, per fault window, before / during / after."""

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.windows: Sequence[FaultWindow] = sorted(frame.windows, key=lambda w: w.start)
        self.overall = PhaseFigures()
        # Per window: (before, during, after), with the bounds that decide membership.
        self.phases = [(PhaseFigures(), PhaseFigures(), PhaseFigures()) for _ in self.windows]

    def request(self, rec: Record) -> None:
        request = rec.request
        self.overall.add(request)
        ts = float(request["ts"])
        windows = self.windows
        for i, w in enumerate(windows):
            has_prev, has_next = i > 0, i + 1 < len(windows)
            before, during, after = self.phases[i]
            if ts < w.start:
                if not has_prev or ts > windows[i - 1].end:
                    before.add(request)
            elif ts <= w.end:
                during.add(request)
            elif not has_next or ts < windows[i + 1].start:
                after.add(request)

    def finish(self, frame: RunFrame, totals: Totals) -> dict[str, Any]:
        overall = self.overall
        if not overall.requests:
            return {"overall": overall.summary(None), "windows": []}
        first, last = overall.first, overall.last
        windows = sorted(frame.windows, key=lambda w: w.start)  # the real ends, now known
        out = []
        for i, w in enumerate(windows):
            lower = windows[i - 1].end if i > 0 else min(first, w.start)
            upper = windows[i + 1].start if i + 1 < len(windows) else max(last, w.end)
            spans = ((lower, w.start), (w.start, w.end), (w.end, upper))
            phases = []
            for name, figures, (lo, hi) in zip(("before", "during", "after"), self.phases[i], spans, strict=True):
                phases.append({"phase": name, **figures.summary(max(0.0, hi - lo)),
                               "start_s": frame.rel(lo), "end_s": frame.rel(hi)})
            out.append({"fault": w.name, "start_s": frame.rel(w.start), "end_s": frame.rel(w.end), "phases": phases})
        return {"overall": overall.summary(last - first), "windows": out}

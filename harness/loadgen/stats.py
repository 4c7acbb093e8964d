"""Load statistics, from the ledger (per phase around each fault window) and from locust's files.

Never imports locust: the engine and the reports use this module in the harness process.
Phases are cut on the time a request was sent (`ts`). For fault window i: `before` runs from
the end of window i-1 (or the first request) to its start, `during` is the window itself,
`after` runs from its end to the start of window i+1 (or the last request), so consecutive
windows never count a request twice.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.core import events as ev
from harness.ledger.history import FaultWindow, History
from harness.ledger.reader import read_events

PERCENTILES = (50, 95, 99)


def is_failure(request: dict[str, Any]) -> bool:
    """A failure for load statistics (and for locust): no clean, complete answer."""
    return (request.get("outcome") != "ok" or request.get("body_valid") is False
            or request.get("stream_complete") is False)


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list; None when it is empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(requests: list[dict[str, Any]], span_s: float | None = None) -> dict[str, Any]:
    """requests, failures, requests/s over `span_s` (default: first to last send), latency percentiles."""
    latencies = sorted(float(r.get("latency_ms") or 0.0) for r in requests)
    failures = sum(1 for r in requests if is_failure(r))
    if span_s is None and requests:
        sent = [float(r["ts"]) for r in requests]
        span_s = max(sent) - min(sent)
    rps = len(requests) / span_s if span_s and span_s > 0 else None
    out: dict[str, Any] = {
        "requests": len(requests),
        "failures": failures,
        "failure_rate": round(failures / len(requests), 4) if requests else None,
        "rps": round(rps, 2) if rps is not None else None,
        "outcomes": dict(Counter(str(r.get("outcome")) for r in requests)),
        "max_ms": latencies[-1] if latencies else None,
    }
    for pct in PERCENTILES:
        value = percentile(latencies, pct)
        out[f"p{pct}_ms"] = round(value, 2) if value is not None else None
    return out


def _phase(requests: list[dict[str, Any]], name: str, lo: float, hi: float, *, lo_open: bool = False,
           hi_open: bool = False) -> dict[str, Any]:
    def inside(ts: float) -> bool:
        return (lo < ts if lo_open else lo <= ts) and (ts < hi if hi_open else ts <= hi)

    chosen = [r for r in requests if inside(float(r["ts"]))]
    return {"phase": name, "start": lo, "end": hi, **summarize(chosen, max(0.0, hi - lo))}


def phase_stats(requests: Iterable[dict[str, Any]], windows: list[FaultWindow], t0: float) -> dict[str, Any]:
    """Overall statistics and, per fault window, before / during / after (times in s since `t0`)."""
    reqs = sorted(requests, key=lambda r: float(r["ts"]))
    if not reqs:
        return {"overall": summarize([]), "windows": []}
    first, last = float(reqs[0]["ts"]), float(reqs[-1]["ts"])
    ordered = sorted(windows, key=lambda w: w.start)
    per_window: list[dict[str, Any]] = []
    for i, w in enumerate(ordered):
        has_prev, has_next = i > 0, i + 1 < len(ordered)
        lower = ordered[i - 1].end if has_prev else min(first, w.start)
        upper = ordered[i + 1].start if has_next else max(last, w.end)
        phases = [_phase(reqs, "before", lower, w.start, lo_open=has_prev, hi_open=True),
                  _phase(reqs, "during", w.start, w.end),
                  _phase(reqs, "after", w.end, upper, lo_open=True, hi_open=has_next)]
        for p in phases:
            p["start_s"], p["end_s"] = round(p.pop("start") - t0, 3), round(p.pop("end") - t0, 3)
        per_window.append({"fault": w.name, "start_s": round(w.start - t0, 3), "end_s": round(w.end - t0, 3),
                           "phases": phases})
    return {"overall": summarize(reqs, last - first), "windows": per_window}


def history_load_stats(history: History) -> dict[str, Any]:
    """`phase_stats` of a saved run."""
    return phase_stats(history.requests.values(), history.windows, history.t0)


def ledger_counts(ledger: str | Path) -> dict[str, Any]:
    """Request events in the ledger: how many, distinct ids, outcome unknown, per load worker."""
    total, unknown = 0, 0
    ids: set[str] = set()
    workers: Counter[str] = Counter()
    for event in read_events(ledger):
        if event.get("type") != ev.REQUEST:
            continue
        total += 1
        rid = str(event.get("id"))
        ids.add(rid)
        unknown += event.get("outcome") == "unknown"
        if rid.startswith("l") and "-" in rid:
            workers[rid[1:].split("-", 1)[0]] += 1
    return {"requests": total, "distinct_ids": len(ids), "duplicate_ids": total - len(ids),
            "unknown_outcome": unknown, "per_worker": dict(sorted(workers.items()))}


def locust_totals(json_file: str | Path, csv_file: str | Path | None = None) -> dict[str, Any] | None:
    """Locust's own final statistics (its `--json-file`), summed over its entries the way locust
    aggregates them; with `csv_file` also its Aggregated row as locust printed it. None if missing."""
    try:
        entries = json.loads(Path(json_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    requests = sum(int(e.get("num_requests", 0)) for e in entries)
    failures = sum(int(e.get("num_failures", 0)) for e in entries)
    histogram: Counter[int] = Counter()
    for e in entries:
        for ms, count in (e.get("response_times") or {}).items():
            histogram[int(float(ms))] += int(count)
    starts = [float(e["start_time"]) for e in entries if e.get("start_time")]
    lasts = [float(e["last_request_timestamp"]) for e in entries if e.get("last_request_timestamp")]
    span = (max(lasts) - min(starts)) if starts and lasts else 0.0
    out: dict[str, Any] = {
        "requests": requests,
        "failures": failures,
        "rps": round(requests / span, 2) if span > 0 else None,
        "max_ms": max((int(e.get("max_response_time") or 0) for e in entries), default=None),
        "per_name": {f"{e.get('method')} {e.get('name')}": {"requests": e.get("num_requests"),
                                                            "failures": e.get("num_failures")} for e in entries},
    }
    for pct in PERCENTILES:
        out[f"p{pct}_ms"] = _locust_percentile(histogram, requests, pct / 100) if requests else None
    if csv_file is not None:
        out["csv_aggregated"] = _csv_aggregated(Path(csv_file))
    return out


def _locust_percentile(histogram: Counter[int], total: int, fraction: float) -> int:
    """locust's calculate_response_time_percentile, on its rounded response-time buckets."""
    wanted = int(total * fraction)
    processed = 0
    for ms in sorted(histogram, reverse=True):
        processed += histogram[ms]
        if total - processed <= wanted:
            return ms
    return 0


def _csv_aggregated(path: Path) -> dict[str, Any] | None:
    """The Aggregated row of locust's `<prefix>_stats.csv` (written every second: may lag the end)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("Name") == "Aggregated"]
    except OSError:
        return None
    if not rows:
        return None
    row = rows[-1]
    wanted = {"Request Count": "requests", "Failure Count": "failures", "Requests/s": "rps",
              "Median Response Time": "median_ms", "95%": "p95_ms", "99%": "p99_ms"}
    return {ours: _number(row.get(theirs)) for theirs, ours in wanted.items()}


def _number(text: str | None) -> float | int | None:
    if text is None or text in ("", "N/A"):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else round(value, 2)


def compare_counts(ledger: dict[str, Any], locust: dict[str, Any] | None) -> dict[str, Any]:
    """The ledger's request count against locust's. `lost` > 0: requests locust sent are missing
    from the ledger; None: locust's statistics are missing, so nothing can be said."""
    if locust is None:
        return {"ledger_requests": ledger["requests"], "locust_requests": None, "difference": None, "lost": None}
    difference = int(locust["requests"]) - int(ledger["requests"])
    return {"ledger_requests": ledger["requests"], "locust_requests": locust["requests"],
            "difference": difference, "lost": max(0, difference)}


def render_load_text(load: dict[str, Any]) -> str:
    """A few lines for the terminal: counts, locust's totals, each window's phases."""
    obs = load.get("observations", {})
    loc = load.get("locust") or {}
    lines = [f"  load: {load.get('users')} users, {load.get('processes') or 1} process(es), "
             f"ledger {obs.get('ledger_requests')} requests, locust {obs.get('locust_requests')} "
             f"(difference {obs.get('difference')})",
             f"  locust: {loc.get('rps')} req/s, {loc.get('failures')} failures, "
             f"p50 {loc.get('p50_ms')} ms, p95 {loc.get('p95_ms')} ms, p99 {loc.get('p99_ms')} ms"]
    for window in load.get("phases", {}).get("windows", []):
        parts = [f"{p['phase']} {p['rps']} req/s {p['failures']}/{p['requests']} failed p95 {p['p95_ms']} ms"
                 for p in window["phases"]]
        lines.append(f"  {window['fault']}: " + "; ".join(parts))
    return "\n".join(lines)

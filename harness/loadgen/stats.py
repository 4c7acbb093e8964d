"""Locust's own statistics (its --json-file and --csv files), and the ledger's count against them.

Never imports locust: the engine uses this module in the harness process. The figures per phase
around each fault window come from the ledger, with the other report figures (harness.reporting.load).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

PERCENTILES = (50, 95, 99)


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


def read_shipped(path: str | Path) -> dict[str, Any] | None:
    """What the master of remote workers wrote about each of them (harness.loadgen.remote); None if missing."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("workers"), list) else None


def compare_workers(ledger: dict[str, Any], shipped: dict[str, Any] | None) -> dict[str, Any]:
    """Per remote worker: the requests locust counted on it against the ledger's, and what it lost.

    A worker that said `done` shipped everything: its count must equal the ledger's. One that did not
    (it died, or lost its connection) lost what it had not shipped: at least what it had counted in its
    last report beyond the ledger's, and at least what the ledger itself shows was sent (the highest request
    number of each of its users, from request events and providers' calls) beyond what it holds."""
    if shipped is None:
        return {"workers": None, "lost_workers": None, "lost": None, "mismatched": None, "refused_messages": None}
    rows = []
    for worker in shipped["workers"]:
        index = str(worker.get("index"))
        in_ledger = int(ledger["per_worker"].get(index, 0))
        counted = worker.get("counted")
        seen = int(ledger.get("sent_per_worker", {}).get(index, 0))
        lost = max(0, (counted or 0) - in_ledger, seen - in_ledger)
        rows.append({"index": worker.get("index"), "host": worker.get("host"), "done": bool(worker.get("done")),
                     "locust_requests": counted, "ledger_requests": in_ledger, "lost": lost,
                     "refused": int(worker.get("refused") or 0)})
    return {"workers": rows, "lost_workers": [r["index"] for r in rows if not r["done"]],
            "lost": sum(r["lost"] for r in rows),
            "mismatched": [r["index"] for r in rows if r["done"] and r["locust_requests"] != r["ledger_requests"]],
            "refused_messages": int(shipped.get("refused_messages") or 0) + sum(r["refused"] for r in rows)}

"""`harness load` on the embedded default: throughput, latency and the ledger-vs-locust count.

    python benchmarks/load_smoke.py [SCENARIO] [--users 20,100] [--processes 0,2] [--run-time 16]
                                    [--user-rate 1] [--flat-out]

Each row is one real load run (locust subprocesses, reference gateway, mock providers).
`--flat-out` adds runs with no wait between requests (user rate 0): the most the ledger path
must keep up with. Load is bounded by the run time; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.engine.load import run_load  # noqa: E402
from harness.reporting import Reports, summary_of  # noqa: E402
from harness.scenario import load_scenario  # noqa: E402


def one(scenario: Path, users: int, processes: int, run_time_s: float | None, user_rate: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        launched = time.monotonic()
        outcome = run_load(load_scenario(scenario), tmp, users=users, run_time_s=run_time_s, processes=processes,
                           user_rate=user_rate, handlers=[Reports(formats=())], log=lambda _m: None)
        wall = time.monotonic() - launched
        events = [json.loads(line) for line in outcome.ledger.read_text().splitlines()]
    start = events[0]["ts"]
    first = min(e["ts"] for e in events if e["type"] == "request")
    summary = summary_of(outcome.reports)
    load = summary["load"]
    obs, loc = load["observations"], load["locust"] or {}
    return {"users": users, "procs": processes, "rate": user_rate, "verdict": summary["verdict"],
            "wall_s": round(wall, 1), "startup_s": round(first - start, 2), "req/s": loc.get("rps"),
            "p50": loc.get("p50_ms"), "p95": loc.get("p95_ms"), "p99": loc.get("p99_ms"),
            "ledger": obs["ledger_requests"], "locust": obs["locust_requests"], "lost": obs["lost"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", nargs="?", type=Path, default=ROOT / "scenarios" / "regional-outage.yaml")
    parser.add_argument("--users", default="20,100")
    parser.add_argument("--processes", default="0,2")
    parser.add_argument("--run-time", type=float, default=None, help="default: the scenario's duration")
    parser.add_argument("--user-rate", type=float, default=1.0)
    parser.add_argument("--flat-out", action="store_true", help="also run with no wait between requests")
    args = parser.parse_args()
    rates = [args.user_rate] + ([0.0] if args.flat_out else [])
    rows = [one(args.scenario, int(u), int(p), args.run_time, rate)
            for rate in rates for u in args.users.split(",") for p in args.processes.split(",")]
    keys = list(rows[0])
    print("  ".join(f"{k:>8}" for k in keys))
    for row in rows:
        print("  ".join(f"{row[k]!s:>8}" for k in keys))


if __name__ == "__main__":
    main()

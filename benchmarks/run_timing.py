"""How long one shipped scenario takes end to end, and how much of it is start-up.

    python benchmarks/run_timing.py [SCENARIO] [--repeat N]

Start-up = from launching `harness run` to the first request leaving the driver (topology
up: collector, mock providers, gateway). Teardown = from the last request to the process exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(scenario: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        launched = time.time()
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(scenario), "--report-dir", tmp],
                              cwd=ROOT, capture_output=True, text=True)
        exited = time.time()
        if proc.returncode not in (0, 1, 3):
            raise SystemExit(proc.stderr)
        ledger = next(Path(tmp).glob("*/ledger.jsonl"))
        events = [json.loads(line) for line in ledger.read_text().splitlines()]
    requests = [e for e in events if e["type"] == "request"]
    return {
        "wall_s": exited - launched,
        "startup_s": min(e["ts"] for e in requests) - launched,
        "traffic_s": max(e["ts"] for e in requests) - min(e["ts"] for e in requests),
        "teardown_s": exited - max(e["ts_end"] for e in requests),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", nargs="?", type=Path, default=ROOT / "scenarios" / "regional-outage.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run(args.scenario) for _ in range(args.repeat)]
    print(f"scenario {args.scenario.name}, {args.repeat} runs (median, max)")
    for key in ("wall_s", "startup_s", "traffic_s", "teardown_s"):
        values = [r[key] for r in runs]
        print(f"  {key:<11} {statistics.median(values):6.2f} s   {max(values):6.2f} s")


if __name__ == "__main__":
    main()

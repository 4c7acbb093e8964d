"""How long `harness lint-config` takes on every shipped configuration: a benchmark, not a timed test.

    python benchmarks/lint_bench.py [--rounds 3]

Issue 13 asks for an answer at review time, "well under a second". Two figures:
- each configuration under fixtures/gateways/{litellm,portkey} and fixtures/lint/ linted in this process
  (imports already paid): the command's own time (parse, find the drills that run it, judge, render),
  best of --rounds; a configuration that is bad input on purpose shows "bad input";
- the whole command, as a reviewer runs it: one `python -m harness.cli lint-config` on all of them in a
  fresh interpreter (imports included), wall and CPU time.
The machine is shared: figures move from run to run; CPU time moves less than wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.cli import _parser  # noqa: E402  # after the path: the benchmark runs from a checkout
from harness.core.errors import HarnessError  # noqa: E402
from harness.lint.command import command  # noqa: E402


def configs() -> list[Path]:
    found = [*sorted((ROOT / "fixtures/gateways/litellm").glob("*.yaml")),
             *sorted((ROOT / "fixtures/gateways/portkey").glob("*.json")),
             *sorted(p for p in (ROOT / "fixtures/lint").rglob("*") if p.suffix in (".yaml", ".json"))]
    return [p for p in found if p.name != "registry.yaml"]


def lint_once(config: Path) -> tuple[float, str]:
    args = _parser().parse_args(["lint-config", str(config.relative_to(ROOT)), "--as-of", "2026-06-01"])
    out = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out):
            code = command(args)
        outcome = f"exit {code}, {out.getvalue().splitlines()[-1].split(' (')[0]}"
    except HarnessError:
        outcome = "bad input (exit 2)"
    return time.perf_counter() - start, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    os.chdir(ROOT)
    paths = configs()
    print(f"{'configuration':60} {'best ms':>8}  outcome")
    worst = 0.0
    good: list[str] = []
    for path in paths:
        timings = [lint_once(path) for _ in range(rounds)]
        best = min(t for t, _ in timings)
        worst = max(worst, best)
        print(f"{str(path.relative_to(ROOT)):60} {best * 1000:8.1f}  {timings[0][1]}")
        if not timings[0][1].startswith("bad input"):
            good.append(str(path.relative_to(ROOT)))
    print(f"slowest configuration: {worst * 1000:.0f} ms (in process, imports paid)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "harness.cli", "lint-config", *good, "--as-of", "2026-06-01"],
                            cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = (result.stdout.strip().splitlines() or [result.stderr.strip()])[-1]
    print(f"one command on {len(good)} configurations, fresh interpreter: {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"(exit {result.returncode}: {summary[:100]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

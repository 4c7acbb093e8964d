"""The live baseline gate: no fault is injected into a system whose steady state never held.

When the first fault (or kill-switch action) is due, the ledger written so far is judged by the same
rule `harness check` applies offline (harness.checks.baseline): the requests that completed by then,
and the calls the providers recorded. If the hypothesis failed, the run injects nothing, stops its
traffic and ends `baseline_failed` (unknown): a drill on a broken system proves nothing either way.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from harness.checks.baseline import FAILED, BaselineResult, Watch, first_nemesis_s
from harness.core import events as ev
from harness.core.events import EventSink
from harness.core.model import Scenario
from harness.ledger.feed import Accumulator, Event, Record, RunFrame, Totals, feed_history, history_frame
from harness.ledger.history import load_history

BASELINE_FAILED = "baseline_failed"  # run_end status: stopped before the first fault, nothing injected


class _WatchFeed(Accumulator):
    """Feeds one Watch every routed request and every call, as the checks do."""

    def __init__(self, frame: RunFrame, watch: Watch) -> None:
        super().__init__(frame)
        self.watch = watch

    def record(self, rec: Record) -> None:
        assert rec.primary is not None
        self.watch.request(rec.request, rec.primary, rec.calls)

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        self.watch.calls(calls)

    def finish(self, frame: RunFrame, totals: Totals) -> BaselineResult:
        return self.watch.result()


def judge_baseline(scenario: Scenario, ledger_path: Path, cutoff: float) -> BaselineResult:
    """The baseline of a run in progress: requests that ended by `cutoff`, calls made by then."""
    history = load_history(ledger_path)
    frame = history_frame(scenario, history)
    feeder = feed_history(scenario, history, [_WatchFeed(frame, Watch(scenario, cutoff))])
    result: BaselineResult = feeder.finish(frame)[0]
    return result


async def baseline_gate(scenario: Scenario, ledger_path: Path, sink: EventSink, start: float,
                        traffic: asyncio.Task[None]) -> BaselineResult | None:
    """Wait until the first fault is due (`start`: the traffic's start, loop time), then judge the
    baseline and record it as a note carrying `baseline`. None when the scenario plans no fault."""
    planned = first_nemesis_s(scenario)
    if planned is None:
        return None
    loop = asyncio.get_running_loop()
    delay = start + planned - loop.time()
    if delay > 0:
        await asyncio.wait({traffic}, timeout=delay)  # traffic that ends (or breaks) early: judge now
    cutoff = time.time()
    result = await asyncio.to_thread(judge_baseline, scenario, ledger_path, cutoff)
    level = "info" if result.status != FAILED else "error" if scenario.baseline.required else "warning"
    sink.append({"type": ev.NOTE, "level": level,
                 "message": result.summary, "baseline": {"status": result.status, **result.stats},
                 "ts": cutoff})
    return result

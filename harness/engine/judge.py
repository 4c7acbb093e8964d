"""Judging a run: the checks and the subscribed handlers' figures, in one pass over the ledger.

The same path for a live run (right after it ended) and for `harness check LEDGER` / `harness report`:
the ledger is streamed from disk in bounded memory, whatever its size (harness.ledger.feed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from harness.checks import accumulators, judge_results, selected
from harness.core.model import Scenario
from harness.ledger.feed import Accumulator, RunFrame, feed_ledger, read_run_frame
from harness.ledger.outcome import JudgedRun, OutcomeHandler
from harness.ledger.reader import unreadable_line
from harness.scenario import scenario_from_dict


def judge_ledger(path: str | Path, checks: list[str] | None = None, handlers: Sequence[OutcomeHandler] = (),
                 scenario: Scenario | None = None, started: float | None = None) -> JudgedRun:
    """Judge a ledger with the named checks (default: the scenario's), then hand it to `handlers` in
    order. `scenario`: the run's own (a live run); default: the one its ledger carries (redacted: no
    check needs a secret). `started`: time.monotonic() at the run's start, for its wall time."""
    path = Path(path)
    frame = read_run_frame(path)
    if scenario is None:
        scenario = scenario_from_dict(frame.run_start["scenario"], origin=f"{path} (run_start.scenario)")
    names = selected(scenario, checks)
    handlers = list(handlers)
    counts: list[int] = []

    def make(run: RunFrame) -> list[Accumulator]:
        made = accumulators(run, names)
        counts.clear()
        for handler in handlers:
            figures = list(handler.figures(run))
            counts.append(len(figures))
            made += figures
        return made

    try:
        fed = feed_ledger(path, scenario, make, frame)
    except (TypeError, KeyError, AttributeError, ValueError, IndexError) as exc:
        # A check read a field of a shape the schema does not fix (a label that is a list, ...): name the
        # line. If every line is well formed, the harness itself failed (exit 4 in the CLI), so re-raise.
        located = unreadable_line(path)
        if located is not None:
            raise located from exc
        raise
    results = judge_results(fed.results[:len(names)], fed.totals.requests, fed.run_end)
    wall = round(time.monotonic() - started, 2) if started is not None else None
    judged = JudgedRun(scenario, results, fed.run_start, fed.run_end, path, fed.how, fed.frame, fed.totals,
                       fed.t_last, wall)
    offset = len(names)
    for handler, count in zip(handlers, counts, strict=True):
        judged.reports[handler.name] = handler.judged(judged, fed.results[offset:offset + count])
        offset += count
    return judged

"""Judging a run: the checks and the subscribed handlers' figures, in one pass over the ledger.

The same path for a live run (right after it ended) and for `harness check LEDGER` / `harness report`:
the ledger is streamed from disk in bounded memory, whatever its size (harness.ledger.feed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.checks import accumulators, judge_results, selected
from harness.core.model import Scenario
from harness.core.verdict import CheckResult, Verdict
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
    results = _missing_requests(judge_results(fed.results[:len(names)], fed.totals.requests, fed.run_end),
                                fed.totals.requests, fed.run_end)
    wall = round(time.monotonic() - started, 2) if started is not None else None
    judged = JudgedRun(scenario, results, fed.run_start, fed.run_end, path, fed.how, fed.frame, fed.totals,
                       fed.t_last, wall)
    offset = len(names)
    for handler, count in zip(handlers, counts, strict=True):
        judged.reports[handler.name] = handler.judged(judged, fed.results[offset:offset + count])
        offset += count
    return judged


def _missing_requests(results: list[CheckResult], recorded: int, run_end: dict[str, Any] | None) -> list[CheckResult]:
    """The driver records every request it sent, answered or not (`run_end.requests_sent`). A ledger
    holding fewer request events lost some (cut, edited): what passed may not have passed with them."""
    sent = (run_end or {}).get("requests_sent")
    if not isinstance(sent, int) or isinstance(sent, bool) or sent <= recorded:
        return results
    why = f"the ledger holds {recorded} request events, run_end says {sent} were sent: evidence is missing"
    return [replace(r, verdict=Verdict.UNKNOWN, summary=why, stats={**r.stats, "summary_if_complete": r.summary})
            if r.verdict is Verdict.PASS else r for r in results]

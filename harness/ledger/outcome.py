"""A judged run, and the protocol of whoever reports it.

The engine judges a ledger and hands the result to the handlers a front end subscribed (reports:
summary.json, junit.xml, report.html, the terminal table, Allure evidence). The engine knows no report
format: a handler declares the figures it needs (accumulators fed in the same streamed pass as the
checks) and gets them back with the judged run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from harness.core.model import Scenario
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, RunFrame, Totals
from harness.ledger.history import History, load_history


@dataclass(frozen=True)
class JudgedRun:
    scenario: Scenario
    results: list[CheckResult]
    run_start: dict[str, Any]
    run_end: dict[str, Any] | None
    ledger: Path
    how: str                      # "streamed (prompt join)", "in memory (why)", ...
    frame: RunFrame               # fault and kill-switch windows, with their real ends
    totals: Totals
    t_last: float                 # the latest moment the ledger records
    wall_time_s: float | None = None  # a live run: from start to judged
    # What each handler produced, by its name, filled in the order the handlers were subscribed (so a
    # later handler may use an earlier one's product, e.g. the terminal table prints the summary).
    reports: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return Verdict.combine([r.verdict for r in self.results])

    @property
    def mode(self) -> str:
        return self.frame.mode

    @cached_property
    def history(self) -> History:
        """The whole run in memory, loaded on first use. Reports never need it (they stream); it is
        here for tests written in Python that want to look at every request."""
        return load_history(self.ledger)


class OutcomeHandler(Protocol):
    """What a front end subscribes to a run (or to `harness check` / `harness report`)."""

    name: str  # its product is kept under this name in JudgedRun.reports

    def figures(self, frame: RunFrame) -> Sequence[Accumulator]:
        """The accumulators it needs, fed with the checks in the judging pass (may be empty). Called
        again if the ledger has to be fed a second time (out of order): only the last ones count."""
        ...

    def judged(self, run: JudgedRun, figures: list[Any]) -> Any:
        """The run is judged: `figures` are the results of its accumulators, in order. Returns its
        product (e.g. the summary), kept in `run.reports[name]`."""
        ...

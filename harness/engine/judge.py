"""Judging a run: the same checks for a live run (a History in memory) and for `harness check LEDGER`
(the ledger streamed from disk in bounded memory, whatever its size)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.checks import run_checks, selected
from harness.checks.stream import judge_streaming
from harness.core.errors import InputError
from harness.core.model import Scenario
from harness.core.verdict import CheckResult, Verdict
from harness.ledger import History, load_history
from harness.ledger.bounds import Disorder
from harness.ledger.stream import read_frame
from harness.scenario import scenario_from_dict


@dataclass(frozen=True)
class Judgement:
    scenario: Scenario
    preloaded: History | None  # the History judged, or None when the ledger was streamed
    results: list[CheckResult]
    ledger: Path | None = None
    how: str = "in memory"     # "streamed (prompt join)", "streamed (held x1 join)", "in memory (why)"
    start: dict[str, Any] | None = None  # the ledger's run_start, when streamed

    @property
    def run_start(self) -> dict[str, Any]:
        return self.start if self.start is not None else self.history.run_start

    @property
    def verdict(self) -> Verdict:
        return Verdict.combine([r.verdict for r in self.results])

    @cached_property
    def history(self) -> History:
        """The run in memory, loaded on first use when the ledger was streamed (reports still need it)."""
        if self.preloaded is not None:
            return self.preloaded
        assert self.ledger is not None
        return load_history(self.ledger)


def judge(scenario: Scenario, history: History, checks: list[str] | None = None) -> Judgement:
    return Judgement(scenario, history, run_checks(scenario, history, checks))


def judge_ledger(path: str | Path, checks: list[str] | None = None) -> Judgement:
    """Re-judge a saved run offline from the scenario its ledger carries, streaming it.

    Same results as judging its History: a ledger the streaming join cannot take exactly (far out of
    order) is judged in memory instead.
    """
    path = Path(path)
    try:
        frame = read_frame(path)
    except InputError:
        load_history(path)  # the error History reports first for this ledger
        raise
    scenario = scenario_from_dict(frame.run_start["scenario"], origin=f"{path} (run_start.scenario)")
    names = selected(scenario, checks)
    try:
        results, how = judge_streaming(scenario, frame, names)
    except (Disorder, InputError) as exc:  # InputError: a bad line, which History reports in its words
        history = load_history(path)
        return Judgement(scenario, history, run_checks(scenario, history, names), path, f"in memory ({exc})")
    return Judgement(scenario, None, results, path, f"streamed ({how} join)", frame.run_start)


def rebuild_reports(path: str | Path, checks: list[str] | None = None, out_dir: Path | None = None) -> Path:
    """`harness report LEDGER`: re-judge a saved run and write its reports (report.html, summary.json,
    junit.xml, timeline.svg) beside the ledger, or into `out_dir`."""
    from harness.reporting import build_summary, write_reports

    judgement = judge_ledger(path, checks)
    target = Path(out_dir) if out_dir else Path(path).parent
    target.mkdir(parents=True, exist_ok=True)
    summary = build_summary(judgement.history, judgement.results, reproduce=reproduce_commands(judgement, path),
                            scenario=judgement.scenario)
    write_reports(target, summary, history=judgement.history)
    return target / "report.html"


def reproduce_commands(judgement: Judgement, ledger: str | Path) -> dict[str, str]:
    return {"run": f"harness run {judgement.run_start.get('scenario_path')} --seed {judgement.scenario.seed}",
            "check": f"harness check {ledger}"}

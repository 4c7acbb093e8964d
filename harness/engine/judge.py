"""Judging a history: the same path for a live run and for `harness check LEDGER`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.checks import run_checks
from harness.core.model import Scenario
from harness.core.verdict import CheckResult, Verdict
from harness.ledger import History, load_history
from harness.scenario import scenario_from_dict


@dataclass(frozen=True)
class Judgement:
    scenario: Scenario
    history: History
    results: list[CheckResult]

    @property
    def verdict(self) -> Verdict:
        return Verdict.combine([r.verdict for r in self.results])


def judge(scenario: Scenario, history: History, checks: list[str] | None = None) -> Judgement:
    return Judgement(scenario, history, run_checks(scenario, history, checks))


def judge_ledger(path: str | Path, checks: list[str] | None = None) -> Judgement:
    """Re-judge a saved run offline from the scenario its ledger carries."""
    history = load_history(path)
    scenario = scenario_from_dict(history.run_start["scenario"], origin=f"{path} (run_start.scenario)")
    return judge(scenario, history, checks)


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
    return {"run": f"harness run {judgement.history.run_start.get('scenario_path')} --seed {judgement.scenario.seed}",
            "check": f"harness check {ledger}"}

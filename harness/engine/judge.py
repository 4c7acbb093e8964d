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

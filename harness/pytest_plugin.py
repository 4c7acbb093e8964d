"""pytest plugin: `pytest scenarios/` runs every scenario file, one reported result per check.

Same engine as the CLI (one execution path). A violation fails its item with a
`GovernanceViolation` (an AssertionError, so Allure shows it as failed, not broken); an
unknown verdict is a skip with its reason, never a pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import HarnessError
from harness.core.paths import require_writable_dir
from harness.core.registry import check_names
from harness.core.safe_text import printable
from harness.core.verdict import CheckResult, Verdict
from harness.engine.run import RunOutcome, run_scenario
from harness.ledger import History, load_history
from harness.reporting import Reports, explain_failure, summary_of
from harness.scenario import LoadedScenario, load_scenario

# Only YAML files that look like scenarios are collected, so gateway configs and the like are not.
_SCENARIO_HINT = re.compile(r"^version:\s*1\b.*^traffic:", re.MULTILINE | re.DOTALL)


class GovernanceViolation(AssertionError):
    """A governance check failed; the message is the explanation the CLI prints."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "governed-fallback harness")
    group.addoption("--harness-report-dir", default="reports", help="where runs write their reports")
    group.addoption("--harness-seed", type=int, default=None, help="override every scenario's seed")
    group.addoption("--harness-checks", default=None, help="comma-separated check names to report")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml"):
        try:
            head = file_path.read_text(encoding="utf-8", errors="replace")[:65536]
        except OSError:
            return None
        if _SCENARIO_HINT.search(head):
            return ScenarioFile.from_parent(parent, path=file_path)
    return None


def _selected_checks(config: pytest.Config) -> list[str] | None:
    value = config.getoption("--harness-checks")
    if not value:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in check_names()]
    if unknown:
        raise pytest.UsageError(f"--harness-checks: unknown check(s) {', '.join(unknown)}")
    return names


@dataclass(frozen=True)
class HarnessRun:
    """A run with its reports written: the engine's outcome, and the summary (as in summary.json)."""

    outcome: RunOutcome
    summary: dict[str, Any]

    def __getattr__(self, name: str) -> Any:  # verdict, judgement, run_dir, ledger, status, ...
        return getattr(self.outcome, name)


def _run(loaded: LoadedScenario, report_dir: str, seed: int | None, checks: list[str] | None) -> HarnessRun:
    # One engine path for every front end; the plugin subscribes the report files.
    require_writable_dir(Path(report_dir), "--harness-report-dir")  # before anything starts
    outcome = run_scenario(loaded, report_dir, seed=seed, checks=checks, handlers=[Reports()], log=lambda _m: None)
    return HarnessRun(outcome, summary_of(outcome.reports))


class ScenarioFile(pytest.File):
    loaded: LoadedScenario | None = None
    _outcome: HarnessRun | None = None

    def collect(self) -> Iterator[pytest.Item]:
        try:
            self.loaded = load_scenario(self.path)
        except HarnessError as exc:
            yield InvalidScenario.from_parent(self, name="load", message=str(exc))
            return
        scenario = self.loaded.scenario
        wanted = _selected_checks(self.config)
        names = [n for n in scenario.check_names() if wanted is None or n in wanted]
        for tag in scenario.tags:
            self.config.addinivalue_line("markers", f"{tag}: scenario tag")
        for name in names:
            item = CheckItem.from_parent(self, name=name)
            for tag in scenario.tags:
                item.add_marker(tag)
            yield item

    def outcome(self) -> HarnessRun:
        """Run the scenario once, on the first of its checks that runs."""
        if self._outcome is None:
            assert self.loaded is not None
            wanted = [item.name for item in self.session.items if item.parent is self]
            self._outcome = _run(self.loaded, self.config.getoption("--harness-report-dir"),
                                 self.config.getoption("--harness-seed"), wanted)
        return self._outcome


class InvalidScenario(pytest.Item):
    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise GovernanceViolation(printable(f"the scenario does not load:\n{self.message}"))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.path.name}: invalid scenario"


class CheckItem(pytest.Item):
    parent: ScenarioFile

    def runtest(self) -> None:
        outcome = self.parent.outcome()
        result = next(r for r in outcome.judgement.results if r.check == self.name)
        if self.config.pluginmanager.hasplugin("allure_pytest"):
            from harness.allure_support import describe_check

            # The summary becomes the Allure description: no raw control character from the ledger in it.
            describe_check(outcome.outcome, replace(result, summary=printable(result.summary)), self.path)
        if result.verdict is Verdict.FAIL:
            check = next(c for c in outcome.summary["checks"] if c["check"] == self.name)
            raise GovernanceViolation(explain_failure(check, outcome.summary))
        if result.verdict is Verdict.UNKNOWN:
            pytest.skip(printable(f"unknown: {result.summary}"))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, GovernanceViolation):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        scenario = self.parent.loaded.scenario.name if self.parent.loaded else self.path.stem
        return self.path, None, f"{scenario}::{self.name}"


# Fixtures for users writing their own tests in Python.

@pytest.fixture
def harness_run(request: pytest.FixtureRequest) -> Callable[..., HarnessRun]:
    """`harness_run(path, seed=None, checks=None)`: start the scenario's topology, run it, judge it.

    The outcome carries the verdicts (`.judgement.results`), `summary` (as in summary.json), `run_dir`
    and `ledger`; `.judgement.history` loads the whole run into memory on first use.
    """
    report_dir = request.config.getoption("--harness-report-dir")

    def run(path: str | Path, seed: int | None = None, checks: list[str] | None = None) -> HarnessRun:
        return _run(load_scenario(path), report_dir, seed, checks)

    return run


@pytest.fixture
def harness_ledger() -> Callable[[str | Path], History]:
    """`harness_ledger(path)`: a saved ledger as a History (requests, upstream calls, audits, windows)."""
    return load_history


def verdicts(results: list[CheckResult]) -> dict[str, str]:
    """{check: verdict} of a run, handy in assertions."""
    return {r.check: r.verdict.value for r in results}


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("--harness-seed") is not None or config.getoption("--harness-checks"):
        return "harness: " + json.dumps({"seed": config.getoption("--harness-seed"),
                                         "checks": config.getoption("--harness-checks")})
    return None

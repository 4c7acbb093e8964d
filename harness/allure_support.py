"""What each check result carries in Allure: labels, parameters, evidence attachments, links."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import allure

from harness.core.registry import checks
from harness.core.verdict import CheckResult
from harness.engine.processes import Redactor
from harness.engine.run import RunOutcome
from harness.ledger.reader import requests_with_calls

MAX_REQUESTS_ATTACHED = 50


def describe_check(outcome: RunOutcome, result: CheckResult, scenario_path: Path) -> None:
    scenario = outcome.judgement.scenario
    allure.dynamic.title(f"{scenario.name} :: {result.check}")
    allure.dynamic.epic(scenario.name)
    allure.dynamic.feature(result.check)
    for fault in scenario.faults:
        allure.dynamic.story(fault.name)
    known = checks()
    # The check declares its own severity (harness.core.registry).
    allure.dynamic.severity(known[result.check].severity if result.check in known else "normal")
    # Scenario tags reach Allure as tags already: they are pytest markers on the item.
    # Parameters make the history id unique per scenario and check.
    allure.dynamic.parameter("scenario", scenario.name)
    allure.dynamic.parameter("check", result.check)
    allure.dynamic.parameter("seed", str(scenario.seed))
    allure.dynamic.description(f"{result.summary}\n\nEvidences: {', '.join(result.evidences)}")
    keys = {name: ident.key.get_secret_value() for name, ident in scenario.identities.items()}
    allure.attach(Redactor(keys)(scenario_path.read_text(encoding="utf-8")), name="scenario file",
                  attachment_type=allure.attachment_type.YAML)
    allure.attach(json.dumps(scenario.policy.model_dump(mode="json"), indent=2), name="policy",
                  attachment_type=allure.attachment_type.JSON)
    if result.violations:
        allure.attach(json.dumps(offending(result, outcome), indent=2, default=str),
                      name="offending requests", attachment_type=allure.attachment_type.JSON)
        diffs = [v.diff for v in result.violations if v.diff]
        if diffs:
            allure.attach(json.dumps(diffs, indent=2, default=str), name="trust-envelope diff",
                          attachment_type=allure.attachment_type.JSON)
    timeline = outcome.run_dir / "timeline.svg"  # written with report.html
    if timeline.exists():
        allure.attach.file(str(timeline), name="timeline", attachment_type=allure.attachment_type.SVG)
    allure.dynamic.link(outcome.ledger.resolve().as_uri(), name="ledger")
    report = outcome.run_dir / "report.html"
    if report.exists():
        allure.dynamic.link(report.resolve().as_uri(), name="report")


def offending(result: CheckResult, outcome: RunOutcome) -> list[dict[str, Any]]:
    """Each offending request of one check as the client saw it, with every upstream call it caused."""
    ids = _ids(result)
    found = _lookup(outcome.ledger, frozenset(i for r in outcome.judgement.results for i in _ids(r)))
    return [{"request": found[rid]["request"], "upstream_calls": found[rid]["upstream_calls"],
             "violations": [v.message for v in result.violations if rid in v.request_ids]} for rid in ids]


def _ids(result: CheckResult) -> list[str]:
    ids: list[str] = []
    for violation in result.violations:
        ids.extend(i for i in violation.request_ids if i not in ids)
    return ids[:MAX_REQUESTS_ATTACHED]


@functools.lru_cache(maxsize=4)
def _lookup(ledger: Path, ids: frozenset[str]) -> dict[str, dict[str, Any]]:
    # One pass over the ledger for every failing check of the run (each is its own pytest item).
    return requests_with_calls(ledger, set(ids))

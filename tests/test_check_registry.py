"""A check is one module: adding one file to harness/checks/ (or a module an entry point names) makes it
show up everywhere: `list-checks`, the scenario format and its JSON Schema, the verdicts, summary.json
with its framework mapping, junit.xml, report.html, and its Allure severity."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.core.errors import HarnessError
from harness.core.registry import check
from tests.conftest import ROOT, shipped_data

LEDGER = ROOT / "fixtures" / "ledgers" / "regional-outage__correct.jsonl.gz"

NEW_CHECK = '''"""declared_routes: every request asked for a route the policy declares."""

from __future__ import annotations

from harness.core.frameworks import ACCOUNTABILITY, NIST
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, RunFrame, Totals


@check(
    name="declared_routes",
    description="Every request asked for a route the policy declares.",
    evidences=(ACCOUNTABILITY,),
    severity="blocker",
    frameworks={NIST: ("GOVERN function",)},
    order=5,
)
class DeclaredRoutes(Accumulator):
    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        verdict = Verdict.FAIL if totals.unrouted else Verdict.PASS
        return CheckResult(check="declared_routes", verdict=verdict,
                           summary=f"{totals.routed} of {totals.requests} requests on declared routes")
'''


def _harness(tree: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd or tree, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the harness with one more file in harness/checks/, and nothing else changed."""
    root = tmp_path_factory.mktemp("with-new-check")
    shutil.copytree(ROOT / "harness", root / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "harness" / "checks" / "declared_routes.py").write_text(NEW_CHECK)
    return root


def test_list_checks_and_the_schema_know_it(tree):
    listed = _harness(tree, "list-checks", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    checks = json.loads(listed.stdout)
    assert list(checks)[0] == "declared_routes"  # its declared order puts it first
    assert checks["declared_routes"]["severity"] == "blocker"
    assert checks["declared_routes"]["frameworks"] == {"NIST AI RMF": ["GOVERN function"]}
    schema = json.loads(_harness(tree, "schema").stdout)
    enum = schema["properties"]["checks"]["anyOf"][1]["items"]["enum"]
    assert "declared_routes" in enum and "approved_targets" in enum


def test_scenarios_may_name_it_and_a_typo_gets_a_hint(tree, tmp_path):
    data = shipped_data(ROOT / "scenarios" / "timeouts.yaml")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump({**data, "checks": ["declared_routes", "fault_effective"]}, sort_keys=False))
    bad.write_text(yaml.safe_dump({**data, "checks": ["declared_route", "fault_effective"]}, sort_keys=False))
    assert _harness(tree, "validate", str(good)).returncode == 0
    refused = _harness(tree, "validate", str(bad))
    assert refused.returncode == 2 and "did you mean 'declared_routes'?" in refused.stderr, refused.stderr


def test_reports_carry_it(tree, tmp_path):
    out = tmp_path / "report"
    built = _harness(tree, "report", str(LEDGER), "--out-dir", str(out), "--checks", "declared_routes,logged")
    assert built.returncode == 0, built.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [c["check"] for c in summary["checks"]] == ["declared_routes", "logged"]
    [mine] = [c for c in summary["frameworks"]["checks"] if c["check"] == "declared_routes"]
    assert mine["frameworks"]["NIST AI RMF"] == ["GOVERN function"] and mine["evidences"][0]["name"] == "accountability"
    assert 'name="declared_routes"' in (out / "junit.xml").read_text()
    assert "declared_routes" in (out / "report.html").read_text()
    judged = _harness(tree, "check", str(LEDGER), "--checks", "declared_routes")
    assert judged.returncode == 0 and "PASS    declared_routes" in judged.stdout, judged.stdout + judged.stderr


@pytest.mark.slow
def test_allure_takes_its_severity_from_it(tree, tmp_path):
    # A real run through the pytest plugin with allure-pytest: the new check is an item, and its Allure
    # result carries the severity its module declares (no table elsewhere says so).
    data = shipped_data(ROOT / "scenarios" / "content-policy-refusal.yaml")
    (tmp_path / "drill.yaml").write_text(yaml.safe_dump({**data, "checks": ["declared_routes", "trigger_conditions"]},
                                                        sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "drill.yaml", "--alluredir",
                           str(tmp_path / "allure"), "--harness-report-dir", str(tmp_path / "reports")],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {r["name"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "allure").glob("*-result.json"))}
    severity = {name: next(label["value"] for label in r["labels"] if label["name"] == "severity")
                for name, r in results.items()}
    assert severity == {"content-policy-refusal :: declared_routes": "blocker",
                        "content-policy-refusal :: trigger_conditions": "normal"}, severity


def test_an_entry_point_adds_a_check_from_another_package(tmp_path):
    site = tmp_path / "site"
    (site / "acme_checks").mkdir(parents=True)
    (site / "acme_checks" / "__init__.py").write_text("")
    (site / "acme_checks" / "routes.py").write_text(NEW_CHECK)
    dist = site / "acme_checks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-checks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fallback_harness.checks]\ndeclared_routes = acme_checks.routes\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    listed = subprocess.run([sys.executable, "-m", "harness.cli", "list-checks", "--format", "json"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["declared_routes"]["module"] == "acme_checks.routes"


def test_a_check_that_declares_itself_wrongly_is_refused():
    with pytest.raises(HarnessError) as caught:
        check(name="Bad Name", description="", evidences=("honesty",), severity="urgent",
              frameworks={"ISO 42001": ("clause",)})(type("Bad", (), {}))
    message = str(caught.value)
    for problem in ("lower-case", "one-line description", "unknown: honesty", "severity must be one of",
                    "unknown framework(s) ISO 42001"):
        assert problem in message, message

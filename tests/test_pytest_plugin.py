"""The pytest plugin as a nightly CI uses it: scenario files as tests, one result per check, Allure."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SCENARIOS, shipped_text

pytestmark = pytest.mark.slow  # whole runs: the slow tier (README: tests)

BASE = shipped_text(SCENARIOS / "content-policy-refusal.yaml")


def _scenario(text: str, checks: str, defects: str = "") -> str:
    text = text.replace("duration_s: 10", "duration_s: 6").replace("at_s: 2\n    duration_s: 6",
                                                                    "at_s: 1\n    duration_s: 4")
    if defects:
        text = text.replace("gateway: {kind: reference, cooldown_s: 1}",
                            f"gateway: {{kind: reference, cooldown_s: 1, defects: [{defects}]}}")
    return text[:text.index("# No fallback")] + f"checks: [{checks}]\n"


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    (root / "scenarios").mkdir()
    (root / "scenarios" / "broken.yaml").write_text(
        _scenario(BASE, "trigger_conditions, fault_effective, approved_targets", "fallback-on-any-error"))
    (root / "scenarios" / "refusal.yaml").write_text(
        _scenario(BASE.replace("name: content-policy-refusal", "name: refusal"), "approved_targets, fault_effective"))
    (root / "scenarios" / "invalid.yaml").write_text("version: 1\nname: invalid\ntraffic: {rate_per_s: fast}\n")
    (root / "scenarios" / "gateway-config.yaml").write_text("model_list: []\n")  # not a scenario: not collected
    result = _pytest("scenarios", "-v", "--alluredir", str(root / "allure"), "--harness-report-dir", str(root / "r"),
                     cwd=root)
    allure = [json.loads(p.read_text()) for p in (root / "allure").glob("*-result.json")]
    return root, result, {r["name"]: r for r in allure}


def test_each_check_is_an_item_with_a_stable_name(suite):
    _, result, _ = suite
    out = result.stdout
    for item in ("scenarios/broken.yaml::trigger_conditions", "scenarios/broken.yaml::fault_effective",
                 "scenarios/broken.yaml::approved_targets", "scenarios/refusal.yaml::approved_targets",
                 "scenarios/refusal.yaml::fault_effective", "scenarios/invalid.yaml::load"):
        assert item in out, out
    assert "gateway-config" not in out
    node_ids = [line.split(" ")[0] for line in out.splitlines() if line.startswith("scenarios/")]
    assert len(node_ids) == 6 and not any("[" in n for n in node_ids)  # Allure strips [...] from names


def test_violation_fails_with_the_cli_explanation(suite):
    _, result, allure = suite
    assert result.returncode == 1
    assert "FAILED scenarios/broken.yaml::trigger_conditions" in result.stdout
    assert "fell back from gpt-eu to claude-eu on 400" in result.stdout
    assert "reproduce: harness run" in result.stdout
    record = allure["broken :: trigger_conditions"] if "broken :: trigger_conditions" in allure else \
        allure["content-policy-refusal :: trigger_conditions"]
    assert record["status"] == "failed"          # an AssertionError: failed, not broken
    assert "GovernanceViolation" not in record["statusDetails"]["message"] or "fell back" in \
        record["statusDetails"]["message"]


def test_unknown_is_skipped_never_passed(suite):
    _, result, allure = suite
    assert "SKIPPED" in result.stdout and "unknown: no fallback call was made" in result.stdout
    assert allure["refusal :: approved_targets"]["status"] == "skipped"


def test_invalid_scenario_fails_with_its_location(suite):
    _, result, _ = suite
    assert "FAILED scenarios/invalid.yaml::load" in result.stdout
    assert "invalid.yaml:3" in result.stdout


def test_allure_labels_parameters_attachments_and_links(suite):
    root, _, allure = suite
    record = allure["refusal :: fault_effective"]
    labels = {(label["name"], label["value"]) for label in record["labels"]}
    assert {("epic", "refusal"), ("feature", "fault_effective"), ("story", "primary-refuses-risky-prompts"),
            ("severity", "minor"), ("tag", "content-policy")} <= labels
    assert {p["name"] for p in record["parameters"]} >= {"scenario", "check"}
    assert len({r["historyId"] for r in allure.values()}) == len(allure)
    names = {a["name"] for a in record["attachments"]}
    assert {"scenario file", "policy"} <= names
    assert any(link["name"] == "ledger" and link["url"].startswith("file://") for link in record["links"])
    failed = next(r for name, r in allure.items() if name.endswith(":: trigger_conditions"))
    assert "offending requests" in {a["name"] for a in failed["attachments"]}
    for attachment in (root / "allure").glob("*-attachment*"):
        assert "sk-test-" not in attachment.read_text(errors="replace")


def test_select_by_tag_marker(suite):
    root, _, _ = suite
    none = _pytest("scenarios", "-m", "regional", "--collect-only", "-q", cwd=root)
    assert none.returncode == 5
    some = _pytest("scenarios", "-m", "content-policy", "--collect-only", "-q", cwd=root)
    assert some.returncode == 0 and "broken.yaml::trigger_conditions" in some.stdout


def test_user_fixtures_run_a_scenario_and_return_objects(tmp_path):
    scenario = tmp_path / "refusal.yaml"
    scenario.write_text(_scenario(BASE, "trigger_conditions, fault_effective"))
    (tmp_path / "test_mine.py").write_text(f'''
from harness.pytest_plugin import verdicts

def test_refusal_is_not_rerouted(harness_run, harness_ledger):
    outcome = harness_run({str(scenario)!r})
    assert verdicts(outcome.judgement.results) == {{"trigger_conditions": "pass", "fault_effective": "pass"}}
    history = harness_ledger(outcome.ledger)
    assert len(history.requests) == 120
    assert all(history.served_by(rid) in ("gpt-eu", None) for rid in history.requests)
    assert [c["check"] for c in outcome.summary["checks"]] == ["trigger_conditions", "fault_effective"]
    assert (outcome.run_dir / "summary.json").exists() and outcome.verdict.value == "pass"
''')
    result = _pytest("test_mine.py", "--harness-report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_allure_html_renders_offline(suite):
    root, _, _ = suite
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not installed: the Allure command line runs through it")
    out = root / "allure-html"
    result = subprocess.run([npx, "-y", "-p", "allure-commandline", "allure", "generate", "--single-file",
                             str(root / "allure"), "-o", str(out), "--clean"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (out / "index.html").read_text(errors="replace")
    assert len(page) > 100_000 and "allure" in page.lower()

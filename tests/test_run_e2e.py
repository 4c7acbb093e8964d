"""End to end through the real CLI: mock providers, reference gateway, collector, checks, reports."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SCENARIOS, harness_cmd, shipped_text

pytestmark = pytest.mark.slow  # whole runs: the slow tier (README: tests)


def _only_run_dir(report_dir: Path) -> Path:
    runs = [p for p in report_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _events(ledger: Path) -> list[dict]:
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def regional_run(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("regional") / "reports"
    result = harness_cmd("run", str(SCENARIOS / "regional-outage.yaml"), "--report-dir", str(report_dir))
    return result, _only_run_dir(report_dir)


def test_correct_gateway_passes_every_check(regional_run):
    result, run_dir = regional_run
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "pass"
    verdicts = {c["check"]: c["verdict"] for c in summary["checks"]}
    assert set(verdicts) == {"approved_targets", "trust_boundary", "fail_closed", "trigger_conditions", "logged",
                             "reversible", "steady_state", "attempt_budget", "response_integrity", "fault_effective"}
    assert set(verdicts.values()) == {"pass"}
    # The run really moved traffic: fallback during the window, primary before and after.
    served = summary["stats"]["served_by"]
    assert served["gpt-eu"] > 100 and served["claude-eu"] > 20, served
    assert "Traceback" not in result.stderr


def test_ledger_records_every_hop(regional_run):
    _, run_dir = regional_run
    events = _events(run_dir / "ledger.jsonl")
    assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"
    assert events[0]["scenario_sha256"] and events[0]["harness_version"] and events[0]["seed"] == 7
    kinds = {e["type"] for e in events}
    assert {"topology", "fault_start", "fault_end", "request", "upstream", "audit"} <= kinds
    requests = [e for e in events if e["type"] == "request"]
    assert len(requests) == 20 * 16
    upstream_ids = {e["id"] for e in events if e["type"] == "upstream"}
    assert {r["id"] for r in requests if r["status"] == 200} <= upstream_ids
    fault_end = next(e for e in events if e["type"] == "fault_end")
    assert fault_end["healed"] is True


def test_no_key_in_any_artefact(regional_run):
    _, run_dir = regional_run
    for path in run_dir.iterdir():
        text = path.read_text(errors="replace")
        assert "sk-test-svc-eu" not in text and "sk-test-svc-us" not in text, path


def test_reports_are_written(regional_run):
    _, run_dir = regional_run
    junit = (run_dir / "junit.xml").read_text()
    assert junit.count("<testcase") == 10 and "<failure" not in junit


def test_check_rejudges_saved_ledger_identically(regional_run):
    _, run_dir = regional_run
    result = harness_cmd("check", str(run_dir / "ledger.jsonl"), "--json")
    assert result.returncode == 0, result.stderr
    rejudged = json.loads(result.stdout)
    original = json.loads((run_dir / "summary.json").read_text())
    assert [(c["check"], c["verdict"], c["summary"]) for c in rejudged["checks"]] == \
           [(c["check"], c["verdict"], c["summary"]) for c in original["checks"]]


def test_defect_is_reported_with_evidence_and_reproduction(tmp_path):
    scenario = tmp_path / "swap.yaml"
    text = shipped_text(SCENARIOS / "regional-outage.yaml").replace(
        "gateway: {kind: reference, cooldown_s: 1}",
        "gateway: {kind: reference, cooldown_s: 1, defects: [identity-swap]}")
    scenario.write_text(text)
    result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "reports"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL    trust_boundary" in result.stdout
    assert "svc-us" in result.stdout            # the identity the fallback really ran as
    assert "requests: r0" in result.stdout
    assert f"reproduce: harness run {scenario} --seed 7" in result.stdout
    assert "re-judge:  harness check" in result.stdout


def test_sigint_heals_and_ends_unknown(tmp_path):
    report_dir = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(SCENARIOS / "regional-outage.yaml"),
                             "--report-dir", str(report_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run_dir = _wait_for_fault(report_dir)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, out + err
    events = _events(run_dir / "ledger.jsonl")
    end = events[-1]
    assert end["type"] == "run_end" and end["status"] == "interrupted"
    fault_end = [e for e in events if e["type"] == "fault_end"]
    assert fault_end and fault_end[0]["healed"] and fault_end[0]["reason"] == "aborted"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "unknown"


def test_sigkill_leaves_a_readable_ledger_and_no_processes(tmp_path):
    report_dir = tmp_path / "reports"
    # Its own state directory: a killed run leaves its working folder (keys) there until `harness recover`.
    env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(SCENARIOS / "regional-outage.yaml"),
                             "--report-dir", str(report_dir)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    run_dir = _wait_for_fault(report_dir)
    proc.kill()
    proc.wait(timeout=10)
    recovered = subprocess.run([sys.executable, "-m", "harness.cli", "recover"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
    assert f"run {run_dir.name}: removed its working folder" in recovered.stdout, recovered.stdout + recovered.stderr
    assert not any((tmp_path / "state" / "runs").iterdir())
    topology = next(e for e in _events(run_dir / "ledger.jsonl") if e["type"] == "topology")
    result = harness_cmd("check", str(run_dir / "ledger.jsonl"))
    assert result.returncode == 3, result.stdout + result.stderr   # killed: nothing proven
    assert "Traceback" not in result.stderr
    # The children died with the harness: nothing is left listening.
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + 10
    url = topology["gateway"]["url"] + "/health"
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
        except (urllib.error.URLError, ConnectionError, OSError):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the reference gateway outlived the killed harness")


def _wait_for_fault(report_dir: Path, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if report_dir.exists():
            for run_dir in report_dir.iterdir():
                ledger = run_dir / "ledger.jsonl"
                if ledger.exists() and '"type":"fault_start"' in ledger.read_text():
                    time.sleep(1.0)   # let the outage bite
                    return run_dir
        time.sleep(0.1)
    pytest.fail("the fault never started")

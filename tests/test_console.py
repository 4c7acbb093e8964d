"""The live view (plain mode as CI and pipes see it), --format json, and `harness report`."""

import json

import pytest

from harness.console import RunState
from tests.conftest import ROOT, SCENARIOS, harness_cmd, shipped_text

LEDGERS = ROOT / "fixtures" / "ledgers"


def test_run_state_follows_the_ledger():
    state = RunState(planned_s=16)
    state.feed({"type": "run_start", "ts": 100.0})
    state.feed({"type": "topology", "ts": 100.5})
    assert state.phase == "steady state"
    state.feed({"type": "fault_start", "ts": 103.0, "fault": "eu-down", "targets": ["gpt-eu"]})
    for i in range(10):
        state.feed({"type": "upstream", "ts": 103.1 + i * 0.05, "provider": "claude-eu", "outcome": "ok"})
    state.feed({"type": "upstream", "ts": 103.2, "provider": "gpt-eu", "outcome": "error"})
    assert state.phase == "fault" and state.active_faults == {"eu-down": ["gpt-eu"]}
    assert state.rates(now=103.6) == {"claude-eu": 10.0}
    state.feed({"type": "kill_switch", "ts": 104.0, "state": "off", "ok": True})
    assert state.switch_off
    state.feed({"type": "fault_end", "ts": 109.0, "fault": "eu-down"})
    assert state.phase == "recovery" and not state.active_faults
    assert state.elapsed(now=110.0) == 10.0


@pytest.mark.slow
def test_plain_live_lines_then_json_summary(tmp_path):
    scenario = tmp_path / "short.yaml"
    text = shipped_text(SCENARIOS / "content-policy-refusal.yaml")
    scenario.write_text(text.replace("duration_s: 10", "duration_s: 7")
                        .replace("at_s: 2\n    duration_s: 6", "at_s: 1\n    duration_s: 5"))
    text = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "a"), env={"NO_COLOR": "1"})
    assert text.returncode == 0, text.stderr
    live = [line for line in text.stderr.splitlines() if line.startswith("[live]")]
    assert len(live) >= 2
    assert any("gpt-eu" in line and "/s" in line for line in live)
    assert any("faults=primary-refuses-risky-prompts" in line for line in live)
    as_json = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "b"), "--format", "json")
    assert as_json.returncode == 0
    summary = json.loads(as_json.stdout)
    assert summary["verdict"] == "pass" and summary["scenario"]["name"] == "content-policy-refusal"
    assert "[live]" not in as_json.stderr
    run_dir = next((tmp_path / "b").iterdir())
    assert {"report.html", "summary.json", "junit.xml", "ledger.jsonl", "timeline.svg"} <= {
        p.name for p in run_dir.iterdir()}


def test_report_rebuilds_from_a_saved_ledger(tmp_path):
    result = harness_cmd("report", str(LEDGERS / "regional-outage__unapproved-target.jsonl.gz"),
                         "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "report.html").read_text()
    assert "unapproved" in html.lower() and "gpt-us" in html
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert any(t["status"] == "unapproved" and t["fallback"] == "gpt-us" for t in summary["transitions"])

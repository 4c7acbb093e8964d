"""The CLI's input handling and informational commands, as a user meets them."""

import json

from harness.core.registry import check_names
from tests.conftest import SCENARIOS, harness_cmd, shipped_text


def test_validate_every_shipped_scenario():
    files = sorted(str(p) for p in SCENARIOS.glob("*.yaml"))
    assert len(files) >= 7
    result = harness_cmd("validate", *files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok  ") == len(files)


def test_bad_scenario_exits_2_with_location_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(shipped_text(SCENARIOS / "regional-outage.yaml").replace("rate_per_s: 20", "rate_per_sec: 20"))
    for command in ("validate", "run"):
        result = harness_cmd(command, str(bad), "--report-dir", str(tmp_path / "r")) if command == "run" \
            else harness_cmd(command, str(bad))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert f"{bad}:" in result.stderr and "rate_per_sec" in result.stderr
        assert "rate_per_s" in result.stderr  # did you mean
    assert not (tmp_path / "r").exists()  # nothing started on bad input


def test_missing_ledger_is_input_error(tmp_path):
    result = harness_cmd("check", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nope.jsonl" in result.stderr


def test_garbage_ledger_is_input_error(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text('{"type": "run_start", "ts": 1, "scenario": {}}\nnot json at all\n{"type": "run_end", "ts": 2}\n')
    result = harness_cmd("check", str(ledger))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{ledger}:2" in result.stderr


def test_list_checks_names_every_check():
    result = harness_cmd("list-checks")
    assert result.returncode == 0
    for name in check_names():
        assert name in result.stdout


def test_schema_is_json_schema_of_the_model():
    result = harness_cmd("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert {"version", "providers", "policy", "traffic", "faults", "checks"} <= set(schema["properties"])


def test_unknown_check_name_is_usage_error():
    result = harness_cmd("run", str(SCENARIOS / "regional-outage.yaml"), "--checks", "approved_target")
    assert result.returncode == 2 and "unknown check" in result.stderr


def test_runs_from_any_directory(tmp_path):
    result = harness_cmd("validate", str(SCENARIOS / "timeouts.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok  {SCENARIOS / 'timeouts.yaml'}: timeouts ")

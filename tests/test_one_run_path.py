"""`harness run` and `harness load` are one run path with two traffic sources: the same scenario through
both writes ledgers the same checks judge, with `{scenario_dir}` resolved the same way (commands,
containers), and every front end goes through the same engine."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from harness.faults.docker_backend import connect
from tests.conftest import ROOT, harness_cmd, shipped_data

pytestmark = pytest.mark.slow
FIXTURES = ROOT / "fixtures"
RACE = "had answered since its last failure"
NEEDS_LOCUST = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                  reason="locust is not installed (pip install -e '.[load]')")


DEADLINE_RACE = "fell back from gpt-eu to claude-eu although the primary answered ok"


def _answered_at_the_deadline(events: list[dict], rid: str, deadline_s: float) -> bool:
    """The request's primary call waited out the gateway's whole deadline before its fallback, and the
    container came back (the pause ended) within a quarter second of that fallback."""
    calls = sorted((e for e in events if e["type"] == "upstream" and e["id"] == rid), key=lambda e: e["ts"])
    [resumed] = [e["ts"] for e in events if e["type"] == "fault_end"]
    if len(calls) != 2 or [c["provider"] for c in calls] != ["gpt-eu", "claude-eu"]:
        return False
    primary, fallback = calls
    return (primary["outcome"] == "ok" and fallback["ts"] - primary["ts"] >= deadline_s
            and abs(fallback["ts"] - resumed) <= 0.25)


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines() if line.strip()]


def _both(scenario: Path, tmp_path: Path, cwd: Path, run_time: str) -> dict[str, tuple[dict, list[dict], int]]:
    """The scenario through `harness run` and `harness load`, each from `cwd` (not the scenario's folder)."""
    out = {}
    for command, extra in (("run", []), ("load", ["--users", "10", "--run-time", run_time])):
        reports = tmp_path / f"reports-{command}"
        result = harness_cmd(command, str(scenario), *extra, "--report-dir", str(reports), "--format", "json",
                             cwd=cwd, timeout=240)
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        (run_dir,) = reports.iterdir()
        out[command] = (json.loads(result.stdout), _events(run_dir), result.returncode)
    return out


@NEEDS_LOCUST
def test_a_command_gateway_runs_alike_under_run_and_load(tmp_path):
    # The scenario lives in a folder of its own; its gateway is found through {scenario_dir}; the
    # harness runs from yet another folder, so the working directory cannot stand in for it.
    folder = tmp_path / "drills" / "scenarios"
    folder.mkdir(parents=True)
    shutil.copytree(FIXTURES / "gateways", tmp_path / "drills" / "gateways")
    scenario = folder / "command-gateway.yaml"
    shutil.copy(FIXTURES / "scenarios" / "command-gateway.yaml", scenario)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    both = _both(scenario, tmp_path, elsewhere, "10s")
    for command, (summary, events, code) in both.items():
        assert code == 0 and summary["verdict"] == "pass", (command, [(c["check"], c["summary"])
                                                                     for c in summary["checks"]])
        assert events[0]["mode"] == command and events[-1]["type"] == "run_end"
        assert events[-1]["status"] == "completed"
        served = {e["provider"] for e in events if e["type"] == "upstream" and e["outcome"] == "ok"}
        assert served == {"gpt-eu", "claude-eu"}, (command, served)  # the fault moved traffic, then back
    checks = [[c["check"] for c in summary["checks"]] for summary, _, _ in both.values()]
    assert checks[0] == checks[1] == yaml.safe_load(scenario.read_text())["checks"]
    assert both["load"][0]["load"]["observations"]["lost"] == 0


def _engine_reason() -> str | None:
    try:
        connect(allow_remote=False).close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine here
        return f"no Docker engine answers ({str(exc).splitlines()[0]}); .ci/docker-up starts one"
    return None


@NEEDS_LOCUST
def test_containers_find_the_scenario_folder_under_run_and_load(tmp_path):
    reason = _engine_reason()
    if reason:
        pytest.skip(reason)
    # The container runs the shipped scenario's model server from a copy beside the scenario file, bound in
    # as {scenario_dir}: what differs from the shipped scenario is only where the script is found.
    folder = tmp_path / "drill"
    folder.mkdir()
    shutil.copy(ROOT / "harness" / "topology" / "model_server.py", folder / "model_server.py")
    data = shipped_data(ROOT / "scenarios" / "docker" / "container-outage.yaml")
    spec = data["containers"]["model-eu"]
    spec["command"] = ["{python}", "{scenario_dir}/model_server.py", "--port", "18431"]
    spec["binds"].append("{scenario_dir}:{scenario_dir}:ro")
    scenario = folder / "container-outage.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    both = _both(scenario, tmp_path, elsewhere, "15s")
    deadline_s = float(data["gateway"]["upstream_timeout_s"])  # the gateway's timeout on a primary call
    for command, (summary, events, code) in both.items():
        assert summary["status"] == "completed", (command, summary["status_reason"])
        served = [e for e in events if e["type"] == "upstream" and e["provider"] == "gpt-eu" and e["outcome"] == "ok"]
        assert served, f"{command}: the container's server never answered"
        # Every check passes, but for one race the reference gateway has when a paused container comes
        # back (seen about once in five runs, more under load): requests that hung through the pause
        # still cool the primary down after another request's success was known. What it is, when
        # caught, does not vary (as the LiteLLM suite's RACES).
        verdicts = {c["check"]: c["verdict"] for c in summary["checks"]}
        # A second one (seen in 3 of 8 runs under load, always l0-0-8): the container comes back just as
        # the gateway's 1 s deadline on a hung call falls. The proxy relays the answer in full (`ok`) while
        # the gateway has given up on it (its timeout, then fallback); the proxy records a timeout when it
        # sees the gateway's close first, but that close can still be on its way. Allowed only when the
        # ledger shows exactly that (docs/checks.md, "An answer that lands on the gateway's own deadline").
        if verdicts.get("trigger_conditions") == "fail":
            [trigger] = [c for c in summary["checks"] if c["check"] == "trigger_conditions"]
            for violation in trigger["violations"]:
                if RACE in violation["message"]:
                    continue
                assert DEADLINE_RACE in violation["message"], (command, trigger["violations"])
                for rid in violation["request_ids"]:
                    assert _answered_at_the_deadline(events, rid, deadline_s), (command, rid, violation)
            verdicts["trigger_conditions"] = "pass"
        assert set(verdicts.values()) == {"pass"} and code in (0, 1), (command, code, verdicts)
    assert [c["check"] for c in both["run"][0]["checks"]] == [c["check"] for c in both["load"][0]["checks"]]

"""`harness load`: real locust subprocesses against the embedded default (reference gateway + mock providers).

Locust is never imported here (it monkey-patches with gevent): the engine starts it as a subprocess.
"""

import ast
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.core.errors import HarnessError
from harness.engine.judge import judge_ledger
from harness.engine.load import LocustSource, run_load
from harness.engine.run import INCOMPLETE, Run
from harness.engine.topology import Topology
from harness.ledger import LedgerWriter, load_history
from harness.ledger.bounds import Bounds
from harness.ledger.feed import Record, RunFrame
from harness.ledger.history import FaultWindow
from harness.loadgen import LOCUSTFILE, LoadOptions, parse_duration
from harness.loadgen.stats import locust_totals
from harness.pytest_plugin import HarnessRun
from harness.reporting import Reports, summary_of
from harness.reporting.load import LoadPhases
from harness.scenario import load_scenario
from harness.traffic.source import TrafficTarget
from tests.conftest import ROOT, SCENARIOS, harness_cmd, shipped_data
from tests.ledger_builder import make_scenario

# find_spec, not importorskip: importing locust here would monkey-patch this process with gevent.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                reason="locust is not installed (pip install -e '.[load]')")]

USERS = 20
RUN_TIME_S = 10.0


def _short_scenario(tmp: Path, name: str, defects: list[str] | None = None) -> Path:
    """regional-outage, shortened: the fault from 2 s to 5 s, failback due by 8 s, traffic for 10 s."""
    data = shipped_data(SCENARIOS / "regional-outage.yaml")
    data["traffic"]["duration_s"] = RUN_TIME_S
    data["faults"][0].update(at_s=2, duration_s=3)
    data["policy"]["reversibility"]["failback_within_s"] = 3
    if defects:
        data["gateway"]["defects"] = defects
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _events(ledger: Path) -> list[dict]:
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


def _run(tmp: Path, name: str, **kwargs) -> HarnessRun:
    loaded = load_scenario(_short_scenario(tmp, name, kwargs.pop("defects", None)))
    outcome = run_load(loaded, tmp / "reports", users=USERS, run_time_s=RUN_TIME_S, handlers=[Reports()],
                       log=lambda _m: None, **kwargs)
    return HarnessRun(outcome, summary_of(outcome.reports))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("load-single"), "regional-load")


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("load-dist"), "regional-load-dist", processes=2)


def _imported_after(modules: list[str]) -> set[str]:
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(' '.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {m.split(".")[0] if not m.startswith("harness.") else ".".join(m.split(".")[:2])
            for m in result.stdout.split()}


def test_locust_and_the_engine_stay_apart():
    # The engine and the load statistics never import locust (its gevent patching would break asyncio) ...
    assert not {"locust", "gevent"} & _imported_after(["harness.engine.load", "harness.engine.run", "harness.loadgen"])
    # ... and what the locustfile imports of the harness pulls in no asyncio stack and not the engine.
    tree = ast.parse(LOCUSTFILE.read_text())
    ours = sorted({n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                   and n.module.startswith("harness")})
    assert ours and not {"aiohttp", "uvloop", "harness.engine"} & _imported_after(ours), ours


def test_a_load_run_passes_and_the_ledger_holds_every_request(single):
    assert single.status == "completed", single.reason
    assert single.summary["verdict"] == "pass", [(c["check"], c["summary"]) for c in single.summary["checks"]]
    load = single.summary["load"]
    obs = load["observations"]
    assert obs["ledger_requests"] == obs["locust_requests"] == load["locust"]["requests"], obs
    assert obs["difference"] == 0 and obs["lost"] == 0 and obs["duplicate_ids"] == 0
    # ~ users x 1 request/s x run time
    assert USERS * RUN_TIME_S * 0.7 < obs["ledger_requests"] < USERS * RUN_TIME_S * 1.3, obs
    events = _events(single.ledger)
    assert events[0]["type"] == "run_start" and events[0]["mode"] == "load" and events[0]["load"]["users"] == USERS
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed"
    assert {"topology", "fault_start", "fault_end", "request", "upstream", "audit"} <= {e["type"] for e in events}
    requests = [e for e in events if e["type"] == "request"]
    assert all(e["id"].startswith("l0-") for e in requests)
    assert {e["id"] for e in requests if e["status"] == 200} <= {e["id"] for e in events if e["type"] == "upstream"}
    assert any(e["stream"] and e["stream_complete"] for e in requests)


def test_load_statistics_are_split_around_the_fault_window(single):
    load = single.summary["load"]
    (window,) = load["phases"]["windows"]
    phases = {p["phase"]: p for p in window["phases"]}
    assert set(phases) == {"before", "during", "after"}
    assert sum(p["requests"] for p in phases.values()) == load["phases"]["overall"]["requests"]
    for p in phases.values():
        assert p["requests"] > 0 and p["rps"] > 0 and p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"], p
    # During the outage regulated traffic fails closed: failures rise there. (A request sent just
    # before the fault started may still meet it: phases are cut on send time.)
    assert phases["during"]["failure_rate"] > max(phases["before"]["failure_rate"], phases["after"]["failure_rate"])
    assert load["locust"]["rps"] > 0 and load["locust"]["p95_ms"] is not None
    for name in ("locust.json", "locust_stats.csv", "locust.log", "report.html", "junit.xml"):
        assert (single.run_dir / name).exists(), name
    assert not (single.run_dir / "load.json").exists()  # the private config stays in the temporary folder


def test_distributed_load_injects_each_fault_once(distributed):
    assert distributed.status == "completed", distributed.reason
    assert distributed.summary["verdict"] == "pass", [(c["check"], c["summary"]) for c in distributed.summary["checks"]]
    events = _events(distributed.ledger)
    assert [e["type"] for e in events if e["type"] in ("fault_start", "fault_end")] == ["fault_start", "fault_end"]
    obs = distributed.summary["load"]["observations"]
    assert obs["ledger_requests"] == obs["locust_requests"] and obs["lost"] == 0 and obs["duplicate_ids"] == 0
    assert set(obs["per_worker"]) == {"0", "1"} and min(obs["per_worker"].values()) > 0, obs
    assert distributed.summary["load"]["processes"] == 2


def test_a_defect_is_caught_under_load(tmp_path):
    """identity-swap through `harness load`: exit 1, the violation in summary.json."""
    path = _short_scenario(tmp_path, "identity-swap-load", ["identity-swap"])
    result = harness_cmd("load", str(path), "--users", str(USERS), "--run-time", f"{RUN_TIME_S:g}s",
                         "--report-dir", str(tmp_path / "reports"), timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    (run_dir,) = (tmp_path / "reports").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    verdicts = {c["check"]: c["verdict"] for c in summary["checks"]}
    assert summary["verdict"] == "fail" and verdicts["trust_boundary"] == "fail", verdicts
    assert summary["load"]["observations"]["lost"] == 0


def test_a_lost_observation_means_the_run_cannot_pass(single, tmp_path):
    # Replay the end of the passing run on a copy of its ledger missing one request event.
    lines = single.ledger.read_text().splitlines(keepends=True)
    kept, dropped = [], False
    for line in lines:
        kind = json.loads(line)["type"]
        if kind in ("note", "run_end") or (kind == "request" and not dropped and (dropped := True)):
            continue
        kept.append(line)
    copy = tmp_path / "ledger.jsonl"
    copy.write_text("".join(kept))
    loaded = load_scenario(single.scenario_path)
    source = LocustSource(single.judgement.scenario, LoadOptions(USERS, USERS, RUN_TIME_S))
    source.target = TrafficTarget("http://127.0.0.1:9", single.judgement.scenario.gateway.served_target, None, {},
                                  str, tmp_path, tmp_path, copy)
    source.locust = single.summary["load"]["locust"]
    report = source.conclude(completed=True)
    assert report.problem is not None and "1 missing" in report.problem
    assert report.details["observations"]["lost"] == 1
    run = Run(loaded, single.judgement.scenario, source, tmp_path, lambda _m: None)
    with LedgerWriter(copy) as ledger:
        run._end(ledger, report)  # what the engine records at the end of every run
    assert run.status == INCOMPLETE and "1 missing" in str(run.reason)
    history = load_history(copy)
    assert any(n["level"] == "error" and "observations lost" in n["message"] for n in history.notes)
    judgement = judge_ledger(copy)
    assert judgement.verdict.value == "unknown"
    assert all(r.verdict.value == "unknown" and "observations lost" in r.summary for r in judgement.results)


def test_plain_locust_runs_the_mix_without_recording(tmp_path):
    """`locust -f harness/locustfile.py --harness-scenario ...` against a gateway this test starts."""
    scenario_path = SCENARIOS / "regional-outage.yaml"

    async def scenario() -> tuple[subprocess.CompletedProcess, list[dict]]:
        with LedgerWriter(tmp_path / "ledger.jsonl") as ledger:
            topology = Topology(load_scenario(scenario_path).scenario, tmp_path, ledger)
            await topology.start()
            try:
                argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--harness-scenario", str(scenario_path),
                        "--headless", "-t", "3s", "-u", "5", "-r", "5", "--host", topology.gateway_url,
                        "--json", "--skip-log"]
                env = {k: v for k, v in os.environ.items() if k != "HARNESS_LOAD_CONFIG"}
                proc = await asyncio.create_subprocess_exec(*argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                                            stderr=subprocess.PIPE)
                out, err = await asyncio.wait_for(proc.communicate(), 60)
            finally:
                await topology.stop()
        result = subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())
        return result, _events(tmp_path / "ledger.jsonl")

    result, events = asyncio.run(scenario())
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads(result.stdout)
    sent = sum(e["num_requests"] for e in stats)
    assert sent >= 5 and sum(e["num_failures"] for e in stats) == 0, stats
    assert not [e for e in events if e["type"] == "request"]  # plain use records nothing
    upstream = [e for e in events if e["type"] == "upstream"]
    assert len(upstream) >= sent and all(e["id"] and e["id"].startswith("l0-") for e in upstream)


def test_load_options_are_checked_before_anything_starts():
    scenario = load_scenario(SCENARIOS / "regional-outage.yaml").scenario  # its fault ends at 9 s
    assert LoadOptions(10, 10, 16).problems(scenario) == []
    problems = LoadOptions(0, 0, 5, processes=-1).problems(scenario)
    assert len(problems) == 4 and "ends before the scenario's timeline (9 s)" in problems[-1]
    with pytest.raises(HarnessError, match="--users must be at least 1"):
        LoadOptions(0, 1, 16).validate(scenario)
    assert [parse_duration(t) for t in ("90", "90s", "2m", "1h30m", "1.5s")] == [90, 90, 120, 5400, 1.5]
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_phase_stats_cut_on_send_time():
    reqs = [{"id": f"r{i}", "route": "chat", "ts": 100.0 + i * 0.5, "latency_ms": 10.0 + i,
             "outcome": "ok" if i % 4 else "http_error"}
            for i in range(20)]  # 100.0 .. 109.5
    windows = [FaultWindow("f1", 102.0, 104.0, ("p",), {}, None, True),
               FaultWindow("f2", 106.0, 107.0, ("p",), {}, None, True)]
    frame = RunFrame(make_scenario(), 100.0, windows, [], [], Bounds(), {"mode": "load"})
    phases = LoadPhases(frame)
    for request in reversed(reqs):  # the order requests are fed in does not matter
        phases.request(Record(request, None, []))
    stats = phases.finish(frame, None)  # type: ignore[arg-type]
    assert stats["overall"]["requests"] == 20 and stats["overall"]["failures"] == 5
    first, second = ([p["requests"] for p in w["phases"]] for w in stats["windows"])
    assert first == [4, 5, 3] and second == [3, 3, 5]  # 'after' f1 ends where 'before' f2 begins
    before = stats["windows"][0]["phases"][0]
    assert before["start_s"] == 0.0 and before["end_s"] == 2.0 and before["rps"] == 2.0
    assert before["p50_ms"] == 11.0 and before["p99_ms"] == 13.0


def test_locust_totals_read_its_json_like_locust(tmp_path):
    entries = [
        {"name": "a", "method": "POST", "num_requests": 8, "num_failures": 1, "start_time": 10.0,
         "last_request_timestamp": 14.0, "max_response_time": 90, "response_times": {"10": 6, "50": 1, "90": 1}},
        {"name": "b", "method": "POST", "num_requests": 2, "num_failures": 0, "start_time": 11.0,
         "last_request_timestamp": 15.0, "max_response_time": 20, "response_times": {"20": 2}},
    ]
    (tmp_path / "locust.json").write_text(json.dumps(entries))
    totals = locust_totals(tmp_path / "locust.json")
    assert totals is not None
    assert (totals["requests"], totals["failures"], totals["rps"]) == (10, 1, 2.0)
    assert (totals["p50_ms"], totals["p95_ms"], totals["p99_ms"], totals["max_ms"]) == (10, 90, 90, 90)
    assert locust_totals(tmp_path / "missing.json") is None

"""Interrupts, any number of them, and a SIGKILL: real `harness run` subprocesses, real signals.

A run stopped by SIGINT / SIGTERM (once or many times, during the outage, the shutdown or the
reports) still heals, writes `run_end` and its reports, ends unknown (exit 3, never 130, never 1),
records every request that left (in flight: outcome unknown) and leaves no working folder behind.
A SIGKILLed run leaves its folder and a gateway started through `sh -c` behind: `harness recover`
kills the orphaned process group and removes the folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SCENARIOS

pytestmark = pytest.mark.slow  # whole runs, interrupted

RUN_TIMEOUT_S = 120
# The primary hangs from 3 s on and the gateway waits 1 s for it: requests are in flight at any moment.
TIMEOUTS = SCENARIOS / "timeouts.yaml"
COMMAND_SCENARIO = ROOT / "fixtures" / "scenarios" / "command-gateway.yaml"


class Harness:
    """One `harness run` in its own state, report and temporary folders."""

    def __init__(self, base: Path, scenario: Path) -> None:
        self.state, self.reports, self.tmp = base / "state", base / "reports", base / "tmp"
        for folder in (self.state, self.reports, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HARNESS_STATE_DIR": str(self.state), "TMPDIR": str(self.tmp), "NO_COLOR": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(scenario), "--report-dir",
                                      str(self.reports)], cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def ledger_lines(self) -> list[str]:
        ledgers = list(self.reports.glob("*/ledger.jsonl"))
        return ledgers[0].read_text(encoding="utf-8").splitlines() if ledgers else []

    def wait_for(self, marker: str, timeout_s: float = 60) -> None:
        """Until the ledger holds a line with `marker` (e.g. the fault started)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(marker in line for line in self.ledger_lines()):
                return
            assert self.proc.poll() is None, self.proc.communicate()
            time.sleep(0.1)
        raise AssertionError(f"no {marker} in the ledger within {timeout_s} s")

    def signal(self, sig: int, *pauses_s: float) -> None:
        """`sig` now, then once more after each pause."""
        self.proc.send_signal(sig)
        for pause in pauses_s:
            time.sleep(pause)
            if self.proc.poll() is None:
                self.proc.send_signal(sig)

    def finish(self) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err

    def events(self, kind: str) -> list[dict]:
        return [e for e in map(json.loads, self.ledger_lines()) if e["type"] == kind]

    @property
    def run_dir(self) -> Path:
        return next(self.reports.glob("*/ledger.jsonl")).parent

    def recover(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", "recover"], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=60)


def assert_ended_whole(run: Harness, code: int, out: str, err: str) -> None:
    """Exit 3, healed, run_end and the reports written, every request that left recorded, nothing left behind."""
    assert code == 3, (code, out[-2000:], err[-3000:])
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    ends = run.events("run_end")
    assert len(ends) == 1 and ends[0]["status"] == "interrupted", ends
    requests = run.events("request")
    assert ends[0]["requests_sent"] == len(requests) > 0
    # Every call that reached a provider for a request has that request's event: in flight means unknown.
    request_ids = {r["id"] for r in requests}
    upstream_ids = {u["id"] for u in run.events("upstream") if u.get("id")}
    assert upstream_ids <= request_ids, sorted(upstream_ids - request_ids)[:10]
    for started in run.events("fault_start"):
        assert any(e["fault"] == started["fault"] and e["healed"] for e in run.events("fault_end")), started
    for report in ("summary.json", "junit.xml", "report.html"):
        assert (run.run_dir / report).is_file(), report
    assert json.loads((run.run_dir / "summary.json").read_text())["verdict"] == "unknown"
    assert not list((run.state / "runs").iterdir()), "the run's working folder (keys) is left behind"
    assert not list(run.tmp.iterdir())


# Close together, as a user's repeated Ctrl-C: the run's shutdown takes well under a second. (A signal
# after `harness run` has printed its result, as the interpreter exits, is outside the run's handlers.)
@pytest.mark.parametrize("pauses", [(0.05,), (0.05, 0.05)], ids=["twice", "three-times"])
def test_repeated_sigint_still_heals_records_and_reports(tmp_path, pauses):
    run = Harness(tmp_path, TIMEOUTS)
    run.wait_for('"type":"fault_start"')
    time.sleep(1.5)  # the primary hangs: requests are in flight
    run.signal(signal.SIGINT, *pauses)
    code, out, err = run.finish()
    assert_ended_whole(run, code, out, err)
    assert "SIGINT: healing faults" in err and "SIGINT again: still healing, please wait" in err
    # Cut off in flight: recorded, with an unknown outcome, never dropped.
    assert any(r["outcome"] == "unknown" and "interrupted" in (r.get("error") or "") for r in run.events("request"))


def test_sigint_all_along_the_shutdown_and_the_reports(tmp_path):
    """A signal every 50 ms from the outage until the reports are written: healing, run_end, reports."""
    run = Harness(tmp_path, TIMEOUTS)
    run.wait_for('"type":"fault_start"')
    time.sleep(1.0)
    sent = 0
    while run.proc.poll() is None and not _reports_written(run):
        run.proc.send_signal(signal.SIGINT)
        sent += 1
        time.sleep(0.05)
    code, out, err = run.finish()
    assert sent >= 3, sent
    assert_ended_whole(run, code, out, err)
    assert err.count("still healing, please wait") + err.count("writing its reports, please wait") >= 2


def _reports_written(run: Harness) -> bool:
    return all(list(run.reports.glob(f"*/{name}")) for name in ("summary.json", "junit.xml", "report.html"))


def test_sigterm_counts_every_request_it_sent(tmp_path):
    run = Harness(tmp_path, TIMEOUTS)
    run.wait_for('"type":"fault_start"')
    time.sleep(1.0)
    run.signal(signal.SIGTERM, 0.05)
    code, out, err = run.finish()
    assert_ended_whole(run, code, out, err)
    assert "SIGTERM again: still healing" in err or "SIGTERM: the run has ended; writing its reports" in err


SH_GATEWAY = '''gateway:
  kind: command
  # Through a wrapper that stays (not `exec`): only `sh` is the harness's child, the gateway its grandchild.
  command: [sh, -c, '"$0" "$1" --port "$2" --primary "$3" --primary-key "$GW_KEY" --fallback "$4"
            --fallback-key "$GW_KEY" --audit-file "$5"; echo gateway ended',
            "{python}", "GATEWAYS/simple_gateway.py", "{port}", "{providers.gpt-eu.url}",
            "{providers.claude-eu.url}", "{workdir}/audit.jsonl"]
  env: {GW_KEY: "{providers.gpt-eu.key}"}
'''


def _orphans(run_id: str) -> list[int]:
    """Live processes carrying the run's mark in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            marked = f"HARNESS_RUN_ID={run_id}".encode() in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marked and stat[stat.rfind(")") + 2] != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
def test_recover_after_sigkill_kills_the_orphaned_gateway_and_removes_the_folder(tmp_path):
    text = COMMAND_SCENARIO.read_text(encoding="utf-8")
    start, end = text.index("gateway:"), text.index("  ready_url:")
    scenario = tmp_path / "sh-gateway.yaml"
    scenario.write_text(text[:start] + SH_GATEWAY.replace("GATEWAYS", str(ROOT / "fixtures" / "gateways"))
                        + text[end:], encoding="utf-8")
    run = Harness(tmp_path, scenario)
    run.wait_for('"type":"request"')
    folders = list((run.state / "runs").iterdir())
    assert len(folders) == 1 and (folders[0].stat().st_mode & 0o777) == 0o700
    owner = json.loads((folders[0] / "owner.json").read_text())
    assert owner["pid"] == run.proc.pid and any(g["name"] == "gateway" for g in owner["groups"])
    run_id = owner["run_id"]
    run.proc.kill()
    run.finish()
    time.sleep(1.0)  # the direct children got their parent-death signal; the gateway under sh did not
    orphans = _orphans(run_id)
    assert orphans, "the gateway under `sh -c` should have outlived the SIGKILL"
    recovered = run.recover()
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "killed process group" in recovered.stdout and "removed its working folder" in recovered.stdout
    deadline = time.monotonic() + 5
    while _orphans(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _orphans(run_id), "a process of the dead run is still running"
    assert not list((run.state / "runs").iterdir()) and not list(run.tmp.iterdir())
    # Nothing else to do the second time.
    again = run.recover()
    assert again.returncode == 0 and "removed its working folder" not in again.stdout

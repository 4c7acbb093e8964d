"""`harness load`: the scenario's traffic mix from locust users, as the traffic source of the one `Run`.

Locust runs as a subprocess (never imported here: it monkey-patches with gevent), in one process or
as a master with forked workers; each locust process appends one `request` event per request to the
run's ledger. The run counts its timeline from the moment locust starts the test. At the end the
ledger's request count is compared with locust's own statistics: a request locust counted that the
ledger lacks makes the run incomplete, so it cannot pass.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import harness
from harness.core.errors import HarnessError
from harness.core.events import EventSink
from harness.core.model import Scenario
from harness.engine.processes import ChildProcess
from harness.engine.run import RunOutcome, execute
from harness.faults.journal import RUN_ENV, RunFolder
from harness.ledger.outcome import OutcomeHandler
from harness.ledger.reader import count_requests
from harness.loadgen import CONFIG_ENV, LOCUSTFILE, LoadConfig, LoadOptions, parse_duration, write_switch
from harness.loadgen.stats import compare_counts, locust_totals
from harness.scenario import LoadedScenario
from harness.traffic.source import Overrides, TrafficReport, TrafficTarget

LOCUST_START_S = 60.0   # locust (and its workers) get this long to start the test
STOP_TIMEOUT_S = 3      # at the end, a user's request in flight gets this long (then: outcome unknown)

__all__ = ["LocustSource", "LoadOptions", "parse_duration", "run_load"]


def _stderr(message: str) -> None:
    print(f"[harness] {message}", file=sys.stderr, flush=True)


class LocustSource:
    """Locust users sending the scenario's mix, `options.users` of them, for `options.run_time_s`."""

    mode = "load"
    stopping = "locust"

    def __init__(self, scenario: Scenario, options: LoadOptions) -> None:
        self.scenario = scenario
        self.options = options
        self.child: ChildProcess | None = None
        self.target: TrafficTarget | None = None
        self.switch_path: Path | None = None
        self.locust: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {"load": {**asdict(self.options), "locust_version": _locust_version()}}

    def plan_line(self) -> str:
        o = self.options
        return (f"locust, {o.users} users at {o.user_rate:g}/s each, {o.run_time_s:g} s, "
                f"{o.processes or 1} process(es)")

    async def start(self, target: TrafficTarget, sink: EventSink) -> float:
        s, o = self.scenario, self.options
        self.target = target
        config_path, started = target.workdir / "load.json", target.workdir / "locust-started"
        self.switch_path = target.workdir / "kill-switch.json"
        write_switch(self.switch_path, None)
        LoadConfig(traffic=s.traffic, seed=s.seed, served_target=target.served_target, client_key=target.client_key,
                   request_headers=target.request_headers, user_rate=o.user_rate, ledger_path=str(target.ledger),
                   started_path=str(started), switch_path=str(self.switch_path)).write(config_path)
        self.child = await ChildProcess.start("locust", self._argv(target.gateway_url), target.run_dir / "locust.log",
                                              target.redact, env=self._env(config_path), cwd=str(target.run_dir))
        # Its process group is recorded with the run's folder: `harness recover` kills it after a SIGKILL.
        RunFolder(target.workdir).add_group(self.child.name, self.child.proc.pid)
        self.child.pump_all()
        return await _wait_started(self.child, started)

    def set_overrides(self, overrides: Overrides | None) -> None:
        # Every locust process re-reads this file before each request.
        assert self.switch_path is not None, "the kill switch acts only once traffic started"
        write_switch(self.switch_path, overrides)

    async def wait(self) -> None:
        assert self.child is not None
        code = await self.child.proc.wait()
        if code != 0:
            raise HarnessError(f"locust exited with code {code}; see {self.child.log_path}\n{self.child.tail()}")

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()
        if self.target is not None:
            prefix = self.target.run_dir / "locust"
            self.locust = locust_totals(f"{prefix}.json", f"{prefix}_stats.csv")

    def conclude(self, completed: bool) -> TrafficReport:
        """No observation is lost under load: the ledger must hold every request locust counted."""
        if self.target is None:  # the run ended before locust started
            return TrafficReport(requests_sent=0, details={"observations": None, "locust": None})
        counts = count_requests(self.target.ledger)
        observations = {**compare_counts(counts, self.locust), "duplicate_ids": counts["duplicate_ids"],
                        "unknown_outcome": counts["unknown_outcome"], "per_worker": counts["per_worker"]}
        lost, problem = observations["lost"], None
        if lost:
            problem = (f"observations lost: locust counted {self.locust and self.locust['requests']} requests, "
                       f"the ledger holds {counts['requests']} ({lost} missing)")
        elif counts["duplicate_ids"]:
            problem = f"observations lost: {counts['duplicate_ids']} request id(s) recorded twice"
        elif self.locust is None and completed:  # an aborted run may end before locust wrote them
            problem = "locust's statistics are missing: the ledger's request count cannot be checked against them"
        note = {"level": "error" if problem else "info",
                "message": problem or "every request locust counted is in the ledger", "observations": observations}
        # Locust stopped by a signal may report 0 (or nothing): what the ledger holds was sent, at least.
        sent = max(observations["locust_requests"] or 0, observations["ledger_requests"] or 0)
        return TrafficReport(requests_sent=sent, problem=problem,
                             details={"observations": observations, "locust": self.locust}, notes=[note])

    def _argv(self, gateway_url: str) -> list[str]:
        assert self.target is not None
        o, prefix = self.options, str(self.target.run_dir / "locust")
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", gateway_url,
                "-u", str(o.users), "-r", f"{o.spawn_rate:g}", "-t", f"{max(1, math.ceil(o.run_time_s))}s",
                # users finish the request in flight when the time is up, within ChildProcess's stop grace
                "--stop-timeout", str(min(STOP_TIMEOUT_S, math.ceil(self.scenario.traffic.timeout_s))),
                "--exit-code-on-error", "0", "--only-summary", "--csv", prefix, "--json-file", prefix]
        return argv + (["--processes", str(o.processes)] if o.processes > 0 else [])

    def _env(self, config_path: Path) -> dict[str, str]:
        root = str(Path(harness.__file__).resolve().parents[1])  # the harness, even when not installed
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        assert self.target is not None
        return {**os.environ, CONFIG_ENV: str(config_path), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
                RUN_ENV: self.target.run_dir.name}


async def _wait_started(child: ChildProcess, marker: Path) -> float:
    """The loop time locust started the test (its master writes the wall time into `marker`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOCUST_START_S
    while loop.time() < deadline:
        if marker.exists() and (text := marker.read_text(encoding="utf-8").strip()):
            return loop.time() - max(0.0, time.time() - float(text))
        if not child.alive:
            raise HarnessError(f"locust exited with code {child.proc.returncode} before the test started; "
                               f"see {child.log_path}\n{child.tail()}")
        await asyncio.sleep(0.05)
    raise HarnessError(f"locust did not start the test within {LOCUST_START_S:.0f} s; see {child.log_path}")


def _locust_version() -> str | None:
    try:
        return importlib.metadata.version("locust")
    except importlib.metadata.PackageNotFoundError:
        return None


def run_load(loaded: LoadedScenario, report_root: str | Path = "reports", users: int = 10,
             spawn_rate: float | None = None, run_time_s: float | None = None, processes: int = 0,
             seed: int | None = None, checks: list[str] | None = None, user_rate: float = 1.0,
             handlers: Sequence[OutcomeHandler] = (), log: Callable[[str], None] = _stderr,
             on_run_dir: Callable[[Path], None] | None = None, allow_remote: bool = False) -> RunOutcome:
    """Run one scenario under locust load and judge it like `harness run`. Defaults: spawn rate =
    users (all within a second), run time = the scenario's traffic.duration_s. Raises HarnessError
    (exit 2) for bad options or a missing locust."""
    scenario = loaded.scenario if seed is None else loaded.scenario.model_copy(update={"seed": seed})
    options = LoadOptions(users, float(spawn_rate or users), float(run_time_s or scenario.traffic.duration_s),
                          processes, user_rate)
    options.validate(scenario)
    failback = max((f.at_s + f.duration_s for f in scenario.faults), default=0.0) \
        + scenario.policy.reversibility.failback_within_s
    if scenario.faults and options.run_time_s < failback + 1.0:
        log(f"warning: --run-time {options.run_time_s:g} s leaves (almost) no traffic past the last fault's "
            f"failback deadline ({failback:g} s): `reversible` may not be able to judge it")
    return execute(loaded, LocustSource(scenario, options), scenario, report_root, checks, handlers, log, on_run_dir,
                   allow_remote)

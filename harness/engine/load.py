"""`harness load`: the scenario's traffic mix through locust, its faults on the timeline, then the checks.

The harness process is the master side of the run: it starts the topology, starts locust as a
subprocess (never imported here: it monkey-patches with gevent), injects each fault once on
the timeline (counted from the moment locust starts the test), heals in a `finally`, and
judges the ledger. Locust's processes append one `request` event per request to the same
ledger. At the end the ledger's request count is compared with locust's own statistics: a
request locust counted that the ledger lacks makes the run incomplete, so it cannot pass.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import math
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp

import harness
from harness.core import events as ev
from harness.core.errors import HarnessError
from harness.core.model import Scenario
from harness.engine.containers import ContainerSet
from harness.engine.interrupts import HealingInterrupts
from harness.engine.judge import judge
from harness.engine.processes import ChildProcess
from harness.engine.run import AUDIT_DRAIN_S, RunOutcome
from harness.engine.state import FaultJournal
from harness.engine.timeline import FaultScheduler, KillSwitchDriver
from harness.engine.topology import Topology
from harness.ledger import LedgerWriter, load_history
from harness.loadgen import CONFIG_ENV, LOCUSTFILE, LoadConfig, LoadOptions, parse_duration, write_switch
from harness.loadgen.stats import compare_counts, history_load_stats, ledger_counts, locust_totals, render_load_text
from harness.reporting import build_summary, write_reports
from harness.scenario import LoadedScenario, redacted_dump
from harness.traffic.driver import TrafficDriver

LOCUST_START_S = 60.0   # locust (and its workers) get this long to start the test
STOP_TIMEOUT_S = 3      # at the end, a user's request in flight gets this long (then: outcome unknown)
INCOMPLETE = "incomplete"  # run_end status: the run ended, but what it observed cannot be trusted whole

__all__ = ["LoadOptions", "parse_duration", "render_load_text", "run_load"]


def _stderr(message: str) -> None:
    print(f"[harness] {message}", file=sys.stderr, flush=True)


class _SwitchRelay:
    """Stands in for the traffic driver the kill switch flips in request mode: the overrides go
    to a file every locust process reads before each request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._overrides: tuple[dict[str, str], dict[str, Any]] | None = None
        write_switch(path, None)

    @property
    def overrides(self) -> tuple[dict[str, str], dict[str, Any]] | None:
        return self._overrides

    @overrides.setter
    def overrides(self, value: tuple[dict[str, str], dict[str, Any]] | None) -> None:
        self._overrides = value
        write_switch(self.path, value)


class LoadRun:
    def __init__(self, loaded: LoadedScenario, scenario: Scenario, report_root: Path, options: LoadOptions,
                 log: Callable[[str], None], on_run_dir: Callable[[Path], None] | None = None,
                 allow_remote: bool = False) -> None:
        self.loaded, self.scenario, self.options, self.log = loaded, scenario, options, log
        self.run_id = f"{scenario.name}-load-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"
        self.run_dir = report_root / self.run_id
        self.ledger_path = self.run_dir / "ledger.jsonl"
        self.on_run_dir, self.allow_remote = on_run_dir, allow_remote
        self.status, self.reason = "completed", None
        self.journal = FaultJournal(self.run_id)
        self.faults: FaultScheduler | None = None
        self.switch: KillSwitchDriver | None = None
        self.locust: dict[str, Any] | None = None
        self.observations: dict[str, Any] = {}

    async def execute(self) -> None:
        self.journal.refuse_if_unhealed()
        self.run_dir.mkdir(parents=True, exist_ok=False)
        with LedgerWriter(self.ledger_path) as ledger:
            if self.on_run_dir is not None:
                self.on_run_dir(self.run_dir)
            s = self.scenario
            ledger.append({
                "type": ev.RUN_START, "run_id": self.run_id, "harness_version": harness.__version__,
                "scenario_name": s.name, "scenario_path": self.loaded.path, "scenario_sha256": self.loaded.sha256,
                "seed": s.seed, "scenario": redacted_dump(s), "python": sys.version.split()[0], "mode": "load",
                "load": {**asdict(self.options), "locust_version": _locust_version()},
            })
            topology = Topology(s, self.run_dir, ledger, scenario_dir=str(Path(self.loaded.path).resolve().parent),
                                allow_remote=self.allow_remote)
            containers = ContainerSet(s, self.run_dir, ledger, allow_remote=self.allow_remote) if s.containers else None
            self._install_signals(asyncio.current_task())
            try:
                if containers is not None:
                    await containers.start()
                self.log(f"{s.name}: starting topology")
                await topology.start()
                ledger.append({"type": ev.TOPOLOGY, **topology.describe()})
                await self._traffic(topology, ledger)
            except asyncio.CancelledError:
                self.status, self.reason = "interrupted", self.reason or "cancelled"
            except HarnessError as exc:
                self.status, self.reason = "aborted", topology.redact(str(exc))
                ledger.append({"type": ev.NOTE, "level": "error", "message": self.reason})
            finally:
                self._remove_signals()
                await asyncio.shield(topology.stop())
                if containers is not None:
                    await asyncio.shield(containers.stop())
                self._compare(ledger)
                sent = self.observations["locust_requests"]
                ledger.append({"type": ev.RUN_END, "status": self.status, "reason": self.reason,
                               "requests_sent": self.observations["ledger_requests"] if sent is None else sent,
                               "observations": self.observations})

    async def _traffic(self, topology: Topology, ledger: LedgerWriter) -> None:
        s, o = self.scenario, self.options
        assert topology.workdir is not None
        config_path, started = topology.workdir / "load.json", topology.workdir / "locust-started"
        relay = _SwitchRelay(topology.workdir / "kill-switch.json")
        LoadConfig(traffic=s.traffic, seed=s.seed, served_target=topology.served_target,
                   client_key=s.gateway.client_key, request_headers=topology.request_headers, user_rate=o.user_rate,
                   ledger_path=str(self.ledger_path), started_path=str(started),
                   switch_path=str(relay.path)).write(config_path)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            self.faults = FaultScheduler(topology.fault_backends(session), ledger, self.log, self.journal)
            self.switch = KillSwitchDriver(topology.kill_switch(), topology.placeholders(), session, ledger, self.log,
                                           cast(TrafficDriver, relay))  # request mode only sets `.overrides`
            self.log(f"{s.name}: locust, {o.users} users at {o.user_rate:g}/s each, {o.run_time_s:g} s, "
                     f"{o.processes or 1} process(es), {len(s.faults)} fault(s)")
            child = await ChildProcess.start("locust", self._argv(topology.gateway_url), self.run_dir / "locust.log",
                                             topology.redact, env=self._env(config_path), cwd=str(self.run_dir))
            child.pump_all()
            nemesis: list[asyncio.Task[None]] = []
            try:
                start = await _wait_started(child, started)
                nemesis = [asyncio.create_task(self.faults.run(f, start)) for f in s.faults]
                nemesis += [asyncio.create_task(self.switch.run(a, start)) for a in s.timeline]
                code = await child.proc.wait()
                if code != 0:
                    self.status = "aborted"
                    raise HarnessError(f"locust exited with code {code}; see {child.log_path}\n{child.tail()}")
                results = await asyncio.gather(*nemesis, return_exceptions=True)
                failed = [r for r in results if isinstance(r, BaseException)]
                if failed:
                    self.status, self.reason = "aborted", "; ".join(self.faults.errors) or str(failed[0])
                await asyncio.sleep(AUDIT_DRAIN_S)
            finally:
                for task in nemesis:
                    task.cancel()
                await asyncio.gather(*nemesis, return_exceptions=True)
                # Heal before anything else, whatever happened above; then make sure locust is gone.
                await asyncio.shield(self._heal("aborted" if self.status != "completed" else "scheduled"))
                await asyncio.shield(child.stop())
                self.locust = locust_totals(self.run_dir / "locust.json", self.run_dir / "locust_stats.csv")

    def _argv(self, gateway_url: str) -> list[str]:
        o, prefix = self.options, str(self.run_dir / "locust")
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", gateway_url,
                "-u", str(o.users), "-r", f"{o.spawn_rate:g}", "-t", f"{max(1, math.ceil(o.run_time_s))}s",
                # users finish the request in flight when the time is up, within ChildProcess's stop grace
                "--stop-timeout", str(min(STOP_TIMEOUT_S, math.ceil(self.scenario.traffic.timeout_s))),
                "--exit-code-on-error", "0", "--only-summary", "--csv", prefix, "--json-file", prefix]
        return argv + (["--processes", str(o.processes)] if o.processes > 0 else [])

    def _env(self, config_path: Path) -> dict[str, str]:
        root = str(Path(harness.__file__).resolve().parents[1])  # the harness, even when not installed
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, CONFIG_ENV: str(config_path), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}

    async def _heal(self, reason: str) -> None:
        if self.faults is not None:
            await self.faults.heal_all(reason)
        if self.switch is not None:
            await self.switch.restore()

    def _compare(self, ledger: LedgerWriter) -> None:
        """No observation is lost under load: the ledger must hold every request locust counted."""
        counts = ledger_counts(self.ledger_path)
        self.observations = {**compare_counts(counts, self.locust), "duplicate_ids": counts["duplicate_ids"],
                             "unknown_outcome": counts["unknown_outcome"], "per_worker": counts["per_worker"]}
        lost, problem = self.observations["lost"], None
        if lost:
            problem = (f"observations lost: locust counted {self.locust and self.locust['requests']} requests, "
                       f"the ledger holds {counts['requests']} ({lost} missing)")
        elif counts["duplicate_ids"]:
            problem = f"observations lost: {counts['duplicate_ids']} request id(s) recorded twice"
        elif self.locust is None and self.status == "completed":
            problem = "locust's statistics are missing: the ledger's request count cannot be checked against them"
        level = "error" if problem else "info"
        ledger.append({"type": ev.NOTE, "level": level, "message": problem or "every request locust counted is in "
                       "the ledger", "observations": self.observations})
        if problem and self.status == "completed":
            self.status, self.reason = INCOMPLETE, problem

    def _install_signals(self, main: asyncio.Task[Any] | None) -> None:
        def interrupted(name: str) -> None:
            self.status, self.reason = "interrupted", f"{name} received"

        self._interrupts = HealingInterrupts(self.log, interrupted, "stopping locust")
        self._interrupts.install(main)

    def _remove_signals(self) -> None:
        self._interrupts.remove()


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
             log: Callable[[str], None] = _stderr, on_run_dir: Callable[[Path], None] | None = None,
             allow_remote: bool = False) -> RunOutcome:
    """Run one scenario under locust load and judge it like `harness run`. Defaults: spawn rate =
    users (all within a second), run time = the scenario's traffic.duration_s. Raises HarnessError
    (exit 2) for bad options or a missing locust. `summary["load"]` holds the load statistics."""
    scenario = loaded.scenario if seed is None else loaded.scenario.model_copy(update={"seed": seed})
    options = LoadOptions(users, float(spawn_rate or users), float(run_time_s or scenario.traffic.duration_s),
                          processes, user_rate)
    options.validate(scenario)
    failback = max((f.at_s + f.duration_s for f in scenario.faults), default=0.0) \
        + scenario.policy.reversibility.failback_within_s
    if scenario.faults and options.run_time_s < failback + 1.0:
        log(f"warning: --run-time {options.run_time_s:g} s leaves (almost) no traffic past the last fault's "
            f"failback deadline ({failback:g} s): `reversible` may not be able to judge it")
    run = LoadRun(loaded, scenario, Path(report_root), options, log, on_run_dir, allow_remote)
    started = time.monotonic()
    asyncio.run(_execute_shielded(run))
    history = load_history(run.ledger_path)
    judgement = judge(scenario, history, checks)
    reproduce = {
        "run": (f"harness load {loaded.path} --users {options.users} --spawn-rate {options.spawn_rate:g} "
                f"--run-time {options.run_time_s:g} --processes {options.processes} "
                f"--user-rate {options.user_rate:g} --seed {scenario.seed}"),
        "check": f"harness check {run.ledger_path}",
    }
    summary = build_summary(history, judgement.results, reproduce=reproduce, scenario=scenario)
    summary["mode"] = "load"
    summary["stats"]["observations"] = run.observations  # ledger vs locust: both counts and the difference
    summary["load"] = {**asdict(options), "observations": run.observations, "locust": run.locust,
                       "phases": history_load_stats(history)}
    summary["wall_time_s"] = round(time.monotonic() - started, 2)
    write_reports(run.run_dir, summary, history=history)
    return RunOutcome(loaded.path, run.run_id, run.run_dir, run.status, run.reason, judgement, summary)


async def _execute_shielded(run: LoadRun) -> None:
    try:
        await run.execute()
    except asyncio.CancelledError:
        pass  # an interrupt already healed and recorded the end; the verdict will say unknown

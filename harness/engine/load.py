"""`harness load`: the scenario's traffic mix from locust users, as the traffic source of the one `Run`.

Locust runs as a subprocess (never imported here: it monkey-patches with gevent), in one process, as a
master with forked workers (each locust process appends one `request` event per request to the run's
ledger), or as a master of remote workers (`--workers-expected N`: they ship their events to the master,
which appends them; harness.loadgen.remote). The run counts its timeline from the moment locust starts
the test. At the end the ledger's request count is compared with locust's own statistics, and with
remote workers each worker's count with the ledger's: a request locust counted that the ledger lacks,
or a worker lost on the way, makes the run incomplete, so it cannot pass.
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
from urllib.parse import urlsplit, urlunsplit

import harness
from harness.core.errors import HarnessError
from harness.core.events import EventSink
from harness.core.model import ReferenceGateway, Scenario
from harness.engine.processes import ChildProcess
from harness.engine.run import RunOutcome, execute
from harness.engine.topology import is_loopback
from harness.faults.journal import RUN_ENV, RunFolder
from harness.ledger.outcome import OutcomeHandler
from harness.ledger.reader import count_requests
from harness.loadgen import (
    CONFIG_ENV,
    DEFAULT_MASTER_BIND,
    LOCUSTFILE,
    LoadConfig,
    LoadOptions,
    parse_duration,
    parse_host_port,
    write_switch,
)
from harness.loadgen.channel import TOKEN_ENV, worker_token
from harness.loadgen.stats import compare_counts, compare_workers, locust_totals, read_shipped
from harness.scenario import LoadedScenario
from harness.traffic.source import Overrides, TrafficReport, TrafficTarget

LOCUST_START_S = 60.0   # locust (and its workers) get this long to start the test
WORKERS_WAIT_S = 600.0  # the master waits this long for its remote workers to connect
STOP_TIMEOUT_S = 3      # at the end, a user's request in flight gets this long (then: outcome unknown)

__all__ = ["LocustSource", "LoadOptions", "parse_duration", "run_load"]


def _stderr(message: str) -> None:
    print(f"[harness] {message}", file=sys.stderr, flush=True)


class LocustSource:
    """Locust users sending the scenario's mix, `options.users` of them, for `options.run_time_s`."""

    mode = "load"
    stopping = "locust"

    def __init__(self, scenario: Scenario, options: LoadOptions, log: Callable[[str], None] = _stderr) -> None:
        self.scenario = scenario
        self.options = options
        self.log = log
        self.child: ChildProcess | None = None
        self.target: TrafficTarget | None = None
        self.switch_path: Path | None = None
        self.locust: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {"load": {**asdict(self.options), "locust_version": _locust_version()}}

    def plan_line(self) -> str:
        o = self.options
        where = (f"{o.workers_expected} remote worker(s) joining {o.master_bind}" if o.remote
                 else f"{o.processes or 1} process(es)")
        return f"locust, {o.users} users at {o.user_rate:g}/s each, {o.run_time_s:g} s, {where}"

    async def start(self, target: TrafficTarget, sink: EventSink) -> float:
        s, o = self.scenario, self.options
        self.target = target
        config_path, started = target.workdir / "load.json", target.workdir / "locust-started"
        self.switch_path = target.workdir / "kill-switch.json"
        write_switch(self.switch_path, None)
        remote = {"workers_path": str(self.workers_path), "run_time_s": o.run_time_s} if o.remote else {}
        LoadConfig(traffic=s.traffic, seed=s.seed, served_target=target.served_target, client_key=target.client_key,
                   request_headers=target.request_headers, user_rate=o.user_rate, ledger_path=str(target.ledger),
                   started_path=str(started), switch_path=str(self.switch_path), stop_timeout_s=self.stop_timeout_s,
                   **remote).write(config_path)
        self.child = await ChildProcess.start("locust", self._argv(target.gateway_url), target.run_dir / "locust.log",
                                              target.redact, env=self._env(config_path), cwd=str(target.run_dir))
        # Its process group is recorded with the run's folder: `harness recover` kills it after a SIGKILL.
        RunFolder(target.workdir).add_group(self.child.name, self.child.proc.pid)
        self.child.pump_all()
        if o.remote:
            log = self.log
            log(f"waiting for {o.workers_expected} worker(s) at {o.master_bind}: "
                f"harness worker --master {o.master_bind} (with the same {TOKEN_ENV})")
        return await _wait_started(self.child, started, WORKERS_WAIT_S + 10 if o.remote else LOCUST_START_S)

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

    @property
    def workers_path(self) -> Path:
        assert self.target is not None
        return self.target.run_dir / "locust-workers.json"

    @property
    def stop_timeout_s(self) -> int:
        return min(STOP_TIMEOUT_S, math.ceil(self.scenario.traffic.timeout_s))

    def conclude(self, completed: bool) -> TrafficReport:
        """No observation is lost under load: the ledger must hold every request locust counted."""
        if self.target is None:  # the run ended before locust started
            return TrafficReport(requests_sent=0, details={"observations": None, "locust": None})
        counts = count_requests(self.target.ledger)
        observations = {**compare_counts(counts, self.locust), "duplicate_ids": counts["duplicate_ids"],
                        "unknown_outcome": counts["unknown_outcome"], "per_worker": counts["per_worker"]}
        notes: list[dict[str, Any]] = []
        problem = self._remote(counts, observations, notes, completed) if self.options.remote else None
        lost = observations["lost"]
        if problem is not None:
            pass
        elif lost:
            problem = (f"observations lost: locust counted {self.locust and self.locust['requests']} requests, "
                       f"the ledger holds {counts['requests']} ({lost} missing)")
        elif counts["duplicate_ids"]:
            problem = f"observations lost: {counts['duplicate_ids']} request id(s) recorded twice"
        elif self.locust is None and completed:  # an aborted run may end before locust wrote them
            problem = "locust's statistics are missing: the ledger's request count cannot be checked against them"
        note = {"level": "error" if problem else "info",
                "message": problem or "every request locust counted is in the ledger", "observations": observations}
        # Locust stopped by a signal may report 0 (or nothing): what the ledger holds was sent, at least.
        sent = max(observations["locust_requests"] or 0, observations["ledger_requests"] or 0,
                   sum(counts["sent_per_worker"].values()) if self.options.remote else 0)
        return TrafficReport(requests_sent=sent, problem=problem,
                             details={"observations": observations, "locust": self.locust}, notes=[note, *notes])

    def _remote(self, counts: dict[str, Any], observations: dict[str, Any], notes: list[dict[str, Any]],
                completed: bool) -> str | None:
        """Each remote worker's count against the ledger's; why the observations cannot be trusted, or None."""
        workers = compare_workers(counts, read_shipped(self.workers_path))
        observations["remote"] = workers
        if workers["workers"] is None:
            return "the locust master wrote no account of its workers: the observations they shipped cannot be " \
                   "checked against their counts" if completed else None
        if workers["refused_messages"]:
            notes.append({"level": "warning", "message": f"{workers['refused_messages']} message(s) to the locust "
                          "master were refused (not sealed with the run's worker token, out of sequence, or not a "
                          "worker's own request events); nothing of them was written to the ledger"})
        observations["lost"] = max(observations["lost"] or 0, workers["lost"])
        rows = {r["index"]: r for r in workers["workers"]}
        if workers["lost_workers"]:
            lost = ", ".join(f"worker {i} ({rows[i]['host'] or 'host unknown'}: {rows[i]['lost']} lost, "
                             f"{rows[i]['ledger_requests']} in the ledger)" for i in workers["lost_workers"])
            return (f"observations lost: {len(workers['lost_workers'])} remote worker(s) stopped shipping before the "
                    f"end of the test, {workers['lost']} observation(s) lost at least: {lost}")
        if workers["mismatched"]:
            wrong = ", ".join(f"worker {i}: locust counted {rows[i]['locust_requests']}, the ledger holds "
                              f"{rows[i]['ledger_requests']}" for i in workers["mismatched"])
            return f"observations lost: {wrong}"
        if len(rows) < self.options.workers_expected and completed:
            return (f"only {len(rows)} of {self.options.workers_expected} expected remote workers took part")
        return None

    def _argv(self, gateway_url: str) -> list[str]:
        assert self.target is not None
        o, prefix = self.options, str(self.target.run_dir / "locust")
        if o.remote:  # the master hands the workers this URL with every spawn
            gateway_url = worker_gateway_url(gateway_url, o, self.log)
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", gateway_url,
                "-u", str(o.users), "-r", f"{o.spawn_rate:g}",
                # users finish the request in flight when the time is up, within ChildProcess's stop grace
                "--stop-timeout", str(self.stop_timeout_s),
                "--exit-code-on-error", "0", "--only-summary", "--csv", prefix, "--json-file", prefix]
        if o.remote:
            # No -t: the master ends the test itself, once every worker shipped its last observations
            # (locust's own end gives workers half a second).
            host, port = parse_host_port(o.master_bind, "--master-bind")
            return argv + ["--master", "--master-bind-host", host, "--master-bind-port", str(port),
                           "--expect-workers", str(o.workers_expected),
                           "--expect-workers-max-wait", f"{WORKERS_WAIT_S:g}"]
        argv += ["-t", f"{max(1, math.ceil(o.run_time_s))}s"]
        return argv + (["--processes", str(o.processes)] if o.processes > 0 else [])

    def _env(self, config_path: Path) -> dict[str, str]:
        root = str(Path(harness.__file__).resolve().parents[1])  # the harness, even when not installed
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        assert self.target is not None
        return {**os.environ, CONFIG_ENV: str(config_path), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
                RUN_ENV: self.target.run_dir.name}


async def _wait_started(child: ChildProcess, marker: Path, wait_s: float) -> float:
    """The loop time locust started the test (its master writes the wall time into `marker`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        if marker.exists() and (text := marker.read_text(encoding="utf-8").strip()):
            return loop.time() - max(0.0, time.time() - float(text))
        if not child.alive:
            raise HarnessError(f"locust exited with code {child.proc.returncode} before the test started; "
                               f"see {child.log_path}\n{child.tail()}")
        await asyncio.sleep(0.05)
    raise HarnessError(f"locust did not start the test within {wait_s:.0f} s; see {child.log_path}")


def _locust_version() -> str | None:
    try:
        return importlib.metadata.version("locust")
    except importlib.metadata.PackageNotFoundError:
        return None


def run_load(loaded: LoadedScenario, report_root: str | Path = "reports", users: int = 10,
             spawn_rate: float | None = None, run_time_s: float | None = None, processes: int = 0,
             seed: int | None = None, checks: list[str] | None = None, user_rate: float = 1.0,
             handlers: Sequence[OutcomeHandler] = (), log: Callable[[str], None] = _stderr,
             on_run_dir: Callable[[Path], None] | None = None, allow_remote: bool = False,
             workers_expected: int = 0, master_bind: str = DEFAULT_MASTER_BIND,
             worker_gateway_url: str | None = None) -> RunOutcome:
    """Run one scenario under locust load and judge it like `harness run`. Defaults: spawn rate =
    users (all within a second), run time = the scenario's traffic.duration_s. With `workers_expected`
    the users run on that many remote workers (`harness worker`) joining the locust master at
    `master_bind`. Raises HarnessError (exit 2) for bad options, a missing locust or worker token."""
    scenario = loaded.scenario if seed is None else loaded.scenario.model_copy(update={"seed": seed})
    options = LoadOptions(users, float(spawn_rate or users), float(run_time_s or scenario.traffic.duration_s),
                          processes, user_rate, workers_expected, master_bind, worker_gateway_url)
    options.validate(scenario)
    if options.remote:
        worker_token()  # refused before anything starts when missing
        scenario = _reachable_gateway(scenario, parse_host_port(master_bind, "--master-bind")[0])
    failback = max((f.at_s + f.duration_s for f in scenario.faults), default=0.0) \
        + scenario.policy.reversibility.failback_within_s
    if scenario.faults and options.run_time_s < failback + 1.0:
        log(f"warning: --run-time {options.run_time_s:g} s leaves (almost) no traffic past the last fault's "
            f"failback deadline ({failback:g} s): `reversible` may not be able to judge it")
    return execute(loaded, LocustSource(scenario, options, log), scenario, report_root, checks, handlers, log,
                   on_run_dir, allow_remote)


def _reachable_gateway(scenario: Scenario, master_host: str) -> Scenario:
    """Remote workers send to the gateway from other machines: the embedded reference gateway listens on the
    master's address then (loopback would be unreachable), unless the scenario names its own."""
    gateway = scenario.gateway
    if isinstance(gateway, ReferenceGateway) and not is_loopback(master_host) and is_loopback(gateway.host):
        return scenario.model_copy(update={"gateway": gateway.model_copy(update={"host": master_host})})
    return scenario


def worker_gateway_url(gateway_url: str, options: LoadOptions, log: Callable[[str], None]) -> str:
    """The gateway's URL as remote workers reach it: `--worker-gateway-url` (with the gateway's own port when it
    names none: the embedded gateway's port is known only once it listens), else the gateway's own URL."""
    parts = urlsplit(gateway_url)
    if options.worker_gateway_url:
        given = urlsplit(options.worker_gateway_url)
        if given.port is None and parts.port is not None:
            return urlunsplit(given._replace(netloc=f"{given.netloc}:{parts.port}"))
        return options.worker_gateway_url
    master_host = parse_host_port(options.master_bind, "--master-bind")[0]
    if is_loopback(parts.hostname or "") and not is_loopback(master_host):
        log(f"warning: the gateway's URL {gateway_url} is loopback: workers on other machines would send to their "
            "own loopback; pass --worker-gateway-url with the address they reach it at")
    return gateway_url

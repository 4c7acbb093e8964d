"""One run: start the topology, play the timeline against a traffic source, heal, record, judge.

`harness run`, `harness load`, the pytest plugin and `harness selftest` all go through `execute`:
what differs between them is only the traffic source (harness.traffic.source) and the handlers the
front end subscribes to the judged run (its reports). Fault scheduling, healing, signals, containers,
the kill switch and the ledger are written here once.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

import harness
from harness.core import events as ev
from harness.core.errors import HarnessError
from harness.core.model import Scenario
from harness.core.verdict import Verdict
from harness.engine.baseline import BASELINE_FAILED, baseline_gate
from harness.engine.containers import ContainerSet
from harness.engine.interrupts import HealingInterrupts
from harness.engine.judge import judge_ledger
from harness.engine.timeline import FaultScheduler, KillSwitchDriver
from harness.engine.topology import Topology
from harness.faults.journal import FaultJournal
from harness.ledger import LedgerWriter
from harness.ledger.outcome import JudgedRun, OutcomeHandler
from harness.scenario import LoadedScenario, redacted_dump
from harness.traffic.driver import DriverSource
from harness.traffic.source import TrafficReport, TrafficSource, TrafficTarget

# After the last response, audit events still in flight get this long to arrive.
AUDIT_DRAIN_S = 1.0
INCOMPLETE = "incomplete"  # run_end status: the run ended, but what it observed cannot be trusted whole


@dataclass(frozen=True)
class RunOutcome:
    scenario_path: str
    run_id: str
    run_dir: Path
    status: str
    reason: str | None
    judgement: JudgedRun

    @property
    def reports(self) -> dict[str, Any]:
        """What each subscribed handler produced, by its name (e.g. "report": the summary and its files)."""
        return self.judgement.reports

    @property
    def verdict(self) -> Verdict:
        return self.judgement.verdict

    @property
    def ledger(self) -> Path:
        return self.run_dir / "ledger.jsonl"


def _stderr(message: str) -> None:
    print(f"[harness] {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, loaded: LoadedScenario, scenario: Scenario, source: TrafficSource, report_root: Path,
                 log: Callable[[str], None], on_run_dir: Callable[[Path], None] | None = None,
                 allow_remote: bool = False) -> None:
        self.loaded = loaded
        self.scenario = scenario
        self.source = source
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        tag = "" if source.mode == "run" else f"{source.mode}-"
        self.run_id = f"{scenario.name}-{tag}{stamp}-{secrets.token_hex(2)}"
        self.run_dir = report_root / self.run_id
        self.log = log
        self.on_run_dir = on_run_dir
        self.allow_remote = allow_remote
        # `{scenario_dir}` in commands, containers and configs: the folder of the scenario file, always.
        self.scenario_dir = str(Path(loaded.path).resolve().parent)
        self.status = "completed"
        self.reason: str | None = None
        self.journal = FaultJournal(self.run_id)
        self.faults: FaultScheduler | None = None
        self.switch: KillSwitchDriver | None = None
        # Installed by `execute` around the run and its reports (any number of signals: see interrupts.py).
        self.interrupts = HealingInterrupts(log, f"stopping {source.stopping}")

    @property
    def ledger_path(self) -> Path:
        return self.run_dir / "ledger.jsonl"

    async def execute(self) -> None:
        # From here on a signal cancels this task; the run's `finally` takes it from there.
        self.interrupts.attach(asyncio.current_task(), self._interrupted)
        self.journal.refuse_if_unhealed()
        self.run_dir.mkdir(parents=True, exist_ok=False)
        with LedgerWriter(self.ledger_path) as ledger:
            if self.on_run_dir is not None:
                self.on_run_dir(self.run_dir)
            s = self.scenario
            ledger.append({
                "type": ev.RUN_START, "run_id": self.run_id, "harness_version": harness.__version__,
                "scenario_name": s.name, "scenario_path": self.loaded.path, "scenario_sha256": self.loaded.sha256,
                "seed": s.seed, "scenario": redacted_dump(s), "python": sys.version.split()[0],
                "mode": self.source.mode, **self.source.describe(),
            })
            topology = Topology(s, self.run_dir, ledger, scenario_dir=self.scenario_dir, allow_remote=self.allow_remote)
            containers = (ContainerSet(s, self.run_dir, ledger, allow_remote=self.allow_remote,
                                       scenario_dir=self.scenario_dir) if s.containers else None)
            try:
                if containers is not None:
                    self.log(f"{s.name}: starting {len(s.containers)} container(s)")
                    await containers.start()
                self.log(f"{s.name}: starting topology")
                await topology.start()
                ledger.append({"type": ev.TOPOLOGY, **topology.describe()})
                await self._timeline(topology, ledger)
            except asyncio.CancelledError:
                self.status, self.reason = "interrupted", self.reason or "cancelled"
            except HarnessError as exc:
                # A start-up error may quote a command line or URL that holds a key.
                self.status, self.reason = "aborted", topology.redact(str(exc))
                ledger.append({"type": ev.NOTE, "level": "error", "message": self.reason})
            except BaseException as exc:
                # The harness itself failed (a bug, MemoryError): still heal and end the ledger, but it must
                # not say "completed"; the error goes on to the front end (exit 4 in the CLI).
                self.status = "aborted"
                self.reason = topology.redact(f"the harness itself failed: {type(exc).__name__}: {exc}")
                ledger.append({"type": ev.NOTE, "level": "error", "message": self.reason})
                raise
            finally:
                # Signals from now on cancel nothing: stopping, healing and run_end are never cut short.
                self.interrupts.settle()
                await asyncio.shield(topology.stop())
                if containers is not None:
                    await asyncio.shield(containers.stop())
                self._end(ledger, self.source.conclude(self.status == "completed"))
                self.interrupts.detach()

    def _interrupted(self, signal_name: str) -> None:
        self.status, self.reason = "interrupted", f"{signal_name} received"

    def _end(self, ledger: LedgerWriter, report: TrafficReport) -> None:
        for note in report.notes:
            ledger.append({"type": ev.NOTE, **note})
        if report.problem and self.status == "completed":
            self.status, self.reason = INCOMPLETE, report.problem
        ledger.append({"type": ev.RUN_END, "status": self.status, "reason": self.reason,
                       "requests_sent": report.requests_sent, **report.details})

    async def _timeline(self, topology: Topology, ledger: LedgerWriter) -> None:
        s = self.scenario
        assert topology.workdir is not None
        target = TrafficTarget(topology.gateway_url, topology.served_target, s.gateway.client_key,
                               topology.request_headers, topology.redact, topology.workdir, self.run_dir,
                               self.ledger_path)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            self.faults = FaultScheduler(topology.fault_backends(session), ledger, self.log, self.journal)
            self.switch = KillSwitchDriver(topology.kill_switch(), topology.placeholders(), session, ledger, self.log,
                                           self.source.set_overrides, redact=topology.redact)
            self.log(f"{s.name}: {self.source.plan_line()}, {len(s.faults)} fault(s)")
            nemesis: list[asyncio.Task[None]] = []
            traffic: asyncio.Task[None] | None = None
            try:
                start = await self.source.start(target, ledger)
                traffic = asyncio.create_task(self.source.wait())
                # No fault is injected into a system whose steady state never held (harness.engine.baseline):
                # the faults are scheduled from the same `start`, so they still fire on time.
                baseline = await baseline_gate(s, self.ledger_path, ledger, start, traffic)
                if baseline is not None and baseline.failed and s.baseline.required:
                    self.status, self.reason = BASELINE_FAILED, baseline.summary
                    self.log(f"{s.name}: {baseline.summary}; no fault injected, traffic stopped")
                    traffic.cancel()
                    await asyncio.gather(traffic, return_exceptions=True)
                else:
                    nemesis = [asyncio.create_task(self.faults.run(f, start)) for f in s.faults]
                    nemesis += [asyncio.create_task(self.switch.run(a, start)) for a in s.timeline]
                    await traffic
                    results = await asyncio.gather(*nemesis, return_exceptions=True)
                    failed = [r for r in results if isinstance(r, BaseException)]
                    if failed:
                        self.status = "aborted"
                        self.reason = topology.redact("; ".join(self.faults.errors) or str(failed[0]))
                await asyncio.sleep(AUDIT_DRAIN_S)
            finally:
                self.interrupts.settle()  # a signal from now on must not cut the healing short
                if traffic is not None and not traffic.done():  # interrupted while the gate waited
                    traffic.cancel()
                    await asyncio.gather(traffic, return_exceptions=True)
                for task in nemesis:
                    task.cancel()
                await asyncio.gather(*nemesis, return_exceptions=True)
                # Heal before anything else, whatever happened above; then make sure the traffic is gone.
                await asyncio.shield(self._heal("aborted" if self.status != "completed" else "scheduled"))
                await asyncio.shield(self.source.stop())

    async def _heal(self, reason: str) -> None:
        if self.faults is not None:
            await self.faults.heal_all(reason)
        if self.switch is not None:
            await self.switch.restore()


def execute(loaded: LoadedScenario, source: TrafficSource, scenario: Scenario | None = None,
            report_root: str | Path = "reports", checks: list[str] | None = None,
            handlers: Sequence[OutcomeHandler] = (), log: Callable[[str], None] = _stderr,
            on_run_dir: Callable[[Path], None] | None = None, allow_remote: bool = False) -> RunOutcome:
    """Run `scenario` (default: the loaded one) with `source` as its traffic, judge the ledger and hand
    the judged run to `handlers`. `on_run_dir` is told the run folder as soon as it exists (a live view
    follows the ledger there)."""
    scenario = scenario or loaded.scenario
    run = Run(loaded, scenario, source, Path(report_root), log, on_run_dir, allow_remote)
    started = time.monotonic()
    # Until the reports are written: a signal while they are written is only acknowledged.
    with run.interrupts:
        asyncio.run(_execute_shielded(run))
        judged = judge_ledger(run.ledger_path, checks, handlers, scenario=scenario, started=started)
    return RunOutcome(loaded.path, run.run_id, run.run_dir, run.status, run.reason, judged)


def run_scenario(loaded: LoadedScenario, report_root: str | Path = "reports", seed: int | None = None,
                 checks: list[str] | None = None, handlers: Sequence[OutcomeHandler] = (),
                 log: Callable[[str], None] = _stderr, on_run_dir: Callable[[Path], None] | None = None,
                 allow_remote: bool = False) -> RunOutcome:
    """`harness run`: the scenario's own traffic, from the in-process open-loop driver."""
    scenario = loaded.scenario if seed is None else loaded.scenario.model_copy(update={"seed": seed})
    return execute(loaded, DriverSource(scenario.traffic, scenario.seed), scenario, report_root, checks, handlers,
                   log, on_run_dir, allow_remote)


async def _execute_shielded(run: Run) -> None:
    try:
        await run.execute()
    except asyncio.CancelledError:
        pass  # an interrupt already healed and recorded the end; the verdict will say unknown

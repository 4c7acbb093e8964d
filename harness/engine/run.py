"""One run: start the topology, play the timeline, heal, record, judge, report."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Callable
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
from harness.engine.containers import ContainerSet
from harness.engine.interrupts import HealingInterrupts
from harness.engine.judge import Judgement, judge
from harness.engine.state import FaultJournal
from harness.engine.timeline import FaultScheduler, KillSwitchDriver
from harness.engine.topology import Topology
from harness.ledger import LedgerWriter, load_history
from harness.reporting import build_summary, write_reports
from harness.scenario import LoadedScenario, redacted_dump
from harness.traffic.driver import TrafficDriver

# After the last response, audit events still in flight get this long to arrive.
AUDIT_DRAIN_S = 1.0


@dataclass(frozen=True)
class RunOutcome:
    scenario_path: str
    run_id: str
    run_dir: Path
    status: str
    reason: str | None
    judgement: Judgement
    summary: dict[str, Any]

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.summary["verdict"])

    @property
    def ledger(self) -> Path:
        return self.run_dir / "ledger.jsonl"


def _stderr(message: str) -> None:
    print(f"[harness] {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, loaded: LoadedScenario, scenario: Scenario, report_root: Path,
                 log: Callable[[str], None], on_run_dir: Callable[[Path], None] | None = None,
                 allow_remote: bool = False) -> None:
        self.loaded = loaded
        self.scenario = scenario
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = f"{scenario.name}-{stamp}-{secrets.token_hex(2)}"
        self.run_dir = report_root / self.run_id
        self.log = log
        self.on_run_dir = on_run_dir
        self.allow_remote = allow_remote
        self.status = "completed"
        self.reason: str | None = None
        self.journal = FaultJournal(self.run_id)

    async def execute(self) -> None:
        self.journal.refuse_if_unhealed()
        self.run_dir.mkdir(parents=True, exist_ok=False)
        with LedgerWriter(self.run_dir / "ledger.jsonl") as ledger:
            if self.on_run_dir is not None:
                self.on_run_dir(self.run_dir)
            s = self.scenario
            ledger.append({
                "type": ev.RUN_START, "run_id": self.run_id, "harness_version": harness.__version__,
                "scenario_name": s.name, "scenario_path": self.loaded.path, "scenario_sha256": self.loaded.sha256,
                "seed": s.seed, "scenario": redacted_dump(s), "python": sys.version.split()[0],
            })
            topology = Topology(s, self.run_dir, ledger, scenario_dir=str(Path(self.loaded.path).resolve().parent),
                                allow_remote=self.allow_remote)
            containers = (ContainerSet(s, self.run_dir, ledger, allow_remote=self.allow_remote,
                                       scenario_dir=str(Path(self.loaded.path).resolve().parent))
                          if s.containers else None)
            requests_sent = 0
            main = asyncio.current_task()
            self._install_signals(main)
            try:
                if containers is not None:
                    self.log(f"{s.name}: starting {len(s.containers)} container(s)")
                    await containers.start()
                self.log(f"{s.name}: starting topology")
                await topology.start()
                ledger.append({"type": ev.TOPOLOGY, **topology.describe()})
                requests_sent = await self._timeline(topology, ledger)
            except asyncio.CancelledError:
                self.status, self.reason = "interrupted", self.reason or "cancelled"
            except HarnessError as exc:
                # A start-up error may quote a command line or URL that holds a key.
                self.status, self.reason = "aborted", topology.redact(str(exc))
                ledger.append({"type": ev.NOTE, "level": "error", "message": self.reason})
            finally:
                self._remove_signals()
                await asyncio.shield(self._shutdown(topology))
                if containers is not None:
                    await asyncio.shield(containers.stop())
                ledger.append({"type": ev.RUN_END, "status": self.status, "reason": self.reason,
                               "requests_sent": requests_sent})

    async def _timeline(self, topology: Topology, ledger: LedgerWriter) -> int:
        s = self.scenario
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            self.faults = FaultScheduler(topology.fault_backends(session), ledger, self.log, self.journal)
            # What the gateway says back (errors, target names) may echo a key: redacted before recording.
            driver = TrafficDriver(s.traffic, s.seed, topology.gateway_url, ledger, topology.served_target,
                                   s.gateway.client_key, extra_headers=topology.request_headers,
                                   redact=topology.redact)
            self.switch = KillSwitchDriver(topology.kill_switch(), topology.placeholders(), session, ledger, self.log,
                                           driver, redact=topology.redact)
            start = loop.time() + 0.05
            self.log(f"{s.name}: traffic {s.traffic.rate_per_s:g}/s for {s.traffic.duration_s:g} s, "
                     f"{len(s.faults)} fault(s)")
            nemesis = [asyncio.create_task(self.faults.run(f, start)) for f in s.faults]
            nemesis += [asyncio.create_task(self.switch.run(a, start)) for a in s.timeline]
            try:
                sent = await driver.run(start)
                results = await asyncio.gather(*nemesis, return_exceptions=True)
                failed = [r for r in results if isinstance(r, BaseException)]
                if failed:
                    self.status = "aborted"
                    self.reason = topology.redact("; ".join(self.faults.errors) or str(failed[0]))
                await asyncio.sleep(AUDIT_DRAIN_S)
                return sent
            finally:
                for task in nemesis:
                    task.cancel()
                await asyncio.gather(*nemesis, return_exceptions=True)
                # Heal before anything else, whatever happened above.
                await asyncio.shield(self._heal("aborted" if self.status != "completed" else "scheduled"))

    async def _heal(self, reason: str) -> None:
        if hasattr(self, "faults"):
            await self.faults.heal_all(reason)
        if hasattr(self, "switch"):
            await self.switch.restore()

    async def _shutdown(self, topology: Topology) -> None:
        await topology.stop()

    def _install_signals(self, main: asyncio.Task[Any] | None) -> None:
        def interrupted(name: str) -> None:
            self.status, self.reason = "interrupted", f"{name} received"

        self._interrupts = HealingInterrupts(self.log, interrupted, "stopping")
        self._interrupts.install(main)

    def _remove_signals(self) -> None:
        self._interrupts.remove()


def run_scenario(loaded: LoadedScenario, report_root: str | Path = "reports", seed: int | None = None,
                 checks: list[str] | None = None, log: Callable[[str], None] = _stderr,
                 on_run_dir: Callable[[Path], None] | None = None, allow_remote: bool = False) -> RunOutcome:
    """Run one scenario end to end. `on_run_dir` is told the run folder as soon as it exists
    (a live view follows the ledger there)."""
    scenario = loaded.scenario if seed is None else loaded.scenario.model_copy(update={"seed": seed})
    run = Run(loaded, scenario, Path(report_root), log, on_run_dir, allow_remote)
    started = time.monotonic()
    asyncio.run(_execute_shielded(run))
    history = load_history(run.run_dir / "ledger.jsonl")
    judgement = judge(scenario, history, checks)
    reproduce = {
        "run": f"harness run {loaded.path} --seed {scenario.seed}",
        "check": f"harness check {run.run_dir / 'ledger.jsonl'}",
    }
    summary = build_summary(history, judgement.results, reproduce=reproduce, scenario=scenario)
    summary["wall_time_s"] = round(time.monotonic() - started, 2)
    write_reports(run.run_dir, summary, history=history)
    return RunOutcome(loaded.path, run.run_id, run.run_dir, run.status, run.reason, judgement, summary)


async def _execute_shielded(run: Run) -> None:
    try:
        await run.execute()
    except asyncio.CancelledError:
        pass  # an interrupt already healed and recorded the end; the verdict will say unknown

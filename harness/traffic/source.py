"""Where a run's traffic comes from: one small protocol, several implementations.

The engine's one `Run` starts the topology, schedules faults and kill-switch actions from the moment
traffic starts, heals everything in a `finally` and writes the ledger; it does not care who sends the
requests. The in-process open-loop driver (harness.traffic.driver.DriverSource) and locust, in one
or several processes (harness.engine.load.LocustSource), are two traffic sources. A source records
each request it sends into the ledger itself (a `request` event per request, none dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.core.events import EventSink
from harness.core.model import ServedTarget

# Headers and body fields a per-request kill switch adds to every request while fallback is off.
Overrides = tuple[dict[str, str], dict[str, Any]]


@dataclass(frozen=True)
class TrafficTarget:
    """The gateway under test as a source sees it, once the topology is up."""

    gateway_url: str
    served_target: ServedTarget       # where the gateway names the target that served
    client_key: str | None
    request_headers: dict[str, str]   # extra headers, with per-request placeholders still to fill
    redact: Callable[[str], str]      # what the gateway says back may echo a key: redacted before recording
    workdir: Path                     # private folder (0700), removed after the run: for configs holding keys
    run_dir: Path                     # the run's folder (its logs)
    ledger: Path


@dataclass(frozen=True)
class TrafficReport:
    """What a source says once its traffic is over (recorded in `run_end`)."""

    requests_sent: int | None
    # Why what the source observed cannot be trusted whole (requests lost): a completed run becomes
    # incomplete, so it cannot pass.
    problem: str | None = None
    details: dict[str, Any] = field(default_factory=dict)   # added to run_end (e.g. load: observations)
    notes: list[dict[str, Any]] = field(default_factory=list)  # note events to record before run_end


class TrafficSource(Protocol):
    mode: str       # "run" or "load": recorded in run_start, part of the run id
    stopping: str   # what an interrupt stops, for its message ("the traffic", "locust")

    def describe(self) -> dict[str, Any]:
        """Fields added to the ledger's run_start (how the traffic was made)."""
        ...

    def plan_line(self) -> str:
        """One line for the log: how much traffic, for how long."""
        ...

    async def start(self, target: TrafficTarget, sink: EventSink) -> float:
        """Start sending; returns the event-loop time traffic started, from which the timeline counts."""
        ...

    def set_overrides(self, overrides: Overrides | None) -> None:
        """A per-request kill switch: add these to every request from now on (None: stop adding)."""
        ...

    async def wait(self) -> None:
        """Until the traffic is over. Raises HarnessError if the source failed."""
        ...

    async def stop(self) -> None:
        """In the run's `finally`, whatever happened: nothing of the source may outlive the run."""
        ...

    def conclude(self, completed: bool) -> TrafficReport:
        """After `stop`: what was sent, and whether every request is in the ledger (`completed`: the run
        ran its course, so every statistic the source keeps should be there)."""
        ...

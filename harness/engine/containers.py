"""Containers a scenario declares (`containers:`), started for the run and removed after it.

Placeholder until the docker backend lands: scenarios with containers are refused clearly.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.events import EventSink
from harness.core.model import Scenario


class ContainerSet:
    def __init__(self, scenario: Scenario, run_dir: Path, sink: EventSink, allow_remote: bool = False) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self.sink = sink
        self.allow_remote = allow_remote

    async def start(self) -> None:
        raise HarnessError("containers: are not supported yet")

    async def stop(self) -> None:
        return None

"""Load with locust: what the locust processes are handed, and the locust user (harness.loadgen.users).

`import locust` monkey-patches the standard library with gevent, so nothing the engine imports here
imports it: only `users.py` does, loaded by the locust entry (harness/locustfile.py), which only locust
loads. The engine starts locust as a subprocess and hands it a `LoadConfig` in a private JSON file (it
may hold the client key).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.launch import write_private_json
from harness.core.model import Scenario, ServedTarget, Traffic
from harness.traffic.source import Overrides

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"  # the locust entry (a front end)
CONFIG_ENV = "HARNESS_LOAD_CONFIG"  # path of the private JSON file written by `harness load`


def parse_duration(text: str) -> float:
    """`90`, `90s`, `2m`, `1h30m` -> seconds (the forms locust's --run-time takes)."""
    units, total, number = {"h": 3600.0, "m": 60.0, "s": 1.0}, 0.0, ""
    for char in text.strip().lower():
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total, number = total + float(number) * units[char], ""
        else:
            raise ValueError(f"not a duration: {text!r} (use 90, 90s, 2m or 1h30m)")
    if not text.strip():
        raise ValueError("an empty duration")
    return total + (float(number) if number else 0.0)


@dataclass(frozen=True)
class LoadOptions:
    """How hard and how long `harness load` drives the scenario's mix."""

    users: int
    spawn_rate: float
    run_time_s: float
    processes: int = 0        # 0: one locust process; P >= 1: a master and P forked workers
    user_rate: float = 1.0    # requests/s per user; 0: no wait between requests

    def problems(self, scenario: Scenario) -> list[str]:
        """What makes these options unusable for `scenario` (empty: fine)."""
        problems = [m for bad, m in [
            (self.users < 1, "--users must be at least 1"), (self.spawn_rate <= 0, "--spawn-rate must be > 0"),
            (self.run_time_s <= 0, "--run-time must be > 0"), (self.processes < 0, "--processes must be >= 0"),
            (self.user_rate < 0, "--user-rate must be >= 0")] if bad]
        needed = max([f.at_s + f.duration_s for f in scenario.faults] + [a.at_s for a in scenario.timeline] + [0.0])
        if self.run_time_s < needed:
            problems.append(f"--run-time {self.run_time_s:g} s ends before the scenario's timeline ({needed:g} s): "
                            "a fault or kill-switch action would find no traffic")
        return problems

    def validate(self, scenario: Scenario) -> None:
        """Raise HarnessError (exit 2) for unusable options or a missing locust."""
        problems = self.problems(scenario)
        if problems:
            raise HarnessError("harness load: " + "; ".join(problems))
        if importlib.util.find_spec("locust") is None:  # finds it without importing it
            raise HarnessError("harness load: locust is not installed\n  hint: pip install -e '.[load]'")


@dataclass(frozen=True)
class LoadConfig:
    """What every locust process needs to send and record the scenario's traffic."""

    traffic: Traffic
    seed: int
    served_target: ServedTarget = field(default_factory=ServedTarget)
    client_key: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    user_rate: float = 1.0             # requests/s per user; 0: no wait between requests
    ledger_path: str | None = None     # None: plain locust use, nothing is recorded
    started_path: str | None = None    # the master touches it when the test starts
    switch_path: str | None = None     # per-request kill switch: overrides while fallback is off

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["traffic"] = self.traffic.model_dump(mode="json")
        data["served_target"] = self.served_target.model_dump(mode="json")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadConfig:
        return cls(**{**data, "traffic": Traffic.model_validate(data["traffic"]),
                      "served_target": ServedTarget.model_validate(data.get("served_target") or {})})

    def write(self, path: Path) -> None:
        """Readable by us only: it may hold the gateway's client key."""
        write_private_json(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> LoadConfig:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def write_switch(path: Path, overrides: Overrides | None) -> None:
    """Publish the per-request kill switch to every locust process (atomically: write, then rename)."""
    tmp = path.with_suffix(".tmp")
    data = {} if overrides is None else {"headers": overrides[0], "body": overrides[1]}
    write_private_json(tmp, data)
    os.replace(tmp, path)


__all__ = ["CONFIG_ENV", "LOCUSTFILE", "LoadConfig", "LoadOptions", "parse_duration", "write_switch"]

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.core.errors import HarnessError
from harness.core.launch import write_private_json
from harness.core.model import Scenario, ServedTarget, Traffic
from harness.traffic.source import Overrides

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"  # the locust entry (a front end)
CONFIG_ENV = "HARNESS_LOAD_CONFIG"  # path of the private JSON file written by `harness load`
DEFAULT_MASTER_BIND = "127.0.0.1:5557"  # locust's port, on loopback unless the user opens it


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` too) -> (host, port); ValueError naming `what` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {text!r} is not HOST:PORT (e.g. 10.0.0.5:5557)")
    return host, int(port)


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
    workers_expected: int = 0  # N >= 1: a master that waits for N remote workers (`harness worker`)
    master_bind: str = DEFAULT_MASTER_BIND  # where that master listens for them
    worker_gateway_url: str | None = None   # the gateway's URL as those workers reach it (default: its own)

    @property
    def remote(self) -> bool:
        return self.workers_expected > 0

    def problems(self, scenario: Scenario) -> list[str]:
        """What makes these options unusable for `scenario` (empty: fine)."""
        problems = [m for bad, m in [
            (self.users < 1, "--users must be at least 1"), (self.spawn_rate <= 0, "--spawn-rate must be > 0"),
            (self.run_time_s <= 0, "--run-time must be > 0"), (self.processes < 0, "--processes must be >= 0"),
            (self.user_rate < 0, "--user-rate must be >= 0"),
            (self.workers_expected < 0, "--workers-expected must be >= 0"),
            (self.remote and self.processes > 0, "--processes and --workers-expected exclude each other (workers "
             "on this machine are `harness worker` processes too)"),
            (self.remote and self.users < self.workers_expected, "--users must be at least --workers-expected: a "
             "worker with no user sends nothing")] if bad]
        if self.remote:
            try:
                host = parse_host_port(self.master_bind, "--master-bind")[0]
            except ValueError as exc:
                problems.append(str(exc))
            else:
                if host in ("0.0.0.0", "::") and not self.worker_gateway_url:
                    problems.append(f"--master-bind {self.master_bind} listens on every address, so it names none the "
                                    "workers could send to: pass --worker-gateway-url http://NAME (the name they reach "
                                    "this machine by; the gateway's port is added)")
            if self.worker_gateway_url is not None:
                url = urlsplit(self.worker_gateway_url)
                if url.scheme not in ("http", "https") or not url.hostname:
                    problems.append(f"--worker-gateway-url {self.worker_gateway_url!r} is not an http(s) URL with a "
                                    "host")
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
    workers_path: str | None = None    # remote workers: the master writes what each one shipped here
    run_time_s: float | None = None    # remote workers: the master ends the test itself after this long
    stop_timeout_s: float = 3.0        # how long a user's request in flight may finish when the test ends

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["traffic"] = self.traffic.model_dump(mode="json")
        data["served_target"] = self.served_target.model_dump(mode="json")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadConfig:
        return cls(**{**data, "traffic": Traffic.model_validate(data["traffic"]),
                      "served_target": ServedTarget.model_validate(data.get("served_target") or {})})

    def for_worker(self) -> LoadConfig:
        """What a remote worker is sent: no path of the master's machine (it records nothing itself)."""
        return replace(self, ledger_path=None, started_path=None, switch_path=None, workers_path=None)

    def write(self, path: Path) -> None:
        """Readable by us only: it may hold the gateway's client key."""
        write_private_json(path, self.to_json())

    @classmethod
    def read(cls, path: str | Path) -> LoadConfig:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def write_switch(path: Path, overrides: Overrides | None) -> None:
    """Publish the per-request kill switch to every locust process (atomically: write, then rename)."""
    tmp = path.with_suffix(".tmp")
    write_private_json(tmp, switch_json(overrides))
    os.replace(tmp, path)


def switch_json(overrides: Overrides | None) -> dict[str, Any]:
    """The kill switch as it is published (in a file, or to remote workers)."""
    return {} if overrides is None else {"headers": overrides[0], "body": overrides[1]}


def read_switch(data: dict[str, Any]) -> Overrides | None:
    """The overrides a published switch holds (None: fallback is on)."""
    return (data["headers"], data["body"]) if data else None


__all__ = ["CONFIG_ENV", "DEFAULT_MASTER_BIND", "LOCUSTFILE", "LoadConfig", "LoadOptions", "parse_duration",
           "parse_host_port", "read_switch", "switch_json", "write_switch"]

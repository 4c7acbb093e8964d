"""What an adapter tells the engine: how to start the gateway and how to read it."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.core.errors import HarnessError
from harness.core.model import AuditMapping, KillSwitch, Scenario, ServedTarget

# Where set-up installs the real gateways (each in a folder of its own); ignored by git.
DEFAULT_INSTALL_DIR = Path(__file__).resolve().parents[2] / ".cache" / "gateways"


def install_dir() -> Path:
    return Path(os.environ.get("HARNESS_GATEWAYS_DIR") or DEFAULT_INSTALL_DIR)


@dataclass(frozen=True)
class GatewayDefaults:
    """How the harness reads this gateway unless the scenario says otherwise."""

    served_target: ServedTarget
    audit: AuditMapping
    kill_switch: KillSwitch | None = None


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    url: str                                   # base URL the traffic goes to
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)   # added to the harness's environment
    request_headers: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0


class GatewayAdapter(Protocol):
    kind: str

    def defaults(self, scenario: Scenario, config_path: Path) -> GatewayDefaults:
        """`config_path` is the scenario's `gateway.config`, resolved (beside the scenario file first)."""
        ...

    def plan(self, scenario: Scenario, values: dict[str, str], workdir: Path, config_path: Path) -> LaunchPlan:
        """`values` are the placeholders ({port}, {providers.NAME.url}, {collector.url}, ...);
        files the gateway needs go into `workdir` (private, removed after the run)."""
        ...

    def install(self, target: Path) -> None:
        """Install the gateway into `target` (a folder of its own); idempotent."""
        ...


_ADAPTERS = {"litellm": "harness.gateways.litellm:LiteLLMAdapter", "portkey": "harness.gateways.portkey:PortkeyAdapter"}


def load_adapter(kind: str) -> GatewayAdapter:
    """The adapter for a gateway kind, imported only now (they are optional extras)."""
    if kind not in _ADAPTERS:
        raise HarnessError(f"no adapter for gateway kind {kind!r}; known: {', '.join(sorted(_ADAPTERS))}")
    module_name, _, class_name = _ADAPTERS[kind].partition(":")
    module = importlib.import_module(module_name)
    adapter: GatewayAdapter = getattr(module, class_name)()
    return adapter


def adapter_kinds() -> list[str]:
    return sorted(_ADAPTERS)


def resolve_config(config: str, scenario_dir: Path) -> Path:
    """A config path as written: absolute, or relative to the scenario file, or to the working directory."""
    path = Path(config)
    for candidate in ([path] if path.is_absolute() else [scenario_dir / path, Path.cwd() / path]):
        if candidate.is_file():
            return candidate
    raise HarnessError(f"gateway.config: {config} not found (looked beside the scenario file and in the "
                       f"working directory)\n  hint: give a path relative to the scenario file")

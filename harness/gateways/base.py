"""What a gateway adapter tells the engine: how to read the gateway, how to launch it, how to
describe it; the engine does the rest (process, logs, readiness, placeholders) the same for all.

Every kind of gateway (reference, command, url, litellm, portkey) has an adapter, imported by
kind only when a scenario names it: the LiteLLM and Portkey adapters drive optional installs.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, TypeVar, runtime_checkable

from harness.core.errors import HarnessError
from harness.core.model import (
    AuditMapping,
    GatewayBase,
    KillSwitch,
    LiteLLMGateway,
    PortkeyGateway,
    Scenario,
    ServedTarget,
)

# Where set-up installs the real gateways (each in a folder of its own); ignored by git.
DEFAULT_INSTALL_DIR = Path(__file__).resolve().parents[2] / ".cache" / "gateways"


def install_dir() -> Path:
    return Path(os.environ.get("HARNESS_GATEWAYS_DIR") or DEFAULT_INSTALL_DIR)


@dataclass(frozen=True)
class GatewayContext:
    """What an adapter is told about the run it serves."""

    scenario: Scenario
    scenario_dir: Path          # the scenario file's folder: relative paths resolve beside it first
    admin_token: str = ""       # the run's token for the reference gateway's admin endpoint


@dataclass(frozen=True)
class GatewayDefaults:
    """How the harness reads this gateway unless the scenario says otherwise."""

    served_target: ServedTarget
    audit: AuditMapping
    kill_switch: KillSwitch | None = None
    config_path: Path | None = None     # the gateway's own config file, resolved, when it has one


@dataclass(frozen=True)
class LaunchPlan:
    """How to start the gateway and know it is ready.

    An empty `argv` starts nothing (a gateway already running). A `url` of None means the process
    prints a JSON ready line naming its URL (the harness's own servers); otherwise, when a
    `ready_url` is given (or the scenario gives one), it is polled until it answers 2xx.
    """

    url: str | None                                     # base URL the traffic goes to
    argv: list[str] = field(default_factory=list)
    ready_url: str | None = None                        # may use {gateway.url}
    env: dict[str, str] = field(default_factory=dict)   # added to the harness's environment
    cwd: Path | None = None                             # None: the harness's working directory
    request_headers: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0                       # unless the scenario sets gateway.ready_timeout_s
    name: str = "gateway"                               # how messages name the process


class GatewayAdapter(Protocol):
    kind: str
    needs_port: bool    # the harness picks a free port on 127.0.0.1 for it: the {port} placeholder

    def defaults(self, run: GatewayContext) -> GatewayDefaults:
        """Served target, audit mapping and kill switch the gateway has unless the scenario overrides them."""
        ...

    def plan(self, run: GatewayContext, values: dict[str, str], workdir: Path) -> LaunchPlan:
        """`values` are the placeholders ({port}, {providers.NAME.url}, {collector.url}, ...); files the
        gateway needs go into `workdir` (private, removed after the run)."""
        ...

    def describe(self, run: GatewayContext) -> str:
        """What the run would start or use, for `harness run --dry-run`; starts and installs nothing."""
        ...


@runtime_checkable
class Installable(Protocol):
    """A real gateway the harness installs (`harness setup-gateways`)."""

    def install(self, target: Path) -> None:
        """Install the gateway into `target` (a folder of its own); idempotent."""
        ...


_ADAPTERS = {
    "reference": "harness.gateways.reference:ReferenceAdapter",
    "command": "harness.gateways.command:CommandAdapter",
    "url": "harness.gateways.url:UrlAdapter",
    "litellm": "harness.gateways.litellm:LiteLLMAdapter",
    "portkey": "harness.gateways.portkey:PortkeyAdapter",
}
# The kinds that drive a real gateway which `harness setup-gateways` installs.
_INSTALLED = ("litellm", "portkey")


def load_adapter(kind: str) -> GatewayAdapter:
    """The adapter for a gateway kind, its module imported only now (some are optional extras)."""
    if kind not in _ADAPTERS:
        raise HarnessError(f"no adapter for gateway kind {kind!r}; known: {', '.join(sorted(_ADAPTERS))}")
    module_name, _, class_name = _ADAPTERS[kind].partition(":")
    module = importlib.import_module(module_name)
    adapter: GatewayAdapter = getattr(module, class_name)()
    return adapter


def load_installer(kind: str) -> Installable:
    """The adapter of a kind `harness setup-gateways` installs."""
    adapter = load_adapter(kind)
    if kind not in _INSTALLED or not isinstance(adapter, Installable):
        raise HarnessError(f"gateway kind {kind!r} has nothing to install; choose from {', '.join(_INSTALLED)}")
    return adapter


def adapter_kinds() -> list[str]:
    """The kinds `harness setup-gateways` installs (their adapters drive a real gateway)."""
    return list(_INSTALLED)


def gateway_kinds() -> list[str]:
    """Every kind of gateway an adapter exists for."""
    return list(_ADAPTERS)


G = TypeVar("G", bound=GatewayBase)


def gateway_of(run: GatewayContext, model: type[G]) -> G:
    """The scenario's gateway as the model of the adapter's kind (the loader chose it by `kind`)."""
    gateway = run.scenario.gateway
    if not isinstance(gateway, model):
        raise HarnessError(f"a {gateway.kind} gateway was handed to the adapter for {model.__name__}")
    return gateway


def own_reading(run: GatewayContext) -> GatewayDefaults:
    """A gateway the scenario describes itself (command, url): what it says of its served target and
    audit events, or the model's defaults."""
    gateway = run.scenario.gateway
    return GatewayDefaults(served_target=gateway.served_target, audit=gateway.audit)


class ConfigTemplate:
    """Adapters of a gateway started from a config template the scenario names (litellm, portkey)."""

    model: ClassVar[type[LiteLLMGateway | PortkeyGateway]]

    def config_path(self, run: GatewayContext) -> Path:
        """The scenario's config template, beside the scenario file first."""
        return resolve_config(gateway_of(run, self.model).config, run.scenario_dir)

    def config_shown(self, run: GatewayContext) -> str:
        """The template for the dry-run plan: where it resolves, or that it does not."""
        return describe_config(gateway_of(run, self.model).config, run.scenario_dir)


def resolve_config(config: str, scenario_dir: Path) -> Path:
    """A config path as written: absolute, or relative to the scenario file, or to the working directory."""
    path = Path(config)
    for candidate in ([path] if path.is_absolute() else [scenario_dir / path, Path.cwd() / path]):
        if candidate.is_file():
            return candidate
    raise HarnessError(f"gateway.config: {config} not found (looked beside the scenario file and in the "
                       f"working directory)\n  hint: give a path relative to the scenario file")


def describe_config(config: str, scenario_dir: Path) -> str:
    """A config path for the dry-run plan: where it resolves, or that it does not."""
    try:
        return str(resolve_config(config, scenario_dir).resolve())
    except HarnessError:
        return f"{config} (NOT FOUND beside the scenario file or in the working directory)"


"""A gateway of the user's own, started from `command` (placeholders filled) and stopped at the end."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.model import CommandGateway
from harness.core.placeholders import fill
from harness.gateways.base import GatewayContext, GatewayDefaults, LaunchPlan, gateway_of, own_reading

DEFAULT_URL = "http://127.0.0.1:{port}"
DEFAULT_READY_PATH = "/health"


class CommandAdapter:
    kind = "command"
    needs_port = True

    def defaults(self, run: GatewayContext) -> GatewayDefaults:
        return own_reading(run)  # the scenario describes its own gateway

    def plan(self, run: GatewayContext, values: dict[str, str], workdir: Path) -> LaunchPlan:
        gateway = gateway_of(run, CommandGateway)
        url = fill(gateway.url or DEFAULT_URL, values, "gateway.url").rstrip("/")
        values = {**values, "gateway.url": url}
        argv = [fill(arg, values, f"gateway.command[{i}]") for i, arg in enumerate(gateway.command)]
        if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
            raise HarnessError(f"gateway.command[0]: {argv[0]!r} is not on PATH\n"
                               "  hint: install the gateway or give the full path to its executable")
        env = {k: fill(v, values, f"gateway.env.{k}") for k, v in gateway.env.items()}
        return LaunchPlan(url=url, argv=argv, ready_url="{gateway.url}" + DEFAULT_READY_PATH, env=env, cwd=workdir,
                          ready_timeout_s=gateway.ready_timeout_s)

    def describe(self, run: GatewayContext) -> str:
        return f"started from command: {' '.join(gateway_of(run, CommandGateway).command)}"

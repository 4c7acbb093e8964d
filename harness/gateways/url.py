"""A gateway that is already running at `url`: nothing is started, and it is left running."""

from __future__ import annotations

from pathlib import Path

from harness.core.model import UrlGateway
from harness.core.placeholders import fill
from harness.gateways.base import GatewayContext, GatewayDefaults, LaunchPlan, gateway_of, own_reading


class UrlAdapter:
    kind = "url"
    needs_port = False

    def defaults(self, run: GatewayContext) -> GatewayDefaults:
        return own_reading(run)  # the scenario describes its own gateway

    def plan(self, run: GatewayContext, values: dict[str, str], workdir: Path) -> LaunchPlan:
        gateway = gateway_of(run, UrlGateway)
        # No readiness check of its own: only the scenario's ready_url, when it gives one.
        return LaunchPlan(url=fill(gateway.url, values, "gateway.url").rstrip("/"),
                          ready_timeout_s=gateway.ready_timeout_s)

    def describe(self, run: GatewayContext) -> str:
        return f"already running at {gateway_of(run, UrlGateway).url} (left running)"

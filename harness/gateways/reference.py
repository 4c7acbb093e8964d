"""The bundled reference gateway: governed fallback from the scenario's policy, with switchable defects.

It is one of the harness's own servers: started as `python -m harness.serve gateway CONFIG`, it
binds a free port itself and prints a JSON ready line naming its URL. Its config holds every
identity's key, so it is written to a private file in the run's workdir.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from harness.core.launch import server_argv, write_private_json
from harness.core.model import KillSwitch, ReferenceGateway
from harness.gateways.base import GatewayContext, GatewayDefaults, LaunchPlan, gateway_of, own_reading

# The reference gateway's admin endpoint checks this header (harness.topology.reference_gateway.app).
ADMIN_HEADER = "x-admin-token"
# How long the server may take to print its ready line.
READY_S = 20.0



class ReferenceAdapter:
    kind = "reference"
    needs_port = False  # it binds port 0 and reports the one it got

    def defaults(self, run: GatewayContext) -> GatewayDefaults:
        # Its own admin endpoint, with the run's token: the kill switch unless the scenario names another.
        switch = KillSwitch(method="POST", url="{gateway.url}/admin/fallback", headers={ADMIN_HEADER: run.admin_token},
                            off_body={"enabled": False}, on_body={"enabled": True})
        return replace(own_reading(run), kill_switch=switch)

    def plan(self, run: GatewayContext, values: dict[str, str], workdir: Path) -> LaunchPlan:
        s = run.scenario
        gateway = gateway_of(run, ReferenceGateway)
        config = {
            "host": gateway.host,
            "port": gateway.port or 0,
            "policy": s.policy.model_dump(mode="json"),
            "providers": {
                name: {**p.model_dump(mode="json"), "url": values[f"providers.{name}.url"],
                       "key": values[f"providers.{name}.key"],
                       **({"secret": values[f"providers.{name}.secret"]}
                          if f"providers.{name}.secret" in values else {})}
                for name, p in s.providers.items()
            },
            "identities": {name: ident.key.get_secret_value() for name, ident in s.identities.items()},
            "signing_secrets": {ident.key.get_secret_value(): ident.secret.get_secret_value()
                                for ident in s.identities.values() if ident.secret is not None},
            "defects": list(gateway.defects),
            "cooldown_s": gateway.cooldown_s,
            "upstream_timeout_s": gateway.upstream_timeout_s,
            "admin_token": run.admin_token,
            "client_key": gateway.client_key,
            "collector_url": values["collector.url"],
            "headers": s.traffic.headers.model_dump(mode="json"),
        }
        path = workdir / "gateway.json"
        write_private_json(path, config)
        return LaunchPlan(url=None, argv=server_argv("gateway", path), ready_timeout_s=READY_S,
                          name="reference gateway")

    def describe(self, run: GatewayContext) -> str:
        gateway = gateway_of(run, ReferenceGateway)
        return f"the bundled reference gateway, defects: {', '.join(gateway.defects) or 'none'}"

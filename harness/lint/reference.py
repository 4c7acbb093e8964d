"""Parser for the reference gateway's configuration: a scenario file with `gateway: {kind: reference}`.

The reference gateway has no file of its own: the harness writes its config from the scenario (see
harness.gateways.reference): the merged policy's routes are its fallback chains, `gateway.cooldown_s` its
cooldown, `limits.max_upstream_attempts` its per-request cap, `fail_closed` the classes it never reroutes,
and `gateway.defects` the misbehaviours switched on. This module states what that gateway will do, in the
lint model, including what each defect changes, so the rules judge the reference gateway like any other.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import InputError, InputProblem
from harness.core.model import FallbackTarget, Policy, Provider, ReferenceGateway, Scenario
from harness.lint.model import (
    ANY_FAILURE,
    Deployment,
    FallbackEdge,
    GatewayConfig,
    Route,
    Secret,
    Setting,
    Trigger,
    Where,
)
from harness.scenario import load_scenario
from harness.scenario.yaml_nodes import NodePos
from harness.scenario.yaml_nodes import parse as parse_yaml

Positions = dict[tuple[str | int, ...], NodePos]
STORM_ATTEMPTS = 6  # the retry-storm defect: the first try and five retries (reference_gateway.app)


def parse(path: Path) -> GatewayConfig:
    """The parser interface every kind's module exposes."""
    loaded = load_scenario(path)  # InputError (file:line:col) on any bad input
    scenario = loaded.scenario
    gateway = scenario.gateway
    if not isinstance(gateway, ReferenceGateway):
        raise InputError([InputProblem(str(path), None, None, "gateway.kind",
                                       f"this scenario runs a {gateway.kind} gateway, not the reference gateway",
                                       f"lint its gateway configuration instead (gateway.config), or --kind "
                                       f"{gateway.kind}")])
    positions = parse_yaml(loaded.source).positions
    return _Builder(path, scenario, gateway, positions).build()


class _Builder:
    def __init__(self, path: Path, scenario: Scenario, gateway: ReferenceGateway, positions: Positions) -> None:
        self.path, self.scenario, self.gateway, self.positions = path, scenario, gateway, positions
        self.defects = set(gateway.defects)

    def at(self, *key: str | int) -> Where:
        while key and key not in self.positions:
            key = key[:-1]
        pos = self.positions.get(key)
        mark = (pos.key or pos.value) if pos else None
        return Where(self.path, mark.line, mark.column) if mark else Where(self.path, 1, 1)

    def deployment(self, name: str, key_identity: str | None = None) -> Deployment:
        p: Provider = self.scenario.providers[name]
        identity = key_identity or p.identity
        form = "environment" if ("identities", identity, "key") in self.scenario._env_refs else "plaintext"
        return Deployment(name=name, provider=name, where=self.at("providers", name),
                          key_ref=f"{{identities.{identity}.key}}", key_form=form, region=p.region, model=p.model)

    def build(self) -> GatewayConfig:
        policy = self.scenario.policy
        config = GatewayConfig(kind="reference", path=self.path)
        for name, route in policy.routes.items():
            config.routes[name] = Route(name, (self.deployment(route.primary),), self.at("policy", "routes", name))
            config.edges.extend(self._edges(name, policy))
        self._settings(config, policy)
        self._secrets(config)
        return config

    def _edges(self, route_name: str, policy: Policy) -> list[FallbackEdge]:
        route = policy.routes[route_name]
        primary = self.deployment(route.primary)
        trigger: Trigger = ANY_FAILURE if "fallback-on-any-error" in self.defects else frozenset(policy.fallback_on)
        closed = self._never_rerouted(policy)
        edges: list[FallbackEdge] = []
        for target_name, where, classes in self._targets(route_name, policy):
            target = self.deployment(target_name, self._swapped(target_name))
            edges.append(FallbackEdge(route=route_name, source=primary, target=target, via="reference", where=where,
                                      trigger=trigger, request_classes=classes, excluded_classes=closed))
        return edges

    def _targets(self, route_name: str, policy: Policy) -> list[tuple[str, Where, frozenset[str] | None]]:
        """The targets the gateway may send the route's requests to (reference_gateway.routing)."""
        route = policy.routes[route_name]
        providers = self.scenario.providers
        primary = providers[route.primary]
        route_where = self.at("policy", "routes", route_name)
        if "unapproved-target" in self.defects:
            return [(n, route_where, None) for n in sorted(providers) if n != route.primary]
        if "cross-region" in self.defects:
            return [(n, route_where, None) for n in sorted(providers)
                    if n != route.primary and providers[n].region != primary.region]
        out = []
        route_classes = None if route.request_classes is None else frozenset(route.request_classes)
        for i, target in enumerate(route.fallbacks):
            if target.target == route.primary or not self._same_envelope(primary, target, policy):
                continue  # the gateway itself never takes it (routing._same_envelope)
            classes = route_classes
            if target.request_classes is not None:
                own = frozenset(target.request_classes)
                classes = own if classes is None else classes & own
            out.append((target.target, self.at("policy", "routes", route_name, "fallbacks", i), classes))
        return out

    def _same_envelope(self, primary: Provider, target: FallbackTarget, policy: Policy) -> bool:
        provider = self.scenario.providers[target.target]
        allowed = set(target.trust_exceptions.allow) if target.trust_exceptions else set()
        same = set(policy.trust_boundary.same) - allowed
        if "identity" in same and provider.identity != primary.identity:
            return False
        return not ("region" in same and provider.region != primary.region)

    def _swapped(self, target: str) -> str | None:
        """identity-swap: a fallback call carries the first other identity's key (reference_gateway.app)."""
        if "identity-swap" not in self.defects:
            return None
        own = self.scenario.providers[target].identity
        return next((n for n in sorted(self.scenario.identities) if n != own), None)

    def _never_rerouted(self, policy: Policy) -> frozenset[str]:
        """Request classes the gateway never reroutes: fail_closed's, and those its data class or tenant
        closes in this drill's traffic (routing.is_fail_closed); none with reroute-sensitive."""
        if "reroute-sensitive" in self.defects:
            return frozenset()
        closed = policy.fail_closed
        classes = set(closed.request_classes)
        for entry in self.scenario.traffic.mix:
            if entry.data_class in closed.data_classes or entry.tenant in closed.tenants:
                classes.add(entry.request_class)
        return frozenset(classes)

    def _settings(self, config: GatewayConfig, policy: Policy) -> None:
        written = ("gateway", "cooldown_s") in self.positions
        cooldown = float("inf") if "sticky-fallback" in self.defects else self.gateway.cooldown_s
        where = self.at("gateway", "defects") if "sticky-fallback" in self.defects else self.at("gateway", "cooldown_s")
        config.settings.append(Setting("cooldown_s", cooldown, where, default=not written))
        storm = "retry-storm" in self.defects
        at_gateway = self.at("gateway", "defects") if storm else self.at("gateway")
        config.settings.append(Setting("attempts_per_deployment", STORM_ATTEMPTS if storm else 1, at_gateway,
                                       default=not storm))
        if not storm:  # the storm ignores the budget (reference_gateway.app)
            config.settings.append(Setting("max_attempts_per_request", policy.limits.max_upstream_attempts,
                                           self.at("policy", "limits", "max_upstream_attempts"), default=True))
        any_error = "fallback-on-any-error" in self.defects
        refusal = any_error or bool({400, "content_policy"} & set(policy.fallback_on))
        config.settings.append(Setting("fallback_on_content_policy", refusal,
                                       self.at("gateway", "defects") if any_error else self.at("policy", "fallback_on"),
                                       default=not any_error))

    def _secrets(self, config: GatewayConfig) -> None:
        for name, identity in self.scenario.identities.items():
            for field in ("key", "secret"):
                if getattr(identity, field) is not None and ("identities", name, field) not in self.scenario._env_refs:
                    config.secrets.append(Secret(self.at("identities", name, field), f"identities.{name}.{field}"))

"""The policy a gateway configuration is judged against, and the topology facts the rules need.

Two sources: a drill (a scenario that runs the configuration: its policy is the registry narrowed by the
scenario, its providers say who is who, its traffic mix says which request classes use which route), or the
registry alone (its catalogue of providers, its own sections). Either way the rules read one `PolicyView`,
so they never ask where the policy came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.core.errors import InputError
from harness.core.model import FailClosed, Limits, Policy, Reversibility, Route, Scenario, TrustBoundary
from harness.policy.registry import load_registry
from harness.scenario.yaml_nodes import NodePos, SourceError, parse, read_source

# What a Policy says when a registry leaves a section out (the scenario model's defaults).
_DEFAULTS = Policy(routes={"-": Route(primary="-")})


@dataclass(frozen=True)
class ProviderFacts:
    """Who a provider is, as far as the trust envelope goes."""

    identity: str | None
    region: str | None


@dataclass(frozen=True)
class PolicyView:
    source: str                                  # the file whose policy this is (a drill, or the registry)
    drill: str | None                            # the drill's path when the policy is a drill's, else None
    checks: frozenset[str]                       # the drill's checks (empty for the registry alone)
    variants: dict[str, list[Route]]             # route -> its variants, one per primary
    route_where: dict[tuple[str, str], str]      # (route, primary) -> "file:line:col"
    target_where: dict[tuple[str, str, str], str]  # (route, primary, target) -> "file:line:col"
    fallback_on: frozenset[int | str]
    trust_same: frozenset[str]
    fail_closed: FailClosed
    failback_within_s: float
    max_upstream_attempts: int
    providers: dict[str, ProviderFacts]
    governed: bool                               # approvals came from a registry: governance fields required
    route_classes: dict[str, frozenset[str]] | None = None  # the drill's mix: route -> classes; None: unknown
    closed_by_route: dict[str, frozenset[str]] = field(default_factory=dict)  # the drill's fail-closed classes
    route_tenants: dict[str, frozenset[str]] = field(default_factory=dict)    # the drill's mix: route -> tenants
    route_regions: dict[str, frozenset[str]] = field(default_factory=dict)    # the drill's mix: route -> regions

    def variant(self, route: str, primary: str) -> Route | None:
        return next((v for v in self.variants.get(route, []) if v.primary == primary), None)

    def entry(self, route: str, primary: str, target: str | None = None) -> str | None:
        """The registry entry a finding conflicts with: 'file:line:col (route: primary -> target)'."""
        if target is not None and (route, primary, target) in self.target_where:
            return f"{self.target_where[(route, primary, target)]} ({route}: {primary} -> {target})"
        where = self.route_where.get((route, primary))
        if where is None:
            return None
        variant = self.variant(route, primary)
        approved = ", ".join(t.target for t in variant.fallbacks) if variant else ""
        return f"{where} ({route}: {primary} -> {approved or 'no fallback'})"

    def closed_classes(self, route: str) -> frozenset[str]:
        """Request classes on this route that must fail closed: the drill's, else the policy's list."""
        if self.route_classes is not None:
            return self.closed_by_route.get(route, frozenset())
        return frozenset(self.fail_closed.request_classes)


def shown(path: Path) -> str:
    """A path as the user reads it: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _section(sections: dict[str, Any], name: str, model: type[Any]) -> Any:
    value = sections.get(name)
    if value is None:
        return getattr(_DEFAULTS, name)
    return value if isinstance(value, model) else model.model_validate(value)


def _facts(providers: dict[str, Any]) -> dict[str, ProviderFacts]:
    out: dict[str, ProviderFacts] = {}
    for name, p in providers.items():
        get = p.get if isinstance(p, dict) else (lambda key, p=p: getattr(p, key, None))
        identity, region = get("identity"), get("region")
        out[name] = ProviderFacts(identity if isinstance(identity, str) else None,
                                  region if isinstance(region, str) else None)
    return out


def from_registry(registry: Any) -> PolicyView:
    """The registry alone (harness.policy.registry.Registry): judged when no drill runs the configuration."""
    sections = dict(registry.policy_sections)
    fallback_on = sections.get("fallback_on")
    target_where = {(e.route, e.primary, e.target.target): e.where for e in registry.entries()}
    return PolicyView(
        source=shown(registry.path), drill=None, checks=frozenset(), variants=dict(registry.routes),
        route_where=dict(registry.route_where), target_where=target_where,
        fallback_on=frozenset(fallback_on if fallback_on is not None else _DEFAULTS.fallback_on),
        trust_same=frozenset(_section(sections, "trust_boundary", TrustBoundary).same),
        fail_closed=_section(sections, "fail_closed", FailClosed),
        failback_within_s=_section(sections, "reversibility", Reversibility).failback_within_s,
        max_upstream_attempts=_section(sections, "limits", Limits).max_upstream_attempts,
        providers=_facts(dict(registry.providers)), governed=True)


def _positions(path: Path) -> dict[tuple[str | int, ...], NodePos]:
    try:
        return parse(read_source(path)[1]).positions
    except SourceError:  # the scenario loaded, so this does not happen; a view without lines is still a view
        return {}


def _at(positions: dict[tuple[str | int, ...], NodePos], file: str, *path: str | int) -> str:
    while path and path not in positions:
        path = path[:-1]
    pos = positions.get(path)
    mark = (pos.key or pos.value) if pos else None
    return f"{file}:{mark.line}:{mark.column}" if mark else file


@lru_cache(maxsize=8)
def _registry_routes(path: Path) -> dict[tuple[str, str], str]:
    """Where the registry a drill references writes each route variant (loaded once per lint run)."""
    try:
        return dict(load_registry(path).route_where)
    except InputError:  # the drill loaded, so its registry does; if not, the drill's own lines still say
        return {}


def from_drill(scenario: Scenario, path: Path, checks: list[str]) -> PolicyView:
    """A drill's policy (already merged with its registry by the loader) and its topology."""
    policy = scenario.policy
    file = shown(path)
    read: list[dict[tuple[str | int, ...], NodePos]] = []

    def here(*key: str | int) -> str:  # the drill's own lines, read only when the registry does not say
        if not read:
            read.append(_positions(path))
        return _at(read[0], file, *key)

    registry = getattr(policy, "registry", None)
    in_registry = _registry_routes((path.parent / registry).resolve()) if registry else {}
    route_where: dict[tuple[str, str], str] = {}
    target_where: dict[tuple[str, str, str], str] = {}
    for name, route in policy.routes.items():
        route_where[(name, route.primary)] = in_registry.get((name, route.primary)) or here("policy", "routes", name)
        for i, target in enumerate(route.fallbacks):
            # Where the approval is written: the registry for an inherited one (merged policies say), else here.
            approved_in = getattr(target, "approved_in", None)
            target_where[(name, route.primary, target.target)] = approved_in or here(
                "policy", "routes", name, "fallbacks", i)
    closed = policy.fail_closed
    route_classes: dict[str, set[str]] = {}
    closed_by_route: dict[str, set[str]] = {}
    tenants: dict[str, set[str]] = {}
    regions: dict[str, set[str]] = {}
    for entry in scenario.traffic.mix:
        route_classes.setdefault(entry.route, set()).add(entry.request_class)
        tenants.setdefault(entry.route, set()).add(entry.tenant)
        regions.setdefault(entry.route, set()).add(entry.region)
        if (entry.request_class in closed.request_classes or entry.data_class in closed.data_classes
                or entry.tenant in closed.tenants):
            closed_by_route.setdefault(entry.route, set()).add(entry.request_class)
    return PolicyView(
        source=file, drill=file, checks=frozenset(checks), variants={n: [r] for n, r in policy.routes.items()},
        route_where=route_where, target_where=target_where, fallback_on=frozenset(policy.fallback_on),
        trust_same=frozenset(policy.trust_boundary.same), fail_closed=closed,
        failback_within_s=policy.reversibility.failback_within_s,
        max_upstream_attempts=policy.limits.max_upstream_attempts,
        providers=_facts(dict(scenario.providers)), governed=getattr(policy, "registry", None) is not None,
        route_classes={k: frozenset(v) for k, v in route_classes.items()},
        closed_by_route={k: frozenset(v) for k, v in closed_by_route.items()},
        route_tenants={k: frozenset(v) for k, v in tenants.items()},
        route_regions={k: frozenset(v) for k, v in regions.items()})

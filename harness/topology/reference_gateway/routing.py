"""Which providers may serve a request, in which order: the governed-fallback policy.

Pure functions of (config, route, request attributes) plus the primary-health state, so the
policy reads in one place. Defects that change the choice of target are applied here, each one
changing only what it names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from harness.core.capabilities import needs_of_body, unmet
from harness.core.model import FallbackTarget, Route
from harness.topology.reference_gateway.config import GatewayConfig, UpstreamProvider

Cause = int | str  # an HTTP status, or "timeout" / "connection_error"


@dataclass(frozen=True)
class RequestAttrs:
    request_id: str | None
    tenant: str | None
    request_class: str | None
    region: str | None
    data_class: str | None


def _admits(allowed: list[str] | None, value: str | None) -> bool:
    return allowed is None or value in allowed


def is_fail_closed(config: GatewayConfig, attrs: RequestAttrs) -> bool:
    if config.has("reroute-sensitive"):
        return False
    closed = config.policy.fail_closed
    return (attrs.request_class in closed.request_classes or attrs.data_class in closed.data_classes
            or attrs.tenant in closed.tenants)


def _route_admits(route: Route, attrs: RequestAttrs) -> bool:
    return (_admits(route.tenants, attrs.tenant) and _admits(route.regions, attrs.region)
            and _admits(route.request_classes, attrs.request_class))


def _same_envelope(config: GatewayConfig, primary: UpstreamProvider, target: FallbackTarget) -> bool:
    provider = config.providers[target.target]
    allowed = set(target.trust_exceptions.allow) if target.trust_exceptions else set()
    same = set(config.policy.trust_boundary.same) - allowed
    # "tools" needs no test: the client's tools are forwarded unchanged, whoever serves.
    if "identity" in same and provider.identity != primary.identity:
        return False
    return not ("region" in same and provider.region != primary.region)


def approved_fallbacks(config: GatewayConfig, route: Route, attrs: RequestAttrs) -> list[str]:
    """The route's approved targets that admit this request, in the policy's order."""
    if not _route_admits(route, attrs):
        return []
    primary = config.providers[route.primary]
    clearance = config.policy.trust_boundary.data_class_clearance
    names: list[str] = []
    for target in route.fallbacks:
        provider = config.providers[target.target]
        if target.target == route.primary:
            continue
        if not (_admits(target.tenants, attrs.tenant) and _admits(target.regions, attrs.region)
                and _admits(target.request_classes, attrs.request_class)):
            continue
        # A request without a data class cannot be shown to be cleared: it does not move.
        if clearance and attrs.data_class not in provider.data_classes:
            continue
        if _same_envelope(config, primary, target):
            names.append(target.target)
    return names


def _unapproved(config: GatewayConfig, route: Route) -> list[str]:
    approved = {route.primary, *(t.target for t in route.fallbacks)}
    model = config.providers[route.primary].model
    others = [name for name in config.providers if name not in approved]
    return sorted(others, key=lambda name: (config.providers[name].model != model, name))


def _cross_region(config: GatewayConfig, route: Route) -> list[str]:
    primary = config.providers[route.primary]
    approved = [t.target for t in route.fallbacks]
    others = [name for name, p in config.providers.items() if name != route.primary and p.region != primary.region]
    # Prefer what the route approves (so only the region is wrong), then the same model.
    return sorted(others, key=lambda name: (name not in approved, config.providers[name].model != primary.model,
                                            approved.index(name) if name in approved else 0, name))


def fallback_targets(config: GatewayConfig, route: Route, attrs: RequestAttrs) -> list[str]:
    if config.has("unapproved-target"):
        return _unapproved(config, route)
    if config.has("cross-region"):
        return _cross_region(config, route)
    return approved_fallbacks(config, route, attrs)


def fitting(config: GatewayConfig, names: list[str], body: dict[str, Any]) -> list[str]:
    """The targets able to serve this request (`unmet` is the checks' rule too): moving a request to a
    model that cannot hold its prompt, its schema or its tool call turns an outage into a wrong answer.

    The capability-blind defect skips the filter. Without a declared limit among the targets nothing
    can be unmet, so the body is not even read (the common case, and the hot path under load).
    """
    if config.has("capability-blind") or not any(config.providers[n].limited for n in names):
        return names
    needs = needs_of_body(body)
    return [n for n in names if not unmet(needs, config.providers[n].capabilities)]


def triggers_fallback(config: GatewayConfig, cause: Cause | None, named: str | None = None,
                      defects: bool = True) -> bool:
    """Whether the policy lists this failure: its cause (status, timeout, ...) or its named outcome
    (content_policy, overloaded: whichever the policy names). `defects`: let fallback-on-any-error count."""
    if cause is None:
        return False
    if defects and config.has("fallback-on-any-error"):
        return True
    fallback_on = config.policy.fallback_on
    return cause in fallback_on or (named is not None and named in fallback_on)


class PrimaryHealth:
    """Cooldown of failed primaries, per scope (see app._scope): skipped while cooling down,
    tried again by the first request after it (failback)."""

    def __init__(self, cooldown_s: float, sticky: bool) -> None:
        self.cooldown_s = cooldown_s
        self.sticky = sticky  # the sticky-fallback defect: a failed primary is never tried again
        self._until: dict[str, float] = {}

    def available(self, scope: str, now: float | None = None) -> bool:
        until = self._until.get(scope)
        if until is None:
            return True
        if (time.monotonic() if now is None else now) < until:
            return False
        del self._until[scope]
        return True

    def failed(self, scope: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._until[scope] = float("inf") if self.sticky else now + self.cooldown_s

    def cooling(self) -> dict[str, float]:
        return dict(self._until)

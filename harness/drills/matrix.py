"""The outage matrix of a registry: which drills `harness scaffold` writes, and what each one expects.

One cell = one scenario: a route variant (route, primary), a scope (all traffic, or one region, tenant or
request class the registry names for that route) and a failure family. Everything here is a pure function
of the registry's contents, so the same registry gives the same cells in the same order (the folder can
be committed and re-generated in review).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from harness.core.model import FailClosed, FallbackTarget, Policy, Route, TrustBoundary
from harness.drills import capability

# Failure families, in the order the index lists them. capability, kill-switch and failback are drills of
# the whole route (scope "all" only; capability only where a target lacks something the primary has,
# harness.drills.capability); the others are crossed with every scope.
FAMILIES: tuple[str, ...] = ("5xx", "429", "timeout", "reset", "content-policy", "stream-cut",
                             "capability", "kill-switch", "failback")
SCOPED_FAMILIES: tuple[str, ...] = FAMILIES[:6]
# What each family drills, for the header comment and the index.
FAMILY_TEXT: dict[str, str] = {
    "5xx": "the primary answers 5xx (an outage): approved fallback in the trust envelope, audited, then failback",
    "429": "the primary rate-limits (429 with Retry-After): fallback within the attempt budget, no retry storm",
    "timeout": "the primary hangs: the gateway times out and may fall back, then returns to the primary",
    "reset": "the primary drops the TCP connection: a connection error is an outage, handled as one",
    "content-policy": "the primary refuses prompts (content policy): a refusal is an answer, never rerouted",
    "stream-cut": "the primary's streams break mid-way: the client must see the cut, never a clean end",
    "capability": "the primary answers 5xx while requests need what a weaker target lacks (window, JSON, tools): "
                  "unfit targets are skipped, a refusal of size is never rerouted, JSON stays JSON",
    "kill-switch": "fallback is switched off mid-outage and back on: fail closed while off, fall back after",
    "failback": "two outages in a row: traffic must return to the primary after each within failback_within_s",
}
SCOPE_KINDS: tuple[str, ...] = ("region", "tenant", "class")
# The attribute of a traffic mix entry (and of a fault's `match`) each scope kind narrows.
SCOPE_ATTR: dict[str, str] = {"region": "region", "tenant": "tenant", "class": "request_class"}
DEFAULT_TENANT = "acme"
DEFAULT_CLASS = "chat"
DEFAULT_DATA_CLASSES: tuple[str, ...] = ("public", "internal", "confidential")
PREFERRED_DATA_CLASSES: tuple[str, ...] = ("internal", "public")


@dataclass(frozen=True)
class Scope:
    kind: str            # "all", "region", "tenant" or "class"
    value: str | None    # None for "all"

    @property
    def slug(self) -> str:
        return "all" if self.value is None else f"{self.kind}-{self.value}"

    @property
    def attr(self) -> str | None:
        return SCOPE_ATTR.get(self.kind)


ALL = Scope("all", None)


@dataclass(frozen=True)
class Cell:
    route: str
    primary: str
    scope: Scope
    family: str

    @property
    def file_name(self) -> str:
        return f"{self.route}--{self.primary}--{self.scope.slug}--{self.family}.yaml"

    @property
    def scenario_name(self) -> str:
        """The scenario's `name` (at most 64 characters of [A-Za-z0-9._-]): the file's stem, shortened
        with a hash of it when too long, so two cells never share a name."""
        stem = self.file_name.removesuffix(".yaml")
        safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem)
        if len(safe) <= 64 and safe == stem:
            return safe
        return f"{safe[:55]}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}"


def seed_of(seed: int, file_name: str) -> int:
    """A scenario's seed: derived from --seed and its file name, so re-generating gives the same draws."""
    return int(hashlib.sha256(f"{seed}:{file_name}".encode()).hexdigest()[:8], 16)


def section(sections: dict[str, Any], key: str, model: type[Any]) -> Any:
    """A policy section of the registry as its model (the registry may hold a model, a mapping or nothing)."""
    value = sections.get(key)
    if value is None:
        return model()
    return value if isinstance(value, model) else model.model_validate(value, strict=False)


def fallback_on(sections: dict[str, Any]) -> list[int | str]:
    value = sections.get("fallback_on")
    return list(value) if value is not None else list(Policy.model_fields["fallback_on"].default_factory())


def _union(*lists: list[str] | None) -> list[str]:
    seen: dict[str, None] = {}
    for values in lists:
        for v in values or []:
            seen.setdefault(v, None)
    return list(seen)


def scopes(route: Route, closed: FailClosed) -> list[Scope]:
    """All traffic, then each region, tenant and request class the registry names for this route: the
    route's own restrictions, its targets' restrictions and the fail-closed tenants and classes."""
    regions = _union(route.regions, *(t.regions for t in route.fallbacks))
    tenants = _union(route.tenants, *(t.tenants for t in route.fallbacks), closed.tenants)
    classes = _union(route.request_classes, *(t.request_classes for t in route.fallbacks), closed.request_classes)
    named = {"region": regions, "tenant": tenants, "class": classes}
    return [ALL] + [Scope(kind, v) for kind in SCOPE_KINDS for v in sorted(named[kind])]


def families(scope: Scope, route: Route, providers: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    if scope.value is not None:
        return SCOPED_FAMILIES
    return tuple(f for f in FAMILIES if f != "capability" or capability.gaps(route, providers))


def cells(routes: dict[str, list[Route]], closed: FailClosed,
          providers: dict[str, dict[str, Any]] | None = None) -> list[Cell]:
    """Every cell of the matrix, sorted by file name. `providers`: the registry's catalogue (what a target's
    capabilities are, besides what its `degrades` says)."""
    catalogue = providers or {}
    out = [Cell(name, variant.primary, scope, family)
           for name, variants in routes.items() for variant in variants
           for scope in scopes(variant, closed)
           for family in families(scope, variant, catalogue)]
    return sorted(out, key=lambda c: c.file_name)


def select(all_cells: list[Cell], routes: list[str] | None, families: list[str] | None,
           limit: int | None) -> list[Cell]:
    chosen = [c for c in all_cells if (routes is None or c.route in routes)
              and (families is None or c.family in families)]
    return chosen if limit is None else chosen[:limit]


# -- what a request of the drill should meet (the reference gateway's rules, read from the registry) --------

@dataclass(frozen=True)
class Attrs:
    tenant: str
    region: str
    request_class: str
    data_class: str

    def with_scope(self, scope: Scope, value: str | None = None) -> Attrs:
        if scope.attr is None:
            return self
        return Attrs(**{**self.__dict__, scope.attr: value if value is not None else scope.value})


def fail_closed(closed: FailClosed, a: Attrs) -> bool:
    return a.request_class in closed.request_classes or a.data_class in closed.data_classes or \
        a.tenant in closed.tenants


def _admits(allowed: list[str] | None, value: str) -> bool:
    return allowed is None or value in allowed


def _in_envelope(boundary: TrustBoundary, primary: dict[str, Any], target: FallbackTarget,
                 provider: dict[str, Any]) -> bool:
    allowed = set(target.trust_exceptions.allow) if target.trust_exceptions else set()
    same = set(boundary.same) - allowed
    if "identity" in same and provider.get("identity") != primary.get("identity"):
        return False
    return not ("region" in same and provider.get("region") != primary.get("region"))


def may_fall_back(route: Route, providers: dict[str, dict[str, Any]], boundary: TrustBoundary,
                  closed: FailClosed, a: Attrs) -> bool:
    """Whether a request with these attributes has an approved target to go to when its primary fails."""
    return bool(approved(route, providers, boundary, closed, a))


def approved(route: Route, providers: dict[str, dict[str, Any]], boundary: TrustBoundary,
             closed: FailClosed, a: Attrs) -> list[str]:
    """The approved targets a request with these attributes may go to when its primary fails, in order."""
    if fail_closed(closed, a) or not (_admits(route.tenants, a.tenant) and _admits(route.regions, a.region)
                                      and _admits(route.request_classes, a.request_class)):
        return []
    primary = providers[route.primary]
    out: list[str] = []
    for target in route.fallbacks:
        provider = providers.get(target.target)
        if provider is None or target.target == route.primary:
            continue
        if not (_admits(target.tenants, a.tenant) and _admits(target.regions, a.region)
                and _admits(target.request_classes, a.request_class)):
            continue
        if boundary.data_class_clearance and a.data_class not in provider.get("data_classes", []):
            continue
        if _in_envelope(boundary, primary, target, provider):
            out.append(target.target)
    return out


def base_attrs(route: Route, providers: dict[str, dict[str, Any]], closed: FailClosed) -> Attrs:
    """The attributes of the drill's ordinary request: ones the route admits, for a data class the primary
    and its targets are cleared for, of a class that does not fail closed."""
    first = [t for t in route.fallbacks]
    tenant = (route.tenants or _union(*(t.tenants for t in first)) or [DEFAULT_TENANT])[0]
    region = (route.regions or _union(*(t.regions for t in first)) or [providers[route.primary].get("region", "eu")])[0]
    classes = route.request_classes or _union(*(t.request_classes for t in first)) or [DEFAULT_CLASS]
    open_classes = [c for c in classes if c not in closed.request_classes] or [DEFAULT_CLASS]
    cleared = list(providers[route.primary].get("data_classes", DEFAULT_DATA_CLASSES))
    for t in route.fallbacks:
        theirs = providers.get(t.target, {}).get("data_classes")
        if theirs is not None and set(cleared) & set(theirs):
            cleared = [d for d in cleared if d in theirs]
    cleared = [d for d in cleared if d not in closed.data_classes] or cleared
    data = next((d for d in PREFERRED_DATA_CLASSES if d in cleared), cleared[0] if cleared else "internal")
    return Attrs(tenant=tenant, region=region, request_class=open_classes[0], data_class=data)

"""A scenario's `policy: {file: ..., ...}` merged with the registry it references (docs/policy-registry.md).

The scenario may *narrow* a registry approval (fewer tenants, regions, classes; equivalent where the registry
says non-equivalent; fewer degradations and trust exceptions), *extend* it (a target, primary or route the
registry does not hold: approved in the scenario only), and *tighten* the policy sections. Loosening is an
error that names both places. The result is a plain policy mapping the scenario model validates, complete
without the registry (a ledger's copy is re-judged without the file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from harness.core.model import Route
from harness.policy.dates import with_dates
from harness.policy.registry import SECTIONS, Registry
from harness.policy.yaml_nodes import Finding, KeyPath

SCOPES = ("tenants", "regions", "request_classes")
# May be repeated in a scenario, only with the registry's value: an approval is the registry's to state.
GOVERNANCE = ("approved_by", "approval_ref", "owner", "documentation", "accountable", "mechanism_owner",
              "approved_on", "review_by", "expires")
POLICY_KEYS = ("file", "routes", *SECTIONS)
ROUTE_KEYS = ("primary", "fallbacks", *SCOPES)
TIGHTEN_HINT = ("a scenario may only tighten the registry's policy; to loosen it, change the registry (an "
                "approval for the whole organisation) or drop the key to use the registry's value")


@dataclass
class Merge:
    """One scenario's merge: what it declares, where its keys are, and the findings so far."""

    registry: Registry
    providers: set[str]  # the providers the scenario declares
    mix_routes: list[str]  # the routes its traffic asks for, in order
    scenario_where: Callable[[KeyPath], str]  # "file:line:col" of a key path in the scenario
    findings: list[Finding] = field(default_factory=list)

    def policy(self, written: dict[str, Any], file: str) -> dict[str, Any]:
        for key in written:
            if key not in POLICY_KEYS:
                self._error(("policy", key), f"unknown key '{key}' beside policy.file",
                            "allowed: " + ", ".join(POLICY_KEYS), at="key")
        out: dict[str, Any] = {"routes": self._routes(written.get("routes")), "registry": file}
        for name in SECTIONS:
            out[name] = self._section(name, written)
        return out

    # --- routes --------------------------------------------------------------------------------------

    def _routes(self, given: Any) -> dict[str, Any]:
        routes: dict[str, Any] = {}
        if given is not None and not isinstance(given, dict):
            self._error(("policy", "routes"), "expected a mapping of route names",
                        "e.g. routes: {chat: {primary: gpt-eu}}")
            given = {}
        for name, spec in (given or {}).items():
            base: KeyPath = ("policy", "routes", name)
            if not isinstance(spec, dict):
                self._error(base, "expected a mapping (primary, fallbacks, tenants, regions, request_classes)")
                continue
            route = self._given_route(name, spec, base)
            if route is not None:
                routes[name] = route
        for name in self.mix_routes:
            if name not in routes and not (given and name in given):
                variant = self._select(name, ("policy",))
                if variant is not None:
                    routes[name] = self._taken(name, variant)
        return routes

    def _select(self, name: str, at: KeyPath) -> Route | None:
        """The registry variant of `name` whose primary the scenario declares (there must be exactly one)."""
        variants = self.registry.routes.get(name)
        if not variants:
            self._error(at, f"route '{name}' (in traffic.mix) is not in the registry {self.registry.shown}",
                        f"add it to the registry, or approve it in the scenario: routes: {{{name}: {{primary: ..., "
                        "fallbacks: [...]}}")
            return None
        declared = [v for v in variants if v.primary in self.providers]
        if len(declared) == 1:
            return declared[0]
        primaries = ", ".join(v.primary for v in variants)
        which = "none of its primaries" if not declared else "several of its primaries"
        self._error(at, f"route '{name}': the scenario declares {which} ({primaries}) in the registry "
                    f"{self.registry.shown}", f"choose one: routes: {{{name}: {{primary: P}}}}")
        return None

    def _taken(self, name: str, variant: Route) -> dict[str, Any]:
        """The variant as the registry writes it, with the fallbacks to providers the scenario declares."""
        out = _dump(variant)
        out["fallbacks"] = [self._approved(name, variant, f.target) for f in variant.fallbacks
                            if f.target in self.providers]
        return out

    def _approved(self, name: str, variant: Route, target: str) -> dict[str, Any]:
        fallback = next(f for f in variant.fallbacks if f.target == target)
        path = self.registry.fallback_path(name, variant.primary, target)
        return {**_dump(fallback), "approved_in": self.registry.where(path) if path else self.registry.shown}

    def _given_route(self, name: str, spec: dict[str, Any], base: KeyPath) -> dict[str, Any] | None:
        for key in spec:
            if key not in ROUTE_KEYS:
                self._error(base + (key,), f"unknown key '{key}'", "allowed: " + ", ".join(ROUTE_KEYS), at="key")
        primary = spec.get("primary")
        if primary is None:
            variant = self._select(name, base)
            if variant is None:
                return None
        else:
            variant = self.registry.variant(name, primary)
        if variant is None:  # a route or primary the registry does not hold: approved in the scenario only
            fallbacks = spec.get("fallbacks", [])
            if isinstance(fallbacks, list):
                fallbacks = [self._extension(f, base + ("fallbacks", i)) for i, f in enumerate(fallbacks)]
            return {**spec, "fallbacks": fallbacks}
        out = self._taken(name, variant)
        where = self.registry.route_where[(name, variant.primary)]
        for scope in SCOPES:
            if scope in spec:
                self._subset(base + (scope,), spec[scope], getattr(variant, scope), where, nullable=True)
                out[scope] = spec[scope]
        if "fallbacks" in spec:
            if not isinstance(spec["fallbacks"], list):
                out["fallbacks"] = spec["fallbacks"]  # the model says what it expects
            else:
                out["fallbacks"] = [self._fallback(name, variant, item, base + ("fallbacks", i))
                                    for i, item in enumerate(spec["fallbacks"])]
        return out

    def _extension(self, item: Any, path: KeyPath) -> Any:
        if not isinstance(item, dict):
            return item
        return {**with_dates(item), "approved_in": self.scenario_where(path)}

    def _fallback(self, name: str, variant: Route, item: Any, path: KeyPath) -> Any:
        if not isinstance(item, dict) or not isinstance(item.get("target"), str):
            return item  # the model says what is missing
        approved = next((f for f in variant.fallbacks if f.target == item["target"]), None)
        if approved is None:
            return self._extension(item, path)
        fpath = self.registry.fallback_path(name, variant.primary, approved.target) or ()
        out = self._approved(name, variant, approved.target)
        for key, value in with_dates(item).items():
            at = path + (key,)
            where = self.registry.where(fpath + (key,))  # the key in the registry, else its fallback item
            if key == "target":
                continue
            if key in SCOPES:
                self._subset(at, value, getattr(approved, key), where, nullable=True)
            elif key == "equivalence":
                if value == "non-equivalent" and approved.equivalence == "equivalent":
                    self._loosens(at, value, where, approved.equivalence)
            elif key in ("degrades", "degradation_accepted_by"):
                self._subset(at, value, getattr(approved, key), where)
            elif key == "trust_exceptions":
                value = self._trust_exceptions(at, value, approved.trust_exceptions, where)
            elif key in GOVERNANCE:
                if value != getattr(approved, key):
                    self._error(at, f"{value} differs from the registry's approval ({where} says "
                                f"{getattr(approved, key)})", "an approval is the registry's to state: repeat it "
                                "with the same value, or drop the key")
            else:
                self._error(at, f"unknown key '{key}'", "a scenario may narrow: " + ", ".join(
                    (*SCOPES, "equivalence", "degrades", "degradation_accepted_by", "trust_exceptions")), at="key")
                continue
            out[key] = value
        return out

    def _trust_exceptions(self, at: KeyPath, value: Any, approved: BaseModel | None, where: str) -> Any:
        if value is None or not isinstance(value, dict):
            return value  # none: narrower than any; not a mapping: the model says so
        if approved is None:
            self._error(at, f"a trust exception the registry does not grant ({where} grants none)", TIGHTEN_HINT)
            return value
        granted = _dump(approved)
        if "allow" in value:
            self._subset(at + ("allow",), value["allow"], granted["allow"], where)
        for key in ("reason", "approval_ref"):
            if key in value and value[key] != granted[key]:
                self._error(at + (key,), f"{value[key]!r} differs from the registry's ({where} says "
                            f"{granted[key]!r})", "repeat it with the same value, or drop the key")
        return {**granted, **value}

    # --- sections --------------------------------------------------------------------------------------

    def _section(self, name: str, written: dict[str, Any]) -> Any:
        registry_value = self.registry.policy_sections[name]
        base = _dump(registry_value) if isinstance(registry_value, BaseModel) else list(registry_value)
        if name not in written:
            return base
        value = written[name]
        if name == "fallback_on":
            self._subset(("policy", name), value, base, self._registry_where((name,)))
            return value
        if not isinstance(value, dict):
            return value  # the model says what it expects
        merged = {**base, **value}
        for key, given in value.items():
            self._tighter(name, key, given, base.get(key))
        return merged

    def _tighter(self, section: str, key: str, given: Any, registry_value: Any) -> None:
        at: KeyPath = ("policy", section, key)
        where = self._registry_where((section, key))
        if registry_value is None:
            return  # an unknown key: the model names it
        if isinstance(registry_value, bool):
            if registry_value and given is False:
                self._loosens(at, given, where, registry_value)
        elif isinstance(registry_value, (int, float)):
            if isinstance(given, (int, float)) and not isinstance(given, bool) and given > registry_value:
                self._loosens(at, given, where, registry_value)
        elif isinstance(registry_value, list) and isinstance(given, list):
            missing = [v for v in registry_value if v not in given]
            if missing:
                self._error(at, f"{_shown(given)} loosens the registry ({where} says {_shown(registry_value)}): "
                            f"it drops {_shown(missing)}", TIGHTEN_HINT)

    def _registry_where(self, path: KeyPath) -> str:
        if path[:1] and path[:1] in self.registry.positions:
            return self.registry.where(path)
        return f"{self.registry.shown}, by default,"

    # --- helpers ---------------------------------------------------------------------------------------

    def _subset(self, at: KeyPath, given: Any, allowed: Any, where: str, nullable: bool = False) -> None:
        if allowed is None:
            return  # the registry does not restrict it: any value narrows
        if given is None and nullable:
            self._error(at, f"unscoped loosens the registry ({where} allows only {_shown(allowed)})", TIGHTEN_HINT)
        elif isinstance(given, list):
            extra = [v for v in given if v not in allowed]
            if extra:
                self._error(at, f"{_shown(given)} loosens the registry ({where} allows only {_shown(allowed)}): "
                            f"{_shown(extra)} not approved there", TIGHTEN_HINT)

    def _loosens(self, at: KeyPath, given: Any, where: str, registry_value: Any) -> None:
        self._error(at, f"{_shown(given)} loosens the registry ({where} says {_shown(registry_value)})",
                    TIGHTEN_HINT)

    def _error(self, path: KeyPath, message: str, hint: str | None = None, at: str = "value") -> None:
        self.findings.append(Finding(path, message, hint, at=at))  # type: ignore[arg-type]


def _dump(model: BaseModel) -> dict[str, Any]:
    """A model as plain data the scenario model validates again (dates stay dates: the model is strict)."""
    return model.model_dump(mode="python")


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def scenario_only(policy: Any, scenario_file: str) -> list[tuple[str, str, str, str]]:
    """(route, primary, target, where) of every approval written in the scenario `scenario_file` (as the loader
    was given its path), not in its registry: what `harness validate` reports as "approved in the scenario only,
    not in <registry>". Empty for an inline policy."""
    if policy.registry is None:
        return []
    return [(name, route.primary, fallback.target, fallback.approved_in)
            for name, route in policy.routes.items() for fallback in route.fallbacks
            if fallback.approved_in and fallback.approved_in.startswith(f"{scenario_file}:")]

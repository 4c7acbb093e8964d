"""The approved-fallback registry: one file of approved paths (route, primary -> target) with their governance,
and the organisation's policy sections, that scenarios reference instead of repeating (docs/policy-registry.md).

Loading never lets an exception other than InputError out: every problem names file:line:column and a key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from harness.core.errors import InputError, InputProblem
from harness.core.model import FallbackTarget, Policy, Route
from harness.policy import problems
from harness.policy.dates import DATE_FIELDS, with_dates
from harness.policy.yaml_nodes import Finding, KeyPath, NodePos, SourceError, locate, parse, read_source, render_path

# The policy sections a registry sets for every drill (a scenario may only tighten them).
SECTIONS = ("fallback_on", "trust_boundary", "fail_closed", "logging", "reversibility", "limits")
# Governance a registry's `defaults` may give every fallback that does not say otherwise.
DEFAULTABLE = ("accountable", "mechanism_owner", "approved_by", "owner", "documentation", *DATE_FIELDS)
TOP_KEYS = ("version", "registry", "defaults", *SECTIONS, "routes", "providers", "identities")
EXAMPLE = ("version: 1\nregistry: example-org\nroutes:\n  chat:\n    primary: gpt-eu\n    fallbacks:\n"
           "      - {target: claude-eu, equivalence: non-equivalent, approved_by: platform-security, ...}")


@dataclass(frozen=True)
class RegistryEntry:
    """One approved path: on `route`, when `primary` fails, `target` (with the registry's defaults applied)."""

    route: str
    primary: str
    target: FallbackTarget
    where: str  # "policy/fallback-registry.yaml:14:9": the fallback item in the file


@dataclass(frozen=True)
class Registry:
    path: Path
    name: str
    policy_sections: dict[str, Any]  # fallback_on, trust_boundary, ...: validated values (defaults when omitted)
    routes: dict[str, list[Route]]  # route name -> its variants, one per primary
    route_where: dict[tuple[str, str], str]  # (route, primary) -> "file:line:col"
    providers: dict[str, Any]
    identities: dict[str, Any]
    shown: str = ""  # the path as messages print it
    positions: dict[KeyPath, NodePos] = field(default_factory=dict, compare=False, repr=False)
    variant_paths: dict[tuple[str, str], KeyPath] = field(default_factory=dict, compare=False, repr=False)

    def entries(self) -> list[RegistryEntry]:
        """Every approved path, in file order."""
        out = []
        for route, variants in self.routes.items():
            for variant in variants:
                base = self.variant_paths[(route, variant.primary)]
                for index, target in enumerate(variant.fallbacks):
                    where = self.where(base + ("fallbacks", index))
                    out.append(RegistryEntry(route, variant.primary, target, where))
        return out

    def variant(self, route: str, primary: str) -> Route | None:
        return next((v for v in self.routes.get(route, []) if v.primary == primary), None)

    def where(self, path: KeyPath) -> str:
        """"file:line:col" of a key path (or of the closest enclosing key written in the file)."""
        mark = locate(Finding(path, "", at="key"), self.positions)
        return f"{self.shown}:{mark.line}:{mark.column}" if mark else self.shown

    def fallback_path(self, route: str, primary: str, target: str) -> KeyPath | None:
        variant = self.variant(route, primary)
        if variant is None:
            return None
        index = next((i for i, f in enumerate(variant.fallbacks) if f.target == target), None)
        return None if index is None else self.variant_paths[(route, primary)] + ("fallbacks", index)


def shown_path(path: Path) -> str:
    """A path as messages print it: relative to the current directory when it is below it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return os.path.normpath(str(path))


def load_registry(path: Path) -> Registry:
    """Read and validate a registry file; raises InputError (file:line:col, key, hint) on any bad input."""
    shown = shown_path(path)
    try:
        _, text = read_source(path)
        parsed = parse(text)
    except SourceError as exc:
        line, column = (exc.mark.line, exc.mark.column) if exc.mark else (None, None)
        hint = exc.hint if exc.message != "no such file" else "check the path of the registry file"
        raise InputError([InputProblem(shown, line, column, "", exc.message, hint)]) from None
    reader = _Reader(parsed.data, list(parsed.findings))
    registry = reader.read(path, shown, parsed.positions)
    if reader.findings:
        raise InputError(_problems(reader.findings, shown, parsed.positions))
    assert registry is not None
    return registry


def _problems(findings: list[Finding], file: str, positions: dict[KeyPath, NodePos]) -> list[InputProblem]:
    out: list[InputProblem] = []
    for finding in findings:
        mark = locate(finding, positions)
        problem = InputProblem(file, mark.line if mark else None, mark.column if mark else None,
                               render_path(finding.path), finding.message, finding.hint)
        if problem not in out:
            out.append(problem)
    return sorted(out, key=lambda p: (p.line is None, p.line or 0, p.column or 0))


_SECTION_ADAPTERS = {
    name: TypeAdapter(Policy.model_fields[name].annotation, config=None if name != "fallback_on"
                      else ConfigDict(strict=True))
    for name in SECTIONS
}


class _Reader:
    def __init__(self, data: Any, findings: list[Finding]) -> None:
        self.data = data
        self.findings = findings

    def read(self, path: Path, shown: str, positions: dict[KeyPath, NodePos]) -> Registry | None:
        data = self.data
        if not isinstance(data, dict):
            self.findings.append(Finding((), "the top level must be a mapping of keys", EXAMPLE))
            return None
        for key in data:
            if key not in TOP_KEYS:
                self.findings.append(Finding((key,), f"unknown key '{key}'", "allowed keys: " + ", ".join(TOP_KEYS),
                                             at="key"))
        if data.get("version") != 1:
            self.findings.append(Finding(("version",), f"unsupported registry version {data.get('version')!r}",
                                         "set version: 1", at="parent" if "version" not in data else "value"))
        name = data.get("registry")
        if not isinstance(name, str) or not name:
            self.findings.append(Finding(("registry",), "the registry needs a name (a string)",
                                         "e.g. registry: example-org-ai-platform",
                                         at="parent" if "registry" not in data else "value"))
        defaults = self._defaults(data.get("defaults", {}))
        sections = {name: self._section(name, data) for name in SECTIONS}
        routes, where, variant_paths = self._routes(data.get("routes"), defaults, shown, positions)
        catalogue = {key: self._mapping(key, data.get(key, {})) for key in ("providers", "identities")}
        return Registry(path=path, name=name if isinstance(name, str) else "", policy_sections=sections,
                        routes=routes, route_where=where, providers=catalogue["providers"],
                        identities=catalogue["identities"], shown=shown, positions=positions,
                        variant_paths=variant_paths)

    def _mapping(self, key: str, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.findings.append(Finding((key,), f"expected a mapping, got {type(value).__name__}"))
        return {}

    def _defaults(self, value: Any) -> dict[str, Any]:
        defaults = self._mapping("defaults", value)
        for key in defaults:
            if key not in DEFAULTABLE:
                self.findings.append(Finding(("defaults", key), f"unknown key '{key}'",
                                             "defaults may give: " + ", ".join(DEFAULTABLE), at="key"))
        return {key: v for key, v in defaults.items() if key in DEFAULTABLE}

    def _section(self, name: str, data: dict[str, Any]) -> Any:
        default = Policy.model_fields[name].get_default(call_default_factory=True)
        if name not in data:
            return default
        try:
            return _SECTION_ADAPTERS[name].validate_python(data[name])
        except ValidationError as exc:
            self.findings += problems.findings(exc, (name,), data[name])
            return default

    def _routes(self, value: Any, defaults: dict[str, Any], shown: str, positions: dict[KeyPath, NodePos],
                ) -> tuple[dict[str, list[Route]], dict[tuple[str, str], str], dict[tuple[str, str], KeyPath]]:
        routes: dict[str, list[Route]] = {}
        where: dict[tuple[str, str], str] = {}
        paths: dict[tuple[str, str], KeyPath] = {}
        if not isinstance(value, dict) or not value:
            self.findings.append(Finding(("routes",), "the registry needs routes: a mapping of route names",
                                         EXAMPLE, at="parent" if value is None else "value"))
            return routes, where, paths
        for name, written in value.items():
            listed = isinstance(written, list)
            variants = written if listed else [written]
            if listed and not variants:
                self.findings.append(Finding(("routes", name), "a route needs at least one variant (a primary)"))
            for index, variant in enumerate(variants):
                path: KeyPath = ("routes", name, index) if listed else ("routes", name)
                route = self._variant(path, variant, defaults)
                if route is None:
                    continue
                if (name, route.primary) in where:
                    self.findings.append(Finding(path + ("primary",), f"route '{name}' has two variants with "
                                                 f"primary '{route.primary}'", "merge their fallbacks into one"))
                    continue
                mark = locate(Finding(path, "", at="key"), positions)
                where[(name, route.primary)] = f"{shown}:{mark.line}:{mark.column}" if mark else shown
                paths[(name, route.primary)] = path
                routes.setdefault(name, []).append(route)
        return routes, where, paths

    def _variant(self, path: KeyPath, variant: Any, defaults: dict[str, Any]) -> Route | None:
        if isinstance(variant, dict) and isinstance(variant.get("fallbacks"), list):
            fallbacks = [with_dates({**defaults, **f}) if isinstance(f, dict) else f for f in variant["fallbacks"]]
            variant = {**variant, "fallbacks": fallbacks}
        try:
            return Route.model_validate(variant)
        except ValidationError as exc:
            self.findings += problems.findings(exc, path, variant, Route)
            return None

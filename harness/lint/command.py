"""`harness lint-config CONFIG...`: static conformance of gateway configurations against the registry.

For each configuration: tell its kind, parse it with that kind's module (`harness.lint.<kind>.parse`), find
the policy it is judged against (each drill that runs it, else the registry alone), run every rule, and name
for each finding the drill that demonstrates it at run time. Nothing is started, nothing goes on the network.
Exit 0: no error finding; 1: findings; 2: bad input.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from harness.core.errors import EXIT_FAIL, EXIT_PASS, InputError, InputProblem
from harness.core.model import Scenario
from harness.lint.model import Finding, GatewayConfig
from harness.lint.output import Linted, errors, render_json, render_text
from harness.lint.policy_view import PolicyView, from_drill, from_registry, shown
from harness.lint.rules import RULES, run_rules
from harness.lint.sarif import render_sarif
from harness.scenario import load_scenario
from harness.scenario.yaml_nodes import SourceError, parse, read_source

KINDS = ("litellm", "portkey", "reference")
RENDER = {"text": render_text, "json": render_json, "sarif": render_sarif}


@dataclass(frozen=True)
class Runner:
    """A drill that runs a configuration: its file, its scenario, the checks it runs."""

    path: Path
    scenario: Scenario
    checks: frozenset[str]


def command(args: argparse.Namespace) -> int:
    as_of: date = args.as_of or date.today()
    explicit = [_explicit(p) for p in args.scenario or []]
    catalogue: list[Runner] | None = None
    registry_view: PolicyView | None = None
    results: list[Linted] = []
    for path in args.configs:
        kind = args.kind if args.kind != "auto" else detect_kind(path)
        config = parser(kind, path)
        if catalogue is None and kind != "reference":  # a reference scenario is its own drill
            catalogue = _catalogue(args.scenarios_dir, args.configs)
        runners = _running(path, kind, explicit, catalogue or [])
        views = [from_drill(r.scenario, r.path, sorted(r.checks)) for r in runners]
        if not views:
            registry_view = registry_view or _registry_view(args.registry, path)
            views = [registry_view]
        demonstrators = runners + _running(path, kind, [], catalogue or [])
        findings = judge(config, views, demonstrators, as_of)
        results.append(Linted(shown(path), kind, tuple(v.source for v in views), tuple(findings)))
    text = RENDER[args.format](results)
    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError([InputProblem(str(args.output), None, None, "--output", f"cannot write: {exc.strerror}",
                                           "name a file in a folder that exists and is writable")]) from None
        print(f"{sum(len(r.findings) for r in results)} findings written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_FAIL if errors(results) else EXIT_PASS


def judge(config: GatewayConfig, views: list[PolicyView], demonstrators: list[Runner], as_of: date) -> list[Finding]:
    """Every view's findings, each once, with the drill that demonstrates it (the judging drills first)."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Finding] = []
    for view in views:
        for finding in run_rules(config, view, as_of):
            check = RULES[finding.rule].check
            if view.drill is not None and check != "none" and check not in view.checks:
                continue  # the drill narrows the policy to the checks it runs
            key = (finding.rule, str(finding.where), finding.message)
            if key in seen:
                continue
            seen.add(key)
            out.append(_demonstrated(finding, view, demonstrators))
    return sorted(out, key=lambda f: (str(f.where.file), f.where.line, f.where.column, f.rule))


def _demonstrated(finding: Finding, view: PolicyView, demonstrators: list[Runner]) -> Finding:
    check = RULES[finding.rule].check
    if check == "none":
        return replace(finding, check=None)
    drill = next((r for r in demonstrators if check in r.checks and exercises(r.scenario, finding.rule)), None)
    return replace(finding, scenario=shown(drill.path) if drill else None, check=check)


# Faults that take the path a rule is about: a drill whose faults never do passes its check at run time.
_RETRYABLE = ("overloaded", "timeout", "reset")


def exercises(scenario: Scenario, rule: str) -> bool:
    """Whether the drill's faults make the gateway take the path the rule flags (an outage of any kind for a
    fallback path; a refusal or a request the primary cannot serve for content-policy-fallback; a retryable
    failure for retries-unbounded)."""
    effects = [f.effect for f in scenario.faults]
    if rule == "content-policy-fallback":
        refused = any(e.kind == "content_policy" or (e.kind == "error" and 400 <= getattr(e, "status", 0) < 429)
                      for e in effects)
        return refused or any(p.capabilities.limited for p in scenario.providers.values())
    if rule == "retries-unbounded":
        return any(e.kind in _RETRYABLE or (e.kind == "error" and getattr(e, "status", 0) in (429, *range(500, 600)))
                   for e in effects)
    return bool(effects)


def detect_kind(path: Path) -> str:
    """auto: .json is a Portkey config; YAML with model_list a LiteLLM proxy config; a scenario with
    gateway.kind reference the reference gateway's."""
    if path.suffix.lower() == ".json":
        _readable(path)
        return "portkey"
    data = _yaml(path)
    if isinstance(data, dict) and "model_list" in data:
        return "litellm"
    gateway = data.get("gateway") if isinstance(data, dict) else None
    if isinstance(gateway, dict) and gateway.get("kind") == "reference":
        return "reference"
    hint = "pass --kind litellm, --kind portkey or --kind reference"
    if isinstance(gateway, dict) and gateway.get("config"):
        hint = f"this scenario runs {gateway.get('config')}: lint that file"
    raise InputError([InputProblem(str(path), 1, 1, "", "cannot tell which gateway this configuration is for "
                                   "(no model_list, not a scenario with gateway kind reference)", hint)])


def _readable(path: Path) -> None:
    try:
        read_source(path)
    except SourceError as exc:
        line, column = (exc.mark.line, exc.mark.column) if exc.mark else (1, 1)
        raise InputError([InputProblem(str(path), line, column, "", exc.message,
                                       exc.hint or "name a readable gateway configuration file")]) from None


def _yaml(path: Path) -> object:
    try:
        return parse(read_source(path)[1]).data
    except SourceError as exc:
        line, column = (exc.mark.line, exc.mark.column) if exc.mark else (1, 1)
        raise InputError([InputProblem(str(path), line, column, "", exc.message,
                                       exc.hint or "fix the YAML syntax at this place")]) from None


def parser(kind: str, path: Path) -> GatewayConfig:
    """Parse with the kind's module (imported by name, so a kind is one module: harness.lint.<kind>)."""
    if kind not in KINDS:
        raise InputError([InputProblem(str(path), None, None, "--kind", f"unknown gateway kind {kind!r}",
                                       f"one of {', '.join(KINDS)}")])
    _readable(path)
    try:
        module = importlib.import_module(f"harness.lint.{kind}")
    except ModuleNotFoundError:
        raise InputError([InputProblem(str(path), None, None, "--kind", f"no {kind} parser in this version",
                                       f"one of {', '.join(KINDS)}")]) from None
    return module.parse(path)


def _explicit(path: Path) -> Runner:
    scenario = load_scenario(path).scenario  # InputError on a bad scenario: the user named it
    return Runner(path, scenario, frozenset(scenario.check_names()))


# `config: PATH` as a gateway block writes it: a cheap look before loading a scenario (loading costs ~0.1 s).
_CONFIG_KEY = re.compile(r"""\bconfig:\s*["']?([^"'\s,}]+)""")


def _catalogue(folder: Path, configs: list[Path]) -> list[Runner]:
    """The drills of --scenarios-dir that run one of these configurations and load (a broken one is
    `harness validate`'s business, not lint's). Only files whose `config:` resolves to one of them are
    loaded: loading every scenario would cost seconds, and lint answers at review time."""
    if not folder.is_dir():
        return []
    wanted = {c.resolve() for c in configs}
    out: list[Runner] = []
    for path in sorted(folder.rglob("*.yaml")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if not any(_resolve(written, path) in wanted for written in _CONFIG_KEY.findall(text)):
            continue
        try:
            scenario = load_scenario(path).scenario
        except InputError:
            continue
        out.append(Runner(path, scenario, frozenset(scenario.check_names())))
    return out


def _config_of(runner: Runner) -> Path | None:
    written = getattr(runner.scenario.gateway, "config", None)
    if not isinstance(written, str):
        return runner.path.resolve() if runner.scenario.gateway.kind == "reference" else None
    return _resolve(written, runner.path)


def _resolve(written: str, scenario: Path) -> Path:
    """A gateway.config as the gateway adapters find it: absolute, beside the scenario file, else in the
    working directory."""
    path = Path(written)
    if path.is_absolute():
        return path.resolve()
    for candidate in (scenario.parent / path, Path.cwd() / path):
        if candidate.is_file():
            return candidate.resolve()
    return (scenario.parent / path).resolve()


def _running(config: Path, kind: str, explicit: list[Runner], catalogue: list[Runner]) -> list[Runner]:
    """The drills that run this configuration: the ones named with --scenario that run it (or all of them
    when they run none of the configurations: the user chose the topology), else the catalogue's."""
    target = config.resolve()
    if explicit:
        own = [r for r in explicit if _config_of(r) == target]
        return own or explicit
    if kind == "reference":
        return [_explicit(config)]  # the scenario is its own gateway configuration
    return [r for r in catalogue if _config_of(r) == target]


def _registry_view(path: Path, config: Path) -> PolicyView:
    if not path.is_file():
        raise InputError([InputProblem(str(path), None, None, "--registry", f"no registry here, and no drill runs "
                                       f"{config}: there is no policy to judge it against",
                                       "pass --registry FILE, or --scenario FILE (a drill that runs this "
                                       "configuration), or --scenarios-dir DIR")])
    from harness.policy.registry import load_registry

    return from_registry(load_registry(path))

"""`harness lint-config CONFIG...`: static conformance of gateway configurations against the registry.

For each configuration: tell its kind, parse it with that kind's module (`harness.lint.<kind>.parse`), find
the policy it is judged against (each drill that runs it, else the registry alone), run every rule, and name
for each finding the drill that demonstrates it at run time. Nothing is started, nothing goes on the network.
Exit 0: no error-level finding (warnings alone pass); 1: an error-level finding; 2: bad input.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from harness.core.errors import EXIT_FAIL, EXIT_PASS, InputError, InputProblem
from harness.core.model import CONTAINER_EFFECTS, Scenario
from harness.lint.model import ANY_FAILURE, UNSERVABLE, Finding, GatewayConfig
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


# The tail of a warning: the finding is true of the file, but the drills that run it never take the path.
UNEXERCISED = "; no drill of this config exercises it (harness scaffold writes one)"
Key = tuple[str, str, str]


def judge(config: GatewayConfig, views: list[PolicyView], demonstrators: list[Runner], as_of: date) -> list[Finding]:
    """Every view's findings, each once, at its evidence level.

    error: a drill that runs this configuration demonstrates it (its own policy gives the same finding, it runs
    the rule's check, and its faults take the flagged path), or no drill runs the configuration (judged against
    the registry alone). warning: drills run it, but none takes the path: true of the file, not yet shown."""
    found: dict[Key, Finding] = {}
    own: dict[str, set[Key]] = {}   # a drill's own findings (its policy, its topology), by its path as shown
    for view in views:
        keys = own.setdefault(view.drill or view.source, set())
        for finding in run_rules(config, view, as_of):
            found.setdefault(_key(finding), finding)
            keys.add(_key(finding))
    drilled = any(view.drill is not None for view in views)

    def findings_of(runner: Runner) -> set[Key]:
        name = shown(runner.path)
        if name not in own:  # a drill that did not judge (--scenario named others): judged here, once
            view = from_drill(runner.scenario, runner.path, sorted(runner.checks))
            own[name] = {_key(f) for f in run_rules(config, view, as_of)}
        return own[name]

    out = [_evidence(key, finding, drilled, demonstrators, findings_of) for key, finding in found.items()]
    return sorted(out, key=lambda f: (f.level != "error", str(f.where.file), f.where.line, f.where.column, f.rule))


def _key(finding: Finding) -> Key:
    return (finding.rule, str(finding.where), finding.message)


def _evidence(key: Key, finding: Finding, drilled: bool, demonstrators: list[Runner],
              findings_of: Callable[[Runner], set[Key]]) -> Finding:
    check = RULES[finding.rule].check
    if check == "none":
        return replace(finding, check=None)   # not a runtime behaviour: the file is the evidence
    if not drilled:
        return replace(finding, check=check)  # judged against the registry alone
    drill = next((r for r in demonstrators if check in r.checks and exercises(r.scenario, finding)
                  and key in findings_of(r)), None)
    if drill is not None:
        return replace(finding, scenario=shown(drill.path), check=check)
    return replace(finding, check=check, level="warning", message=finding.message + UNEXERCISED)


def failures(scenario: Scenario) -> dict[str, frozenset[int | str]]:
    """What the gateway sees from each provider of the drill: the failures its faults inject (as statuses
    and causes, in the provider's own API: an overload is Anthropic's 529, elsewhere a 503), and a request
    it cannot serve when it declares capability limits (the drill sends such requests: a 400)."""
    seen: dict[str, set[int | str]] = {name: set() for name in scenario.providers}
    for fault in scenario.faults:
        for name in _hit(scenario, fault.target):
            seen[name] |= _failure(fault.effect, scenario.providers[name].api)
    for name, provider in scenario.providers.items():
        if provider.capabilities.limited:
            seen[name] |= {UNSERVABLE, 400}
    return {name: frozenset(what) for name, what in seen.items()}


def _hit(scenario: Scenario, target: Any) -> list[str]:
    providers = scenario.providers
    if target.provider is not None:
        return [target.provider] if target.provider in providers else []
    if target.region is not None:
        return [n for n, p in providers.items() if p.region == target.region]
    if target.model is not None:
        return [n for n, p in providers.items() if p.model == target.model]
    return list(providers)  # a container: which providers it serves is not written here


def _failure(effect: Any, api: str) -> set[int | str]:
    if effect.kind == "error":
        return {effect.status}
    if effect.kind == "overloaded":
        return {529 if api == "anthropic" else 503, "overloaded"}
    if effect.kind == "timeout":
        return {"timeout"}
    if effect.kind == "content_policy":
        return {"content_policy", effect.status}
    if effect.kind in ("reset", *CONTAINER_EFFECTS):
        return {"connection_error"}
    return set()  # latency, a stream cut after it started: no failure the gateway reroutes


_FAILURES: dict[int, tuple[Scenario, dict[str, frozenset[int | str]]]] = {}


def exercises(scenario: Scenario, finding: Finding) -> bool:
    """Whether the drill's faults make the gateway take the path the finding flags: one of the providers
    whose failure takes it fails with one of the failures that take it (any failure, for a path taken on
    any)."""
    if not finding.taken_on:
        return False
    held = _FAILURES.get(id(scenario))
    if held is None or held[0] is not scenario:
        held = _FAILURES[id(scenario)] = (scenario, failures(scenario))  # the scenario is kept: its id stays its own
    seen = held[1]
    names = [n for n in finding.failing or () if n in seen] or list(seen)
    return any(seen[n] and (ANY_FAILURE <= finding.taken_on or seen[n] & finding.taken_on) for n in names)


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

"""Checks across fields that the typed model alone cannot express: names that refer to
other names, fault windows that fit the run, a timeline that makes sense per gateway kind.

Runs only on a scenario the model accepted, and returns findings by key path.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from harness.core.blast_radius import fault_containers, fault_providers
from harness.core.model import CONTAINER_EFFECTS, HTTP_EFFECTS, Fault, Scenario
from harness.scenario import api_rules, capability_rules
from harness.scenario.yaml_nodes import Finding, KeyPath


def suggest(word: Any, choices: Iterable[str]) -> str | None:
    """`did you mean 'x'?` for the closest choice, or None."""
    if not isinstance(word, str):
        return None
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def _names(choices: Iterable[str]) -> str:
    return ", ".join(f"'{c}'" for c in choices) or "(none defined)"


def _unknown(path: KeyPath, what: str, name: str, choices: Iterable[str], section: str) -> Finding:
    choices = sorted(choices)
    guess = suggest(name, choices)
    hint = f"{guess} " if guess else ""
    hint += f"defined {section}: {_names(choices)}"
    return Finding(path, f"{what} '{name}' is not defined under {section}", hint)


def check(scenario: Scenario) -> list[Finding]:
    findings: list[Finding] = []
    findings += _references(scenario)
    findings += _faults(scenario)
    findings += _timeline(scenario)
    findings += _gateway(scenario)
    findings += capability_rules.check(scenario)
    findings += api_rules.check(scenario)
    return findings


def _references(s: Scenario) -> list[Finding]:
    out: list[Finding] = []
    for name, provider in s.providers.items():
        if provider.identity not in s.identities:
            path: KeyPath = ("providers", name, "identity")
            out.append(_unknown(path, "identity", provider.identity, s.identities, "identities"))
    for route_name, route in s.policy.routes.items():
        base: KeyPath = ("policy", "routes", route_name)
        if route.primary not in s.providers:
            out.append(_unknown(base + ("primary",), "provider", route.primary, s.providers, "providers"))
        seen: dict[str, int] = {}
        for index, fallback in enumerate(route.fallbacks):
            path = base + ("fallbacks", index, "target")
            if fallback.target not in s.providers:
                out.append(_unknown(path, "provider", fallback.target, s.providers, "providers"))
            elif fallback.target == route.primary:
                out.append(
                    Finding(
                        path,
                        f"fallback target '{fallback.target}' is the route's own primary",
                        "a fallback target must be a different provider than `primary`",
                    )
                )
            if fallback.target in seen:
                out.append(
                    Finding(
                        path,
                        f"fallback target '{fallback.target}' is listed twice in this route "
                        f"(first at fallbacks[{seen[fallback.target]}])",
                        "list each fallback target once; merge their approval scopes",
                    )
                )
            else:
                seen[fallback.target] = index
    ports: dict[int, str] = {}
    for name, provider in s.providers.items():
        if provider.port is None:
            continue
        if provider.port in ports:
            out.append(Finding(("providers", name, "port"), f"port {provider.port} is also given to "
                               f"'{ports[provider.port]}'", "give each provider its own port, or leave it out"))
        ports.setdefault(provider.port, name)
    for index, entry in enumerate(s.traffic.mix):
        if entry.route not in s.policy.routes:
            path = ("traffic", "mix", index, "route")
            out.append(_unknown(path, "route", entry.route, s.policy.routes, "policy.routes"))
    return out


def _faults(s: Scenario) -> list[Finding]:
    out: list[Finding] = []
    names: dict[str, int] = {}
    end = s.traffic.duration_s
    for index, fault in enumerate(s.faults):
        base: KeyPath = ("faults", index)
        if fault.name in names:
            out.append(
                Finding(
                    base + ("name",),
                    f"fault name '{fault.name}' is already used by faults[{names[fault.name]}]",
                    "fault names must be unique: reports and the ledger refer to faults by name",
                )
            )
        else:
            names[fault.name] = index
        out += _fault_target(s, fault, base + ("target",))
        if fault.at_s + fault.duration_s > end:
            out.append(
                Finding(
                    base + ("duration_s",),
                    f"impossible fault window: {_window(fault)} ends after the traffic ends at {_num(end)} s",
                    f"make at_s + duration_s at most traffic.duration_s ({_num(end)}), or lengthen the traffic",
                )
            )
    for later in range(len(s.faults)):
        for earlier in range(later):
            a, b = s.faults[earlier], s.faults[later]
            shared = ((set(fault_providers(s, a)) & set(fault_providers(s, b)))
                      | (set(fault_containers(s, a)) & set(fault_containers(s, b))))
            if shared and a.at_s < b.at_s + b.duration_s and b.at_s < a.at_s + a.duration_s:
                out.append(
                    Finding(
                        ("faults", later, "at_s"),
                        f"overlapping fault windows: '{b.name}' ({_window(b)}) and '{a.name}' ({_window(a)}) "
                        f"both hit provider {_names(sorted(shared))}",
                        "faults on the same provider must not overlap in time, or the outcome of a request "
                        "cannot be attributed to one fault; shift one of them",
                    )
                )
    return out


def _fault_target(s: Scenario, fault: Fault, path: KeyPath) -> list[Finding]:
    if fault.backend == "docker":
        return _container_target(s, fault, path)
    target = fault.target
    given = [k for k in ("provider", "region", "model", "container", "label") if getattr(target, k) is not None]
    example = "e.g. target: {provider: gpt-eu}, {region: eu} or {model: gpt-4o}"
    if len(given) != 1 or given[0] in ("container", "label"):
        what = "none" if not given else " and ".join(given)
        hint = example + ("; containers are the docker backend's: add backend: docker"
                          if {"container", "label"} & set(given) else "")
        return [Finding(path, f"a fault target needs exactly one of provider, region or model; got {what}", hint)]
    out = _effect_fits_backend(fault, path)
    key = given[0]
    value = getattr(target, key)
    if key == "provider" and value not in s.providers:
        return out + [_unknown(path + ("provider",), "provider", value, s.providers, "providers")]
    if key != "provider":
        available = sorted({getattr(p, key) for p in s.providers.values()})
        if value not in available:
            guess = suggest(value, available)
            hint = (f"{guess} " if guess else "") + f"{key}s of the defined providers: {_names(available)}"
            return out + [Finding(path + (key,), f"no provider has {key} '{value}'", hint)]
    # The proxy backend acts on the proxies in front of real upstreams, the mock backend on mocks.
    for name in fault_providers(s, fault):
        proxied = s.providers[name].upstream is not None
        if proxied != (fault.backend == "proxy"):
            wanted = "proxy" if proxied else "mock"
            what = "behind a fault proxy (it has upstream)" if proxied else "a mock"
            out.append(Finding(path[:-1] + ("backend",), f"provider '{name}' is {what}, so a fault on it needs "
                               f"backend: {wanted}", f"set backend: {wanted}", at="parent"))
    return out


def _effect_fits_backend(fault: Fault, path: KeyPath) -> list[Finding]:
    kind = fault.effect.kind
    docker = fault.backend == "docker"
    if (kind in CONTAINER_EFFECTS) != docker:
        allowed = CONTAINER_EFFECTS if docker else HTTP_EFFECTS
        return [Finding(path[:-1] + ("effect", "kind"),
                        f"effect '{kind}' does not fit backend {fault.backend}",
                        f"backend {fault.backend} takes effects {_names(allowed)}")]
    if kind == "disconnect" and not getattr(fault.effect, "network", None):
        return [Finding(path[:-1] + ("effect",), "a disconnect needs the network to disconnect from",
                        "e.g. effect: {kind: disconnect, network: staging}", at="value")]
    return []


def _container_target(s: Scenario, fault: Fault, path: KeyPath) -> list[Finding]:
    target = fault.target
    given = [k for k in ("provider", "region", "model", "container", "label") if getattr(target, k) is not None]
    if given not in (["container"], ["label"]):
        what = "none" if not given else " and ".join(given)
        return [Finding(path, f"a docker fault target needs exactly one of container or label; got {what}",
                        "e.g. target: {container: model-eu} or {label: region=eu}")]
    out = _effect_fits_backend(fault, path)
    if target.container is not None and target.container not in s.containers:
        out.append(_unknown(path + ("container",), "container", target.container, s.containers, "containers"))
    if target.label is not None:
        key, sep, value = target.label.partition("=")
        if not sep:
            out.append(Finding(path + ("label",), f"label selector '{target.label}' is not key=value",
                               "e.g. label: region=eu"))
        elif not fault_containers(s, fault):
            out.append(Finding(path + ("label",), f"no declared container has label {target.label}",
                               "a fault may only touch containers the scenario declares under containers"))
    return out


def _timeline(s: Scenario) -> list[Finding]:
    out: list[Finding] = []
    end = s.traffic.duration_s
    previous = None
    for index, action in enumerate(s.timeline):
        base: KeyPath = ("timeline", index)
        if action.at_s > end:
            out.append(
                Finding(
                    base + ("at_s",),
                    f"kill-switch action at {_num(action.at_s)} s is after the traffic ends at {_num(end)} s",
                    f"use an at_s between 0 and traffic.duration_s ({_num(end)})",
                )
            )
        if previous is not None and action.at_s <= previous.at_s:
            out.append(
                Finding(
                    base + ("at_s",),
                    f"timeline is not in time order: {_num(action.at_s)} s does not come after "
                    f"the previous action at {_num(previous.at_s)} s",
                    "list the actions sorted by at_s, each strictly later than the one before",
                )
            )
        expected = "off" if previous is None or previous.state == "on" else "on"
        if action.state != expected:
            first = "the first kill-switch action" if previous is None else "kill-switch states must alternate; this"
            out.append(
                Finding(
                    base + ("state",),
                    f"{first} should switch fallback '{expected}', got '{action.state}'",
                    "kill-switch states alternate starting with off: off, on, off, ...",
                )
            )
        previous = action
    if s.timeline and s.gateway.kind in ("command", "url") and s.gateway.kill_switch is None:
        out.append(
            Finding(
                ("gateway", "kill_switch"),
                f"the timeline switches fallback off/on, but this {s.gateway.kind} gateway has no kill_switch",
                "describe the HTTP call, e.g. kill_switch: {method: POST, url: '{gateway.url}/admin/fallback', "
                "off_body: {enabled: false}, on_body: {enabled: true}}",
                at="parent",
            )
        )
    return out


def _gateway(s: Scenario) -> list[Finding]:
    # What each kind requires or refuses (command, url, config, defects) is the model's to say.
    out: list[Finding] = []
    gateway = s.gateway
    switch = gateway.kill_switch
    if switch is not None and switch.mode == "http" and not switch.url:
        out.append(
            Finding(
                ("gateway", "kill_switch", "url"),
                "an http kill switch needs `url`",
                "e.g. url: '{gateway.url}/admin/fallback', or mode: request with request_body / request_headers",
                at="parent",
            )
        )
    if gateway.audit.source == "sse" and not gateway.audit.url:
        out.append(
            Finding(
                ("gateway", "audit", "url"),
                "audit.source is sse but audit.url is not set",
                "e.g. audit: {source: sse, url: '{gateway.url}/log/stream'}",
                at="parent",
            )
        )
    if gateway.audit.source == "file" and not gateway.audit.path:
        out.append(
            Finding(
                ("gateway", "audit", "path"),
                "audit.source is file but audit.path is not set",
                "e.g. audit: {source: file, path: '{workdir}/audit.jsonl'}",
                at="parent",
            )
        )
    return out


def _window(fault: Fault) -> str:
    return f"{_num(fault.at_s)} s..{_num(fault.at_s + fault.duration_s)} s"


def _num(value: float) -> str:
    return f"{value:g}"


# --- what the model expects at a key path (for hints about allowed keys) ---


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def unwrap(tp: Any, node: Any) -> Any:
    """Strip Annotated/Optional and pick the union member that fits `node`."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [m for m in get_args(tp) if m is not type(None)]
            models = [m for m in members if is_model(m)]
            kind = node.get("kind") if isinstance(node, dict) else None
            fitting = [m for m in models if kind in get_args(getattr(m.model_fields.get("kind"), "annotation", None))]
            shaped = [m for m in members if get_origin(m) is (list if isinstance(node, list) else dict)]
            tp = (fitting or (models if isinstance(node, dict) else []) or shaped or members)[0]
        else:
            return tp


def expected_type_at(path: KeyPath, data: Any) -> tuple[Any, FieldInfo | None]:
    """The type expected at `path` (and its FieldInfo when it is a model field)."""
    tp: Any = Scenario
    info: FieldInfo | None = None
    node = data
    for part in path:
        tp = unwrap(tp, node)
        if is_model(tp) and isinstance(part, str) and part in tp.model_fields:
            info = tp.model_fields[part]
            tp = info.annotation
        elif get_origin(tp) in (dict, list):
            info, tp = None, get_args(tp)[-1]
        else:
            return None, None
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return unwrap(tp, node), info


def tagged_union_at(path: KeyPath, data: Any) -> tuple[str, list[type[BaseModel]]] | None:
    """(discriminator, member models) when the value at `path` is a tagged union (gateway, effect)."""
    info = expected_type_at(path, data)[1] if path else None
    discriminator = info.discriminator if info is not None else None
    if not isinstance(discriminator, str):
        return None
    members = [m for m in _members(info.annotation) if is_model(m)]
    return discriminator, members


def tags_of(model: type[BaseModel], discriminator: str) -> list[str]:
    """The tag values a union member answers to (its `kind` literal)."""
    field = model.model_fields.get(discriminator)
    return [str(v) for v in get_args(field.annotation)] if field is not None else []


def _members(tp: Any) -> list[Any]:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return list(get_args(tp)) if get_origin(tp) in (Union, types.UnionType) else [tp]


"""Load-time rules for capabilities, requirements and degradations: what the typed model cannot say.

A requirement that no provider of its route can ever serve, a `degrades` naming a loss the target does
not have, a vendor fallback to nowhere: each would make a run that proves nothing, so each is an error
with the key that causes it and a hint.
"""

from __future__ import annotations

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from harness.core.capabilities import (
    TOOL_CHOICES,
    Needs,
    context_needed,
    degradations,
    needs_of_entry,
    request_kind,
    short_count,
    unmet,
)
from harness.core.model import JsonSchemaFormat, MixEntry, Scenario
from harness.scenario.yaml_nodes import Finding, KeyPath

# The key of a mix entry each unmet capability comes from, and how a provider would have to declare it.
_REQUIREMENT_KEY = {
    "context": "input_tokens", "output_budget": "max_tokens", "structured_output": "response_format",
    "tools": "tool_choice", "vision": "modalities", "determinism": "seed",
}
_CAPABILITY_HINT = {
    "context": "capabilities.context_tokens", "output_budget": "capabilities.max_output_tokens",
    "structured_output": "capabilities.structured_output", "tools": "capabilities.tools",
    "vision": "capabilities.vision", "determinism": "capabilities.deterministic_seed",
}


def check(s: Scenario) -> list[Finding]:
    return _vendor_fallbacks(s) + _degrades(s) + _requirements(s)


def _vendor_fallbacks(s: Scenario) -> list[Finding]:
    out: list[Finding] = []
    for name, provider in s.providers.items():
        reroute = provider.vendor_fallback
        if reroute is None:
            continue
        path: KeyPath = ("providers", name, "vendor_fallback", "to")
        others = sorted(p for p in s.providers if p != name)
        if reroute.to == name:
            out.append(Finding(path, f"provider '{name}' cannot fall back to itself",
                               f"name the provider whose answers the vendor gives instead: {', '.join(others)}"))
        elif reroute.to not in s.providers:
            out.append(Finding(path, f"vendor_fallback target '{reroute.to}' is not defined under providers",
                               f"defined providers: {', '.join(others) or '(none)'}"))
        elif provider.upstream is not None:
            out.append(Finding(path, f"provider '{name}' is a fault proxy in front of a real upstream: the vendor's "
                               "own fallback is the upstream's, the harness cannot play it",
                               "declare vendor_fallback on a mock provider (no upstream)"))
    return out


def _degrades(s: Scenario) -> list[Finding]:
    out: list[Finding] = []
    for route_name, route in s.policy.routes.items():
        primary = s.providers.get(route.primary)
        for index, target in enumerate(route.fallbacks):
            base: KeyPath = ("policy", "routes", route_name, "fallbacks", index)
            provider = s.providers.get(target.target)
            if target.degradation_accepted_by and not target.degrades:
                out.append(Finding(base + ("degradation_accepted_by",), "degradation_accepted_by names classes "
                                   "that accept a degradation, but `degrades` names none",
                                   "list what the target loses in degrades, e.g. degrades: [structured_output]"))
            if not target.degrades:
                continue
            if target.equivalence == "equivalent":
                out.append(Finding(base + ("degrades",), f"target '{target.target}' is declared equivalent, yet "
                                   "`degrades` says it loses something", "declare equivalence: non-equivalent, "
                                   "or remove degrades"))
                continue
            if primary is None or provider is None:
                continue  # reported as an unknown provider already
            real = degradations(primary.capabilities, provider.capabilities)
            for position, name in enumerate(target.degrades):
                if name not in real:
                    out.append(Finding(base + ("degrades", position), f"'{name}' names nothing real: "
                                       f"{target.target}'s capabilities do not fall short of {route.primary}'s there",
                                       f"declare the loss in providers.{target.target}.{_CAPABILITY_HINT[name]}, "
                                       f"or remove '{name}'"))
    return out


def _requirements(s: Scenario) -> list[Finding]:
    out: list[Finding] = []
    for index, entry in enumerate(s.traffic.mix):
        base: KeyPath = ("traffic", "mix", index)
        out += _entry_shape(entry, base)
        route = s.policy.routes.get(entry.route)
        if route is None or request_kind(entry) is None:
            continue
        candidates = [route.primary, *(t.target for t in route.fallbacks)]
        declared = [name for name in candidates if name in s.providers]
        if not declared:
            continue
        needs = needs_of_entry(entry)
        misses = {name: unmet(needs, s.providers[name].capabilities) for name in declared}
        if all(misses.values()):
            first = misses[declared[0]][0]
            key = _REQUIREMENT_KEY[first]
            why = "; ".join(f"{name}: {_why(m, needs, s, name)}" for name, m in misses.items())
            out.append(Finding(base + (key,), f"no provider of route '{entry.route}' can ever serve this request "
                               f"({why})", f"lower the requirement, or add a provider with the capability to the "
                               f"route (its {_CAPABILITY_HINT[first]})"))
    return out


def _why(missing: tuple[str, ...], needs: Needs, s: Scenario, name: str) -> str:
    caps = s.providers[name].capabilities
    parts = []
    for item in missing:
        if item == "context":
            parts.append(f"needs {context_needed(needs)} tokens of context, has {short_count(caps.context_tokens)}")
        elif item == "output_budget":
            parts.append(f"answers at most {short_count(caps.max_output_tokens)} tokens")
        else:
            parts.append(f"no {item.replace('_', ' ')}")
    return ", ".join(parts)


def _entry_shape(entry: MixEntry, base: KeyPath) -> list[Finding]:
    out: list[Finding] = []
    choice = entry.tool_choice
    if choice is not None and choice not in TOOL_CHOICES and choice not in entry.tools:
        out.append(Finding(base + ("tool_choice",), f"tool_choice '{choice}' names a tool this entry does not offer",
                           f"use auto, required or none, or one of its tools: {', '.join(entry.tools) or '(none)'}"))
    elif choice is not None and choice != "none" and not entry.tools:
        out.append(Finding(base + ("tool_choice",), f"tool_choice '{choice}' but the entry offers no tools",
                           "offer tools in `tools`, or remove tool_choice"))
    fmt = entry.response_format
    if isinstance(fmt, JsonSchemaFormat):
        try:
            Draft202012Validator.check_schema(fmt.schema_)
        except SchemaError as exc:
            out.append(Finding(base + ("response_format", "schema"), f"not a valid JSON Schema: {exc.message}",
                               "e.g. schema: {type: object, properties: {answer: {type: string}}, "
                               "required: [answer]}"))
    if entry.modalities[0] != "text" or len(set(entry.modalities)) != len(entry.modalities):
        out.append(Finding(base + ("modalities",), "modalities must start with text and name each modality once",
                           "e.g. modalities: [text, image]"))
    return out

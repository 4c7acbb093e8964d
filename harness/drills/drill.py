"""One scaffolded scenario: the text of a drill for one cell of the outage matrix (harness.drills.matrix).

The drill references the registry (`policy: {file: ...}`) instead of copying it, declares the route's
primary, its approved targets and one outsider (a provider the route does not approve, outside its trust
envelope: a gateway that falls back outside the registry has somewhere to go, and is caught going there),
and picks the checks that have something to judge in it, so a correct gateway passes and never ends
"unknown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.core.model import FailClosed, Reversibility, Route, TrustBoundary
from harness.drills import capability, matrix
from harness.drills.capability import Need
from harness.drills.matrix import Attrs, Cell
from harness.drills.yaml_text import block, comments, flow, flow_lines, items

RATE_PER_S = 20
# Timing of a drill (seconds): a second or two of steady state before the first fault, a short fault
# window, and time after it for failback (the reference gateway's cooldown is 1 s).
AT_S, WINDOW_S = 2, 3
# After the last fault window the run lasts the registry's failback_within_s and a second more, so
# reversible can see the return to the primary (a drill of a longer failback waits that long).
LONGEST_TAIL_S = 30
OUTSIDER = "outsider"
EVERY_RUN = ["trigger_conditions", "steady_state", "attempt_budget", "response_integrity", "fault_effective"]
FALLBACK_CHECKS = ["approved_targets", "trust_boundary", "logged"]
CAPABILITY_CHECKS = ["capability_fit", "equivalence"]
CHECK_ORDER = ["approved_targets", "trust_boundary", "fail_closed", "capability_fit", "equivalence",
               "trigger_conditions", "logged", "reversible", "steady_state", "attempt_budget", "response_integrity",
               "fault_effective"]
CONTEXT_LENGTH = "context_length"


@dataclass(frozen=True)
class Gateway:
    kind: str = "reference"
    config: str | None = None     # relative to the scenario file (litellm, portkey)


@dataclass(frozen=True)
class Source:
    """What the registry says, as the drills need it."""

    registry_file: str            # relative to the output folder, as written in `policy: {file: ...}`
    registry_name: str
    routes: dict[str, list[Route]]
    sections: dict[str, Any]
    providers: dict[str, dict[str, Any]]
    identities: dict[str, dict[str, Any]]
    gateway: Gateway = field(default_factory=Gateway)

    @property
    def closed(self) -> FailClosed:
        return matrix.section(self.sections, "fail_closed", FailClosed)

    @property
    def boundary(self) -> TrustBoundary:
        return matrix.section(self.sections, "trust_boundary", TrustBoundary)

    def variant(self, route: str, primary: str) -> Route:
        return next(v for v in self.routes[route] if v.primary == primary)


def _identity_key(name: str) -> dict[str, str]:
    env = "HARNESS_KEY_" + "".join(c if c.isalnum() else "_" for c in name.upper())
    return {"key": f"${{{env}:-sk-test-{name}}}"}


def topology(src: Source, route: Route) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Providers (primary, its targets, one outsider) and their identities, from the registry's catalogue;
    a provider it does not describe is an openai-style mock in its primary's region, under its identity."""
    primary = dict(src.providers.get(route.primary) or {
        "model": route.primary, "region": "eu", "identity": "svc-default",
        "data_classes": list(matrix.DEFAULT_DATA_CLASSES)})
    providers = {route.primary: primary}
    for target in route.fallbacks:
        providers[target.target] = dict(src.providers.get(target.target) or {
            "model": target.target, "region": primary["region"], "identity": primary["identity"],
            "data_classes": list(primary["data_classes"])})
    for target in route.fallbacks:
        _declare_losses(providers[target.target], target.degrades)
    providers[OUTSIDER] = _outsider(src, route, primary)
    identities = {name: dict(src.identities.get(name) or _identity_key(name))
                  for name in sorted({p["identity"] for p in providers.values()})}
    for provider in providers.values():
        ident = identities[provider["identity"]]
        if provider.get("api") == "bedrock" and "secret" not in ident:
            # A bedrock call is its identity's only when its SigV4 signature verifies: it needs the secret.
            ident["secret"] = "${HARNESS_AWS_SECRET_ACCESS_KEY:-harness-test-secret-access-key}"
    return providers, identities


# What a target the registry says `degrades` X falls short in, when its catalogue entry does not say so
# (a scenario must declare the loss it approves: harness validate refuses a degradation that names nothing).
LOSSES: dict[str, tuple[str, Any]] = {
    "context": ("context_tokens", 8192), "output_budget": ("max_output_tokens", 1024),
    "structured_output": ("structured_output", False), "tools": ("tools", False), "vision": ("vision", False),
    "determinism": ("deterministic_seed", False)}


def _declare_losses(provider: dict[str, Any], degrades: list[str]) -> None:
    capabilities = dict(provider.get("capabilities") or {})
    for loss in degrades:
        key, value = LOSSES[loss]
        capabilities.setdefault(key, value)
    if capabilities:
        provider["capabilities"] = capabilities


def _outsider(src: Source, route: Route, primary: dict[str, Any]) -> dict[str, Any]:
    """The same model as the primary (a gateway picking an unapproved target prefers it), in another region,
    under another identity: outside every part of the trust envelope at once."""
    region = "elsewhere" if primary["region"] != "elsewhere" else "elsewhere-2"
    return {"model": primary["model"], "region": region, "identity": "svc-outsider",
            "data_classes": list(primary["data_classes"])}


def effect_of(family: str, fallback_on: list[int | str]) -> tuple[dict[str, Any], list[int | str]]:
    """The fault effect of a family, and the causes it presents to the gateway."""
    if family in ("5xx", "capability", "kill-switch", "failback"):
        status = next((s for s in (503, 502, 500, 504) if s in fallback_on), 503)
        return {"kind": "error", "status": status}, [status]
    if family == "429":
        return {"kind": "error", "status": 429, "retry_after_s": 1}, [429]
    if family == "timeout":
        return {"kind": "timeout", "hold_s": 3}, ["timeout"]
    if family == "reset":
        return {"kind": "reset"}, ["connection_error"]
    if family == "content-policy":
        return {"kind": "content_policy"}, [400, "content_policy"]
    return {"kind": "cut", "after_chunks": 2}, ["connection_error"]


@dataclass(frozen=True)
class Plan:
    mix: list[tuple[int, Attrs, bool]]      # (weight, attributes, stream)
    hit: list[Attrs]                        # what the fault hits
    falls_back: bool                        # some hit request has an approved target
    closed_hit: bool                        # some hit request must fail closed
    needs: list[tuple[Need, Attrs]] = field(default_factory=list)   # capability drills: requests with needs


def plan(src: Source, cell: Cell, providers: dict[str, dict[str, Any]],
         needs: list[tuple[Need, Attrs]] | None = None) -> Plan:
    route, closed = src.variant(cell.route, cell.primary), src.closed
    base = matrix.base_attrs(route, providers, closed)
    scope = cell.scope
    hit = base.with_scope(scope)
    streams = 3 if cell.family == "stream-cut" else 1
    mix: list[tuple[int, Attrs, bool]] = [(3 if streams == 1 else 1, hit, False), (streams, hit, True)]
    hits = [hit]
    if scope.value is None:
        # Unscoped: the fail-closed traffic meets the outage too, and must not move.
        extra = [Attrs(base.tenant, base.region, c, base.data_class) for c in closed.request_classes]
        extra += [Attrs(t, base.region, base.request_class, base.data_class) for t in closed.tenants]
        cleared = providers[route.primary].get("data_classes", [])
        extra += [Attrs(base.tenant, base.region, base.request_class, d) for d in closed.data_classes if d in cleared]
        mix += [(1, a, False) for a in extra]
        hits += extra
    else:
        # Traffic outside the scope, which the fault must not touch.
        other = base if base != hit else base.with_scope(scope, f"not-{scope.value}")
        mix.append((1, other, False))
    _, causes = effect_of(cell.family, matrix.fallback_on(src.sections))
    triggers = any(c in matrix.fallback_on(src.sections) for c in causes)
    falls_back = triggers and any(matrix.may_fall_back(route, providers, src.boundary, closed, a) for a in hits)
    closed_hit = any(matrix.fail_closed(closed, a) for a in hits)
    return Plan(mix, hits, falls_back, closed_hit, list(needs or []))


def checks_of(cell: Cell, p: Plan) -> list[str]:
    """The checks with something to judge here (a check with nothing to judge says unknown, never pass)."""
    names = list(EVERY_RUN)
    outage = cell.family != "content-policy"
    if outage:
        names.append("reversible")
    if p.falls_back:
        names += FALLBACK_CHECKS
        if p.needs:
            names += CAPABILITY_CHECKS
    if outage and p.closed_hit:
        names.append("fail_closed")
    return [n for n in CHECK_ORDER if n in names]


def _entry(route: str, weight: int, a: Attrs, stream: bool, need: Need | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"weight": weight, "route": route, "tenant": a.tenant, "region": a.region,
                             "request_class": a.request_class, "data_class": a.data_class}
    if stream:
        entry["stream"] = True
    if need is not None:
        entry.update(need.fields)
    return entry


@dataclass(frozen=True)
class Capability:
    """What a capability drill adds to the scenario: the weaker targets first, the primary's window, the
    needs traffic, and fallback_on without context_length (a prompt too long is the client's to shorten)."""

    order: list[str] | None                  # the route's targets as the drill lists them (None: the registry's)
    needs: list[tuple[Need, Attrs]]
    fallback_on: list[int | str] | None      # tightened fallback_on (None: the registry's)


def capability_of(src: Source, cell: Cell, route: Route, providers: dict[str, dict[str, Any]],
                  base: Attrs) -> Capability:
    """Mutates `providers`: the primary gets a context window when it declares none (capability.primary_window)."""
    lacking = capability.gaps(route, providers)
    window = capability.primary_window(route, providers)
    primary = providers[route.primary]
    if window is not None and capability.caps(primary).context_tokens is None:
        primary["capabilities"] = {**(primary.get("capabilities") or {}), "context_tokens": window}
    order = capability.weak_first(route, lacking)
    strict = Attrs(base.tenant, base.region,
                   capability.strict_class(route, src.closed.request_classes, base.request_class), base.data_class)
    needs = [(n, strict) for n in capability.needs(route, providers, lacking)]
    registry_on = matrix.fallback_on(src.sections)
    tightened = [c for c in registry_on if c != CONTEXT_LENGTH] if window is not None else registry_on
    return Capability(order if order != [t.target for t in route.fallbacks] else None, needs,
                      tightened if tightened != registry_on else None)


def tail_s(src: Source) -> int:
    failback = matrix.section(src.sections, "reversibility", Reversibility).failback_within_s
    return min(LONGEST_TAIL_S, math.ceil(failback) + 1)


def _faults(cell: Cell, effect: dict[str, Any], tail: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                    float]:
    """Faults, kill-switch timeline and traffic duration."""
    target = {"provider": cell.primary}
    match = {} if cell.scope.attr is None else {"match": {cell.scope.attr: cell.scope.value}}
    if cell.family == "kill-switch":
        fault = {"name": "primary-down", "target": target, "effect": effect, "at_s": AT_S, "duration_s": 6}
        timeline = [{"at_s": AT_S + 1.5, "action": "kill_switch", "state": "off"},
                    {"at_s": AT_S + 3.5, "action": "kill_switch", "state": "on"}]
        return [fault], timeline, AT_S + 6 + tail
    if cell.family == "failback":
        # The second outage starts once the first one's failback is due, so each is judged on its own.
        faults = [{"name": f"outage-{i + 1}", "target": target, "effect": effect, "at_s": AT_S + (2 + tail) * i,
                   "duration_s": 2} for i in range(2)]
        return faults, [], AT_S + 4 + 2 * tail
    fault = {"name": f"primary-{cell.family}", "target": target, **match, "effect": effect, "at_s": AT_S,
             "duration_s": WINDOW_S}
    return [fault], [], AT_S + WINDOW_S + tail


def render(src: Source, cell: Cell, seed: int) -> str:
    route = src.variant(cell.route, cell.primary)
    providers, identities = topology(src, route)
    cap = None
    if cell.family == "capability":
        base = matrix.base_attrs(route, providers, src.closed)
        cap = capability_of(src, cell, route, providers, base)
    p = plan(src, cell, providers, cap.needs if cap else [])
    effect, _ = effect_of(cell.family, matrix.fallback_on(src.sections))
    faults, timeline, duration = _faults(cell, effect, tail_s(src))
    targets = [t.target for t in route.fallbacks]
    lines = comments(_header(src, cell, p, targets))
    lines += ["version: 1", f"name: {cell.scenario_name}",
              f"description: {flow(_description(cell, p, targets))}",
              f"tags: {flow(['scaffold', cell.family, cell.scope.kind])}", f"seed: {seed}", "identities:"]
    lines += block(identities, 2, 0)
    lines += ["providers:"]
    lines += block({k: v for k, v in providers.items() if k != OUTSIDER}, 2, 0)
    lines += [f"  # Not approved for {cell.route}, another region and identity: where a gateway that falls back "
              "outside the registry goes.", *block({OUTSIDER: providers[OUTSIDER]}, 2, 0)]
    lines += ["gateway: " + flow(_gateway(src.gateway, cell))]
    lines += ["policy:", f"  file: {flow(src.registry_file)}"]
    if cap is not None and cap.order is not None:
        lines += ["  # The weaker targets first: the gateway must skip them by what a request needs, not reach a "
                  "fit target by luck of order.",
                  f"  routes: {flow({cell.route: {'primary': cell.primary, 'fallbacks': _targets(cap.order)}})}"]
    elif _ambiguous(src, cell, providers):
        lines += [f"  routes: {flow({cell.route: {'primary': cell.primary}})}"]
    if cap is not None and cap.fallback_on is not None:
        lines += ["  # No context_length: a prompt too long for the primary is the client's to shorten (stricter).",
                  f"  fallback_on: {flow(cap.fallback_on)}"]
    failback = matrix.section(src.sections, "reversibility", Reversibility).failback_within_s
    if failback > LONGEST_TAIL_S - 1:
        lines += [f"  # The registry allows {failback} s to fail back; the drill asks for {LONGEST_TAIL_S - 1} s "
                  "(stricter, so allowed) to stay short.",
                  f"  reversibility: {flow({'failback_within_s': LONGEST_TAIL_S - 1})}"]
    lines += ["traffic:", f"  rate_per_s: {RATE_PER_S}", f"  duration_s: {duration}", "  mix:"]
    lines += items([_entry(cell.route, w, a, s) for w, a, s in p.mix], 4)
    for need, attrs in p.needs:
        lines += [f"    # {need.why}", *items([_entry(cell.route, 1, attrs, False, need)], 4)]
    lines += ["faults:"]
    for fault in faults:
        first, *rest = block(fault, 0, 0)
        lines += [f"  - {first}", *(f"    {line}" for line in rest)]
    if timeline:
        lines += ["timeline:", *items(timeline, 2)]
    lines += flow_lines("checks", checks_of(cell, p))
    return "\n".join(lines) + "\n"


def _targets(names: list[str]) -> list[dict[str, str]]:
    return [{"target": name} for name in names]


def _ambiguous(src: Source, cell: Cell, providers: dict[str, dict[str, Any]]) -> bool:
    """`routes: {R: {primary: P}}` is needed only when the providers declared hold more than one (or no)
    primary of the route's variants (the merge picks the variant whose primary is declared)."""
    return sum(v.primary in providers for v in src.routes[cell.route]) != 1


def _gateway(gateway: Gateway, cell: Cell) -> dict[str, Any]:
    if gateway.kind != "reference":
        return {"kind": gateway.kind, "config": gateway.config}
    out: dict[str, Any] = {"kind": "reference", "cooldown_s": 1}
    if cell.family == "timeout":
        out["upstream_timeout_s"] = 1
    return out


def _description(cell: Cell, p: Plan, targets: list[str]) -> str:
    where = "all its traffic" if cell.scope.value is None else \
        f"{matrix.SCOPE_ATTR[cell.scope.kind].replace('_', ' ')} {cell.scope.value}"
    return f"Route {cell.route} on primary {cell.primary}, fault on {where}: {matrix.FAMILY_TEXT[cell.family]}."


def _header(src: Source, cell: Cell, p: Plan, targets: list[str]) -> list[str]:
    if p.falls_back:
        expect = f"requests the fault hits may fall back only to {', '.join(targets)} (approved in the registry)"
    elif cell.family == "content-policy":
        expect = "no fallback: the refusal reaches the client as it is"
    else:
        expect = "no approved target admits the requests the fault hits: they fail, none is rerouted"
    lines = [f"Scaffolded by `harness scaffold` from {src.registry_file} (registry {src.registry_name}).",
             "Re-generate it rather than edit it (the same registry and --seed give the same bytes).",
             f"Drills: route {cell.route}, primary {cell.primary}, scope {cell.scope.slug}, effect {cell.family}.",
             f"Why: {matrix.FAMILY_TEXT[cell.family]}.",
             f"Expect: {expect}."]
    if p.needs:
        lines.append("Requests with needs go only to a target able to serve them (or fail); a JSON request keeps "
                     "its response_format on the fallback; a prompt over the primary's window is refused, "
                     "never rerouted.")
    if p.closed_hit:
        lines.append("Fail-closed traffic meets the outage too: it must never be rerouted.")
    return lines

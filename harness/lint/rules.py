"""The lint rules: each judges a normalised gateway configuration against a policy view.

A rule declares everything about itself (id, the runtime check that demonstrates it, what it flags, how to
fix it) with `@rule`; the SARIF rules table, the docs and the command read `RULES`, never a list of their own.
A rule never touches a file or the network: it reads `GatewayConfig` and `PolicyView`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date

from harness.core.approval import approval_status
from harness.core.model import FallbackTarget
from harness.lint.model import (
    ANY_FAILURE,
    RETRYABLE,
    UNSERVABLE,
    Deployment,
    FallbackEdge,
    Finding,
    GatewayConfig,
    Trigger,
)
from harness.lint.policy_view import PolicyView

Judge = Callable[[GatewayConfig, PolicyView, date], list[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    check: str          # the runtime check that fails when a drill runs a configuration with this finding
    short: str          # one line: what it flags
    full: str           # why it matters
    fix: str            # how to fix it
    judge: Judge


RULES: dict[str, Rule] = {}


def rule(id: str, check: str, short: str, full: str, fix: str) -> Callable[[Judge], Judge]:
    def register(judge: Judge) -> Judge:
        RULES[id] = Rule(id, check, short, full, fix, judge)
        return judge
    return register


def run_rules(config: GatewayConfig, view: PolicyView, as_of: date) -> list[Finding]:
    return [f for r in RULES.values() for f in r.judge(config, view, as_of)]


# --- what a deployment is, as far as the policy goes ---------------------------------------------------------

_PROVIDER_KEY = re.compile(r"\{providers\.([^.{}]+)\.key\}")
_IDENTITY_KEY = re.compile(r"\{identities\.([^.{}]+)\.key\}")


def provider_of(deployment: Deployment) -> str:
    return deployment.provider or deployment.name


def identity_of(deployment: Deployment, view: PolicyView) -> str | None:
    """The identity whose key the gateway sends: the key placeholder names it (another provider's key is that
    provider's identity), else the provider's identity in the topology, else the reference as written."""
    ref = deployment.key_ref or ""
    if m := _IDENTITY_KEY.search(ref):
        return m.group(1)
    if (m := _PROVIDER_KEY.search(ref)) and m.group(1) in view.providers:
        return view.providers[m.group(1)].identity
    facts = view.providers.get(provider_of(deployment))
    if facts is not None and facts.identity is not None:
        return facts.identity
    return deployment.key_ref


def region_of(deployment: Deployment, view: PolicyView) -> str | None:
    facts = view.providers.get(provider_of(deployment))
    return facts.region if facts is not None and facts.region is not None else deployment.region


ANY_ROUTE = "*"  # a config route that takes every model name it does not name (Portkey's whole config)


def policy_routes(config: GatewayConfig, view: PolicyView, route: str) -> list[str]:
    """The policy's routes a config route serves: itself, or for the wildcard every route of the policy (and of
    the drill's traffic) the configuration does not name (none when it names them all: no client of the
    policy reaches the wildcard)."""
    if route != ANY_ROUTE:
        return [route]
    named = set(config.routes) - {ANY_ROUTE}
    return sorted(_known(view) - named)


def _known(view: PolicyView) -> set[str]:
    return set(view.variants) | set(view.route_classes or {})


def called(config: GatewayConfig, view: PolicyView, route: str) -> bool:
    """Whether clients of the policy call this config route: it serves a route the policy (or the drill's
    traffic) has. A group only other groups fall back to (LiteLLM's chat-fallback) is not called."""
    return bool(set(policy_routes(config, view, route)) & _known(view))


def _paths(config: GatewayConfig, view: PolicyView) -> Iterator[tuple[FallbackEdge, Deployment, str]]:
    """Every (edge, primary it leaves, policy route): an edge without a source leaves each primary of its route."""
    for edge in config.edges:
        if edge.source is not None:
            sources: tuple[Deployment, ...] = (edge.source,)
        else:
            sources = config.routes[edge.route].primaries if edge.route in config.routes else ()
        for route in policy_routes(config, view, edge.route):
            for primary in sources:
                yield edge, primary, route


def _approved(view: PolicyView, route: str, primary: str, target: str) -> FallbackTarget | None:
    variant = view.variant(route, primary)
    return next((t for t in variant.fallbacks if t.target == target), None) if variant else None


def _classes_taking(config: GatewayConfig, edge: FallbackEdge, classes: frozenset[str]) -> frozenset[str]:
    """Which of these request classes the gateway may send along the edge."""
    route = config.routes.get(edge.route)
    if route is not None and route.request_classes is not None:
        classes &= route.request_classes
    if edge.request_classes is not None:
        classes &= edge.request_classes
    return classes - edge.excluded_classes


def _path_name(route: str, edge: FallbackEdge, primary: str) -> str:
    return f"{route}: {primary} -> {provider_of(edge.target)} ({edge.via})"


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.rule, str(f.where), f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


# --- the rules ----------------------------------------------------------------------------------------------

@rule("fallback-unapproved", "approved_targets",
      "A configured fallback path is not approved for its route and primary, or its approval expired.",
      "Every path a request can take to another deployment (fallbacks, context-window, content-policy and "
      "default fallbacks, nested strategies) must be approved in the registry for that route and primary, by "
      "an approval that still holds and, for request-class-restricted approvals, only for those classes.",
      "Remove the path from the configuration, or get it approved (a registry entry with approver, reference, "
      "accountable team and an expiry or review date); renew an expired approval.")
def fallback_unapproved(config: GatewayConfig, view: PolicyView, as_of: date) -> list[Finding]:
    out: list[Finding] = []
    for edge, source, route in _paths(config, view):
        out.extend(_on_edge(_unapproved_path(config, view, as_of, edge, source, route), edge, provider_of(source)))
    return _unique(out)


def _unapproved_path(config: GatewayConfig, view: PolicyView, as_of: date, edge: FallbackEdge, source: Deployment,
                     route: str) -> list[Finding]:
    out: list[Finding] = []
    primary, target = provider_of(source), provider_of(edge.target)
    if target == primary:
        return out
    variant = view.variant(route, primary)
    entry = view.entry(route, primary, target)
    name = _path_name(route, edge, primary)
    if variant is None:
        out.append(Finding("fallback-unapproved", f"{name}: the policy has no route {route} with primary "
                           f"{primary}, so no fallback from it is approved", edge.where, route,
                           view.entry(route, primary)))
        return out
    approval = _approved(view, route, primary, target)
    if approval is None:
        allowed = ", ".join(t.target for t in variant.fallbacks) or "none"
        out.append(Finding("fallback-unapproved", f"{name}: {target} is not an approved target (approved: "
                           f"{allowed})", edge.where, route, entry))
        return out
    status = approval_status(approval, as_of, governed=view.governed)
    if not status.holds:
        out.append(Finding("fallback-unapproved", f"{name}: the approval {approval.approval_ref} does not "
                           f"hold: {status.detail}", edge.where, route, entry))
    elif status.state == "review_overdue":
        out.append(Finding("fallback-unapproved", f"{name}: approval {approval.approval_ref}: {status.detail}",
                           edge.where, route, entry, level="warning"))
    out.extend(_class_restricted(config, view, edge, route, primary, approval, variant.request_classes, entry))
    out.extend(_cooled_for_everyone(config, view, edge, route, primary, approval, entry))
    return out


def _on_edge(findings: list[Finding], edge: FallbackEdge, primary: str) -> list[Finding]:
    """The findings about one path: taken when the primary fails with what the edge's trigger lists."""
    return [replace(f, taken_on=edge.trigger, failing=frozenset({primary})) for f in findings]


def _cooled_for_everyone(config: GatewayConfig, view: PolicyView, edge: FallbackEdge, route: str, primary: str,
                         approval: FallbackTarget, entry: str | None) -> list[Finding]:
    """An approval for some tenants or regions only, behind a cooldown: once one tenant's failures cool the
    primary down, every tenant's requests go to the target (a gateway's cooldown belongs to the deployment,
    not to the tenant), including those it is not approved for."""
    cooldown = config.setting("cooldown_s", edge.route)
    if cooldown is None or not isinstance(cooldown.value, int | float) or not cooldown.value > 0:
        return []
    out = []
    for what, allowed, sent in (("tenants", approval.tenants, view.route_tenants.get(route)),
                                ("regions", approval.regions, view.route_regions.get(route))):
        stray = sorted(set(sent or ()) - set(allowed)) if allowed is not None else []
        if stray:
            out.append(Finding("fallback-unapproved", f"{_path_name(route, edge, primary)}: approved only for {what} "
                               f"{', '.join(sorted(allowed))}, but while the primary cools down "
                               f"({cooldown.value:g} s, per deployment) {', '.join(stray)} are sent there too",
                               edge.where, route, entry))
    return out


def _class_restricted(config: GatewayConfig, view: PolicyView, edge: FallbackEdge, route: str, primary: str,
                      approval: FallbackTarget, route_classes: list[str] | None, entry: str | None) -> list[Finding]:
    """An approval for some request classes only, on an edge other classes of the drill's traffic take."""
    allowed = None if approval.request_classes is None else set(approval.request_classes)
    if route_classes is not None:
        allowed = set(route_classes) if allowed is None else allowed & set(route_classes)
    if allowed is None or view.route_classes is None:
        return []
    sent = view.route_classes.get(route, frozenset()) - view.closed_classes(route)
    stray = sorted(_classes_taking(config, edge, sent) - allowed)
    if not stray:
        return []
    return [Finding("fallback-unapproved", f"{_path_name(route, edge, primary)}: approved only for request classes "
                    f"{', '.join(sorted(allowed)) or 'none'}, but {', '.join(stray)} can take it",
                    edge.where, route, entry)]


@rule("trust-envelope", "trust_boundary",
      "A fallback deployment's identity (key) or region differs from the primary's without a trust exception.",
      "A fallback must stay inside the primary's trust envelope: the same non-human identity (API key, service "
      "account) and the same region, unless the approval documents a trust exception for that field.",
      "Point the fallback at a deployment with the primary's key and region, or document a trust exception "
      "(trust_exceptions: allow, reason, approval_ref) on the registry entry.")
def trust_envelope(config: GatewayConfig, view: PolicyView, as_of: date) -> list[Finding]:
    out: list[Finding] = []
    for edge, source, route in _paths(config, view):
        primary, target = provider_of(source), provider_of(edge.target)
        if target == primary:
            continue
        approval = _approved(view, route, primary, target)
        allowed = set(approval.trust_exceptions.allow) if approval and approval.trust_exceptions else set()
        facts = {"identity": (identity_of(source, view), identity_of(edge.target, view)),
                 "region": (region_of(source, view), region_of(edge.target, view))}
        for name, (mine, theirs) in facts.items():
            if name in view.trust_same and name not in allowed and mine and theirs and mine != theirs:
                out += _on_edge([Finding("trust-envelope", f"{_path_name(route, edge, primary)}: the fallback's "
                                         f"{name} is {theirs}, the primary's {mine}, and no trust exception allows "
                                         f"it", edge.where, route, view.entry(route, primary, target))],
                                edge, primary)
    return _unique(out)


@rule("fail-closed-reachable", "fail_closed",
      "A request class that must fail closed can take a fallback path.",
      "Requests of a fail-closed class (regulated, restricted data, named tenants) must never be rerouted: the "
      "configuration must give them a route without fallbacks or exclude them from every fallback path.",
      "Route fail-closed classes to a model name without fallbacks (or a conditional strategy that excludes "
      "them), or remove the class from fail_closed in the registry if it may be rerouted.")
def fail_closed_reachable(config: GatewayConfig, view: PolicyView, as_of: date) -> list[Finding]:
    out: list[Finding] = []
    for edge, source, route in _paths(config, view):
        primary, target = provider_of(source), provider_of(edge.target)
        classes = sorted(_classes_taking(config, edge, view.closed_classes(route)))
        if classes and target != primary:
            out += _on_edge([Finding("fail-closed-reachable", f"{_path_name(route, edge, primary)}: request class "
                                     f"{', '.join(classes)} must fail closed, but can take this fallback",
                                     edge.where, route, view.entry(route, primary, target))], edge, primary)
    return _unique(out)


_CONTENT_POLICY: frozenset[int | str] = frozenset({400, "content_policy"})


@rule("content-policy-fallback", "trigger_conditions",
      "A content-policy refusal (400) or a request the primary cannot serve triggers a fallback.",
      "A refusal is an answer, not an outage: rerouting it shops the prompt to a model with another policy. "
      "Only the failures the policy's fallback_on lists may trigger a fallback.",
      "Turn off fallback on unsupported parameters / content policy (LiteLLM fallback_on_unsupported_params: "
      "false, no content_policy_fallbacks), or list only outage statuses (Portkey on_status_codes).")
def content_policy_fallback(config: GatewayConfig, view: PolicyView, as_of: date) -> list[Finding]:
    if view.fallback_on & _CONTENT_POLICY:
        return []  # the policy allows it
    out: list[Finding] = []
    routed = {e.route for e in config.edges if called(config, view, e.route)}
    for route in sorted(routed):
        for name, what, why, taken_on in (
                ("fallback_on_content_policy", "a content-policy refusal (400)", "fallback_on does not list "
                 "content_policy", _CONTENT_POLICY),
                ("fallback_on_unservable", "a request the healthy primary cannot serve (an unsupported parameter, "
                 "an image)", "that is no outage fallback_on lists", frozenset({UNSERVABLE}))):
            setting = config.setting(name, route)
            if setting is not None and setting.value is True:
                said = "by default" if setting.default else "as configured"
                out.append(Finding("content-policy-fallback", f"{route}: {what} is rerouted to a fallback ({said}); "
                                   f"{why}", setting.where, route, _route_entry(config, view, route),
                                   taken_on=taken_on, failing=_primaries(config, route)))
    for edge, source, route in _paths(config, view):
        gated = config.setting("fallback_on_content_policy", edge.route) is not None
        if edge.trigger & _CONTENT_POLICY or ("any" in edge.trigger and not gated):
            cause = "any failure, a content-policy refusal included" if "any" in edge.trigger else \
                ", ".join(str(t) for t in sorted(edge.trigger & _CONTENT_POLICY, key=str))
            out.append(Finding("content-policy-fallback", f"{_path_name(route, edge, provider_of(source))}: taken on "
                               f"{cause}; fallback_on does not list content_policy", edge.where, route,
                               view.entry(route, provider_of(source), provider_of(edge.target)),
                               taken_on=edge.trigger & _CONTENT_POLICY or _CONTENT_POLICY,
                               failing=frozenset({provider_of(source)})))
    return _unique(out)


def _primaries(config: GatewayConfig, *routes: str) -> frozenset[str]:
    return frozenset(provider_of(p) for r in routes if r in config.routes for p in config.routes[r].primaries)


def _route_entry(config: GatewayConfig, view: PolicyView, route: str) -> str | None:
    primaries = config.routes[route].primaries if route in config.routes else ()
    return next((e for name in policy_routes(config, view, route) for p in primaries
                 if (e := view.entry(name, provider_of(p))) is not None), None)


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _storming(config: GatewayConfig, route: str, per: int) -> Trigger:
    """The failures that make the calls add up: the ones the retry layers retry (the gateway's retry_on), or,
    with no retry, the ones that take the chain (every deployment is tried once)."""
    if per > 1:
        retry_on = config.setting("retry_on", route)
        return frozenset(retry_on.value) if retry_on is not None else RETRYABLE
    return frozenset().union(*(e.trigger for e in config.edges if e.route == route)) or ANY_FAILURE


@rule("retries-unbounded", "attempt_budget",
      "Retries times the deployments a request can try exceed limits.max_upstream_attempts.",
      "Every retry layer multiplies (SDK max_retries inside the gateway, the router's num_retries, a strategy's "
      "retry attempts): an outage turns into a storm of upstream calls the policy's budget forbids.",
      "Set the SDK's max_retries and the router's retries to 0 (or low enough), or shorten the fallback chain, "
      "so attempts per deployment x deployments tried stays within max_upstream_attempts.")
def retries_unbounded(config: GatewayConfig, view: PolicyView, as_of: date) -> list[Finding]:
    out: list[Finding] = []
    for name, route in config.routes.items():
        if not called(config, view, name):
            continue  # a fallback-only group: its retries count in the chain of the route that reaches it
        attempts = config.setting("attempts_per_deployment", name)
        per = max(1, _int(attempts.value if attempts else 1, 1))
        primaries = {provider_of(p) for p in route.primaries}
        chains: dict[str, set[str]] = {}
        for edge in config.edges:
            if edge.route == name and provider_of(edge.target) not in primaries:
                chains.setdefault(edge.via, set()).add(provider_of(edge.target))
        tried = 1 + max((len(c) for c in chains.values()), default=0)
        total = per * tried
        cap = config.setting("max_attempts_per_request", name)
        if cap is not None and isinstance(cap.value, int):
            total = min(total, cap.value)
        if total > view.max_upstream_attempts:
            where = attempts.where if attempts else route.where
            out.append(Finding("retries-unbounded", f"{name}: up to {total} upstream calls per request ({per} per "
                               f"deployment x {tried} deployment{'s' if tried > 1 else ''}) exceed "
                               f"limits.max_upstream_attempts {view.max_upstream_attempts}", where, name,
                               _route_entry(config, view, name), taken_on=_storming(config, name, per),
                               failing=_primaries(config, name)))
    return _unique(out)


@rule("cooldown-over-failback", "reversible",
      "A cooldown keeps the primary out of rotation longer than reversibility.failback_within_s.",
      "After the primary recovers, traffic must return to it within failback_within_s; a deployment cooldown "
      "(or a fallback that never fails back) keeps requests on the fallback after the outage has ended.",
      "Lower the cooldown to at most failback_within_s (or remove it), or agree a longer failback window.")
def cooldown_over_failback(config: GatewayConfig, view: PolicyView, as_of: date) -> list[Finding]:
    by_setting: dict[str, list[str]] = {}  # one finding per cooldown written, naming the routes it holds back
    settings = {}
    for name in config.routes:
        if not called(config, view, name):
            continue  # a fallback-only group's cooldown does not keep a route off its primary
        cooldown = config.setting("cooldown_s", name)
        if cooldown is None or not isinstance(cooldown.value, int | float) or isinstance(cooldown.value, bool):
            continue
        if cooldown.value > view.failback_within_s:
            by_setting.setdefault(str(cooldown.where), []).append(name)
            settings[str(cooldown.where)] = cooldown
    out: list[Finding] = []
    for key, routes in by_setting.items():
        cooldown = settings[key]
        shown = "forever (it is never tried again)" if cooldown.value == float("inf") else f"for {cooldown.value:g} s"
        said = " (the gateway's default)" if cooldown.default else ""
        out.append(Finding("cooldown-over-failback", f"{', '.join(routes)}: a failed deployment is skipped "
                           f"{shown}{said}, longer than reversibility.failback_within_s {view.failback_within_s:g} s",
                           cooldown.where, routes[0], _route_entry(config, view, routes[0]),
                           taken_on=ANY_FAILURE, failing=_primaries(config, *routes)))
    return out


@rule("plaintext-key", "none",
      "A credential is written in plaintext in the configuration file.",
      "Keys in a reviewed, committed file leak to everyone who can read the repository and its history.",
      "Reference the key from the environment (os.environ/NAME, ${NAME}) or a secret store; rotate the key "
      "that was committed.")
def plaintext_key(config: GatewayConfig, view: PolicyView, as_of: date) -> list[Finding]:
    return [Finding("plaintext-key", f"{s.key}: a plaintext credential; use an environment reference", s.where)
            for s in config.secrets]

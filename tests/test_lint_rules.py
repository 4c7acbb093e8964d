"""lint-config rules on gateway configurations built here (harness.lint.model), judged against policy views
built from real scenario models: each rule flags what it names, and only that."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from harness.core.model import FailClosed, FallbackTarget, Route, TrustExceptions
from harness.lint.model import (
    ANY_FAILURE,
    Deployment,
    FallbackEdge,
    Finding,
    GatewayConfig,
    Secret,
    Setting,
    Where,
)
from harness.lint.model import Route as ConfigRoute
from harness.lint.policy_view import PolicyView, ProviderFacts
from harness.lint.rules import RULES, identity_of, policy_routes, run_rules

FILE = Path("gw.yaml")
OUTAGE: frozenset[int | str] = frozenset({429, 500, 502, 503, 504})
TODAY = date(2026, 6, 1)


def at(line: int) -> Where:
    return Where(FILE, line, 3)


def dep(name: str, line: int = 1, **kw: object) -> Deployment:
    return Deployment(name=name, provider=name, where=at(line), **kw)  # type: ignore[arg-type]


def target(name: str, **kw: object) -> FallbackTarget:
    return FallbackTarget(target=name, equivalence="equivalent", approved_by="sec", approval_ref="CHG-1",
                          **kw)  # type: ignore[arg-type]


def view(fallbacks: list[FallbackTarget] | None = None, *, same: tuple[str, ...] = ("identity", "region", "tools"),
         closed: tuple[str, ...] = (), route_classes: dict[str, frozenset[str]] | None = None,
         fallback_on: tuple[int | str, ...] = (429, 500, 502, 503, 504, "timeout"), failback: float = 10,
         max_attempts: int = 3, governed: bool = False, route_request_classes: list[str] | None = None) -> PolicyView:
    route = Route(primary="gpt-eu", fallbacks=fallbacks if fallbacks is not None else [target("claude-eu")],
                  request_classes=route_request_classes)
    closed_by_route = {}
    if route_classes is not None:
        closed_by_route = {r: frozenset(c for c in cs if c in closed) for r, cs in route_classes.items()}
    return PolicyView(
        source="policy/reg.yaml", drill=None, checks=frozenset(), variants={"chat": [route]},
        route_where={("chat", "gpt-eu"): "policy/reg.yaml:10:3"},
        target_where={("chat", "gpt-eu", t.target): f"policy/reg.yaml:{12 + i}:7"
                      for i, t in enumerate(route.fallbacks)},
        fallback_on=frozenset(fallback_on), trust_same=frozenset(same),
        fail_closed=FailClosed(request_classes=list(closed)), failback_within_s=failback,
        max_upstream_attempts=max_attempts, governed=governed,
        providers={"gpt-eu": ProviderFacts("svc-eu", "eu"), "claude-eu": ProviderFacts("svc-eu", "eu"),
                   "gpt-us": ProviderFacts("svc-us", "us")},
        route_classes=route_classes, closed_by_route=closed_by_route)


def config(*targets: str, trigger: frozenset[int | str] | None = None, settings: list[Setting] | None = None,
           edge_classes: frozenset[str] | None = None, excluded: frozenset[str] = frozenset(),
           route_classes: frozenset[str] | None = None, route: str = "chat") -> GatewayConfig:
    primary = dep("gpt-eu", 2)
    c = GatewayConfig(kind="test", path=FILE)
    c.routes[route] = ConfigRoute(route, (primary,), at(2), request_classes=route_classes)
    for i, name in enumerate(targets):
        c.edges.append(FallbackEdge(route=route, source=None, target=dep(name, 5), via="fallbacks", where=at(20 + i),
                                    trigger=OUTAGE if trigger is None else trigger, request_classes=edge_classes,
                                    excluded_classes=excluded))
    c.settings.extend(settings or [])
    return c


def rules_of(findings: list[Finding]) -> list[str]:
    return sorted(f.rule for f in findings)


def test_every_rule_declares_its_check_and_fix():
    assert set(RULES) == {"fallback-unapproved", "trust-envelope", "fail-closed-reachable", "content-policy-fallback",
                          "retries-unbounded", "cooldown-over-failback", "plaintext-key"}
    for rule in RULES.values():
        assert rule.check and rule.short and rule.full and rule.fix


def test_an_approved_same_envelope_fallback_has_no_finding():
    assert run_rules(config("claude-eu"), view(), TODAY) == []


def test_an_unapproved_target_names_the_approved_ones_and_the_registry_entry():
    [finding] = [f for f in run_rules(config("gpt-us"), view(), TODAY) if f.rule == "fallback-unapproved"]
    assert finding.where == at(20)
    assert "gpt-us is not an approved target (approved: claude-eu)" in finding.message
    assert finding.registry_entry == "policy/reg.yaml:10:3 (chat: gpt-eu -> claude-eu)"


def test_a_route_the_policy_does_not_have_is_unapproved():
    findings = run_rules(config("claude-eu", route="assist"), view(), TODAY)
    assert rules_of(findings) == ["fallback-unapproved"]
    assert "no route assist with primary gpt-eu" in findings[0].message


def test_an_expired_approval_is_unapproved_with_its_date_and_an_overdue_review_only_warns():
    expired = view([target("claude-eu", expires=date(2026, 1, 31))])
    [finding] = run_rules(config("claude-eu"), expired, TODAY)
    assert finding.rule == "fallback-unapproved" and finding.level == "error"
    assert "expired on 2026-01-31" in finding.message
    assert finding.registry_entry == "policy/reg.yaml:12:7 (chat: gpt-eu -> claude-eu)"
    overdue = view([target("claude-eu", review_by=date(2026, 3, 1))])
    [warning] = run_rules(config("claude-eu"), overdue, TODAY)
    assert warning.level == "warning" and "overdue" in warning.message and "2026-03-01" in warning.message


def test_an_incomplete_registry_approval_is_unapproved_only_when_governed():
    assert run_rules(config("claude-eu"), view(governed=False), TODAY) == []
    [finding] = run_rules(config("claude-eu"), view(governed=True), TODAY)
    assert "incomplete" in finding.message


def test_a_class_restricted_approval_is_unapproved_for_the_other_classes_of_the_drill():
    restricted = [target("claude-eu", request_classes=["batch"])]
    mix = {"chat": frozenset({"batch", "chat"})}
    [finding] = run_rules(config("claude-eu"), view(restricted, route_classes=mix), TODAY)
    assert "approved only for request classes batch, but chat can take it" in finding.message
    # A conditional edge only batch takes is fine.
    assert run_rules(config("claude-eu", edge_classes=frozenset({"batch"})), view(restricted, route_classes=mix),
                     TODAY) == []


def test_trust_envelope_flags_identity_and_region_unless_an_exception_allows_them():
    exceptional = target("gpt-us", trust_exceptions=TrustExceptions(allow=["region"], reason="dr", approval_ref="S"))
    findings = run_rules(config("gpt-us"), view([exceptional]), TODAY)
    assert rules_of(findings) == ["trust-envelope"]
    assert "identity is svc-us, the primary's svc-eu" in findings[0].message
    assert run_rules(config("gpt-us"), view([exceptional], same=("region",)), TODAY) == []


def test_the_key_a_deployment_sends_is_its_identity():
    v = view()
    # The claude-eu deployment configured with gpt-us's key is gpt-us's identity.
    swapped = Deployment("claude-eu", "claude-eu", at(5), key_ref="{providers.gpt-us.key}")
    assert identity_of(swapped, v) == "svc-us"
    assert identity_of(Deployment("x", None, at(5), key_ref="{identities.svc-eu.key}"), v) == "svc-eu"
    assert identity_of(Deployment("x", None, at(5), key_ref="os.environ/KEY_X"), v) == "os.environ/KEY_X"
    c = config("claude-eu")
    c.edges[0] = FallbackEdge("chat", None, swapped, "fallbacks", at(20), trigger=OUTAGE)
    assert rules_of(run_rules(c, v, TODAY)) == ["trust-envelope"]


def test_unknown_topology_falls_back_to_the_config_fields():
    v = view()
    c = config()
    c.routes["chat"] = ConfigRoute("chat", (Deployment("a", None, at(2), region="eu-west-1"),), at(2))
    c.edges.append(FallbackEdge("chat", None, Deployment("b", None, at(5), region="us-east-1"), "fallbacks", at(20)))
    findings = [f for f in run_rules(c, v, TODAY) if f.rule == "trust-envelope"]
    assert ["region is us-east-1, the primary's eu-west-1" in f.message for f in findings] == [True]


def test_fail_closed_classes_reaching_a_fallback_are_flagged_unless_excluded():
    mix = {"chat": frozenset({"chat", "regulated"})}
    findings = run_rules(config("claude-eu"), view(closed=("regulated",), route_classes=mix), TODAY)
    assert rules_of(findings) == ["fail-closed-reachable"]
    assert "request class regulated must fail closed" in findings[0].message
    for kept_out in (config("claude-eu", excluded=frozenset({"regulated"})),
                     config("claude-eu", edge_classes=frozenset({"chat"})),
                     config("claude-eu", route_classes=frozenset({"chat"}))):
        assert run_rules(kept_out, view(closed=("regulated",), route_classes=mix), TODAY) == []
    # The drill sends regulated requests to another route: this one cannot reach them.
    assert run_rules(config("claude-eu"), view(closed=("regulated",), route_classes={"chat": frozenset({"chat"})}),
                     TODAY) == []
    # Without a drill, the policy's fail-closed classes may use any route.
    assert rules_of(run_rules(config("claude-eu"), view(closed=("regulated",)), TODAY)) == ["fail-closed-reachable"]


def test_content_policy_fallback_by_trigger_setting_and_any_failure():
    on_400 = config("claude-eu", trigger=frozenset({400, 503}))
    assert rules_of(run_rules(on_400, view(), TODAY)) == ["content-policy-fallback"]
    # "any failure" without a setting that gates 400s: a refusal is rerouted (Portkey without on_status_codes).
    assert rules_of(run_rules(config("claude-eu", trigger=ANY_FAILURE), view(), TODAY)) == ["content-policy-fallback"]
    off = Setting("fallback_on_content_policy", False, at(30), route=None)
    assert run_rules(config("claude-eu", trigger=ANY_FAILURE, settings=[off]), view(), TODAY) == []
    on = Setting("fallback_on_content_policy", True, at(30), route="chat", default=True)
    [finding] = run_rules(config("claude-eu", trigger=ANY_FAILURE, settings=[on]), view(), TODAY)
    assert finding.where == at(30) and "(by default)" in finding.message
    unservable = Setting("fallback_on_unservable", True, at(31))
    assert rules_of(run_rules(config("claude-eu", trigger=ANY_FAILURE, settings=[off, unservable]), view(),
                              TODAY)) == ["content-policy-fallback"]
    # The policy may allow it.
    assert run_rules(on_400, view(fallback_on=(400, 503)), TODAY) == []


def test_retries_times_deployments_against_the_budget_and_the_gateways_own_cap():
    gated = Setting("fallback_on_content_policy", False, at(30))
    three = Setting("attempts_per_deployment", 3, at(40))
    [finding] = run_rules(config("claude-eu", settings=[gated, three]), view(), TODAY)
    assert finding.rule == "retries-unbounded" and finding.where == at(40)
    assert "up to 6 upstream calls per request (3 per deployment x 2 deployments)" in finding.message
    cap = Setting("max_attempts_per_request", 3, at(41))
    assert run_rules(config("claude-eu", settings=[gated, three, cap]), view(), TODAY) == []
    assert run_rules(config("claude-eu", settings=[gated, three]), view(max_attempts=6), TODAY) == []


def test_a_cooldown_longer_than_failback_is_one_finding_at_the_setting():
    gated = Setting("fallback_on_content_policy", False, at(30))
    c = config("claude-eu", settings=[gated, Setting("cooldown_s", 60.0, at(50), default=True)])
    c.routes["other"] = ConfigRoute("other", (dep("gpt-eu"),), at(3))
    [finding] = run_rules(c, view(), TODAY)
    assert finding.rule == "cooldown-over-failback" and finding.where == at(50)
    # "other" serves no route of the policy: no client reaches it, so its cooldown holds no route back
    assert finding.message.startswith("chat: ") and "60 s (the gateway's default)" in finding.message
    ok = config("claude-eu", settings=[gated, Setting("cooldown_s", 10.0, at(50))])
    assert run_rules(ok, view(), TODAY) == []


def test_plaintext_keys_are_findings_without_a_registry_entry():
    gated = Setting("fallback_on_content_policy", False, at(30))
    c = config("claude-eu", settings=[gated])
    c.secrets.append(Secret(at(7), "model_list[0].litellm_params.api_key"))
    [finding] = run_rules(c, view(), TODAY)
    assert finding.rule == "plaintext-key" and finding.where == at(7) and finding.registry_entry is None


def test_a_wildcard_route_is_every_route_the_config_does_not_name():
    v = view(route_classes={"chat": frozenset({"chat"}), "assist": frozenset({"chat"})})
    c = config("claude-eu", route="*")
    assert policy_routes(c, v, "*") == ["assist", "chat"]
    c.routes["assist"] = ConfigRoute("assist", (dep("gpt-eu"),), at(3))
    assert policy_routes(c, v, "*") == ["chat"]
    assert policy_routes(c, v, "chat") == ["chat"]


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_each_rule_is_documented_with_its_check(rule_id):
    doc = (Path(__file__).resolve().parent.parent / "docs" / "lint-config.md").read_text()
    assert f'<a id="{rule_id}"></a>' in doc
    check = RULES[rule_id].check
    assert f"`{check}`" in doc if check != "none" else "none (it is not a runtime behaviour)" in doc


def test_a_cooldown_sends_every_tenant_to_a_target_approved_for_some():
    mix = {"chat": frozenset({"chat"})}
    v = view([target("claude-eu", tenants=["globex"])], route_classes=mix)
    v = PolicyView(**{**v.__dict__, "route_tenants": {"chat": frozenset({"acme", "globex"})}})
    cooled = config("claude-eu", settings=[Setting("cooldown_s", 1.0, at(50), route="chat")])
    [finding] = run_rules(cooled, v, TODAY)
    assert finding.rule == "fallback-unapproved"
    assert "approved only for tenants globex, but while the primary cools down (1 s" in finding.message
    assert "acme" in finding.message
    # Without a cooldown only the requests that failed move: the drill decides whose fail.
    assert run_rules(config("claude-eu", settings=[Setting("cooldown_s", 0.0, at(50))]), v, TODAY) == []

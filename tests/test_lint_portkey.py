"""lint-config on Portkey configs: the parser's facts, and findings that are exactly what the runtime shows.

The runtime truth is the pinned verdicts of the Portkey drills (tests/test_gateway_portkey.py,
test_gateway_capability.py, test_gateway_providers.py, proven by real Portkey 1.15.2 runs in CI). A finding
of rule X on config C must name a drill that runs C and whose pinned verdict for X's check is fail; a config
whose drills all pass has no finding. FINDINGS below is that table, written out; a test derives it again from
the pinned verdicts, so a changed verdict (or a new drill) is noticed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import InputError
from harness.lint.model import ANY_FAILURE
from harness.lint.portkey import ANY_ROUTE, parse
from harness.scenario.loader import load_scenario
from tests import test_gateway_capability, test_gateway_portkey, test_gateway_providers

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "fixtures" / "gateways" / "portkey"
LINT = ROOT / "fixtures" / "lint" / "portkey"
OUTAGE = frozenset({429, 500, 502, 503, 504})

# The check each rule is demonstrated by (the spec's table; harness.lint.rules.RULES says the same).
CHECK = {"fallback-unapproved": "approved_targets", "trust-envelope": "trust_boundary",
         "fail-closed-reachable": "fail_closed", "content-policy-fallback": "trigger_conditions",
         "retries-unbounded": "attempt_budget", "cooldown-over-failback": "reversible"}

# config (relative to fixtures/gateways/portkey) -> rule -> the drills that demonstrate it (pinned fail).
FINDINGS: dict[str, dict[str, set[str]]] = {
    "fallback.json": {"content-policy-fallback": {"portkey-content-policy-refusal"},
                      "fail-closed-reachable": {"portkey-regional-outage", "portkey-fail-closed-class"}},
    "fallback-on-outage-codes.json": {},
    "fail-closed-by-route.json": {},
    "capability/context-fallback.json": {"content-policy-fallback": {"portkey-context-overflow"}},
    "capability/context-on-status-codes.json": {},
    "providers/content-policy.json": {"content-policy-fallback": {"portkey-content-policy-providers"}},
    "providers/content-policy-on-status-codes.json": {},
    "providers/anthropic-retry.json": {},
    "providers/azure-anthropic.json": {},
    "providers/azure-anthropic-as-documented.json": {},
    "providers/bedrock-azure.json": {},
    "providers/gemini.json": {},
}

# Warnings: true of the file, judged against the policy of a drill that runs it, but no drill of that config
# takes the path, so lint reports them at level warning, without a scenario. config -> rule -> why it is true.
_ANY_STATUS = ("a fallback without on_status_codes falls back on any non-2xx in Portkey 1.15.2: a 400 refusal and "
               "a request the primary cannot serve are rerouted; no drill of this config sends either")
_UNSERVABLE = ("without on_status_codes a 400 for a request the primary cannot serve (an unsupported parameter, an "
               "image) is rerouted; the drills of this config send refusals or outages, none an unservable request")
_HAIKU = ("haiku-eu answers azure / gemini failures under anthropic-eu's key with no trust exception; the drill "
          "does not run trust_boundary")
WARNINGS: dict[str, dict[str, str]] = {
    "fallback.json": {"content-policy-fallback": _UNSERVABLE},
    "providers/content-policy.json": {"content-policy-fallback": _UNSERVABLE, "trust-envelope": _HAIKU},
    "providers/content-policy-on-status-codes.json": {"trust-envelope": _HAIKU},
    "providers/azure-anthropic.json": {"content-policy-fallback": _ANY_STATUS},
    "providers/azure-anthropic-as-documented.json": {"content-policy-fallback": _ANY_STATUS},
    "providers/bedrock-azure.json": {"content-policy-fallback": _ANY_STATUS},
    "providers/gemini.json": {"content-policy-fallback": _ANY_STATUS},
    # retry attempts 2 on sonnet-eu: 3 + 1 calls on a retried status (> max_upstream_attempts 3), but the drill
    # injects Anthropic's 529, which Portkey's default retry.on_status_codes does not list (attempt_budget PASS).
    "providers/anthropic-retry.json": {"content-policy-fallback": _ANY_STATUS,
                                       "retries-unbounded": "sonnet-eu retries 2 more times on 429 / 5xx: 3 + 1 "
                                       "calls; the drill's 529 is not retried"},
}
UNEXERCISED = "; no drill of this config exercises it (harness scaffold writes one)"

_PINNED = (test_gateway_portkey.EXPECTED, test_gateway_capability.EXPECTED, test_gateway_providers.EXPECTED)


def _failing(name: str) -> set[str]:
    """The checks a drill's pinned verdict says fail."""
    for table in _PINNED:
        if name in table:
            verdicts = table[name][1]
            return {c for c, v in verdicts.items() if v == "fail"} if isinstance(verdicts, dict) else set(verdicts)
    raise AssertionError(f"{name}: no pinned verdict")


def _drills() -> dict[str, list[str]]:
    """config (relative to CONFIGS) -> the shipped drills that run it."""
    runs: dict[str, list[str]] = {}
    for path in sorted((ROOT / "scenarios" / "gateways").rglob("portkey-*.yaml")):
        scenario = load_scenario(path).scenario
        written = Path(scenario.gateway.config)
        config = (path.parent / written) if (path.parent / written).exists() else ROOT / written
        runs.setdefault(str(config.resolve().relative_to(CONFIGS)), []).append(path.stem)
    return runs


# -- (c) the table is the pinned runtime truth ------------------------------------------------------------------

def test_every_portkey_config_is_in_the_table():
    assert {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.json")} == set(FINDINGS)
    assert set(_drills()) == set(FINDINGS)


def test_table_is_derived_from_the_pinned_verdicts():
    derived = {config: {rule: {d for d in drills if check in _failing(d)}
                        for rule, check in CHECK.items() if any(check in _failing(d) for d in drills)}
               for config, drills in _drills().items()}
    assert derived == FINDINGS


def test_rules_are_demonstrated_by_the_checks_this_table_assumes():
    from harness.lint.rules import RULES
    assert {rule: RULES[rule].check for rule in CHECK} == CHECK


# -- (b) lint-config end to end ---------------------------------------------------------------------------------

def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "lint-config", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def _findings(config: str) -> list[dict]:
    result = _lint(str(CONFIGS / config), "--scenarios-dir", "scenarios", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert result.returncode == (1 if any(f["level"] == "error" for f in report["findings"]) else 0)
    return report["findings"]


@pytest.mark.parametrize("config", sorted(FINDINGS))
def test_lint_reports_exactly_what_the_drills_demonstrate(config):
    """Errors: exactly the rules the pinned verdicts demonstrate, each naming a drill that fails its check;
    warnings: exactly the WARNINGS table's rules, without a drill, saying so."""
    findings = _findings(config)
    errors = [f for f in findings if f["level"] == "error"]
    warnings = [f for f in findings if f["level"] == "warning"]
    assert {f["rule"] for f in errors} == set(FINDINGS[config])
    for finding in errors:
        assert finding["scenario"] and Path(finding["scenario"]).stem in FINDINGS[config][finding["rule"]], finding
        assert finding["check"] == CHECK[finding["rule"]]
    assert {f["rule"] for f in warnings} == set(WARNINGS.get(config, {}))
    for finding in warnings:
        assert not finding["scenario"] and finding["message"].endswith(UNEXERCISED), finding
        # a drill failing this rule's check is accounted for by an error of the rule (another path of it)
        failing = {c for d in _drills()[config] for c in _failing(d)}
        assert CHECK[finding["rule"]] not in failing or finding["rule"] in FINDINGS[config], finding
    assert len(errors) + len(warnings) == len(findings)


def test_unparseable_config_is_exit_2_with_file_line_column():
    result = _lint(str(LINT / "not-json.json"), "--format", "json")
    assert result.returncode == 2
    assert "not-json.json:4:43" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# -- (a) what the parser reads -----------------------------------------------------------------------------------

def _edges(config) -> set[tuple[str, str, str, frozenset, frozenset | None]]:
    return {(e.route, e.source.provider, e.target.provider, e.trigger, e.request_classes) for e in config.edges}


def _setting(config, name, route):
    found = [s for s in config.settings if s.name == name and s.route == route]
    assert len(found) == 1, (name, route, found)
    return found[0]


def test_fallback_without_status_codes_falls_back_on_anything_by_default():
    config = parse(CONFIGS / "fallback.json")
    assert config.kind == "portkey" and list(config.routes) == [ANY_ROUTE]
    route = config.routes[ANY_ROUTE]
    assert [p.provider for p in route.primaries] == ["gpt-eu"] and (route.where.line, route.where.column) == (2, 3)
    assert _edges(config) == {(ANY_ROUTE, "gpt-eu", "claude-eu", ANY_FAILURE, None)}
    edge = config.edges[0]
    assert edge.via == "portkey fallback" and edge.where.line == 6
    assert edge.target.name == "config.targets[1]" and edge.target.key_ref == "{providers.claude-eu.key}"
    assert edge.target.key_form == "placeholder" and edge.target.model == "claude-sonnet"
    for name in ("fallback_on_content_policy", "fallback_on_unservable"):
        setting = _setting(config, name, ANY_ROUTE)
        assert setting.value is True and setting.default and setting.where.line == 2
    assert _setting(config, "attempts_per_deployment", ANY_ROUTE).value == 1
    assert _setting(config, "cooldown_s", ANY_ROUTE).value == 0 and _setting(config, "cooldown_s", ANY_ROUTE).default
    assert config.secrets == []


def test_on_status_codes_is_the_trigger_and_keeps_refusals_on_the_primary():
    config = parse(CONFIGS / "fallback-on-outage-codes.json")
    assert _edges(config) == {(ANY_ROUTE, "gpt-eu", "claude-eu", OUTAGE, None)}
    setting = _setting(config, "fallback_on_content_policy", ANY_ROUTE)
    assert setting.value is False and not setting.default


def test_a_chain_is_approved_from_its_primary():
    config = parse(CONFIGS / "capability" / "context-fallback.json")
    assert _edges(config) == {(ANY_ROUTE, "gpt-eu", "small-eu", ANY_FAILURE, None),
                              (ANY_ROUTE, "gpt-eu", "long-eu", ANY_FAILURE, None)}
    assert _setting(config, "max_attempts_per_request", ANY_ROUTE).value == 3


def test_conditional_on_the_model_name_is_the_route_table():
    config = parse(CONFIGS / "fail-closed-by-route.json")
    assert set(config.routes) == {"chat-regulated", ANY_ROUTE}
    assert [p.provider for p in config.routes["chat-regulated"].primaries] == ["gpt-eu"]
    assert config.routes["chat-regulated"].where.line == 4
    assert _edges(config) == {(ANY_ROUTE, "gpt-eu", "claude-eu", OUTAGE, None)}
    providers = parse(CONFIGS / "providers" / "content-policy.json")
    assert set(providers.routes) == {"azure", "claude", "gemini", ANY_ROUTE}
    assert {(e.route, e.source.provider, e.target.provider) for e in providers.edges} == {
        ("azure", "azure-gpt-eu", "haiku-eu"), ("claude", "sonnet-eu", "haiku-eu"),
        ("gemini", "gemini-pro-eu", "haiku-eu"), (ANY_ROUTE, "azure-gpt-eu", "haiku-eu")}


def test_retry_attempts_are_per_target():
    config = parse(CONFIGS / "providers" / "anthropic-retry.json")
    attempts = _setting(config, "attempts_per_deployment", ANY_ROUTE)
    assert attempts.value == 3 and not attempts.default and attempts.where.line == 14
    assert _setting(config, "max_attempts_per_request", ANY_ROUTE).value == 4   # 3 on sonnet-eu + 1 on haiku-eu


def test_nested_strategies_classes_inherited_retry_and_keys():
    config = parse(LINT / "nested.json")   # tab-indented, as some editors write JSON
    assert set(config.routes) == {"chat-regulated", ANY_ROUTE}
    assert [p.provider for p in config.routes[ANY_ROUTE].primaries] == ["gpt-eu", "azure-eu"]
    batch = frozenset({"batch"})
    assert _edges(config) == {(ANY_ROUTE, source, target, ANY_FAILURE, classes)
                              for source in ("gpt-eu", "azure-eu")
                              for target, classes in (("cheap-us", batch), ("claude-eu", None))}
    # The root's retry (1) reaches the regulated route; gpt-eu's own (2) wins over it.
    assert _setting(config, "attempts_per_deployment", "chat-regulated").value == 2
    assert _setting(config, "attempts_per_deployment", ANY_ROUTE).value == 3
    assert _setting(config, "max_attempts_per_request", ANY_ROUTE).value == 5   # 3 (load-balanced) + 2
    deployments = {e.target.provider: e.target for e in config.edges} | {e.source.provider: e.source
                                                                          for e in config.edges}
    assert deployments["azure-eu"].key_form == "environment"     # a virtual key is a reference
    assert deployments["claude-eu"].key_form == "environment" and deployments["claude-eu"].region == "eu-central-1"
    assert deployments["cheap-us"].key_form == "plaintext"
    assert [(s.key, s.where.line, s.where.column) for s in config.secrets] == [
        ("targets[1].targets[1].targets[0].api_key", 22, 61)]


@pytest.mark.parametrize(("name", "where"), [("not-json.json", (4, 43)), ("unknown-then.json", (2, 96))])
def test_bad_config_names_file_line_column(name, where):
    with pytest.raises(InputError) as caught:
        parse(LINT / name)
    problem = caught.value.problems[0]
    assert (problem.line, problem.column) == where and problem.file.endswith(name) and problem.hint

"""lint-config on LiteLLM proxy configs: the parser's facts (routes, fallback edges with their triggers,
LiteLLM 1.110.2's defaults at the line they apply to), and the findings on every shipped config tied to the
runtime truth: the verdicts tests/test_gateway_{litellm,capability,providers}.py pin from real LiteLLM runs.

FINDINGS is derived from those pinned verdicts: a finding of rule R on config C names a scenario that runs C
and whose pinned verdict for R's check is fail; a config whose scenarios all pass has none. The link tests
import the pinned dicts, so changing a verdict there breaks a test here until the table follows.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import yaml

from harness.core.errors import InputError
from harness.lint.litellm import parse
from tests.conftest import ROOT, harness_cmd
from tests.test_gateway_capability import EXPECTED as CAPABILITY
from tests.test_gateway_litellm import EXPECTED as LITELLM
from tests.test_gateway_providers import EXPECTED as PROVIDERS

CONFIGS = ROOT / "fixtures" / "gateways" / "litellm"
EXTRA = ROOT / "fixtures" / "lint" / "litellm"
SCENARIOS = ROOT / "scenarios" / "gateways"

# rule -> the runtime check that demonstrates it (the shared spec's list); plaintext-key has none.
CHECK_OF = {"fallback-unapproved": "approved_targets", "trust-envelope": "trust_boundary",
            "fail-closed-reachable": "fail_closed", "content-policy-fallback": "trigger_conditions",
            "retries-unbounded": "attempt_budget", "cooldown-over-failback": "reversible", "plaintext-key": None}
RULE_OF = {check: rule for rule, check in CHECK_OF.items() if check}

# config (relative to fixtures/gateways/litellm) -> {(rule, the scenario that demonstrates it at run time)}
FINDINGS: dict[str, set[tuple[str, str]]] = {
    "governed.yaml": {("fail-closed-reachable", "litellm-fail-closed-class")},
    "cross-region.yaml": {("trust-envelope", "litellm-regional-outage-cross-region")},
    "defaults.yaml": {("retries-unbounded", "litellm-retry-storm"),
                      ("content-policy-fallback", "litellm-content-policy-refusal")},
    # the cooldown is per deployment: globex's failures move acme, approved for globex only, to the fallback
    "cooldown.yaml": {("fallback-unapproved", "litellm-tenant-outage")},
    # router-level cooldown_time loses to the upstream's Retry-After: unbounded
    "router-cooldown.yaml": {("cooldown-over-failback", "litellm-failback-after-recovery")},
    "fail-closed-route.yaml": set(),
    "capability/capability-blind.yaml": set(),      # capability_fit, equivalence: no lint rule (yet)
    "capability/capability-by-route.yaml": set(),
    "capability/context-generic.yaml": set(),       # capability_fit: no lint rule (yet)
    "capability/context-window.yaml": set(),
    "capability/schema-validation.yaml": set(),     # capability_fit: no lint rule (yet)
    "capability/unsupported-params.yaml": {("content-policy-fallback", "litellm-unsupported-params")},
    "capability/unsupported-params-governed.yaml": set(),
    "providers/anthropic-defaults.yaml": {("retries-unbounded", "litellm-anthropic-overloaded")},
    "providers/gemini-defaults.yaml": {("retries-unbounded", "litellm-gemini-exhausted")},
    "providers/azure-anthropic-defaults.yaml": {("retries-unbounded", "litellm-azure-anthropic-defaults")},
    "providers/azure-anthropic.yaml": set(),
    "providers/bedrock-azure.yaml": set(),
    "providers/capacity-governed.yaml": set(),
    "providers/content-policy-defaults.yaml": {("content-policy-fallback", "litellm-content-policy-providers")},
    "providers/content-policy-chains.yaml": {("content-policy-fallback", "litellm-content-policy-chains")},
    "providers/content-policy-governed.yaml": set(),
}
# Warnings: true of the file, judged against the policy of a drill that runs it, but no drill of that config
# takes the path (its faults do not exercise it), so lint reports them at level warning, without a scenario.
# config -> rule -> why it is true of the file.
_UNSERVABLE = ("fallback_on_unsupported_params is left at LiteLLM's default (true): a request the primary cannot "
               "serve (an unsupported parameter, an image) is rerouted; no drill of this config sends one")
_REFUSAL = ("the generic fallbacks chain with fallback_on_unsupported_params true also takes a 400 refusal; this "
            "config's drill injects an outage, not a refusal")
_REFUSAL_RETRIES = ("the router's 2 retries (and the OpenAI SDK's 2 inside each, for azure/) multiply over the "
                    "chain past max_upstream_attempts 3 on an outage; the drill injects refusals (a 400, not retried)")
_HAIKU = ("haiku-eu answers azure / gemini / bedrock failures under anthropic-eu's key (bedrock's also from region "
          "eu, not eu-central-1), with no trust exception; the drill does not run trust_boundary")
WARNINGS: dict[str, dict[str, str]] = {
    "defaults.yaml": {"content-policy-fallback": _UNSERVABLE},
    "providers/anthropic-defaults.yaml": {"content-policy-fallback": _UNSERVABLE + "; " + _REFUSAL},
    "providers/gemini-defaults.yaml": {"content-policy-fallback": _UNSERVABLE + "; " + _REFUSAL},
    "providers/azure-anthropic-defaults.yaml": {"content-policy-fallback": _UNSERVABLE + "; " + _REFUSAL},
    "providers/content-policy-defaults.yaml": {"content-policy-fallback": _UNSERVABLE,
                                               "retries-unbounded": _REFUSAL_RETRIES, "trust-envelope": _HAIKU},
    "providers/content-policy-chains.yaml": {"content-policy-fallback": _UNSERVABLE,
                                             "retries-unbounded": _REFUSAL_RETRIES, "trust-envelope": _HAIKU},
    "providers/content-policy-governed.yaml": {"trust-envelope": _HAIKU},
}
UNEXERCISED = "; no drill of this config exercises it (harness scaffold writes one)"
# Checks with no lint rule: a failure of these is not expected as a finding.
NO_RULE = {"capability_fit", "equivalence", "steady_state", "logged", "response_integrity", "fault_effective"}


def _pinned() -> dict[str, dict[str, str]]:
    """scenario -> {check: pinned verdict}, from the three gateway test modules."""
    verdicts = {name: dict(v) for name, (_, v) in LITELLM.items()}
    verdicts |= {name: dict(v) for name, (_, v) in PROVIDERS.items() if name.startswith("litellm")}
    for name, (_, failing) in CAPABILITY.items():
        if name.startswith("litellm"):
            checks = yaml.safe_load((SCENARIOS / "capability" / f"{name}.yaml").read_text())["checks"]
            verdicts[name] = {c: "fail" if c in failing else "pass" for c in checks}
    return verdicts


def _config_of() -> dict[str, str]:
    """scenario -> the config it runs (relative to fixtures/gateways/litellm), as the scenario file says."""
    found = {}
    for path in sorted(SCENARIOS.rglob("litellm-*.yaml")):
        gateway = yaml.safe_load(path.read_text())["gateway"]
        found[path.stem] = (path.parent / gateway["config"]).resolve().relative_to(CONFIGS).as_posix()
    return found


PINNED = _pinned()
CONFIG_OF = _config_of()


# -- (c) the table is the pinned runtime truth ---------------------------------------------------------------

def test_every_shipped_config_has_a_row():
    assert set(FINDINGS) == {p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml")}
    assert set(CONFIG_OF) == set(PINNED)  # every LiteLLM drill is pinned, and only those


@pytest.mark.parametrize("config", sorted(FINDINGS))
def test_each_finding_is_a_failing_pinned_verdict_of_a_drill_of_that_config(config):
    for rule, scenario in FINDINGS[config]:
        assert CONFIG_OF[scenario] == config, (rule, scenario)
        assert PINNED[scenario].get(CHECK_OF[rule]) == "fail", (rule, scenario, PINNED[scenario])


@pytest.mark.parametrize("config", sorted(FINDINGS))
def test_each_failing_pinned_verdict_with_a_rule_is_a_finding(config):
    expected = {(RULE_OF[check], scenario) for scenario, verdicts in PINNED.items() if CONFIG_OF[scenario] == config
                for check, verdict in verdicts.items() if verdict == "fail" and check in RULE_OF}
    assert expected == FINDINGS[config]
    # A check no rule covers may fail (named in NO_RULE); any other failing check must have a rule.
    assert all(check in RULE_OF or check in NO_RULE for verdicts in PINNED.values()
               for check, verdict in verdicts.items() if verdict == "fail")


def test_governed_configs_have_no_error_level_finding():
    governed = {config for config in FINDINGS if all(
        v == "pass" for s, verdicts in PINNED.items() if CONFIG_OF[s] == config for v in verdicts.values())}
    assert "governed.yaml" not in governed  # litellm-fail-closed-class runs it and fails fail_closed
    assert {"fail-closed-route.yaml", "providers/content-policy-governed.yaml", "providers/capacity-governed.yaml",
            "capability/capability-by-route.yaml"} <= governed
    for config in governed:  # warnings may stand: true of the file, no drill takes the path
        assert not FINDINGS[config], config


# -- (a) what the parser reads ------------------------------------------------------------------------------

def _setting(config, name, route):
    found = [s for s in config.settings if s.name == name and s.route == route]
    assert len(found) == 1, (name, route, config.settings)
    return found[0]


def test_governed_config():
    config = parse(CONFIGS / "governed.yaml")
    assert list(config.routes) == ["chat", "chat-fallback"]
    chat = config.routes["chat"]
    assert [(d.name, d.provider, d.key_form, d.key_ref) for d in chat.primaries] == [
        ("gpt-eu", "gpt-eu", "placeholder", "{providers.gpt-eu.key}")]
    assert chat.where.line == 14
    (edge,) = config.edges
    assert (edge.route, edge.source, edge.target.name, edge.via, edge.where.line) == (
        "chat", None, "claude-eu", "fallbacks", 23)
    # fallback_on_unsupported_params: false: a 400 stays with the client; an outage and an overflow fall back.
    assert {503, 429, "timeout", "context_length"} <= edge.trigger and not {400, "content_policy"} & edge.trigger
    unservable = config.setting("fallback_on_unservable", "chat")
    assert (unservable.value, unservable.where.line, unservable.default) == (False, 25, False)
    attempts = _setting(config, "attempts_per_deployment", "chat")
    assert (attempts.value, attempts.default) == (1, False)
    cooldown = _setting(config, "cooldown_s", "chat")
    assert (cooldown.value, cooldown.where.line, cooldown.default) == (0.0, 14, True)  # a lone deployment
    assert config.secrets == []


def test_defaults_config_states_litellms_defaults_at_the_route():
    config = parse(CONFIGS / "defaults.yaml")
    attempts = _setting(config, "attempts_per_deployment", "chat")
    # (1 + the router's num_retries 2) x (1 + the OpenAI SDK's max_retries 2): a bound, measured 3 for a 503
    assert (attempts.value, attempts.where.line, attempts.default) == (9, 10, True)
    unservable = _setting(config, "fallback_on_unservable", "chat")
    assert (unservable.value, unservable.where.line, unservable.default) == (True, 10, True)
    (edge,) = config.edges
    assert {400, "content_policy"} <= edge.trigger


def test_cooldowns():
    own = _setting(parse(CONFIGS / "cooldown.yaml"), "cooldown_s", "chat")
    assert (own.value, own.where.line, own.where.column, own.default) == (1.0, 14, 22, False)
    # router-level cooldown_time only: the upstream's Retry-After decides, so nothing bounds it
    router = _setting(parse(CONFIGS / "router-cooldown.yaml"), "cooldown_s", "chat")
    assert (math.isinf(router.value), router.where.line, router.default) == (True, 19, False)


def test_retries_by_provider_api():
    anthropic = parse(CONFIGS / "providers" / "anthropic-defaults.yaml")
    assert _setting(anthropic, "attempts_per_deployment", "chat").value == 3  # no SDK retries on anthropic/
    azure = parse(CONFIGS / "providers" / "azure-anthropic-defaults.yaml")
    assert _setting(azure, "attempts_per_deployment", "chat").value == 9       # azure/ goes through the OpenAI SDK
    governed = parse(CONFIGS / "providers" / "capacity-governed.yaml")
    assert {_setting(governed, "attempts_per_deployment", r).value for r in ("gemini", "claude")} == {1}


def test_context_window_and_content_policy_chains():
    window = parse(CONFIGS / "capability" / "context-window.yaml")
    by_via = {e.via: e for e in window.edges}
    assert (by_via["context_window_fallbacks"].target.name, by_via["context_window_fallbacks"].where.line,
            by_via["context_window_fallbacks"].trigger) == ("long-eu", 21, frozenset({"context_length"}))
    assert "context_length" not in by_via["fallbacks"].trigger  # an overflow follows its own chain only
    generic = parse(CONFIGS / "capability" / "context-generic.yaml")
    assert "context_length" in generic.edges[0].trigger
    chains = parse(CONFIGS / "providers" / "content-policy-chains.yaml")
    policy = [e for e in chains.edges if e.via == "content_policy_fallbacks"]
    assert {(e.route, e.target.name, e.target.provider) for e in policy} == {
        ("azure", "haiku-eu", "haiku-eu"), ("claude", "haiku-eu@claude", "haiku-eu"),
        ("gemini", "haiku-eu@gemini", "haiku-eu"), ("bedrock", "haiku-eu@bedrock", "haiku-eu")}
    assert all(e.trigger == frozenset({"content_policy"}) and e.where.line in (44, 45) for e in policy)
    # Azure's content_filter 400 takes the generic chain unless content_policy_fallbacks names the group
    defaults = {e.route: e for e in parse(CONFIGS / "providers" / "content-policy-defaults.yaml").edges}
    governed = {e.route: e for e in parse(CONFIGS / "providers" / "content-policy-governed.yaml").edges}
    assert "content_policy" in defaults["azure"].trigger and "content_policy" not in governed["azure"].trigger
    assert all(e.via == "fallbacks" for e in governed.values())  # the empty chain adds no edge


def test_provider_region_and_keys_as_written():
    bedrock = parse(CONFIGS / "providers" / "bedrock-azure.yaml").routes["chat"].primaries[0]
    # the region is a placeholder: the scenario's provider says it
    assert (bedrock.provider, bedrock.key_ref, bedrock.key_form, bedrock.region) == (
        "claude-bedrock-eu", "{providers.claude-bedrock-eu.key}", "placeholder", None)
    regulated = parse(CONFIGS / "fail-closed-route.yaml").routes["chat-regulated"].primaries[0]
    assert (regulated.name, regulated.provider) == ("gpt-eu@chat-regulated", "gpt-eu")  # mapped by its api_base


def test_secrets_default_fallbacks_and_retry_settings():
    config = parse(EXTRA / "secrets-and-defaults.yaml")
    assert [(s.key, s.where.line) for s in config.secrets] == [
        ("model_list[0].litellm_params.api_key", 6), ("general_settings.master_key", 22)]
    assert [d.key_form for d in config.routes["chat"].primaries] == ["plaintext", "environment"]
    (edge,) = config.edges  # backup is the default chain of every other group, not of itself
    assert (edge.route, edge.target.name, edge.target.region, edge.via, edge.where.line) == (
        "chat", "gemini-eu", "europe-west4", "default_fallbacks", 17)
    # retry_policy allows 4 for a rate limit (more than litellm_settings' 3), the SDK 1: (1 + 4) x (1 + 1)
    assert _setting(config, "attempts_per_deployment", "chat").value == 10
    assert _setting(config, "attempts_per_deployment", "backup").value == 5
    # two deployments in the group: LiteLLM cools one down on a 429, for as long as Retry-After says
    cooldown = _setting(config, "cooldown_s", "chat")
    assert math.isinf(cooldown.value) and cooldown.default
    assert _setting(config, "cooldown_s", "backup").value == 0.0


@pytest.mark.parametrize(("name", "where", "text"), [
    ("unknown-group.yaml", "unknown-group.yaml:5:23: router_settings.fallbacks[0].chat[0]",
     "names 'chat-fallbak', which no deployment's model_name is"),
    ("broken.yaml", "broken.yaml:4:16", "YAML syntax error"),
])
def test_bad_config_names_file_line_and_key(name, where, text):
    with pytest.raises(InputError) as caught:
        parse(EXTRA / name)
    message = str(caught.value)
    assert where in message and text in message and "hint:" in message


def test_bad_config_through_the_cli_exits_2_without_a_traceback():
    if importlib.util.find_spec("harness.lint.command") is None:
        pytest.skip("harness.lint.command (helper L) has not landed yet")
    done = harness_cmd("lint-config", str(EXTRA / "unknown-group.yaml"), "--kind", "litellm")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown-group.yaml:5:23" in done.stderr + done.stdout and "Traceback" not in done.stderr


# -- (b) lint-config end to end gives exactly the table --------------------------------------------------------

def _findings(report: object) -> list[dict]:
    if isinstance(report, dict):
        report = report.get("findings", [])
    assert isinstance(report, list), report
    return report


@pytest.fixture(scope="module")
def linted() -> dict[str, list[dict]]:
    if importlib.util.find_spec("harness.lint.command") is None or importlib.util.find_spec(
            "harness.lint.rules") is None:
        pytest.skip("harness.lint.command / harness.lint.rules (helper L) have not landed yet")
    out = {}
    for config in sorted(FINDINGS):
        done = harness_cmd("lint-config", str(CONFIGS / config), "--format", "json", "--scenarios-dir", "scenarios")
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stdout + done.stderr
        findings = _findings(json.loads(done.stdout))
        assert done.returncode == (1 if any(f["level"] == "error" for f in findings) else 0), done.stdout
        out[config] = findings
    return out


@pytest.mark.parametrize("config", sorted(FINDINGS))
def test_lint_config_reports_exactly_the_demonstrated_findings(linted, config):
    """Errors: exactly the (rule, drill) the pinned verdicts say; warnings: exactly the WARNINGS table's rules,
    each without a drill and saying so."""
    got = linted[config]
    errors = [f for f in got if f["level"] == "error"]
    warnings = [f for f in got if f["level"] == "warning"]
    assert {(f["rule"], Path(str(f["scenario"])).stem) for f in errors} == FINDINGS[config], json.dumps(got, indent=1)
    assert all(f["scenario"] for f in errors), json.dumps(errors, indent=1)  # every config here has a drill
    assert {f["rule"] for f in warnings} == set(WARNINGS.get(config, {})), json.dumps(got, indent=1)
    assert all(not f["scenario"] and f["message"].endswith(UNEXERCISED) for f in warnings), json.dumps(warnings)
    assert len(errors) + len(warnings) == len(got)

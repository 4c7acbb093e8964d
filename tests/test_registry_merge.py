"""Merge rules of a scenario that references a registry (docs/policy-registry.md): narrowing, extending and
tightening load; loosening, a missing or malformed registry are refused naming both files and lines, exit 2."""

from pathlib import Path

import pytest

from harness.core.errors import InputError
from harness.policy.merge import scenario_only
from harness.policy.registry import load_registry
from harness.scenario import load_scenario
from tests.conftest import ROOT, harness_cmd

MINIMAL = ROOT / "fixtures" / "registry" / "minimal.yaml"
NARROW = ROOT / "fixtures" / "registry" / "narrow.yaml"
BAD = sorted(p for p in (ROOT / "fixtures" / "bad_registry").glob("*.yaml") if not p.name.endswith(".registry.yaml"))

HEAD = """version: 1
name: merge-drill
identities:
  svc-eu: {key: "sk-test-svc-eu"}
providers:
  gpt-eu: {model: gpt-4o, region: eu, identity: svc-eu, data_classes: [internal]}
  claude-eu: {model: claude-sonnet, region: eu, identity: svc-eu, data_classes: [internal]}
  azure-gpt-eu: {model: gpt-4o, region: eu, identity: svc-eu, data_classes: [internal]}
gateway: {kind: reference}
"""
TRAFFIC = """traffic:
  rate_per_s: 5
  duration_s: 5
  mix: [{route: chat, tenant: acme, region: eu, request_class: chat, data_class: internal}]
"""


def _drill(tmp_path: Path, policy: str, registry: Path = MINIMAL, providers: str = "") -> Path:
    text = HEAD.replace("gateway:", providers + "gateway:") if providers else HEAD
    path = tmp_path / "drill.yaml"
    path.write_text(text + f"policy:\n  file: {registry}\n" + policy + TRAFFIC)
    return path


def _problems(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    return str(caught.value)


def test_registry_api_entries_and_variants():
    registry = load_registry(MINIMAL)
    assert registry.name == "test-org"
    assert [(e.route, e.primary, e.target.target) for e in registry.entries()] == [
        ("chat", "gpt-eu", "claude-eu"), ("assist", "gpt-eu", "claude-eu"), ("assist", "azure-gpt-eu", "gpt-eu")]
    assert registry.entries()[0].where == "fixtures/registry/minimal.yaml:12:9"
    assert registry.entries()[0].target.mechanism_owner == "platform-gateway"  # from defaults
    assert registry.route_where[("assist", "azure-gpt-eu")] == "fixtures/registry/minimal.yaml:25:7"
    assert registry.variant("assist", "azure-gpt-eu") is not None and registry.variant("assist", "nope") is None
    assert registry.policy_sections["reversibility"].failback_within_s == 10
    assert registry.policy_sections["limits"].max_upstream_attempts == 3  # omitted: the model's default


def test_omitted_routes_take_the_registry_variant_of_the_declared_primary(tmp_path):
    policy = load_scenario(_drill(tmp_path, "")).scenario.policy
    assert policy.registry == str(MINIMAL)
    [target] = policy.routes["chat"].fallbacks
    assert (target.target, target.equivalence, target.approval_ref) == ("claude-eu", "non-equivalent", "CHG-1234")
    assert target.approved_in == "fixtures/registry/minimal.yaml:12:9"
    assert policy.fail_closed.request_classes == ["regulated"]


def test_a_route_with_several_declared_primaries_needs_one_chosen(tmp_path):
    path = _drill(tmp_path, "")
    path.write_text(path.read_text().replace("route: chat", "route: assist"))
    assert "route 'assist': the scenario declares several of its primaries" in (text := _problems(path))
    assert "routes: {assist: {primary: P}}" in text
    path.write_text(path.read_text().replace("  file:", "  routes: {assist: {primary: azure-gpt-eu}}\n  file:"))
    assert [f.target for f in load_scenario(path).scenario.policy.routes["assist"].fallbacks] == ["gpt-eu"]


def test_narrowing_an_approval_loads(tmp_path):
    policy = load_scenario(_drill(tmp_path, (
        "  routes:\n    chat:\n      request_classes: [chat]\n      fallbacks:\n"
        "        - {target: claude-eu, tenants: [globex], degrades: [], trust_exceptions: {allow: [identity]},"
        " approval_ref: CHG-1234}\n"), registry=NARROW)).scenario.policy
    route = policy.routes["chat"]
    assert route.request_classes == ["chat"]
    [target] = route.fallbacks
    assert target.tenants == ["globex"] and target.degrades == [] and target.equivalence == "equivalent"
    assert target.trust_exceptions is not None and target.trust_exceptions.approval_ref == "SEC-1"


@pytest.mark.parametrize(("written", "message"), [
    ("{target: claude-eu, equivalence: non-equivalent}",
     "equivalence: non-equivalent loosens the registry (fixtures/registry/narrow.yaml:12:9 says equivalent)"),
    ("{target: claude-eu, degrades: [context, tools]}",
     "degrades: [context, tools] loosens the registry (fixtures/registry/narrow.yaml:13:9 allows only [context])"),
    ("{target: claude-eu, trust_exceptions: {allow: [identity, region]}}", "allows only [identity]"),
    ("{target: claude-eu, tenants: null}", "tenants: unscoped loosens the registry"),
    ("{target: claude-eu, approval_ref: CHG-9}", "CHG-9 differs from the registry's approval "
     "(fixtures/registry/narrow.yaml:17:9 says CHG-1234)"),
])
def test_loosening_an_approval_names_both_places(tmp_path, written, message):
    path = _drill(tmp_path, f"  routes:\n    chat:\n      fallbacks:\n        - {written}\n", registry=NARROW)
    text = _problems(path)
    assert message in text and f"{path}:" in text


@pytest.mark.parametrize(("written", "message"), [
    ("fallback_on: [429, 418]", "policy.fallback_on: [429, 418] loosens the registry"),
    ("limits: {max_upstream_attempts: 4}", "4 loosens the registry (fixtures/registry/minimal.yaml, by default, "
     "says 3)"),
    ("fail_closed: {request_classes: []}", "[] loosens the registry (fixtures/registry/minimal.yaml:6:15 says "
     "[regulated]): it drops [regulated]"),
    ("trust_boundary: {data_class_clearance: false}", "false loosens the registry"),
    ("logging: {within_s: 9}", "9 loosens the registry"),
])
def test_loosening_a_section_is_refused(tmp_path, written, message):
    assert message in _problems(_drill(tmp_path, f"  {written}\n"))


def test_tightening_sections_loads_and_keeps_the_rest(tmp_path):
    policy = load_scenario(_drill(tmp_path, "  fallback_on: [503]\n  reversibility: {failback_within_s: 4}\n"
                                  "  fail_closed: {request_classes: [regulated, batch]}\n")).scenario.policy
    assert policy.fallback_on == [503] and policy.reversibility.failback_within_s == 4
    assert policy.fail_closed.request_classes == ["regulated", "batch"]
    assert policy.limits.max_upstream_attempts == 3


def test_an_extension_is_approved_in_the_scenario_only(tmp_path):
    path = _drill(tmp_path, (
        "  routes:\n    chat:\n      primary: gpt-eu\n      fallbacks:\n        - {target: claude-eu}\n"
        "        - {target: mistral-eu, equivalence: non-equivalent, approved_by: team-lead, approval_ref: CHG-77}\n"),
        providers="  mistral-eu: {model: mistral, region: eu, identity: svc-eu, data_classes: [internal]}\n")
    policy = load_scenario(path).scenario.policy
    assert [f.target for f in policy.routes["chat"].fallbacks] == ["claude-eu", "mistral-eu"]
    assert scenario_only(policy, str(path)) == [("chat", "gpt-eu", "mistral-eu", f"{path}:18:11")]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_registry_input_is_refused_naming_file_and_line(path):
    expect = path.read_text().splitlines()[0].removeprefix("# expect: ")
    result = harness_cmd("validate", str(path.relative_to(ROOT)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert expect in result.stdout + result.stderr
    assert f"{path.relative_to(ROOT)}:" in result.stdout + result.stderr  # the scenario's line, too
    assert "Traceback" not in result.stderr

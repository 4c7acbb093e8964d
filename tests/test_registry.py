"""The shipped scenarios share one registry, and their merged policies are the policies they had before it:
the proof that no verdict changed with the migration (only approval and governance text moved)."""

import json
from datetime import date

import pytest

from harness.policy.registry import load_registry
from harness.scenario import load_scenario
from harness.scenario.catalog import scan
from tests.conftest import ROOT, SCENARIOS

REGISTRY = ROOT / "policy" / "fallback-registry.yaml"
BEFORE = json.loads((ROOT / "fixtures" / "registry" / "policies-before-registry.json").read_text())
SHIPPED = sorted(SCENARIOS.rglob("*.yaml"))
# Approval and governance text: where an approval is written and who gave it, never what a check judges.
GOVERNANCE = ("approved_by", "approval_ref", "owner", "documentation", "accountable", "mechanism_owner",
              "approved_on", "review_by", "expires", "approved_in")
AS_OF = date(2026, 12, 3)


def _judged(policy: dict) -> dict:
    """The policy without its governance text (a trust exception keeps what it allows)."""
    out = {key: value for key, value in policy.items() if key != "registry"}
    out["routes"] = {}
    for name, route in policy["routes"].items():
        fallbacks = []
        for target in route["fallbacks"]:
            kept = {key: value for key, value in target.items() if key not in GOVERNANCE}
            if kept.get("trust_exceptions"):
                kept["trust_exceptions"] = {"allow": kept["trust_exceptions"]["allow"]}
            fallbacks.append(kept)
        out["routes"][name] = {**route, "fallbacks": fallbacks}
    return out


def test_every_shipped_scenario_has_its_policy_from_before():
    assert sorted(BEFORE) == sorted(str(p.relative_to(ROOT)) for p in SHIPPED) and len(SHIPPED) == 64


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(SCENARIOS)))
def test_merged_policy_is_the_policy_from_before(path):
    merged = load_scenario(path).scenario.policy.model_dump(mode="json")
    assert _judged(merged) == _judged(BEFORE[str(path.relative_to(ROOT))])


def test_every_shipped_scenario_references_the_one_registry():
    drills = scan(SCENARIOS)
    assert len(drills) == 64 and all(d.error is None for d in drills)
    assert {d.registry for d in drills} == {REGISTRY.resolve()}
    for drill in drills:
        assert drill.scenario is not None and drill.scenario.policy.registry is not None
        approvals = [f for r in drill.scenario.policy.routes.values() for f in r.fallbacks]
        # every approval a shipped drill relies on is written in the registry, none in the scenario
        assert all(f.approved_in and f.approved_in.startswith("policy/fallback-registry.yaml:") for f in approvals)


def test_registry_entries_are_complete_and_hold_on_the_day_of_the_migration():
    registry = load_registry(REGISTRY)
    entries = registry.entries()
    assert len(entries) >= 20
    for entry in entries:
        t = entry.target
        assert t.approved_by and t.approval_ref and t.accountable and t.approved_on, entry.where
        assert t.mechanism_owner == "platform-gateway", entry.where  # from the registry's defaults
        assert t.approved_on <= AS_OF < t.review_by < t.expires, entry.where  # type: ignore[operator]
    # each (route, primary, target) is approved once
    paths = [(e.route, e.primary, e.target.target) for e in entries]
    assert len(paths) == len(set(paths))


def test_a_ledger_copy_of_a_merged_scenario_loads_back_without_the_registry(tmp_path, monkeypatch):
    from harness.scenario import redacted_dump, scenario_from_dict

    loaded = load_scenario(SCENARIOS / "regional-outage.yaml").scenario
    dumped = json.loads(json.dumps(redacted_dump(loaded)))
    assert dumped["policy"]["registry"] == "../policy/fallback-registry.yaml"
    assert dumped["policy"]["routes"]["chat"]["fallbacks"][0]["expires"].startswith("2028-")
    monkeypatch.chdir(tmp_path)  # no registry reachable from here
    again = scenario_from_dict(dumped, "ledger")
    assert again.policy == loaded.policy

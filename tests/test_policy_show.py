"""`harness policy show` and `harness validate` on real registry and scenario files, in their own processes;
a saved run re-judged with `harness check` fails a fallback to an expired approval."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import yaml

from harness.checks import run_checks
from harness.core.verdict import Verdict
from tests.conftest import harness_cmd
from tests.ledger_builder import LedgerBuilder, make_scenario, scenario_dict

REGISTRY = """\
version: 1
registry: test-org
defaults:
  mechanism_owner: platform-gateway
routes:
  chat:
    primary: gpt-eu
    fallbacks:
      - target: claude-eu
        equivalence: non-equivalent
        accountable: assistant-team
        approved_by: platform-security
        approval_ref: CHG-1234
        approved_on: 2025-02-01
        review_by: 2025-12-31
        expires: 2026-01-31
      - target: mistral-eu
        equivalence: equivalent
        approved_by: platform-security
        approval_ref: CHG-1300
  assist:
    - primary: gpt-eu
      fallbacks:
        - {target: claude-eu, equivalence: equivalent, accountable: assist-team, approved_by: platform-security,
           approval_ref: CHG-2000, approved_on: 2025-06-01, expires: 2999-06-01}
    - primary: azure-gpt-eu
      fallbacks:
        - {target: gpt-eu, equivalence: equivalent, accountable: assist-team, approved_by: platform-security,
           approval_ref: CHG-2001, approved_on: 2025-06-01, expires: 2999-06-01}
  summarise:
    primary: gpt-eu
"""

PROVIDERS = {
    "gpt-eu": {"model": "gpt-4o", "region": "eu", "identity": "svc-eu", "data_classes": ["public", "internal"]},
    "claude-eu": {"model": "claude", "region": "eu", "identity": "svc-eu", "data_classes": ["public", "internal"]},
    "mistral-eu": {"model": "mistral", "region": "eu", "identity": "svc-eu", "data_classes": ["public", "internal"]},
    "azure-gpt-eu": {"model": "gpt-4o-azure", "region": "eu", "identity": "svc-eu",
                     "data_classes": ["public", "internal"]},
}


def scenario(name: str, route: str, providers: list[str], fault: dict | None, policy: dict | None = None) -> dict:
    data = {
        "version": 1, "name": name,
        "identities": {"svc-eu": {"key": "sk-test-eu"}},
        "providers": {p: PROVIDERS[p] for p in providers},
        "gateway": {"kind": "reference"},
        "policy": policy or {"file": "../policy/fallback-registry.yaml"},
        "traffic": {"rate_per_s": 5, "duration_s": 10,
                    "mix": [{"route": route, "tenant": "acme", "region": "eu", "request_class": "chat",
                             "data_class": "internal"}]},
        "checks": "all",
    }
    if fault is not None:
        data["faults"] = [{"name": "primary-down", "target": fault, "effect": {"kind": "error", "status": 503},
                           "at_s": 2, "duration_s": 4}]
    return data


@pytest.fixture
def org(tmp_path: Path) -> Path:
    """A registry and a scenarios folder: two drills of it, one scenario without a fault, one with an inline
    policy (another registry's business) and one that does not load."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "fallback-registry.yaml").write_text(REGISTRY)
    folder = tmp_path / "scenarios"
    folder.mkdir()
    files = {
        "drill-chat.yaml": scenario("drill-chat", "chat", ["gpt-eu", "claude-eu", "mistral-eu"],
                                    {"provider": "gpt-eu"}),
        # Both primaries of assist are declared: the scenario says which variant it drills.
        "drill-assist-azure.yaml": scenario("drill-assist-azure", "assist", ["azure-gpt-eu", "gpt-eu"],
                                            {"model": "gpt-4o-azure"}, policy={
                                                "file": "../policy/fallback-registry.yaml",
                                                "routes": {"assist": {"primary": "azure-gpt-eu"}}}),
        "no-fault.yaml": scenario("no-fault", "summarise", ["gpt-eu"], None),
        "inline.yaml": scenario("inline", "assist", ["gpt-eu", "claude-eu"], {"provider": "gpt-eu"}, policy={
            "routes": {"assist": {"primary": "gpt-eu", "fallbacks": [
                {"target": "claude-eu", "equivalence": "equivalent", "approved_by": "x", "approval_ref": "X-1"}]}}}),
    }
    for name, data in files.items():
        (folder / name).write_text(yaml.safe_dump(data, sort_keys=False))
    (folder / "broken.yaml").write_text("version: 1\nname: [\n")
    return tmp_path


def show(org: Path, *args: str):
    return harness_cmd("policy", "show", "policy/fallback-registry.yaml", "--scenarios-dir", "scenarios", *args,
                       cwd=org)


def test_show_json_rows_drills_and_undrilled(org):
    result = show(org, "--format", "json", "--as-of", "2026-01-15")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["name"] == "test-org" and out["as_of"] == "2026-01-15"
    rows = {(r["route"], r["primary"], r["target"]): r for r in out["rows"]}
    assert list(rows) == [("chat", "gpt-eu", "claude-eu"), ("chat", "gpt-eu", "mistral-eu"),
                          ("assist", "gpt-eu", "claude-eu"), ("assist", "azure-gpt-eu", "gpt-eu")]
    chat = rows["chat", "gpt-eu", "claude-eu"]
    assert (chat["state"], chat["detail"]) == ("review_overdue", "overdue for review (review_by 2025-12-31)")
    assert chat["accountable"] == "assistant-team" and chat["mechanism_owner"] == "platform-gateway"  # default
    assert chat["where"] == "policy/fallback-registry.yaml:9:9"
    assert chat["drilled_by"] == ["scenarios/drill-chat.yaml"]
    mistral = rows["chat", "gpt-eu", "mistral-eu"]
    assert mistral["state"] == "incomplete"
    assert mistral["detail"] == "incomplete: no approved_on, accountable, review_by or expires"
    # The inline scenario drills assist: gpt-eu, but against its own policy: not this registry's drill.
    assert rows["assist", "gpt-eu", "claude-eu"]["drilled_by"] == []
    assert rows["assist", "azure-gpt-eu", "gpt-eu"]["drilled_by"] == ["scenarios/drill-assist-azure.yaml"]
    # summarise has a scenario, but no fault hits its primary: nothing drills it.
    assert out["undrilled"] == ["assist: gpt-eu", "summarise: gpt-eu"]
    assert out["unreadable_scenarios"] == ["scenarios/broken.yaml"]


@pytest.mark.parametrize(("as_of", "state"), [("2025-12-31", "valid"), ("2026-01-01", "review overdue"),
                                               ("2026-01-31", "review overdue"), ("2026-02-01", "expired")])
def test_show_text_expiry_boundaries(org, as_of, state):
    result = show(org, "--as-of", as_of)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"registry test-org (policy/fallback-registry.yaml), approvals as of {as_of}"
    assert lines[1].split() == ["route", "primary", "target", "equivalence", "accountable", "approval", "expiry",
                                "drilled", "by"]
    chat = next(line for line in lines if line.startswith("chat") and "claude-eu" in line)
    assert f"{state} (expires 2026-01-31, review by 2025-12-31)" in chat
    assert "platform-security CHG-1234 on 2025-02-01" in chat and chat.endswith("1: drill-chat")
    assert "routes no scenario drills: assist: gpt-eu, summarise: gpt-eu" in lines
    assert any("scenarios/broken.yaml" in line for line in lines)


def test_show_bad_registry_exits_2_with_location(tmp_path):
    bad = tmp_path / "registry.yaml"
    bad.write_text(REGISTRY.replace("equivalence: non-equivalent", "equivalence: roughly"))
    result = harness_cmd("policy", "show", str(bad), "--scenarios-dir", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bad}:10:22:" in result.stderr and "equivalence" in result.stderr
    missing = harness_cmd("policy", "show", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_show_escapes_control_characters_from_the_file(org):
    registry = org / "policy" / "fallback-registry.yaml"
    registry.write_text(registry.read_text().replace("accountable: assistant-team",
                                                     'accountable: "team\\e[2J"'))
    result = show(org, "--as-of", "2026-01-15")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "team\\x1b[2J" in result.stdout


# --- harness validate ----------------------------------------------------------------------------

def test_validate_reports_approval_problems_and_exits_0(org):
    result = harness_cmd("validate", "scenarios/drill-chat.yaml", cwd=org)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok  scenarios/drill-chat.yaml: drill-chat")
    # Today is after 2026-01-31 on any machine running this: the approval has expired.
    assert ("    warning: policy/fallback-registry.yaml:9:9: route chat: gpt-eu -> claude-eu: approval CHG-1234 "
            "expired on 2026-01-31") in lines
    assert any("route chat: gpt-eu -> mistral-eu: approval CHG-1300 is incomplete: no approved_on, accountable, "
               "review_by or expires" in line for line in lines)
    assert not any("scenario only" in line for line in lines)


def test_validate_reports_an_approval_of_the_scenario_only(org):
    data = scenario("extends", "chat", ["gpt-eu", "claude-eu", "azure-gpt-eu"], {"provider": "gpt-eu"}, policy={
        "file": "../policy/fallback-registry.yaml",
        "routes": {"chat": {"primary": "gpt-eu", "fallbacks": [
            {"target": "azure-gpt-eu", "equivalence": "equivalent", "approved_by": "platform-security",
             "approval_ref": "CHG-9", "accountable": "assistant-team", "mechanism_owner": "platform-gateway",
             "approved_on": date(2026, 1, 1), "expires": date(2999, 1, 1)}]}}})
    (org / "scenarios" / "extends.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = harness_cmd("validate", "scenarios/extends.yaml", cwd=org)
    assert result.returncode == 0, result.stderr
    [note] = [line for line in result.stdout.splitlines() if "warning:" in line]
    assert note.startswith("    warning: scenarios/extends.yaml:")
    assert note.endswith("route chat: gpt-eu -> azure-gpt-eu: approved in the scenario only, not in "
                         "../policy/fallback-registry.yaml")


def test_validate_inline_policy_warns_only_on_dates(tmp_path):
    data = scenario_dict()
    fallbacks = data["policy"]["routes"]["chat"]["fallbacks"]
    fallbacks[0]["expires"] = date(2020, 1, 31)
    fallbacks[1].update(review_by=date(2020, 6, 30), expires=date(2999, 1, 1))
    path = tmp_path / "inline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = harness_cmd("validate", str(path))
    assert result.returncode == 0, result.stderr
    warnings = [line.strip() for line in result.stdout.splitlines() if "warning:" in line]
    assert warnings == [
        f"warning: {path}: route chat: p-eu -> f-eu: approval CAB-1 expired on 2020-01-31",
        f"warning: {path}: route chat: p-eu -> f-us: approval CAB-2 is overdue for review (review_by 2020-06-30)",
    ]  # f-own has no governance fields: an inline approval needs none


# --- approved_targets: a governed approval, and a saved run re-judged ---------------------------

def test_incomplete_registry_approval_is_unapproved_at_run_time(tmp_path):
    data = scenario_dict()
    data["policy"]["registry"] = "policy/fallback-registry.yaml"
    full = {"accountable": "t", "mechanism_owner": "p", "approved_on": date(2025, 1, 1), "expires": date(2999, 1, 1)}
    for target in data["policy"]["routes"]["chat"]["fallbacks"][1:]:
        target.update(full)
    b = LedgerBuilder(tmp_path / "ledger.jsonl", make_scenario(data))
    b.run_start()
    b.exchange("r001", 2, [("p-eu", "error"), ("f-eu", "ok")])
    b.exchange("r002", 3, [("p-eu", "error"), ("f-own", "ok")])
    b.run_end()
    [res] = run_checks(b.scenario, b.history(), ["approved_targets"])
    assert res.verdict is Verdict.FAIL
    [v] = res.violations
    assert v.message == ("fallback to f-eu on route chat: approval CAB-1 is incomplete: no approved_on, accountable, "
                         "mechanism_owner, review_by or expires")
    assert v.request_ids == ["r001"]


def test_check_rejudges_a_saved_run_as_of_its_own_day(tmp_path):
    data = scenario_dict()
    data["policy"]["routes"]["chat"]["fallbacks"][0].update(expires=date(2023, 11, 14))
    ledger = tmp_path / "ledger.jsonl"
    b = LedgerBuilder(ledger, make_scenario(data))  # T0 is 2023-11-14 22:13:20 UTC: the expiry day holds
    b.run_start()
    b.exchange("r001", 2, [("p-eu", "error"), ("f-eu", "ok")])
    b.run_end()
    held = harness_cmd("check", str(ledger), "--checks", "approved_targets")
    assert held.returncode == 0, held.stdout + held.stderr
    data["policy"]["routes"]["chat"]["fallbacks"][0].update(expires=date(2023, 11, 13))
    late = tmp_path / "late.jsonl"
    b = LedgerBuilder(late, make_scenario(data))
    b.run_start()
    b.exchange("r001", 2, [("p-eu", "error"), ("f-eu", "ok")])
    b.run_end()
    expired = harness_cmd("check", str(late), "--checks", "approved_targets")
    assert expired.returncode == 1, expired.stdout + expired.stderr
    assert "fallback to f-eu on route chat: approval CAB-1 expired on 2023-11-13" in expired.stdout

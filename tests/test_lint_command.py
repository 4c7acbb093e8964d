"""`harness lint-config` end to end: the real CLI in a subprocess on configurations in fixtures/lint/ and the
shipped scenarios. The runtime evidence for the reference gateway is the selftest's table (harness.selftest:
each defect makes the named check of the named shipped scenario fail at run time): lint-config flags each
defect it can see statically with the rule of that very check, and the scenario without the defect clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.lint.rules import RULES
from harness.selftest import DEFECT_CASES

ROOT = Path(__file__).resolve().parent.parent
LINT = ROOT / "fixtures" / "lint"
UNEXERCISED = "; no drill of this config exercises it (harness scaffold writes one)"
AS_OF = "2026-06-01"
RULE_OF_CHECK = {r.check: r.id for r in RULES.values()}
# Defects the configuration shows (the others act on traffic: an audit event dropped, a stream cut, ...).
STATIC_DEFECTS = ("unapproved-target", "cross-region", "identity-swap", "reroute-sensitive", "fallback-on-any-error",
                  "sticky-fallback", "retry-storm")


def lint(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "lint-config", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def findings(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return json.loads(result.stdout)["findings"]


def with_defect(tmp_path: Path, scenario: str, defect: str | None) -> Path:
    """A copy of a shipped scenario with one defect switched on (its registry reference made absolute)."""
    source = ROOT / "scenarios" / scenario
    data = yaml.safe_load(source.read_text())
    if isinstance(data["policy"].get("file"), str):
        data["policy"]["file"] = str((source.parent / data["policy"]["file"]).resolve())
    data["gateway"]["defects"] = [defect] if defect else []
    path = tmp_path / f"{defect or 'none'}-{scenario}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("defect", STATIC_DEFECTS)
def test_each_defect_the_config_shows_is_flagged_by_the_rule_of_the_check_it_fails(tmp_path, defect):
    scenario, check = DEFECT_CASES[defect]
    result = lint(with_defect(tmp_path, scenario, defect), "--format", "json", "--as-of", AS_OF)
    assert result.returncode == 1, result.stderr
    rules = {f["rule"] for f in findings(result)}
    assert RULE_OF_CHECK[check] in rules
    demonstrated = [f for f in findings(result) if f["rule"] == RULE_OF_CHECK[check]]
    assert all(f["check"] == check and str(f["scenario"]).endswith(scenario) for f in demonstrated)


@pytest.mark.parametrize("scenario", sorted({s for s, _ in (DEFECT_CASES[d] for d in STATIC_DEFECTS)}))
def test_the_same_scenarios_without_a_defect_are_clean(tmp_path, scenario):
    result = lint(with_defect(tmp_path, scenario, None), "--as-of", AS_OF)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("0 findings")


def test_every_rule_on_one_reference_drill_with_file_line_entry_and_scenario():
    result = lint("fixtures/lint/reference/every-rule.yaml", "--format", "json", "--as-of", AS_OF)
    assert result.returncode == 1, result.stderr
    got = {(f["rule"], f["line"]) for f in findings(result)}
    assert got == {("plaintext-key", 7), ("cooldown-over-failback", 11), ("content-policy-fallback", 11),
                   ("retries-unbounded", 11), ("fail-closed-reachable", 17), ("fallback-unapproved", 17)}
    by_rule = {f["rule"]: f for f in findings(result)}
    expired = by_rule["fallback-unapproved"]
    assert expired["file"] == "fixtures/lint/reference/every-rule.yaml" and expired["column"] == 11
    assert "expired on 2026-01-31" in str(expired["message"])
    assert expired["registry_entry"] == "fixtures/lint/reference/every-rule.yaml:17:11 (chat: gpt-eu -> claude-eu)"
    assert expired["scenario"] == "fixtures/lint/reference/every-rule.yaml"
    assert expired["check"] == "approved_targets"
    assert by_rule["plaintext-key"]["check"] is None and "sk-live" not in result.stdout
    assert lint("fixtures/lint/reference/governed.yaml", "--as-of", AS_OF).returncode == 0


def test_text_output_names_place_rule_entry_and_drill():
    result = lint("fixtures/lint/reference/every-rule.yaml", "--as-of", AS_OF)
    lines = result.stdout.splitlines()
    assert ("fixtures/lint/reference/every-rule.yaml:17:11: error fallback-unapproved: chat: gpt-eu -> claude-eu "
            "(reference): the approval CHG-1 does not hold: expired on 2026-01-31") in lines
    assert "  registry entry: fixtures/lint/reference/every-rule.yaml:17:11 (chat: gpt-eu -> claude-eu)" in lines
    assert "  demonstrated by: fixtures/lint/reference/every-rule.yaml (check approved_targets)" in lines
    assert lines[-1].startswith("6 findings (6 errors) in 1 configuration")


def test_a_litellm_config_against_the_registry_alone(tmp_path):
    args = ("--registry", "fixtures/lint/registry.yaml", "--scenarios-dir", tmp_path, "--format", "json",
            "--as-of", AS_OF)
    result = lint("fixtures/lint/against-registry/litellm-chat.yaml", *args)
    assert result.returncode == 1, result.stderr
    got = sorted((f["rule"], f["route"], f["registry_entry"]) for f in findings(result))
    assert got == [
        ("fallback-unapproved", "assist", None),
        ("fallback-unapproved", "chat", "fixtures/lint/registry.yaml:23:9 (chat: gpt-eu -> gpt-us)"),
    ]
    assert all(f["scenario"] is None for f in findings(result))
    # The expiry is judged on the day asked: before it, the US path holds (its trust exception covers it).
    before = lint("fixtures/lint/against-registry/litellm-chat.yaml", *args[:-1], "2026-01-15")
    assert [f["route"] for f in findings(before)] == ["assist"]
    governed = lint("fixtures/lint/against-registry/litellm-governed.yaml", *args)
    assert governed.returncode == 0 and findings(governed) == []


def test_the_drills_in_the_scenarios_dir_name_the_demonstrating_scenario():
    result = lint("fixtures/gateways/litellm/cross-region.yaml", "--format", "json", "--as-of", AS_OF)
    assert result.returncode == 1, result.stderr
    trust = [f for f in findings(result) if f["rule"] == "trust-envelope"]
    assert trust and all(f["scenario"] == "scenarios/gateways/litellm-regional-outage-cross-region.yaml"
                         and f["check"] == "trust_boundary" for f in trust)
    assert all(str(f["registry_entry"]).startswith("policy/fallback-registry.yaml:") for f in trust)


def test_several_configs_json_summary_and_output_file(tmp_path):
    out = tmp_path / "report.json"
    result = lint("fixtures/lint/reference/governed.yaml", "fixtures/lint/reference/every-rule.yaml",
                  "--format", "json", "--output", out, "--as-of", AS_OF)
    assert result.returncode == 1 and result.stdout == ""
    report = json.loads(out.read_text())
    assert [c["findings"] for c in report["configs"]] == [0, 6]
    assert report["summary"] == {"configs": 2, "errors": 6, "warnings": 0}


@pytest.mark.parametrize(("config", "where"), [
    ("fixtures/lint/bad/unparseable.yaml", "fixtures/lint/bad/unparseable.yaml:4:1"),
    ("fixtures/lint/bad/unparseable.json", "fixtures/lint/bad/unparseable.json:2:1"),
    ("fixtures/lint/bad/unknown-kind.yaml", "fixtures/lint/bad/unknown-kind.yaml:1:1"),
])
def test_bad_input_names_file_line_column_and_a_hint(config, where):
    result = lint(config)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {where}: ")
    assert "hint: " in result.stderr and "Traceback" not in result.stderr


def test_a_missing_file_a_missing_registry_and_an_unwritable_output_are_bad_input(tmp_path):
    missing = lint("fixtures/lint/nowhere.yaml")
    assert missing.returncode == 2 and "fixtures/lint/nowhere.yaml" in missing.stderr
    alone = lint("fixtures/lint/against-registry/litellm-governed.yaml", "--registry", tmp_path / "none.yaml",
                 "--scenarios-dir", tmp_path)
    assert alone.returncode == 2 and "no policy to judge it against" in alone.stderr and "hint:" in alone.stderr
    unwritable = lint("fixtures/lint/reference/governed.yaml", "--output", tmp_path / "no" / "such" / "dir.txt")
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr


def test_kind_forced_on_the_wrong_file_is_bad_input():
    result = lint("fixtures/lint/against-registry/litellm-governed.yaml", "--kind", "reference")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_a_drill_judges_only_the_rules_of_the_checks_it_runs(tmp_path):
    data = yaml.safe_load((LINT / "reference" / "every-rule.yaml").read_text())
    data["checks"] = ["approved_targets", "steady_state"]
    narrowed = tmp_path / "narrowed.yaml"
    narrowed.write_text(yaml.safe_dump(data, sort_keys=False))
    result = lint(narrowed, "--format", "json", "--as-of", AS_OF)
    # The rules whose check it runs are errors it demonstrates; the others are true of the file, not shown by it.
    errors = sorted(f["rule"] for f in findings(result) if f["level"] == "error")
    warnings = {f["rule"] for f in findings(result) if f["level"] == "warning"}
    assert errors == ["fallback-unapproved", "plaintext-key"] and result.returncode == 1
    assert warnings == set(RULES) - {"fallback-unapproved", "plaintext-key", "trust-envelope"}
    assert all(f["scenario"] is None and f["message"].endswith(UNEXERCISED) for f in findings(result)
               if f["level"] == "warning")


def test_the_demonstrating_drill_is_one_whose_faults_take_the_path(tmp_path):
    """A drill without a fault never exercises a fallback path: it passes at run time, so it demonstrates nothing."""
    data = yaml.safe_load((LINT / "reference" / "every-rule.yaml").read_text())
    data["faults"] = []
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(yaml.safe_dump(data, sort_keys=False))
    result = lint(quiet, "--format", "json", "--as-of", AS_OF)
    assert result.returncode == 1
    assert {f["rule"] for f in findings(result)} == set(RULES) - {"trust-envelope"}
    assert all(f["scenario"] is None for f in findings(result))
    # Warnings, but for the plaintext key: a static fact, no drill needed (it alone makes the exit 1).
    assert {f["rule"] for f in findings(result) if f["level"] == "error"} == {"plaintext-key"}


def test_what_each_rule_needs_of_a_drills_faults():
    """A drill takes a flagged path when its faults hit a provider the path leaves with a failure that takes it,
    in that provider's API (an overload is Anthropic's 529), or when it sends requests a limited provider
    cannot serve."""
    from harness.core.model import Scenario
    from harness.lint.command import exercises
    from harness.lint.model import ANY_FAILURE, RETRYABLE, Finding, Where

    base = yaml.safe_load((LINT / "reference" / "governed.yaml").read_text())

    def drill(*effects: dict, provider: str = "gpt-eu") -> Scenario:
        faults = [{"name": f"f{i}", "target": {"provider": provider}, "effect": e, "at_s": 3, "duration_s": 2}
                  for i, e in enumerate(effects)]
        return Scenario.model_validate({**base, "faults": faults}, strict=False)

    def path(taken_on: frozenset, failing: frozenset | None = frozenset({"gpt-eu"})) -> Finding:
        return Finding("r", "m", Where(Path("c"), 1), taken_on=taken_on, failing=failing)

    refusal, outage, slow = {"kind": "content_policy"}, {"kind": "error", "status": 503}, {"kind": "latency", "ms": 5}
    refused = path(frozenset({400, "content_policy"}))
    assert exercises(drill(refusal), refused) and not exercises(drill(outage), refused)
    assert exercises(drill(outage), path(RETRYABLE)) and not exercises(drill(refusal, slow), path(RETRYABLE))
    assert exercises(drill({"kind": "error", "status": 429}), path(RETRYABLE))
    portkey_default = frozenset({429, 500, 502, 503, 504})   # Portkey retries these; an OpenAI overload is a 503
    assert exercises(drill({"kind": "overloaded"}), path(portkey_default))
    assert exercises(drill(outage), path(ANY_FAILURE)) and not exercises(drill(slow), path(ANY_FAILURE))
    assert not exercises(drill(), path(ANY_FAILURE)) and not exercises(drill(outage), path(frozenset()))
    # the fault must hit a provider the path leaves
    assert not exercises(drill(outage, provider="claude-eu"), path(ANY_FAILURE))
    assert exercises(drill(outage, provider="claude-eu"), path(ANY_FAILURE, failing=None))

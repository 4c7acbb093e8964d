"""lint-config --format sarif: valid against the official SARIF 2.1.0 JSON Schema (shipped as test data from
oasis-tcs/sarif-spec), and carrying what a code-scanning UI shows: rule, place, registry entry, drill."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from harness.lint.rules import RULES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "fixtures" / "sarif" / "sarif-schema-2.1.0.json").read_text())


def sarif(*configs: str, cwd: Path = ROOT) -> dict:
    result = subprocess.run([sys.executable, "-m", "harness.cli", "lint-config", *configs, "--format", "sarif",
                             "--as-of", "2026-06-01"], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def validate(doc: dict) -> None:
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)


def test_the_shipped_schema_is_the_official_one_and_rejects_what_it_should():
    assert SCHEMA["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    with pytest.raises(jsonschema.ValidationError):
        validate({"version": "2.1.0", "runs": [{"results": []}]})  # a run without its tool
    with pytest.raises(jsonschema.ValidationError):
        validate({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}},
                                                "results": [{"ruleId": "r", "level": "fatal",
                                                             "message": {"text": "m"}}]}]})


def test_findings_validate_and_carry_place_rule_registry_entry_and_drill():
    doc = sarif("fixtures/lint/reference/every-rule.yaml", "fixtures/lint/reference/governed.yaml")
    validate(doc)
    [run] = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "fallback-harness lint-config"
    assert [r["id"] for r in driver["rules"]] == list(RULES)
    for rule in driver["rules"]:
        assert rule["helpUri"] == f"docs/lint-config.md#{rule['id']}"
        assert rule["properties"]["check"] == RULES[rule["id"]].check
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == ROOT.resolve().as_uri() + "/"
    results = {r["ruleId"]: r for r in run["results"]}
    assert set(results) == set(RULES) - {"trust-envelope"}
    expired = results["fallback-unapproved"]
    assert expired["level"] == "error"
    assert driver["rules"][expired["ruleIndex"]]["id"] == "fallback-unapproved"
    location = expired["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "fixtures/lint/reference/every-rule.yaml", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": 17, "startColumn": 11}
    assert "expired on 2026-01-31" in expired["message"]["text"]
    [related] = expired["relatedLocations"]
    assert related["physicalLocation"]["region"]["startLine"] == 17
    assert related["message"]["text"] == "registry entry: chat: gpt-eu -> claude-eu"
    assert expired["properties"] == {"registry_entry": "fixtures/lint/reference/every-rule.yaml:17:11 (chat: gpt-eu "
                                     "-> claude-eu)", "scenario": "fixtures/lint/reference/every-rule.yaml",
                                     "check": "approved_targets", "route": "chat"}
    assert "relatedLocations" not in results["plaintext-key"]
    assert [a["location"]["uri"] for a in run["artifacts"]] == ["fixtures/lint/reference/every-rule.yaml",
                                                               "fixtures/lint/reference/governed.yaml"]


def test_a_clean_config_is_a_valid_run_without_results():
    doc = sarif("fixtures/lint/reference/governed.yaml")
    validate(doc)
    assert doc["runs"][0]["results"] == []


def test_a_config_outside_the_working_directory_gets_an_absolute_uri(tmp_path):
    config = ROOT / "fixtures" / "lint" / "reference" / "every-rule.yaml"
    copy = tmp_path / "elsewhere" / "every-rule.yaml"
    copy.parent.mkdir()
    copy.write_text(config.read_text())
    work = tmp_path / "work"
    work.mkdir()
    doc = sarif(str(copy), cwd=work)
    validate(doc)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in doc["runs"][0]["results"]}
    assert uris == {copy.as_uri()}


def test_the_shipped_gateway_configs_give_valid_sarif():
    configs = sorted(str(p.relative_to(ROOT)) for pattern in ("fixtures/gateways/litellm/*.yaml",
                                                             "fixtures/gateways/portkey/*.json")
                     for p in ROOT.glob(pattern))
    doc = sarif(*configs)
    validate(doc)
    results = doc["runs"][0]["results"]
    assert results, "the shipped configurations include ungoverned ones"
    # an error names the drill that demonstrates it; a warning is true of the file, with no drill taking the path
    assert all(r["properties"].get("scenario", "").startswith("scenarios/gateways/") for r in results
               if r["ruleId"] != "plaintext-key" and r["level"] == "error")
    assert all("scenario" not in r["properties"] for r in results if r["level"] == "warning")
    assert {r["level"] for r in results} == {"error", "warning"}

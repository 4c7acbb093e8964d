"""The scenario layer: every bad input is an InputError located by file:line, never a traceback."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import InputError
from harness.core.model import Scenario
from harness.core.registry import check_names
from harness.scenario import LoadedScenario, json_schema, load_scenario, redacted_dump, scenario_from_dict

ROOT = Path(__file__).resolve().parent.parent
GOOD = ROOT / "fixtures" / "good_scenario.yaml"
BAD_DIR = ROOT / "fixtures" / "bad_scenarios"
BAD = sorted(BAD_DIR.glob("*.yaml"))
UNSET_VAR = "HARNESS_TEST_UNSET_KEY"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (UNSET_VAR, "HARNESS_KEY_SVC_EU", "HARNESS_KEY"):
        monkeypatch.delenv(name, raising=False)


def _expectations(path: Path) -> tuple[str, int | None]:
    head = path.read_text(encoding="utf-8").splitlines()[:3]
    expect = next(line.split(":", 1)[1].strip() for line in head if line.startswith("# expect:"))
    lines = [int(line.split(":", 1)[1]) for line in head if line.startswith("# expect-line:")]
    return expect, lines[0] if lines else None


def test_there_are_enough_bad_fixtures():
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_fixture_is_rejected_with_location(path: Path):
    expect, line = _expectations(path)
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert expect in text
    assert path.name in text
    matching = [p for p in caught.value.problems if expect in p.render()]
    assert matching, text
    if line is not None:
        assert matching[0].line == line, text
        assert f"{path.name}:{line}:" in text


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_problems_are_sorted_and_named(path: Path):
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    problems = caught.value.problems
    assert problems
    lines = [p.line for p in problems if p.line is not None]
    assert lines == sorted(lines)
    assert all(p.file == str(path) for p in problems)


def test_good_fixture_loads():
    loaded = load_scenario(GOOD)
    assert isinstance(loaded, LoadedScenario)
    scenario = loaded.scenario
    assert scenario.name == "eu-primary-regional-outage"
    assert set(scenario.providers) == {"gpt-eu", "claude-eu", "gpt-us"}
    assert scenario.policy.routes["chat"].fallbacks[0].target == "claude-eu"
    assert scenario.faults[0].effect.kind == "error"
    # checks: all = every check that applies: this scenario declares no capabilities or vendor behaviour.
    assert scenario.check_names() == [n for n in check_names() if n not in ("capability_fit", "equivalence",
                                                                          "vendor_fallback")]
    assert loaded.path == str(GOOD)
    assert loaded.source == GOOD.read_text(encoding="utf-8")
    assert loaded.sha256 == hashlib.sha256(GOOD.read_bytes()).hexdigest()


def test_relative_path_is_reported_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("s.yaml").write_text("version: 1\nname: [\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_scenario("s.yaml")
    assert str(caught.value).startswith("s.yaml:")


def test_env_reference_default(monkeypatch):
    scenario = load_scenario(GOOD).scenario
    assert scenario.identities["svc-eu"].key.get_secret_value() == "sk-test-svc-eu"


def test_env_reference_override(monkeypatch):
    monkeypatch.setenv("HARNESS_KEY_SVC_EU", "sk-from-env")
    scenario = load_scenario(GOOD).scenario
    assert scenario.identities["svc-eu"].key.get_secret_value() == "sk-from-env"


def test_env_reference_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_KEY", "abc")
    text = GOOD.read_text(encoding="utf-8").replace(
        "{key: sk-test-svc-us}", '{key: "cost $$5 ${HARNESS_KEY}/${HARNESS_UNSET_X:-dflt} $x"}'
    ).replace("description: EU primary", 'description: "cost $$5 $${HARNESS_KEY} $x" #')
    path = tmp_path / "env.yaml"
    path.write_text(text, encoding="utf-8")
    scenario = load_scenario(path).scenario
    assert scenario.identities["svc-us"].key.get_secret_value() == "cost $5 abc/dflt $x"
    # Where references do not expand, `$$` is still one dollar: `$${X}` is the literal text ${X}.
    assert scenario.description == "cost $5 ${HARNESS_KEY} $x"


def test_unset_env_var_names_key_and_hint(tmp_path):
    text = GOOD.read_text(encoding="utf-8").replace("{key: sk-test-svc-us}", '{key: "${HARNESS_TEST_UNSET_KEY}"}')
    path = tmp_path / "unset.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    (problem,) = caught.value.problems
    assert problem.key == "identities.svc-us.key"
    assert problem.line == 7
    assert problem.hint and "export HARNESS_TEST_UNSET_KEY" in problem.hint and ":-default" in problem.hint


def test_explicit_env_mapping_is_used():
    scenario = load_scenario(GOOD, env={"HARNESS_KEY_SVC_EU": "sk-given"}).scenario
    assert scenario.identities["svc-eu"].key.get_secret_value() == "sk-given"


def test_redacted_dump_round_trips_without_keys():
    scenario = load_scenario(GOOD).scenario
    dump = redacted_dump(scenario)
    text = json.dumps(dump)
    assert "sk-test-svc-eu" not in text and "sk-test-svc-us" not in text
    assert {i["key"] for i in dump["identities"].values()} == {"<redacted>"}
    rebuilt = scenario_from_dict(dump, "ledger.jsonl")
    assert redacted_dump(rebuilt) == dump
    assert rebuilt.model_dump(exclude={"identities"}) == scenario.model_dump(exclude={"identities"})


def test_scenario_from_dict_errors_have_no_line():
    dump = redacted_dump(load_scenario(GOOD).scenario)
    dump["traffic"]["rate_per_s"] = "fast"
    dump["providers"]["gpt-eu"]["identity"] = "nobody"
    with pytest.raises(InputError) as caught:
        scenario_from_dict(dump, "run/ledger.jsonl")
    problems = caught.value.problems
    assert [p.key for p in problems] == ["traffic.rate_per_s"]
    assert all(p.line is None and p.file == "run/ledger.jsonl" for p in problems)
    with pytest.raises(InputError):
        scenario_from_dict([], "x")  # type: ignore[arg-type]


def test_semantic_problems_only_after_model_is_valid():
    dump = redacted_dump(load_scenario(GOOD).scenario)
    dump["providers"]["gpt-eu"]["identity"] = "nobody"
    with pytest.raises(InputError) as caught:
        scenario_from_dict(dump, "x")
    (problem,) = caught.value.problems
    assert problem.key == "providers.gpt-eu.identity" and "svc-eu" in (problem.hint or "")


def _find_enums(node: Any) -> list[list[Any]]:
    if isinstance(node, dict):
        found = [node["enum"]] if "enum" in node else []
        return found + [e for value in node.values() for e in _find_enums(value)]
    if isinstance(node, list):
        return [e for value in node for e in _find_enums(value)]
    return []


def test_json_schema_shape():
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]
    for key in ("version", "name", "identities", "providers", "gateway", "policy", "traffic", "faults", "checks"):
        assert key in schema["properties"]
    assert list(check_names()) in _find_enums(schema["properties"]["checks"])
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_json_schema_gateway_is_a_union_by_kind():
    schema = json_schema()
    gateway = schema["properties"]["gateway"]
    assert gateway["discriminator"]["propertyName"] == "kind"
    kinds = {}
    for ref in gateway["oneOf"]:
        model = schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]
        kinds[model["properties"]["kind"]["const"]] = model
        assert model["additionalProperties"] is False
    assert set(kinds) == set(gateway["discriminator"]["mapping"]) == {"reference", "command", "url", "litellm",
                                                                      "portkey"}
    # Each kind holds only its own keys.
    assert "defects" in kinds["reference"]["properties"] and "defects" not in kinds["command"]["properties"]
    assert kinds["command"]["required"] == ["kind", "command"] and kinds["url"]["required"] == ["kind", "url"]
    assert kinds["litellm"]["required"] == kinds["portkey"]["required"] == ["kind", "config"]


def test_json_schema_properties_are_the_model_fields():
    assert set(json_schema()["properties"]) == set(Scenario.model_fields)


def test_missing_file_and_directory(tmp_path):
    for target, words in ((tmp_path / "nope.yaml", "no such file"), (tmp_path, "directory")):
        with pytest.raises(InputError) as caught:
            load_scenario(target)
        assert words in str(caught.value) and str(target) in str(caught.value)


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    (problem,) = caught.value.problems
    assert "not valid UTF-8" in problem.message and problem.line == 2


def test_binary_file(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    assert "binary" in str(caught.value)


def test_anchors_aliases_and_merge_keys_work(tmp_path):
    text = GOOD.read_text(encoding="utf-8")
    text = text.replace("  gpt-eu:    {model: gpt-4o,", "  gpt-eu:    &eu {model: gpt-4o,")
    text = re.sub(r"  claude-eu: \{.*\}", "  claude-eu: {<<: *eu, model: claude-sonnet}", text)
    path = tmp_path / "anchors.yaml"
    path.write_text(text, encoding="utf-8")
    providers = load_scenario(path).scenario.providers
    assert providers["claude-eu"].model == "claude-sonnet"
    assert providers["claude-eu"].data_classes == providers["gpt-eu"].data_classes


def test_yaml_1_1_booleans_stay_strings(tmp_path):
    # In YAML 1.1 `off` and `on` are booleans; the kill-switch states must stay strings.
    timeline = (
        "timeline:\n  - {at_s: 5, action: kill_switch, state: off}\n  - {at_s: 8, action: kill_switch, state: on}\n"
    )
    path = tmp_path / "timeline.yaml"
    path.write_text(GOOD.read_text(encoding="utf-8") + timeline, encoding="utf-8")
    assert [a.state for a in load_scenario(path).scenario.timeline] == ["off", "on"]


def test_unquoted_dates_stay_strings(tmp_path):
    path = tmp_path / "date.yaml"
    path.write_text(GOOD.read_text(encoding="utf-8").replace("CHG-1234", "2024-01-01"), encoding="utf-8")
    assert load_scenario(path).scenario.policy.routes["chat"].fallbacks[0].approval_ref == "2024-01-01"


def test_many_problems_are_collected(tmp_path):
    text = GOOD.read_text(encoding="utf-8")
    text = text.replace("rate_per_s: 20", "rate_per_s: fast").replace("kind: reference", "kind: refrence")
    text = text.replace("seed: 7", "seed: 7\nseeed: 8")
    path = tmp_path / "many.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    keys = [p.key for p in caught.value.problems]
    assert keys == ["seeed", "gateway.kind", "traffic.rate_per_s"]


_REPLACEMENTS = ["", "x", "- x", "  x: 1", ": :", "[", "{a: 1", "'", "&a *a", "key: ${", "\t", "~", "0", "- - -"]


def _variants(lines: list[str]) -> list[str]:
    out: list[str] = []
    for index, line in enumerate(lines):
        head, tail = lines[:index], lines[index + 1 :]
        out.append("\n".join(head + tail))
        indent = line[: len(line) - len(line.lstrip())]
        for replacement in _REPLACEMENTS:
            out.append("\n".join(head + [indent + replacement] + tail))
        if ":" in line:
            key, _, _ = line.partition(":")
            for value in ("", "0", "-1", "[]", "{}", "true", "null", "'x'", "1e999"):
                out.append("\n".join(head + [f"{key}: {value}"] + tail))
    return out


def test_fuzz_every_line_variant_loads_or_raises_input_error(tmp_path):
    lines = GOOD.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "variant.yaml"
    outcomes = {"loaded": 0, "rejected": 0}
    for text in _variants(lines):
        path.write_text(text + "\n", encoding="utf-8")
        try:
            load_scenario(path)
        except InputError as exc:
            assert exc.problems and all(p.file == str(path) for p in exc.problems)
            str(exc)
            outcomes["rejected"] += 1
        except Exception as exc:  # noqa: BLE001 - the point is that nothing else escapes
            pytest.fail(f"{type(exc).__name__}: {exc}\n--- variant ---\n{text}")
        else:
            outcomes["loaded"] += 1
    assert outcomes["rejected"] > 100 and outcomes["loaded"] > 0

"""Scenarios that validate run in bounded time and memory, and `${VAR}` is expanded only where meant and never shown.

Issue 12, finding 4 (no upper bounds; a character device or a 50 MB file read without limit), the 300-character
name of finding 2 (validated, then the run died with "File name too long") and the `${VAR}` parts of finding 5.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.core.errors import EXIT_INPUT, InputError
from harness.scenario import load_scenario, redacted_dump
from harness.scenario.bounds import run_length
from harness.scenario.yaml_nodes import render_path
from tests.conftest import ROOT, harness_cmd

GOOD = ROOT / "fixtures" / "good_scenario.yaml"
COMMAND_GATEWAY = ROOT / "fixtures" / "scenarios" / "command-gateway.yaml"


def _good() -> dict[str, Any]:
    return yaml.safe_load(GOOD.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict[str, Any], name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _set(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


# (key path, a value past its limit, the limit as the message shows it); each scenario is otherwise the good one.
BOUNDED = [
    (("traffic", "timeout_s"), 100_000, "600 s"),
    (("traffic", "rate_per_s"), 20_000, "10000/s"),
    (("traffic", "duration_s"), 100_000, "86400 s"),
    (("providers", "gpt-eu", "latency_ms"), 10_000_000, "600000 ms"),
    (("gateway", "upstream_timeout_s"), 3_600, "600 s"),
    (("gateway", "ready_timeout_s"), 3_600, "600 s"),
    (("gateway", "cooldown_s"), 100_000, "86400 s"),
    (("faults", 0, "at_s"), 100_000, "86400 s"),
    (("faults", 0, "duration_s"), 100_000, "86400 s"),
    (("faults", 0, "effect"), {"kind": "timeout", "hold_s": 100_000}, "600 s"),
    (("faults", 0, "effect"), {"kind": "latency", "ms": 10_000_000}, "600000 ms"),
    (("faults", 0, "effect"), {"kind": "error", "status": 429, "retry_after_s": 100_000}, "3600 s"),
    (("faults", 0, "effect"), {"kind": "overloaded", "retry_after_s": 100_000}, "3600 s"),
    (("timeline",), [{"at_s": 100_000, "action": "kill_switch", "state": "off"}], "86400 s"),
    (("policy", "reversibility"), {"failback_within_s": 100_000}, "3600 s"),
    (("policy", "logging"), {"within_s": 100_000}, "3600 s"),
    (("policy", "limits"), {"max_upstream_attempts": 1_000}, "100"),
]


@pytest.mark.parametrize(("path", "value", "limit"), BOUNDED, ids=[".".join(map(str, b[0])) for b in BOUNDED])
def test_each_bounded_field_refuses_a_value_past_its_limit(tmp_path, path, value, limit):
    data = _good()
    _set(data, path, value)
    with pytest.raises(InputError) as caught:
        load_scenario(_write(tmp_path, data))
    matching = [p for p in caught.value.problems if f"is above the limit of {limit}" in p.message]
    assert matching, str(caught.value)
    problem = matching[0]
    assert problem.line is not None and problem.hint  # located, and says why the limit exists
    assert problem.key.startswith(render_path(path))


def test_validate_names_file_line_key_and_limit_and_exits_2(tmp_path):
    data = _good()
    data["traffic"]["timeout_s"] = 100000
    path = _write(tmp_path, data)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "timeout_s" in text)
    result = harness_cmd("validate", str(path))
    assert result.returncode == EXIT_INPUT, result.stdout + result.stderr
    assert f"{path}:{line}:" in result.stderr
    assert "traffic.timeout_s: 100000 is above the limit of 600 s" in result.stderr
    assert "hint: a request that waits longer proves nothing more" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_day_at_full_rate_is_too_many_requests(tmp_path):
    # The issue's `rate_per_s: 10000, duration_s: 86400` ended in MemoryError: refused at load time instead.
    data = _good()
    data["traffic"].update(rate_per_s=10000, duration_s=86400)
    with pytest.raises(InputError) as caught:
        load_scenario(_write(tmp_path, data))
    assert "864,000,000 requests, above the limit of 1,000,000 per run" in str(caught.value)


def test_a_run_planned_for_4_s_has_a_stated_worst_case(tmp_path):
    # The run planned for 4 s was still running at 88 s: what bounds it is the client timeout (every
    # request ends then, whatever a provider holds) and the gateway's ready timeout.
    data = _good()
    data["traffic"].update(duration_s=4, timeout_s=600)
    data["faults"][0].update(at_s=1, duration_s=2, effect={"kind": "timeout", "hold_s": 600})
    data["gateway"]["ready_timeout_s"] = 30
    length = run_length(load_scenario(_write(tmp_path, data)).scenario)
    assert length.planned_s == 4
    assert length.at_most_s == 30 + 4 + 600


@pytest.mark.parametrize("kind", ["character device", "named pipe"])
def test_validate_refuses_what_is_not_a_regular_file_fast(tmp_path, kind):
    if kind == "character device":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "fifo.yaml"
        os.mkfifo(path)  # opening it would wait for a writer forever
    started = time.monotonic()
    result = harness_cmd("validate", str(path), timeout=60)
    assert result.returncode == EXIT_INPUT, result.stdout + result.stderr
    assert f"not a regular file (a {kind})" in result.stderr
    assert time.monotonic() - started < 30  # generous: the process start dominates; reading would never end


def test_validate_refuses_a_50_mb_yaml_fast_naming_size_and_limit(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("w") as out:  # real YAML, not zeros: the old loader spent minutes composing it
        out.write("version: 1\nname: huge\ndescription: x\ntags:\n")
        out.write("  - tag\n" * (50 * 1024 * 1024 // 8))
    size = path.stat().st_size
    started = time.monotonic()
    result = harness_cmd("validate", str(path), timeout=60)
    assert result.returncode == EXIT_INPUT, result.stdout + result.stderr
    assert f"the file is too big for a scenario: {size:,} bytes, the limit is 1,048,576 bytes (1 MiB)" \
        in result.stderr
    assert "aliases" not in result.stderr
    assert time.monotonic() - started < 30


def test_a_300_character_name_is_refused_by_validate(tmp_path):
    # It validated, then `run` died creating the run folder ("File name too long").
    data = _good()
    data["name"] = "n" * 300
    result = harness_cmd("validate", str(_write(tmp_path, data)))
    assert result.returncode == EXIT_INPUT, result.stdout + result.stderr
    assert "name: the name is 300 characters long, above the limit of 64" in result.stderr


def test_env_reference_outside_the_expanded_fields_is_an_error_that_never_shows_the_value(tmp_path):
    # Before: `${VAR}` expanded in every string, and a type error printed the value ("got string 'sk-...'").
    data = _good()
    data["traffic"]["rate_per_s"] = "${HARNESS_H3_SECRET}"
    data["traffic"]["mix"][0]["tenant"] = "${HARNESS_H3_SECRET}"
    path = _write(tmp_path, data)
    result = harness_cmd("validate", str(path), env={"HARNESS_H3_SECRET": "sk-h3-never-shown"})
    assert result.returncode == EXIT_INPUT, result.stdout + result.stderr
    assert "traffic.rate_per_s: environment reference ${HARNESS_H3_SECRET} in a field that does not expand it" \
        in result.stderr
    assert "traffic.mix[0].tenant: environment reference ${HARNESS_H3_SECRET}" in result.stderr
    assert "is expanded only in: identities.*.key" in result.stderr
    assert "sk-h3-never-shown" not in result.stdout + result.stderr


def test_env_reference_expands_in_the_meant_fields(tmp_path):
    data = _good()
    data["identities"]["svc-us"]["key"] = "${HARNESS_H3_KEY}"
    data["providers"]["gpt-us"]["upstream"] = "${HARNESS_H3_UPSTREAM:-http://127.0.0.1:9}"
    data["description"] = "costs $$5, literally $${HARNESS_H3_KEY}"
    scenario = load_scenario(_write(tmp_path, data), env={"HARNESS_H3_KEY": "sk-h3"}).scenario
    assert scenario.identities["svc-us"].key.get_secret_value() == "sk-h3"
    assert scenario.providers["gpt-us"].upstream == "http://127.0.0.1:9"
    assert scenario.description == "costs $5, literally ${HARNESS_H3_KEY}"


@pytest.mark.slow
def test_secret_in_gateway_command_is_written_to_the_ledger_as_its_reference(tmp_path):
    # The issue: `${ENV}` references inside `gateway.command` were written expanded into ledger.jsonl.
    secret = "sk-h3-command-secret-5e1f"
    text = COMMAND_GATEWAY.read_text()
    text = text.replace('--primary-key, "{providers.gpt-eu.key}"', '--primary-key, "${HARNESS_H3_GATEWAY_KEY}"')
    text = text.replace("{scenario_dir}/../gateways", str(ROOT / "fixtures" / "gateways"))
    text = text.replace("duration_s: 10", "duration_s: 4").replace("at_s: 2\n    duration_s: 4",
                                                                   "at_s: 2\n    duration_s: 1")
    scenario = tmp_path / "command-secret.yaml"
    scenario.write_text(text)
    env = {"HARNESS_H3_GATEWAY_KEY": secret, "HARNESS_KEY_SVC_EU": secret}
    result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "r"), env=env)
    assert result.returncode in (0, 1, 3), result.stdout + result.stderr  # the verdict is not what is tested
    ledger = next((tmp_path / "r").glob("*/ledger.jsonl")).read_text()
    run_start = json.loads(ledger.splitlines()[0])
    assert run_start["type"] == "run_start"
    assert "${HARNESS_H3_GATEWAY_KEY}" in run_start["scenario"]["gateway"]["command"]
    assert run_start["scenario"]["identities"]["svc-eu"]["key"] == "<redacted>"
    assert secret not in ledger
    assert secret not in result.stdout + result.stderr


def test_ledger_copy_shows_references_and_hides_keys_typed_into_the_gateway(tmp_path):
    text = COMMAND_GATEWAY.read_text()
    text = text.replace('"{providers.gpt-eu.key}"', "sk-test-svc-eu")  # the identity's key, typed as it is
    text = text.replace('"{providers.claude-eu.key}"', '"${HARNESS_H3_FALLBACK_KEY}"')
    path = tmp_path / "typed.yaml"
    path.write_text(text)
    env = {"HARNESS_H3_FALLBACK_KEY": "sk-h3-fallback-9c2d"}
    dump = redacted_dump(load_scenario(path, env=env).scenario)
    command = dump["gateway"]["command"]
    assert command[command.index("--primary-key") + 1] == "<redacted>"
    assert command[command.index("--fallback-key") + 1] == "${HARNESS_H3_FALLBACK_KEY}"
    shown = json.dumps(dump)
    assert "sk-test-svc-eu" not in shown and "sk-h3-fallback-9c2d" not in shown
    assert dump["name"] == "command-gateway" and dump["policy"]["routes"]["chat"]["primary"] == "gpt-eu"

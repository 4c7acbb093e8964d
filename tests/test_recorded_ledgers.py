"""Every check against ledgers recorded from real runs (fixtures/ledgers, re-recorded by its record.py)."""

import gzip
import json
from pathlib import Path

import pytest

from harness.core.verdict import Verdict
from harness.engine.judge import judge_ledger
from harness.selftest import DEFECT_CASES
from tests.conftest import harness_cmd

LEDGERS = Path(__file__).resolve().parent.parent / "fixtures" / "ledgers"
EXPECTED = json.loads((LEDGERS / "expected.json").read_text())


def _kind(name: str) -> str:
    return name.removesuffix(".jsonl.gz").split("__")[1]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdicts_are_pinned(name):
    verdicts = {r.check: r.verdict.value for r in judge_ledger(LEDGERS / name).results}
    assert verdicts == EXPECTED[name]


# Judged, not read from expected.json: a re-recording that pinned a wrong verdict would still fail here.
@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if _kind(n) == "correct"))
def test_correct_gateway_passes(name):
    judged = judge_ledger(LEDGERS / name)
    assert judged.verdict is Verdict.PASS, [(r.check, r.summary) for r in judged.results if r.verdict != "pass"]


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if _kind(n) in DEFECT_CASES))
def test_defect_fails_its_check(name):
    check = DEFECT_CASES[_kind(name)][1]
    [result] = judge_ledger(LEDGERS / name, [check]).results
    assert result.verdict is Verdict.FAIL and result.violations, result.summary


def test_every_defect_and_scenario_is_recorded():
    kinds = {_kind(n) for n in EXPECTED}
    assert set(DEFECT_CASES) <= kinds
    scenarios = {n.split("__")[0] + ".yaml" for n in EXPECTED}
    assert scenarios == {p.name for p in (LEDGERS.parent.parent / "scenarios").glob("*.yaml")}


def test_killed_run_proves_nothing():
    # Cut mid-line with no run_end: readable, and never a pass.
    verdicts = EXPECTED["regional-outage__killed.jsonl.gz"]
    assert "pass" not in verdicts.values()
    result = harness_cmd("check", str(LEDGERS / "regional-outage__killed.jsonl.gz"))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "killed" in result.stdout or "incomplete" in result.stdout


def test_cli_exit_codes_follow_the_verdict():
    assert harness_cmd("check", str(LEDGERS / "regional-outage__correct.jsonl.gz")).returncode == 0
    failed = harness_cmd("check", str(LEDGERS / "regional-outage__identity-swap.jsonl.gz"))
    assert failed.returncode == 1
    assert "trust_boundary" in failed.stdout and "svc-us" in failed.stdout


def test_recorded_ledgers_hold_no_key():
    for path in LEDGERS.glob("*.jsonl.gz"):
        text = gzip.decompress(path.read_bytes()).decode()
        assert "sk-test-" not in text, path

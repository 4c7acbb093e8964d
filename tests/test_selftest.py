"""The whole selftest matrix, end to end: every defect caught by its check, the correct gateway by none."""

import json

import pytest

from harness.core.model import DEFECTS
from harness.selftest import DEFECT_CASES
from tests.conftest import SCENARIOS, harness_cmd

pytestmark = pytest.mark.slow  # whole runs: the slow tier (README: tests)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("selftest")
    result = harness_cmd("selftest", "--json", "--report-dir", str(report_dir), "--jobs", "4", timeout=900)
    assert "Traceback" not in result.stderr, result.stderr
    return result, json.loads(result.stdout)


def test_every_defect_has_a_case():
    assert set(DEFECT_CASES) == set(DEFECTS)
    for scenario, _check in DEFECT_CASES.values():
        assert (SCENARIOS / scenario).exists()


def test_correct_gateway_passes_every_shipped_scenario(matrix):
    _, rows = matrix
    correct = {r["scenario"]: r for r in rows if r["defect"] is None}
    assert set(correct) == {p.name for p in SCENARIOS.glob("*.yaml")}
    bad = {name: (r["verdict"], r["failing"]) for name, r in correct.items() if not r["ok"]}
    assert not bad


@pytest.mark.parametrize("defect", sorted(DEFECT_CASES))
def test_defect_is_caught_by_its_check(matrix, defect):
    _, rows = matrix
    row = next(r for r in rows if r["defect"] == defect)
    assert row["verdict"] == "fail"
    assert DEFECT_CASES[defect][1] in row["failing"], row


def test_selftest_exit_code_says_all_as_expected(matrix):
    result, rows = matrix
    assert result.returncode == (0 if all(r["ok"] for r in rows) else 1)

"""The dependency-transition table and the framework mapping that summary.json gains."""

import json
import re
from functools import cache
from pathlib import Path

import pytest

from harness.core.frameworks import EVIDENCES, FRAMEWORKS
from harness.core.registry import check_names, checks
from harness.engine.judge import judge_ledger
from harness.ledger.outcome import JudgedRun
from harness.reporting import Report
from harness.reporting.frameworks import framework_mapping
from harness.reporting.transitions import PRIMARY_SKIPPED
from tests.ledger_builder import LedgerBuilder, make_scenario
from tests.reporting_helpers import reported

LEDGERS = Path(__file__).resolve().parent.parent / "fixtures" / "ledgers"
CHECKS = {name: spec.frameworks for name, spec in checks().items()}


@cache
def _reported(name: str) -> tuple[JudgedRun, Report]:
    return reported(LEDGERS / f"{name}.jsonl.gz", formats=())


def _judged(name: str) -> JudgedRun:
    return _reported(name)[0]


def _rows(name: str) -> list[dict]:
    return _reported(name)[1].summary["transitions"]


def _stats(name: str, check: str) -> dict:
    return next(r.stats for r in _judged(name).results if r.check == check)


# --- recorded ledgers -------------------------------------------------------------------------------------------

def test_correct_run_has_one_approved_transition_with_its_approval():
    rows = _rows("regional-outage__correct")
    assert len(rows) == 1
    row = rows[0]
    assert (row["route"], row["primary"], row["fallback"]) == ("chat", "gpt-eu", "claude-eu")
    assert row["status"] == "approved" and row["approved"] is True
    assert row["approval_ref"] == "CHG-1234"
    assert row["approved_by"] == "platform-security"
    assert row["owner"] == "ml-platform"
    assert row["equivalence"] == "non-equivalent"
    assert row["documentation"] == "docs/equivalence/gpt-4o-vs-claude-sonnet.md"
    assert row["requests_outside_approval"] == 0
    assert row["fail_closed_requests"] == 0  # regulated traffic failed closed, as the policy says
    assert row["trust_envelope"] == {"changed": False, "breach": False, "summary": "unchanged", "changes": []}
    assert row["tenants"] == {"acme": row["requests"]}
    assert row["regions"] == {"eu": row["requests"]}
    assert row["request_classes"] == {"chat": row["requests"]}
    assert sum(row["triggers"].values()) == row["requests"]
    assert set(row["triggers"]) <= {"503", PRIMARY_SKIPPED}


def test_times_fall_inside_the_fault_window():
    j = _judged("regional-outage__correct")
    row = _rows("regional-outage__correct")[0]
    window = j.history.windows[0]
    grace = j.scenario.policy.reversibility.failback_within_s
    assert j.history.rel(window.start) <= row["first_s"] <= row["last_s"] <= j.history.rel(window.end) + grace


@pytest.mark.parametrize("name", ["regional-outage__unapproved-target", "regional-outage__cross-region"])
def test_unapproved_target_is_flagged_with_what_changed(name):
    rows = _rows(name)
    row = rows[0]  # unapproved rows come first
    assert (row["primary"], row["fallback"]) == ("gpt-eu", "gpt-us")
    assert row["status"] == "unapproved" and row["approved"] is False
    assert row["approval_ref"] is row["approved_by"] is row["owner"] is row["equivalence"] is None
    assert row["requests_outside_approval"] == row["requests"] > 0
    envelope = row["trust_envelope"]
    assert envelope["breach"] is True
    assert "identity svc-eu -> svc-us" in envelope["summary"]
    assert "region eu -> us" in envelope["summary"]
    assert {c["field"] for c in envelope["changes"]} == {"identity", "region"}


def test_identity_swap_shows_the_identity_change_on_an_approved_target():
    row = _rows("regional-outage__identity-swap")[0]
    assert row["status"] == "approved" and row["approval_ref"] == "CHG-1234"
    assert row["trust_envelope"]["summary"] == "identity svc-eu -> svc-us"
    (change,) = row["trust_envelope"]["changes"]
    assert change == {"field": "identity", "primary": "svc-eu", "fallback": "svc-us", "requests": row["requests"],
                      "summary": "identity svc-eu -> svc-us", "breach": True}


def test_extra_tools_show_what_was_added():
    row = _rows("regional-outage__extra-tools")[0]
    changes = row["trust_envelope"]["changes"]
    assert changes and all(c["field"] == "tools" and "code_interpreter" in c["added"] for c in changes)
    assert row["trust_envelope"]["breach"] is True
    assert sum(c["requests"] for c in changes) == row["requests"]


def test_rerouted_sensitive_traffic_is_counted():
    assert _rows("fail-closed-class__reroute-sensitive")[0]["fail_closed_requests"] > 0
    assert _rows("fail-closed-class__correct")[0]["fail_closed_requests"] == 0


def test_no_fallback_no_rows():
    assert _rows("content-policy-refusal__correct") == []


@pytest.mark.parametrize("name", sorted(p.name.removesuffix(".jsonl.gz") for p in LEDGERS.glob("*.jsonl.gz")))
def test_calls_agree_with_the_approved_targets_check(name):
    # Same ground truth as the check: every call to a non-primary provider is in exactly one row (the check
    # is judged even where the scenario does not list it). A vendor's own reroute is a call to the primary
    # for the gateway, so approved_targets does not count it; its rows are vendor_fallback's to judge.
    rows = [r for r in _rows(name) if r["via"] == "gateway"]
    [check] = judge_ledger(LEDGERS / f"{name}.jsonl.gz", ["approved_targets"]).results
    stats = check.stats
    assert sum(r["calls"] for r in rows) == stats["fallback_calls"]
    unapproved = sum(r["calls"] for r in rows if not r["approved"])
    assert unapproved <= stats["unapproved_calls"]
    json.dumps(rows)  # goes to summary.json as is


# --- synthetic ledgers: approval scope, exceptions, retries --------------------------------------------------------

def _history(tmp_path, build):
    scenario = make_scenario()
    builder = LedgerBuilder(tmp_path / "ledger.jsonl", scenario).run_start()
    build(builder)
    builder.run_end(10)
    return scenario, builder.close()


def test_scope_exception_retries_and_undeclared_routes(tmp_path):
    def build(b):
        b.fault("p-eu-down", 1, 5, ["p-eu"])
        # f-us is approved only for tenant acme, with a documented region exception (DPO-7).
        b.exchange("r1", 2.0, [("p-eu", "error"), ("f-us", "ok")], tenant="acme")
        b.exchange("r2", 2.5, [("p-eu", "error"), ("f-us", "ok")], tenant="globex")
        # A retry on the same fallback: one request, two calls; the gateway skipped the primary.
        b.exchange("r3", 3.0, [("f-eu", "error"), ("f-eu", "ok")])
        # Fewer tools than the primary got is least privilege, not a breach.
        b.exchange("r4", 3.5, [{"provider": "p-eu", "outcome": "error", "tools": ["search"]},
                               {"provider": "f-eu", "outcome": "ok", "tools": []}])
        b.exchange("r5", 4.0, [("rogue", "ok")], route="not-in-policy")

    _scenario, ledger = _history(tmp_path, build)
    rows = {r["fallback"]: r for r in reported(ledger, formats=())[1].summary["transitions"]}
    assert set(rows) == {"f-us", "f-eu"}  # the undeclared route has no primary: no transition

    f_us = rows["f-us"]
    assert f_us["status"] == "partly unapproved" and f_us["approved"] is True
    assert f_us["requests_outside_approval"] == 1
    assert f_us["tenants"] == {"acme": 1, "globex": 1}
    (region,) = f_us["trust_envelope"]["changes"]
    assert region["summary"] == "region eu -> us"
    assert region["exception"] == {"approval_ref": "DPO-7", "reason": "DR"}
    assert region["breach"] is False and f_us["trust_envelope"]["breach"] is False

    f_eu = rows["f-eu"]
    assert (f_eu["requests"], f_eu["calls"], f_eu["served"]) == (2, 3, 2)
    assert f_eu["triggers"] == {PRIMARY_SKIPPED: 1, "503": 1}
    assert f_eu["first_s"] == pytest.approx(3.01) and f_eu["last_s"] == pytest.approx(3.52)
    (tools,) = f_eu["trust_envelope"]["changes"]
    assert tools["removed"] == ["search"] and tools["added"] == []
    assert tools["breach"] is False
    assert f_eu["status"] == "approved"
    assert list(rows) == ["f-us", "f-eu"]  # partly unapproved sorts before approved


# --- summary.json ---------------------------------------------------------------------------------------------------

def test_summary_gains_transitions_and_frameworks(tmp_path):
    j, report = reported(LEDGERS / "regional-outage__unapproved-target.jsonl.gz", tmp_path,
                         formats=("summary.json", "junit.xml"))
    summary = report.summary
    assert summary["transitions"] == _rows("regional-outage__unapproved-target")
    assert [c["check"] for c in summary["frameworks"]["checks"]] == [r.check for r in j.results]
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["transitions"][0]["status"] == "unapproved"
    assert (tmp_path / "junit.xml").exists() and not (tmp_path / "report.html").exists()
    assert summary["reproduce"]["run"].startswith("harness run ") and summary["judged"] == "streamed (prompt join)"


def test_every_check_and_evidence_is_mapped():
    assert set(CHECKS) == set(check_names())
    used = {e for check in checks().values() for e in check.evidences}
    assert used and used <= set(EVIDENCES)
    for mapping in CHECKS.values():
        assert set(mapping) <= set(FRAMEWORKS)
        assert mapping.get("NIST AI RMF")  # every check is at least a measurement under the AI RMF


def test_frameworks_are_cited_by_name_only():
    # No control numbers or risk IDs (GV-1.2, MANAGE 4.3, LLM06, ASI03, T8, L4...): names only.
    ids = re.compile(r"\b(?:[A-Z]{2,4}-?\d|LLM\d|ASI\d|T\d+\b|L\d\b)|\d+\.\d+")
    for mapping in CHECKS.values():
        for parts in mapping.values():
            for part in parts:
                assert not ids.search(part), part
    nist = {p for m in CHECKS.values() for p in m.get("NIST AI RMF", ()) if p.endswith("function")}
    assert nist <= {"GOVERN function", "MAP function", "MEASURE function", "MANAGE function"}


def test_framework_mapping_carries_verdicts_and_meanings():
    j = _judged("regional-outage__identity-swap")
    mapping = framework_mapping(j.results)
    by_check = {c["check"]: c for c in mapping["checks"]}
    assert by_check["trust_boundary"]["verdict"] == "fail"
    names = [e["name"] for e in by_check["trust_boundary"]["evidences"]]
    assert "least privilege of the non-human identity" in names
    assert all(e["meaning"] for c in mapping["checks"] for e in c["evidences"])
    assert set(by_check["trust_boundary"]["frameworks"]) == set(FRAMEWORKS)
    assert "Identity and Privilege Abuse" in by_check["trust_boundary"]["frameworks"][
        "OWASP Top 10 for Agentic Applications"]

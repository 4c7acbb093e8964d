"""Issue 10, reports: the transition table says what a fallback changed in capability and behaviour (a
vendor's own reroute included), violations show a response-shape diff legibly, and the framework table
shows whatever each check declares."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from deepdiff import DeepDiff

from harness.core.registry import checks
from harness.core.verdict import CheckResult, Verdict, Violation
from harness.ledger import load_history
from harness.ledger.feed import feed_history_run
from harness.reporting.diffs import diff_lines, readable_path
from harness.reporting.frameworks import framework_mapping
from harness.reporting.html import render_html
from harness.reporting.junit import write_junit
from harness.reporting.text import render_text
from harness.reporting.transitions import Transitions, VendorAwareTransitions
from tests.ledger_builder import LedgerBuilder, make_scenario, scenario_dict
from tests.reporting_helpers import reported
from tests.test_report_html import Node, parse

LEDGERS = Path(__file__).resolve().parent.parent / "fixtures" / "ledgers"
FAULT = "p-eu-down"


class VendorLedger(LedgerBuilder):
    """LedgerBuilder whose upstream calls may carry `vendor_reroute`, as the mock records a vendor's own fallback."""

    _extra: dict[str, Any] = {}

    def append(self, event: dict[str, Any]) -> None:
        if event["type"] == "upstream" and self._extra:
            event = {**event, **self._extra}
        super().append(event)

    def upstream(self, rid: str | None, provider: str, at: float, *, vendor_reroute: str | None = None,
                 **kwargs: Any) -> None:
        self._extra = {"vendor_reroute": vendor_reroute} if vendor_reroute else {}
        try:
            super().upstream(rid, provider, at, **kwargs)
        finally:
            self._extra = {}


def capability_scenario() -> dict[str, Any]:
    """The builder's base scenario with declared capabilities and two vendor fallbacks:
    p-eu (128k, everything) answers as f-us under a fault; f-eu answers as rogue (unapproved, seedless)."""
    data = scenario_dict()
    providers = data["providers"]
    providers["p-eu"]["capabilities"] = {"context_tokens": 128_000, "max_output_tokens": 4096}
    providers["p-eu"]["vendor_fallback"] = {"to": "f-us"}
    providers["f-eu"]["vendor_fallback"] = {"to": "rogue"}
    providers["f-own"]["capabilities"] = {"context_tokens": 8000, "structured_output": False, "tools": False}
    providers["f-us"]["capabilities"] = {"context_tokens": 32_000}
    providers["rogue"]["capabilities"] = {"deterministic_seed": False}
    for target in data["policy"]["routes"]["chat"]["fallbacks"]:
        if target["target"] == "f-own":  # non-equivalent, naming two of the three things it loses
            target["degrades"] = ["context", "structured_output"]
            target["degradation_accepted_by"] = ["chat"]
    return data


def _ledger(tmp_path: Path) -> Path:
    b = VendorLedger(tmp_path / "ledger.jsonl", make_scenario(capability_scenario())).run_start()
    b.fault(FAULT, 1, 9, ["p-eu"])
    b.exchange("r1", 2.0, [{"provider": "p-eu", "outcome": "error", "fault": FAULT}, ("f-own", "ok")])
    b.exchange("r2", 2.5, [{"provider": "p-eu", "outcome": "error", "fault": FAULT}, ("f-own", "ok")],
               tenant="globex")
    # The primary's vendor answered as f-us: the gateway saw p-eu serve; only ground truth says otherwise.
    b.exchange("r3", 3.0, [{"provider": "p-eu", "outcome": "ok", "fault": FAULT, "vendor_reroute": "f-us"}])
    b.exchange("r4", 3.5, [{"provider": "p-eu", "outcome": "ok", "fault": FAULT, "vendor_reroute": "f-us"}])
    # The gateway fell back to f-eu, whose own vendor answered as rogue: two moves in one request.
    b.exchange("r5", 5.0, [{"provider": "p-eu", "outcome": "error", "fault": FAULT},
                           {"provider": "f-eu", "outcome": "ok", "vendor_reroute": "rogue"}])
    b.exchange("r6", 10.0, [("p-eu", "ok")])
    b.run_end(12)
    return b.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return _ledger(tmp_path)


def _by_move(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["fallback"], r["via"]): r for r in rows}


# --- the table's rows (summary.json) ---------------------------------------------------------------------------

def test_rows_say_what_each_move_lost_and_whether_the_approval_names_it(ledger):
    summary = reported(ledger, formats=())[1].summary
    rows = _by_move(summary["transitions"])
    assert set(rows) == {("f-own", "gateway"), ("f-us", "vendor"), ("f-eu", "gateway"), ("rogue", "vendor")}

    own = rows[("f-own", "gateway")]
    assert (own["requests"], own["served"], own["vendor_reroute"]) == (2, 2, None)
    cap = own["capability"]
    # An unlimited output budget (none declared) is no loss against p-eu's 4096.
    assert cap["summary"] == "context 128k -> 8k; structured_output lost; tools lost"
    assert [(i["degradation"], i["summary"], i["declared"]) for i in cap["lost"]] == [
        ("context", "context 128k -> 8k", True),
        ("structured_output", "structured_output lost", True),
        ("tools", "tools lost", False),  # the approval (degrades) does not name it
    ]
    assert cap["changed"] is True and cap["undeclared"] == ["tools"]

    # An equivalent target with no capability declared (no limit) loses nothing.
    f_eu = rows[("f-eu", "gateway")]
    assert f_eu["capability"] == {"changed": False, "lost": [], "undeclared": [], "summary": "unchanged"}
    json.dumps(summary["transitions"])  # goes to summary.json as it is


def test_a_vendor_reroute_of_the_primary_is_a_row_of_its_own(ledger):
    rows = _by_move(reported(ledger, formats=())[1].summary["transitions"])
    us = rows[("f-us", "vendor")]
    # Requests that never left the primary as the gateway saw it (one call each, to p-eu).
    assert (us["route"], us["primary"], us["requests"], us["calls"], us["served"]) == ("chat", "p-eu", 2, 2, 2)
    assert us["vendor_reroute"] == {"from": "p-eu", "to": "f-us", "from_region": "eu", "to_region": "us",
                                    "cross_region": True, "summary": "vendor reroute p-eu -> f-us (eu -> us)"}
    assert us["triggers"] == {f"vendor reroute ({FAULT})": 2}
    assert us["status"] == "approved" and us["approval_ref"] == "CAB-2"  # f-us is approved for tenant acme
    (region,) = us["trust_envelope"]["changes"]
    assert region["summary"] == "region eu -> us" and region["exception"]["approval_ref"] == "DPO-7"
    assert [(i["summary"], i["declared"]) for i in us["capability"]["lost"]] == [("context 128k -> 32k", False)]
    assert us["first_s"] == pytest.approx(3.01) and us["last_s"] == pytest.approx(3.51)


def test_a_vendor_reroute_behind_a_gateway_fallback_shows_both_moves(ledger):
    rows = _by_move(reported(ledger, formats=())[1].summary["transitions"])
    gateway, vendor = rows[("f-eu", "gateway")], rows[("rogue", "vendor")]
    assert (gateway["requests"], gateway["triggers"], gateway["vendor_reroute"]) == (1, {"503": 1}, None)
    assert vendor["vendor_reroute"]["summary"] == "vendor reroute f-eu -> rogue (same region eu)"
    assert vendor["vendor_reroute"]["cross_region"] is False
    assert vendor["status"] == "unapproved" and vendor["requests_outside_approval"] == 1
    assert vendor["triggers"] == {"vendor reroute": 1}  # the f-eu call itself was not under a fault
    assert vendor["capability"]["lost"] == [{"degradation": "determinism", "summary": "deterministic_seed lost",
                                             "declared": False}]
    # Unapproved rows come first, whatever else they show.
    assert reported(ledger, formats=())[1].summary["transitions"][0]["fallback"] == "rogue"


def test_streamed_and_in_memory_tables_agree(ledger):
    scenario = make_scenario(capability_scenario())
    fed = feed_history_run(scenario, load_history(ledger), lambda frame: [Transitions.of(frame)])
    assert fed.results[0] == reported(ledger, formats=())[1].summary["transitions"]


def test_only_scenarios_with_a_vendor_fallback_pay_for_reading_every_request(ledger):
    with_vendor = make_scenario(capability_scenario())
    plain = make_scenario()
    fed = feed_history_run(with_vendor, load_history(ledger), lambda frame: [Transitions.of(frame)])
    assert type(Transitions.of(fed.frame)) is VendorAwareTransitions and VendorAwareTransitions.records == "all"
    frame = feed_history_run(plain, load_history(ledger), lambda frame: []).frame
    assert type(Transitions.of(frame)) is Transitions and Transitions.records == "fallback"


def test_recorded_ledgers_gain_capability_and_via_without_changing_their_rows():
    rows = reported(LEDGERS / "regional-outage__unapproved-target.jsonl.gz", formats=())[1].summary["transitions"]
    assert rows and all(r["via"] == "gateway" and r["vendor_reroute"] is None for r in rows)
    assert all(r["capability"]["summary"] == "unchanged" for r in rows)  # no capabilities declared: no limits


# --- the table in the terminal and in report.html ------------------------------------------------------------------

def test_terminal_table_lists_each_move_with_its_changes(ledger):
    text = render_text(reported(ledger, formats=())[1].summary)
    lines = text.splitlines()
    start = lines.index("dependency transitions (from the providers' records):")
    table = "\n".join(lines[start:])
    assert "  chat: p-eu => rogue  UNAPPROVED  1 request(s), 1 served" in table
    assert "    vendor reroute f-eu -> rogue (same region eu), not seen by the gateway" in table
    assert "  chat: p-eu => f-us  APPROVED CAB-2  2 request(s), 2 served, 3.01-3.51 s" in table
    assert "    vendor reroute p-eu -> f-us (eu -> us), not seen by the gateway" in table
    assert "    trust envelope: region eu -> us (exception)" in table
    assert "    capability: context 128k -> 32k (NOT DECLARED)" in table
    assert ("    capability: context 128k -> 8k (declared); structured_output lost (declared); "
            "tools lost (NOT DECLARED)") in table
    assert "  chat: p-eu -> f-own  APPROVED CAB-3  2 request(s), 2 served" in table
    assert "    trust envelope: identity svc-gw -> svc-own (BREACH)" in table


def test_html_table_has_a_capability_column_and_marks_vendor_reroutes(ledger):
    _, report = reported(ledger, formats=("report.html",))
    assert report.picture is not None
    table = parse(render_html(report.summary, report.picture)).find("table", "transitions")
    header = [th.text for th in table.find("thead").find_all("th")]
    assert header[-2:] == ["Capability / behaviour", "Trust envelope"]
    rows = {tr.find("th").text: tr for tr in table.find("tbody").find_all("tr")}
    us = next(tr for th, tr in rows.items() if th.startswith("chat: p-eu → f-us"))
    assert "row-vendor" in us.classes and us.find("span", "t-vendor").text == "VENDOR REROUTE"
    assert "answered through p-eu" in us.find("th").text
    cap = us.find("td", "capability")
    items = [li.text for li in cap.find_all("li")]
    assert items == ["vendor reroute p-eu -> f-us (eu -> us) (the gateway did not see it)",
                     "context 128k -> 32k (not declared)"]
    assert [sorted(li.classes) for li in cap.find_all("li")] == [["breach"], ["breach"]]

    own = next(tr for th, tr in rows.items() if th.startswith("chat: p-eu → f-own"))
    assert "row-vendor" not in own.classes and not own.find_all("span", "t-vendor")
    lost = own.find("td", "capability").find_all("li")
    assert [(li.text, sorted(li.classes)) for li in lost] == [
        ("context 128k -> 8k (declared in degrades)", ["changed"]),
        ("structured_output lost (declared in degrades)", ["changed"]),
        ("tools lost (not declared)", ["breach"]),
    ]
    f_eu = next(tr for th, tr in rows.items() if th.startswith("chat: p-eu → f-eu"))
    assert f_eu.find("td", "capability").text == "unchanged"


def test_timeline_puts_a_vendor_rerouted_request_in_the_lane_of_who_really_answered(ledger):
    _, report = reported(ledger, formats=("report.html",))
    picture = report.picture
    assert picture is not None and picture.marks is not None
    lanes = {m.request_id: (m.lane, m.category) for m in picture.marks}
    assert lanes["r3"] == lanes["r4"] == ("f-us", "fallback")
    assert lanes["r5"] == ("rogue", "fallback")
    assert lanes["r1"] == ("f-own", "fallback") and lanes["r6"] == ("p-eu", "primary")
    # The run's counts say the same as the picture (the gateway would say p-eu and f-eu served).
    assert report.summary["stats"]["served_by"] == {"f-own": 2, "f-us": 2, "rogue": 1, "p-eu": 1}


# --- an equivalence violation's shape diff, legible ---------------------------------------------------------------

PRIMARY_SHAPE = {"finish_reason": "stop", "content": "json", "json": {"answer": "string", "confidence": "number"}}
FALLBACK_SHAPE = {"finish_reason": "length", "content": "text"}


def _shape_violation() -> Violation:
    # As the equivalence check records it: DeepDiff of the two shapes, as JSON (harness/checks/trust_boundary).
    diff = json.loads(DeepDiff(PRIMARY_SHAPE, FALLBACK_SHAPE).to_json())
    return Violation("chat: f-own answered kind response_format=json_schema:answer:1a2b3c4d with another shape "
                     "than p-eu (equivalent target)", ["r1", "r2"],
                     expected={"shape": PRIMARY_SHAPE}, observed={"shape": FALLBACK_SHAPE, "count": 2}, diff=diff)


def _with_check(summary: dict[str, Any], result: CheckResult) -> dict[str, Any]:
    out = {**summary, "checks": [*summary["checks"], result.to_dict()], "verdict": "fail"}
    out["frameworks"] = framework_mapping([])
    return out


SHAPE_LINES = ['~ content: "json" -> "text"', '~ finish_reason: "stop" -> "length"', "- json"]


def test_shape_diff_reads_one_change_a_line():
    lines = diff_lines(_shape_violation().diff)
    assert lines is not None and [str(line) for line in lines] == SHAPE_LINES
    assert readable_path("root['json']['items'][0]") == "json.items[0]"
    assert diff_lines({"not": "a deepdiff"}) is None
    named = diff_lines({"shape": _shape_violation().diff})
    assert named is not None and str(named[0]) == '~ shape: content: "json" -> "text"'


def test_terminal_shows_the_shape_diff_line_by_line(ledger):
    result = CheckResult("equivalence", Verdict.FAIL, "1 violation", [_shape_violation()])
    text = render_text(_with_check(reported(ledger, formats=())[1].summary, result))
    block = text[text.index("equivalence failed:"):]
    assert "    diff:\n" + "\n".join(f"      {line}" for line in SHAPE_LINES) in block
    assert '"content": "json"' in block  # expected / observed stay JSON


def test_html_shows_the_shape_diff_and_keeps_the_json(ledger):
    _, report = reported(ledger, formats=("report.html",))
    assert report.picture is not None
    result = CheckResult("equivalence", Verdict.FAIL, "1 violation", [_shape_violation()])
    doc = parse(render_html(_with_check(report.summary, result), report.picture))
    article = next(a for a in doc.find_all("article", "violation") if "another shape" in a.find("h4").text)
    items = article.find("ul", "diff").find_all("li")
    assert [(li.text, sorted(li.classes)) for li in items] == [
        ('~ content: "json" -> "text"', ["d-chg"]), ('~ finish_reason: "stop" -> "length"', ["d-chg"]),
        ("- json", ["d-del"])]
    raw = article.find("details").find("pre").text
    assert json.loads(raw) == _shape_violation().diff


def test_html_shows_a_trust_envelope_diff_the_same_way():
    _, report = reported(LEDGERS / "regional-outage__identity-swap.jsonl.gz", formats=("report.html",))
    assert report.picture is not None
    doc = parse(render_html(report.summary, report.picture))
    lines = [li.text for ul in doc.find_all("ul", "diff") for li in ul.find_all("li")]
    assert '~ identity: "svc-eu" -> "svc-us"' in lines


def test_junit_failure_carries_the_readable_diff(ledger, tmp_path):
    result = CheckResult("equivalence", Verdict.FAIL, "1 violation", [_shape_violation()])
    summary = _with_check(reported(ledger, formats=())[1].summary, result)
    path = tmp_path / "junit.xml"
    write_junit(path, summary)
    # The last: the ledger's scenario declares capabilities, so its own judgement has an equivalence case too.
    case = [c for c in ET.parse(path).getroot().iter("testcase") if c.get("name") == "equivalence"][-1]
    failure = case.find("failure")
    assert failure is not None and failure.text is not None
    for line in SHAPE_LINES:
        assert f"    {line}" in failure.text.splitlines()


# --- the framework table shows what each check declares -----------------------------------------------------------

def _frameworks_rows(results: list[CheckResult]) -> dict[str, Node]:
    summary = reported(LEDGERS / "regional-outage__correct.jsonl.gz", formats=())[1].summary
    summary = {**summary, "checks": [r.to_dict() for r in results], "frameworks": framework_mapping(results)}
    _, report = reported(LEDGERS / "regional-outage__correct.jsonl.gz", formats=("report.html",))
    assert report.picture is not None
    section = next(s for s in parse(render_html(summary, report.picture)).find_all("section")
                   if s.attrs.get("id") == "frameworks")
    return {tr.find("th").text: tr for tr in section.find("table", "frameworks").find("tbody").find_all("tr")}


def test_framework_table_shows_every_registered_checks_declaration():
    specs = checks()
    results = [CheckResult(name, Verdict.FAIL, "synthetic", evidences=spec.evidences) for name, spec in specs.items()]
    rows = _frameworks_rows(results)
    assert set(rows) == set(specs)
    for name, spec in specs.items():
        text = rows[name].text
        for evidence in spec.evidences:
            assert evidence in text
        for framework, parts in spec.frameworks.items():
            for part in parts:
                assert f"{framework}: " in text and part in text, (name, framework, part)


def test_a_check_the_registry_does_not_know_renders_without_citations():
    result = CheckResult("equivalence_from_elsewhere", Verdict.FAIL, "synthetic", evidences=("traceability",))
    row = _frameworks_rows([result])["equivalence_from_elsewhere"]
    _verdict, evidences, cited = row.find_all("td")
    assert [li.text for li in evidences.find_all("li")] == ["traceability"] and cited.text == "-"


def test_new_checks_are_cited_under_output_quality_and_tool_use():
    # Evidence names may hold a comma: one a line, so the table does not run two of them together.
    specs = checks()
    results = [CheckResult(name, Verdict.FAIL, "synthetic", evidences=specs[name].evidences)
               for name in ("capability_fit", "equivalence", "vendor_fallback")]
    rows = _frameworks_rows(results)
    for result in results:
        _verdict, evidences, _cited = rows[result.check].find_all("td")
        assert [li.text for li in evidences.find_all("li")] == list(result.evidences)
    assert "equivalence, or knowingly degraded" in [li.text for li in rows["equivalence"].find_all("li")]
    cited = {li.text for li in rows["equivalence"].find_all("td")[2].find_all("li")}
    assert "OWASP Top 10 for LLM Applications: Improper Output Handling, Excessive Agency" in cited
    assert "OWASP Top 10 for Agentic Applications: Tool Misuse and Exploitation" in cited

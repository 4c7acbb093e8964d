"""report.html: built from recorded ledgers, parsed back with the stdlib, and rendered by headless Chromium."""

import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.ledger.outcome import JudgedRun
from harness.reporting import Report
from harness.reporting.html import render_html
from harness.reporting.timeline import MAX_MARKS
from tests.ledger_builder import LedgerBuilder, make_scenario
from tests.reporting_helpers import reported

LEDGERS = Path(__file__).resolve().parent.parent / "fixtures" / "ledgers"
CHROMIUM = Path("/usr/bin/chromium")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list["Node"] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find_all(self, tag: str, cls: str | None = None) -> list["Node"]:
        found = []
        for child in self.children:
            if child.tag == tag and (cls is None or cls in child.classes):
                found.append(child)
            found += child.find_all(tag, cls)
        return found

    def find(self, tag: str, cls: str | None = None) -> "Node":
        found = self.find_all(tag, cls)
        assert found, f"no <{tag} class={cls}>"
        return found[0]


class TreeBuilder(HTMLParser):
    """A small DOM: enough to query the report by tag and class (stdlib only, as a reviewer's tool would)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        for node in self.stack[1:]:
            node.parts.append(data)


def parse(text: str) -> Node:
    builder = TreeBuilder()
    builder.feed(text)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


@cache
def _reported(name: str) -> tuple[JudgedRun, Report]:
    return reported(LEDGERS / f"{name}.jsonl.gz")


def _judged(name: str) -> JudgedRun:
    return _reported(name)[0]


@cache
def _report(name: str) -> tuple[dict, str]:
    _, report = _reported(name)
    assert report.picture is not None
    return report.summary, render_html(report.summary, report.picture)


def _doc(name: str) -> Node:
    return parse(_report(name)[1])


NAMES = ["regional-outage__correct", "regional-outage__unapproved-target", "regional-outage__identity-swap",
         "regional-outage__truncate-stream", "regional-outage__killed", "kill-switch-drill__correct",
         "fail-closed-class__reroute-sensitive", "content-policy-refusal__correct"]


@pytest.mark.parametrize("name", NAMES)
def test_page_is_accessible_and_names_the_run(name):
    doc = _doc(name)
    summary, _ = _report(name)
    assert doc.find("html").attrs["lang"] == "en"
    title = doc.find("title").text
    assert summary["scenario"]["name"] in title and summary["verdict"].upper() in title
    assert summary["scenario"]["name"] in doc.find("h1").text
    assert [h.text for h in doc.find_all("h2")] == ["Verdicts", "Timeline", "Dependency transitions",
                                                    "Violations and evidence", "What the checks evidence"]
    for svg in doc.find_all("svg"):
        assert svg.attrs.get("role") == "img" and svg.children[0].tag == "title" and svg.children[0].text
    for table in doc.find_all("table"):
        assert table.find_all("th"), "every table has header cells"


@pytest.mark.parametrize("name", NAMES)
def test_verdict_table_has_one_row_per_check(name):
    rows = _doc(name).find("table", "verdicts").find("tbody").find_all("tr")
    results = _judged(name).results
    assert [r.find("th").text for r in rows] == [r.check for r in results]
    assert [r.find("span", "badge").text for r in rows] == [r.verdict.value.upper() for r in results]
    for row, result in zip(rows, results, strict=True):
        assert f"r-{result.verdict.value}" in row.classes
        assert result.summary in row.text


@pytest.mark.parametrize("name", NAMES)
def test_timeline_has_a_lane_per_provider_and_a_mark_per_request(name):
    j = _judged(name)
    svg = _doc(name).find("svg", "timeline")
    lanes = [t.text for t in svg.find_all("text", "lane-name")]
    assert lanes == [*j.scenario.providers, "none"]
    assert len(svg.find_all("rect", "lane")) == len(lanes)
    marks = svg.find("g", "marks").find_all("use")
    assert len(marks) == len(j.history.requests) <= MAX_MARKS
    hrefs = {m.attrs["href"] for m in marks}
    assert hrefs <= {"#mk-primary", "#mk-fallback", "#mk-failed", "#mk-incomplete"}
    served_elsewhere = sum(1 for rid, r in j.history.requests.items()
                           if j.history.served_by(rid) not in (None, j.scenario.policy.routes[r["route"]].primary)
                           and r["status"] == 200 and r["stream_complete"] is not False)
    assert sum(m.attrs["href"] == "#mk-fallback" for m in marks) == served_elsewhere


def test_fault_and_kill_switch_windows_are_shaded_and_named():
    j = _judged("kill-switch-drill__correct")
    doc = _doc("kill-switch-drill__correct")
    timeline, rate = doc.find("svg", "timeline"), doc.find("svg", "rate")
    (window,) = j.history.windows
    (switch,) = j.history.kill_switch
    faults = timeline.find_all("rect", "fault")
    assert len(faults) == 1 and window.name in faults[0].find("title").text
    assert [t.text for t in timeline.find_all("text", "fault-label")] == [f"fault: {window.name}"]
    assert len(timeline.find_all("rect", "fault-target")) == len(window.targets)
    assert len(timeline.find_all("rect", "switch")) == 1
    assert timeline.find_all("text", "switch-label")
    # The band sits where the window was: x grows with time, and the switch is inside the fault.
    fx, fw = float(faults[0].attrs["x"]), float(faults[0].attrs["width"])
    sx = float(timeline.find("rect", "switch").attrs["x"])
    assert j.history.rel(window.start) < j.history.rel(switch.start) and fx < sx < fx + fw
    assert len(rate.find_all("rect", "fault")) == 1 and len(rate.find_all("rect", "switch")) == 1
    seconds = {int(j.history.rel(r["ts"])) for r in j.history.requests.values()}
    assert len(rate.find_all("circle", "rate-dot")) == len(seconds)


def test_transition_table_highlights_unapproved_rows():
    doc = _doc("regional-outage__unapproved-target")
    rows = doc.find("table", "transitions").find("tbody").find_all("tr")
    assert len(rows) == 1 and "row-unapproved" in rows[0].classes
    assert "gpt-eu" in rows[0].find("th").text and "gpt-us" in rows[0].find("th").text
    assert rows[0].find("span", "tag").text == "UNAPPROVED"
    assert "identity svc-eu -> svc-us" in rows[0].text and "region eu -> us" in rows[0].text
    assert rows[0].find_all("td", "breach-cell")

    ok_rows = _doc("regional-outage__correct").find("table", "transitions").find("tbody").find_all("tr")
    assert len(ok_rows) == 1 and "row-approved" in ok_rows[0].classes
    assert "CHG-1234" in ok_rows[0].text and "ml-platform" in ok_rows[0].text and "unchanged" in ok_rows[0].text


def test_violations_carry_their_evidence():
    summary, _ = _report("regional-outage__identity-swap")
    section = next(s for s in _doc("regional-outage__identity-swap").find_all("section")
                   if s.attrs.get("id") == "violations")
    articles = section.find_all("article", "violation")
    violations = [v for c in summary["checks"] for v in c["violations"]]
    assert len(articles) == len(violations) > 0
    for article, v in zip(articles, violations, strict=True):
        assert article.find("h4").text == v["message"]
        for rid in v["request_ids"]:
            assert rid in article.find("p", "ids").text
        pres = " ".join(p.text for p in article.find_all("pre"))
        assert '"svc-us"' in pres  # expected / observed / diff as pretty JSON


def test_frameworks_section_cites_by_name():
    text = next(s for s in _doc("regional-outage__correct").find_all("section")
                if s.attrs.get("id") == "frameworks").text
    for name in ("NIST AI RMF", "OWASP Top 10 for Agentic Applications", "CSA MAESTRO", "MANAGE function",
                 "least privilege of the non-human identity"):
        assert name in text


@pytest.mark.parametrize("name", NAMES)
def test_no_external_resources(name):
    _, html = _report(name)
    assert not re.search(r"https?://", html)
    doc = parse(html)
    for node in [doc, *_walk(doc)]:
        for attr in ("src", "href", "xlink:href", "action", "data"):
            value = node.attrs.get(attr, "")
            assert not value or value.startswith("#"), f"<{node.tag} {attr}={value}>"
    assert not doc.find_all("script") and not doc.find_all("link")
    assert "@import" not in html and "url(" not in html.replace("url(#hatch)", "")


def _walk(node: Node) -> list[Node]:
    out = []
    for child in node.children:
        out += [child, *_walk(child)]
    return out


def _synthetic(tmp_path, n: int, tenant: str = "acme") -> tuple[JudgedRun, Report]:
    scenario = make_scenario()
    b = LedgerBuilder(tmp_path / "ledger.jsonl", scenario).run_start()
    b.fault("p-eu-down", 2, 4, ["p-eu"])
    for i in range(n):
        at = 0.5 + i * 5.0 / n
        calls = [("p-eu", "error"), ("rogue", "ok")] if 2 <= at <= 4 else [("p-eu", "ok")]
        b.exchange(f"r{i:06d}", at, calls, tenant=tenant)
    b.run_end(6)
    return reported(b.close(), tmp_path / "out")


def test_text_from_the_ledger_is_escaped(tmp_path):
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    _, report = _synthetic(tmp_path, 40, tenant=evil)
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    doc = parse(html)
    assert not doc.find_all("script") and not doc.find_all("img")
    assert evil in doc.find("table", "transitions").text


def test_big_runs_are_downsampled(tmp_path):
    n = MAX_MARKS + 500
    _, report = _synthetic(tmp_path, n)
    assert report.picture is not None and report.picture.marks is None
    svg = parse((tmp_path / "out" / "report.html").read_text(encoding="utf-8")).find("svg", "timeline")
    marks = svg.find("g", "marks")
    assert not marks.find_all("use")
    cells = marks.find_all("rect")
    assert 0 < len(cells) < n // 5
    counted = sum(int(re.search(r": (\d+) ", c.find("title").text).group(1)) for c in cells)
    assert counted == n  # every request is in exactly one aggregate


def test_reports_write_report_html_beside_summary(tmp_path):
    _, report = reported(LEDGERS / "regional-outage__correct.jsonl.gz", tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"summary.json", "junit.xml", "report.html", "timeline.svg"}
    assert sorted(p.name for p in report.written) == ["junit.xml", "report.html", "summary.json", "timeline.svg"]
    svg = (tmp_path / "timeline.svg").read_text()
    assert svg.startswith("<svg xmlns=") and "<style>" in svg and "gpt-eu" in svg
    assert report.picture is not None
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == render_html(report.summary, report.picture)


def test_a_summary_without_transitions_still_renders():
    summary, _ = _report("regional-outage__correct")
    _, report = _reported("regional-outage__correct")
    assert report.picture is not None
    doc = parse(render_html({k: v for k, v in summary.items() if k != "transitions"}, report.picture))
    assert not doc.find_all("table", "transitions")
    assert doc.find("svg", "timeline") and doc.find("table", "verdicts")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed (apt-get install chromium)")
def test_headless_chromium_renders_the_report(tmp_path):
    reported(LEDGERS / "regional-outage__unapproved-target.jsonl.gz", tmp_path)
    png = tmp_path / "report.png"
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--window-size=1400,2400", f"--screenshot={png}",
               f"file://{tmp_path / 'report.html'}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert png.exists(), result.stdout + result.stderr
    data = png.read_bytes()
    assert _png_size(data) == (1400, 2400)
    # A blank or error page compresses to a few KB; the report's tables and marks do not.
    assert len(data) > 100_000, len(data)


def test_load_runs_show_their_figures_per_phase():
    summary, _ = _report("regional-outage__correct")
    summary = dict(summary)
    picture = _reported("regional-outage__correct")[1].picture
    assert picture is not None
    phase = {"requests": 60, "failures": 1, "rps": 20.1, "p50_ms": 2.5, "p95_ms": 4.8, "p99_ms": 8.1}
    summary["load"] = {"users": 20, "processes": 2,
                       "observations": {"locust_requests": 315, "ledger_requests": 315, "lost": 0},
                       "locust": {"rps": 20.15, "p95_ms": 1000},
                       "phases": {"overall": phase, "windows": [
                           {"fault": "eu-primary-down", "phases": [{**phase, "phase": p} for p in
                                                                  ("before", "during", "after")]}]}}
    html = render_html(summary, picture)
    assert "Under load" in html and "the ledger holds 315" in html
    assert "eu-primary-down: during" in html and "eu-primary-down: after" in html
    assert "Under load" not in _report("regional-outage__correct")[1]

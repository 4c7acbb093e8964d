"""Control characters a gateway sends never reach a terminal raw nor break a report (issue 12, finding 1).

An audit field holding `\\u0001\\u001b[2J` made junit.xml not well-formed and was printed raw to the
terminal. Every writer now shows such characters as visible escapes (`\\x1b`), through one helper.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console

from harness.console import LiveView, RunState
from harness.core.safe_text import printable, printable_tree
from tests.conftest import ROOT, harness_cmd

FIXTURE = ROOT / "fixtures" / "ledgers" / "regional-outage__correct.jsonl.gz"
HOSTILE = "\u0001\u001b[2J\u009b31m"
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # tab and newline are text


def _hostile_ledger(folder: Path) -> Path:
    """The correct regional outage, every audit naming its fallback with control characters after it."""
    out = []
    for raw in gzip.decompress(FIXTURE.read_bytes()).splitlines(keepends=True):
        event = json.loads(raw)
        if event["type"] == "audit" and event["fields"].get("fallback"):
            event["fields"]["fallback"] += HOSTILE
            raw = (json.dumps(event) + "\n").encode()
        out.append(raw)
    ledger = folder / "ledger.jsonl"
    ledger.write_bytes(b"".join(out))
    return ledger


def test_terminal_output_has_no_raw_control_character(tmp_path):
    result = harness_cmd("check", str(_hostile_ledger(tmp_path)))
    assert result.returncode == 1, result.stderr  # the audits no longer name what served: a violation
    assert "\x1b" not in result.stdout and not RAW_CONTROL.search(result.stdout)
    assert "claude-eu\\x01\\x1b[2J\\x9b31m" in result.stdout  # what the gateway sent, readable


def test_reports_stay_well_formed_and_hold_no_raw_control_character(tmp_path):
    ledger = _hostile_ledger(tmp_path)
    result = harness_cmd("report", str(ledger))
    assert result.returncode == 0, result.stderr
    root = ET.parse(tmp_path / "junit.xml").getroot()  # well-formed XML 1.0
    failures = [f.text or "" for f in root.iter("failure")]
    assert any("\\x1b[2J" in text for text in failures)
    for name in ("junit.xml", "report.html", "timeline.svg"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert not RAW_CONTROL.search(text), name
    assert "\\x1b[2J" in (tmp_path / "report.html").read_text(encoding="utf-8")
    json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))  # JSON escapes controls itself
    assert not RAW_CONTROL.search((tmp_path / "summary.json").read_text(encoding="utf-8"))


def test_the_live_view_escapes_names_from_the_ledger():
    state = RunState(10)
    state.feed({"type": "run_start", "ts": 1.0})
    state.feed({"type": "fault_start", "ts": 1.0, "fault": "f" + HOSTILE, "targets": ["p[bold]" + HOSTILE]})
    state.feed({"type": "upstream", "ts": 1.5, "provider": "p[bold]" + HOSTILE, "outcome": "ok"})
    view = LiveView(10, stream=io.StringIO())
    view.state = state
    assert "\x1b" not in view.plain_line(now=2.0) and "\\x1b" in view.plain_line(now=2.0)
    buffer = io.StringIO()
    Console(file=buffer, color_system=None, width=200).print(view._table())
    drawn = buffer.getvalue()
    assert not RAW_CONTROL.search(drawn)
    assert "p[bold]\\x01" in drawn  # shown as text: not Rich markup, not a terminal control


def test_printable_escapes_every_control_but_tab_and_newline():
    text = "a\tb\nc" + "".join(map(chr, range(0x20))) + "\x7f\x85\x9b\ud800\ufffe"
    shown = printable(text)
    assert not RAW_CONTROL.search(shown.replace("\t", "").replace("\n", ""))
    assert shown.startswith("a\tb\nc\\x00\\x01") and "\\x1b" in shown and "\\ud800" in shown
    assert "\n" not in printable("one\ntwo", one_line=True)
    assert printable_tree({"k\x1b": ["v\x01", 3]}) == {"k\\x1b": ["v\\x01", 3]}

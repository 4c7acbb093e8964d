"""Judging a ledger with the report handlers, as `harness report` does, for the report tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.engine.judge import judge_ledger
from harness.ledger.outcome import JudgedRun
from harness.reporting import Report, Reports

ALL_FORMATS = ("summary.json", "junit.xml", "report.html")


def reported(ledger: Path, out_dir: Path | None = None, formats: tuple[str, ...] = ALL_FORMATS,
             checks: list[str] | None = None) -> tuple[JudgedRun, Report]:
    """The judged run and its Report (summary, timeline picture, files written into `out_dir`, by default
    a fresh temporary folder)."""
    out = out_dir or Path(tempfile.mkdtemp(prefix="harness-report-test-"))
    judged = judge_ledger(ledger, checks, [Reports(formats, out)])
    return judged, judged.reports[Reports.name]

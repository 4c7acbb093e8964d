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
    """The judged run and its Report (summary, timeline picture, files written into `out_dir`; without
    one, into a temporary folder removed again: the Report keeps what the tests read)."""
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="harness-report-test-") as tmp:
            return reported(ledger, Path(tmp), formats, checks)
    judged = judge_ledger(ledger, checks, [Reports(formats, out_dir)])
    return judged, judged.reports[Reports.name]

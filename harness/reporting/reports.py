"""The report files of a judged run, as one handler a front end subscribes (harness.ledger.outcome).

`Reports` asks for the figures it needs (run counts, the dependency-transition table, a load run's
phases, the timeline picture when report.html is wanted), builds the summary once and writes the
chosen formats. A format is one writer in FORMATS: adding one touches no engine code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.safe_text import printable
from harness.ledger.feed import Accumulator, RunFrame
from harness.ledger.outcome import JudgedRun
from harness.reporting.html import render_html
from harness.reporting.junit import write_junit
from harness.reporting.load import LoadPhases
from harness.reporting.picture import Picture, TimelinePicture
from harness.reporting.summary import RunStats, build_summary
from harness.reporting.timeline import standalone_timeline_svg
from harness.reporting.transitions import Transitions


@dataclass(frozen=True)
class Report:
    summary: dict[str, Any]
    picture: Picture | None             # what the timeline shows, when report.html was wanted
    written: list[Path] = field(default_factory=list)


Writer = Callable[[Path, Report], list[Path]]


def _summary_json(out: Path, report: Report) -> list[Path]:
    path = out / "summary.json"
    path.write_text(json.dumps(report.summary, indent=2, default=str) + "\n", encoding="utf-8")
    return [path]


def _junit(out: Path, report: Report) -> list[Path]:
    path = out / "junit.xml"
    write_junit(path, report.summary)
    return [path]


def _html(out: Path, report: Report) -> list[Path]:
    assert report.picture is not None
    span = float(report.summary["stats"].get("duration_s") or 0)
    page, svg = out / "report.html", out / "timeline.svg"
    # No raw control character anywhere in the page or the picture (provider and fault names are the run's).
    page.write_text(printable(render_html(report.summary, report.picture)), encoding="utf-8")
    svg.write_text(printable(standalone_timeline_svg(report.picture, span)), encoding="utf-8")
    return [page, svg]


FORMATS: dict[str, Writer] = {"summary.json": _summary_json, "junit.xml": _junit, "report.html": _html}
NEEDS_PICTURE = frozenset({"report.html"})


class Reports:
    """Builds the summary and writes `formats` into `out_dir` (default: beside the ledger)."""

    name = "report"

    def __init__(self, formats: Sequence[str] = tuple(FORMATS), out_dir: Path | None = None) -> None:
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise HarnessError(f"unknown report format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
        self.formats = list(formats)
        self.out_dir = out_dir

    def figures(self, frame: RunFrame) -> Sequence[Accumulator]:
        # Named, so `judged` takes each back by name (made again if the ledger is fed a second time).
        self._made: dict[str, Accumulator] = {"stats": RunStats(frame), "transitions": Transitions.of(frame)}
        if frame.mode == "load":
            self._made["phases"] = LoadPhases(frame)
        if NEEDS_PICTURE & set(self.formats):
            self._made["picture"] = TimelinePicture(frame)
        return list(self._made.values())

    def judged(self, run: JudgedRun, figures: list[Any]) -> Report:
        got = dict(zip(self._made, figures, strict=True))
        report = Report(build_summary(run, got["stats"], got["transitions"], got.get("phases")), got.get("picture"))
        if self.formats:
            out = self.out_dir or run.ledger.parent
            out.mkdir(parents=True, exist_ok=True)
            for name in self.formats:
                report.written.extend(FORMATS[name](out, report))
        return report

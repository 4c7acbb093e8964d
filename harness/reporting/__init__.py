"""Reports of a judged run: handlers a front end subscribes (summary.json, junit.xml, report.html with
timeline.svg, the terminal table), built from figures streamed with the checks."""

from typing import Any

from harness.reporting.frameworks import framework_mapping
from harness.reporting.reports import FORMATS, Report, Reports
from harness.reporting.summary import build_summary
from harness.reporting.text import Terminal, explain_failure, render_load_text, render_text

__all__ = ["FORMATS", "Report", "Reports", "Terminal", "build_summary", "explain_failure", "framework_mapping",
           "render_load_text", "render_text", "summary_of"]


def summary_of(reports: dict[str, Any]) -> dict[str, Any]:
    """The summary a `Reports` handler built, from a judged run's (or a run outcome's) `reports`."""
    return reports[Reports.name].summary

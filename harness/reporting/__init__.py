"""Reports of a run: summary.json, junit.xml, report.html and the terminal text."""

from harness.reporting.frameworks import framework_mapping
from harness.reporting.html import render_html
from harness.reporting.summary import build_summary, run_stats, write_reports
from harness.reporting.text import render_text
from harness.reporting.transitions import transitions

__all__ = ["build_summary", "framework_mapping", "render_html", "render_text", "run_stats", "transitions",
           "write_reports"]

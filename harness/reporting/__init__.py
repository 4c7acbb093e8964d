"""Reports of a run: summary.json, junit.xml and the terminal text."""

from harness.reporting.summary import build_summary, run_stats, write_reports
from harness.reporting.text import render_text

__all__ = ["build_summary", "render_text", "run_stats", "write_reports"]

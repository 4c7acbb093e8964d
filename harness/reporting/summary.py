"""summary.json: the run's verdict, each check's verdict and evidence, and its statistics."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from harness.core.model import Scenario
from harness.core.verdict import CheckResult, Verdict
from harness.ledger import History
from harness.reporting.frameworks import framework_mapping
from harness.reporting.html import render_html
from harness.reporting.junit import write_junit
from harness.reporting.timeline import standalone_timeline_svg
from harness.reporting.transitions import transitions

SUMMARY_VERSION = 1


def run_stats(history: History) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    served: Counter[str] = Counter()
    upstream = 0
    for request_id, request in history.requests.items():
        outcomes[request["outcome"]] += 1
        served[history.served_by(request_id) or "none"] += 1
    for calls in history.upstream.values():
        upstream += len(calls)
    return {
        "requests": len(history.requests),
        "outcomes": dict(outcomes),
        "served_by": dict(served),
        "upstream_calls": upstream + len(history.orphan_upstream),
        "uncorrelated_upstream_calls": len(history.orphan_upstream),
        "audit_events": len(history.audits),
        "fault_windows": [
            {"fault": w.name, "start_s": history.rel(w.start), "end_s": history.rel(w.end),
             "targets": list(w.targets), "healed": w.healed}
            for w in history.windows
        ],
        "kill_switch_windows": [
            {"off_s": history.rel(k.start), "on_s": history.rel(k.end)} for k in history.kill_switch
        ],
        "duration_s": round(history.t_last - history.t0, 2),
    }


def build_summary(history: History, results: list[CheckResult], reproduce: dict[str, str],
                  scenario: Scenario | None = None) -> dict[str, Any]:
    """The run's summary. `transitions` needs the policy, so it is present only when `scenario` is given."""
    start = history.run_start
    end = history.run_end or {"status": "killed", "reason": "the ledger has no run_end: the harness was killed"}
    summary: dict[str, Any] = {
        "summary_version": SUMMARY_VERSION,
        "run_id": start.get("run_id"),
        "scenario": {
            "name": start.get("scenario_name"),
            "path": start.get("scenario_path"),
            "sha256": start.get("scenario_sha256"),
            "seed": start.get("seed"),
        },
        "harness_version": start.get("harness_version"),
        "status": end.get("status"),
        "status_reason": end.get("reason"),
        "verdict": Verdict.combine([r.verdict for r in results]).value,
        "checks": [r.to_dict() for r in results],
        "stats": run_stats(history),
        "ledger": history.path,
        "reproduce": reproduce,
        "frameworks": framework_mapping(results),
    }
    if scenario is not None:
        summary["transitions"] = transitions(scenario, history)
    return summary


def write_reports(run_dir: Path, summary: dict[str, Any], history: History | None = None) -> None:
    """summary.json and junit.xml; with the history also report.html (its timeline needs every request)."""
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    write_junit(run_dir / "junit.xml", summary)
    if history is not None:
        (run_dir / "report.html").write_text(render_html(summary, history), encoding="utf-8")
        (run_dir / "timeline.svg").write_text(standalone_timeline_svg(history), encoding="utf-8")

"""The short table `harness run` and `harness check` print, and the evidence of each failure."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from harness.core.safe_text import printable
from harness.ledger.feed import Accumulator, RunFrame
from harness.ledger.outcome import JudgedRun
from harness.reporting.diffs import diff_text
from harness.reporting.reports import Reports

_MARK = {"pass": "PASS", "fail": "FAIL", "unknown": "UNKNOWN"}
MAX_VIOLATIONS_SHOWN = 5
MAX_TRANSITIONS_SHOWN = 10
MAX_DIFF_LINES = 12


def render_text(summary: dict[str, Any]) -> str:
    s = summary["scenario"]
    stats = summary["stats"]
    lines = [
        f"scenario {s['name']}  verdict {_MARK[summary['verdict']]}  run {summary['status']}"
        + (f" ({summary['status_reason']})" if summary.get("status_reason") else ""),
        f"  {stats['requests']} requests, served by {_served(stats['served_by'])}, "
        f"{stats['audit_events']} audit events, {len(stats['fault_windows'])} fault window(s)",
    ]
    width = max((len(c["check"]) for c in summary["checks"]), default=10)
    for check in summary["checks"]:
        lines.append(f"  {_MARK[check['verdict']]:<7} {check['check']:<{width}}  {check['summary']}")
    lines.extend(transition_lines(summary.get("transitions") or []))
    failed = [c for c in summary["checks"] if c["verdict"] == "fail"]
    for check in failed:
        lines.append("")
        lines.append(f"{check['check']} failed:")
        lines.extend(_violation_lines(check))
    if failed or summary["verdict"] != "pass":
        lines.append("")
        lines.append(f"reproduce: {summary['reproduce']['run']}")
        lines.append(f"re-judge:  {summary['reproduce']['check']}")
    return printable("\n".join(lines))  # text from the ledger: never a raw control character to a terminal


def _violation_lines(check: dict[str, Any]) -> list[str]:
    lines = []
    for v in check["violations"][:MAX_VIOLATIONS_SHOWN]:
        lines.append(f"  - {v['message']}")
        if v["request_ids"]:
            lines.append(f"    requests: {', '.join(v['request_ids'][:10])}"
                         + (" ..." if len(v["request_ids"]) > 10 else ""))
        for key in ("expected", "observed"):
            if v.get(key) not in (None, {}, []):
                lines.append(f"    {key}: {_short(v[key])}")
        if v.get("diff") not in (None, {}, []):
            # One change a line (`~ content: "json" -> "text"`): a DeepDiff cut at 400 characters hides the end.
            diff = diff_text(v["diff"], "      ")
            lines.append("    diff:")
            lines.extend(diff[:MAX_DIFF_LINES])
            if len(diff) > MAX_DIFF_LINES:
                lines.append(f"      ... and {len(diff) - MAX_DIFF_LINES} more in summary.json")
    hidden = len(check["violations"]) - MAX_VIOLATIONS_SHOWN
    if hidden > 0:
        lines.append(f"  ... and {hidden} more in summary.json")
    return lines


def transition_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The dependency-transition table, short: one line per move, then what changed in it (trust
    envelope, capability, a vendor's own reroute). Rows come unapproved first (transitions.py)."""
    if not rows:
        return []
    lines = ["", "dependency transitions (from the providers' records):"]
    for t in rows[:MAX_TRANSITIONS_SHOWN]:
        arrow = "=>" if t.get("via") == "vendor" else "->"
        ref = f" {t['approval_ref']}" if t.get("approval_ref") else ""
        lines.append(f"  {t['route']}: {t['primary']} {arrow} {t['fallback']}  {t['status'].upper()}{ref}  "
                     f"{t['requests']} request(s), {t['served']} served, {t['first_s']:g}-{t['last_s']:g} s")
        reroute = t.get("vendor_reroute")
        if reroute:
            lines.append(f"    {reroute['summary']}, not seen by the gateway")
        env = t["trust_envelope"]
        if env["changed"]:
            marks = [c["summary"] + (" (BREACH)" if c["breach"] else " (exception)" if c.get("exception") else "")
                     for c in env["changes"]]
            lines.append(f"    trust envelope: {'; '.join(marks)}")
        cap = t.get("capability") or {}
        if cap.get("changed"):
            marks = [item["summary"] + (" (declared)" if item["declared"] else " (NOT DECLARED)")
                     for item in cap["lost"]]
            lines.append(f"    capability: {'; '.join(marks)}")
    hidden = len(rows) - MAX_TRANSITIONS_SHOWN
    if hidden > 0:
        lines.append(f"  ... and {hidden} more in summary.json")
    return lines


def explain_failure(check: dict[str, Any], summary: dict[str, Any]) -> str:
    """One failed check as the CLI prints it: the violations, their evidence, how to reproduce."""
    lines = [f"{check['check']} failed in scenario {summary['scenario']['name']}: {check['summary']}"]
    lines.extend(_violation_lines(check))
    lines.append(f"reproduce: {summary['reproduce']['run']}")
    lines.append(f"re-judge:  {summary['reproduce']['check']}")
    return printable("\n".join(lines))


def _served(served: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(served.items(), key=lambda kv: -kv[1])) or "nobody"


def _short(value: Any, limit: int = 400) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + " ..."


def render_load_text(load: dict[str, Any]) -> str:
    """A few lines for the terminal: counts, locust's totals, each window's phases."""
    obs = load.get("observations") or {}
    loc = load.get("locust") or {}
    where = (f"{load.get('workers_expected')} remote worker(s)" if load.get("workers_expected")
             else f"{load.get('processes') or 1} process(es)")
    lines = [f"  load: {load.get('users')} users, {where}, "
             f"ledger {obs.get('ledger_requests')} requests, locust {obs.get('locust_requests')} "
             f"(difference {obs.get('difference')})",
             f"  locust: {loc.get('rps')} req/s, {loc.get('failures')} failures, "
             f"p50 {loc.get('p50_ms')} ms, p95 {loc.get('p95_ms')} ms, p99 {loc.get('p99_ms')} ms"]
    lines += [f"  worker {w['index']} ({w['host']}): locust {w['locust_requests']}, ledger {w['ledger_requests']}"
              + ("" if w["done"] else f", LOST mid-run ({w['lost']} observation(s) at least)")
              for w in ((obs.get("remote") or {}).get("workers") or [])]
    for window in (load.get("phases") or {}).get("windows", []):
        parts = [f"{p['phase']} {p['rps']} req/s {p['failures']}/{p['requests']} failed p95 {p['p95_ms']} ms"
                 for p in window["phases"]]
        lines.append(f"  {window['fault']}: " + "; ".join(parts))
    return printable("\n".join(lines))


class Terminal:
    """Prints the table (and a load run's figures) once the summary is built: subscribe it after Reports."""

    name = "terminal"

    def __init__(self, stream: TextIO | None = None, before: Callable[[], None] | None = None) -> None:
        self.stream = stream
        self.before = before  # e.g. stop a live view first, so the table is not drawn over

    def figures(self, frame: RunFrame) -> Sequence[Accumulator]:
        return ()

    def judged(self, run: JudgedRun, figures: list[Any]) -> str:
        summary = run.reports[Reports.name].summary
        text = render_text(summary)
        if "load" in summary:
            text += "\n" + render_load_text(summary["load"])
        if self.before is not None:
            self.before()
        print(text, file=self.stream or sys.stdout, flush=True)
        return text

"""report.html: one self-contained page a reviewer can open offline and read without the ledger.

Everything is inline (CSS, SVG); nothing is fetched at view time, so the file can be attached to a
change record or an audit pack as it is. Every piece of text from the run (scenario names, gateway
answers, audit fields) is escaped: a ledger is data written by the system under test.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from harness.core.safe_text import printable
from harness.reporting.diffs import diff_lines
from harness.reporting.html_style import CSS
from harness.reporting.picture import Picture
from harness.reporting.timeline import CATEGORIES, success_rate_svg, timeline_svg

MAX_IDS_SHOWN = 20
_BADGE = {"pass": "PASS", "fail": "FAIL", "unknown": "UNKNOWN"}


def _e(value: Any) -> str:
    return escape(printable("" if value is None else value))


def _badge(verdict: str) -> str:
    return f'<span class="badge v-{_e(verdict)}">{_e(_BADGE.get(verdict, verdict))}</span>'


def _pretty(value: Any) -> str:
    return f"<pre>{_e(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre>"


def _diff(value: Any) -> str:
    """A DeepDiff one change a line (changed / removed / added marked and coloured), the JSON kept folded
    beside it; anything else as JSON."""
    lines = diff_lines(value)
    if lines is None:
        return _pretty(value)
    cls = {"+": "d-add", "-": "d-del", "~": "d-chg"}
    items = "".join(f'<li class="{cls[line.mark]}"><span class="d-mark" aria-hidden="true">{_e(line.mark)}</span> '
                    f"<code>{_e(line.text)}</code></li>" for line in lines)
    return f'<ul class="diff">{items}</ul><details><summary>as JSON</summary>{_pretty(value)}</details>'


def _evidences(names: list[str]) -> str:
    """One evidence a line: a name may hold a comma ("equivalence, or knowingly degraded")."""
    if not names:
        return "-"
    return f'<ul class="plain">{"".join(f"<li>{_e(name)}</li>" for name in names)}</ul>'


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{_e(k)} ({v})" for k, v in counts.items()) or "-"


def _header(summary: dict[str, Any]) -> str:
    s, stats = summary["scenario"], summary["stats"]
    served = ", ".join(f"{_e(k)} {v}" for k, v in sorted(stats["served_by"].items(), key=lambda kv: -kv[1]))
    status = _e(summary["status"]) + (f" ({_e(summary['status_reason'])})" if summary.get("status_reason") else "")
    facts = [
        ("Verdict", _badge(summary["verdict"])), ("Run", status), ("Seed", _e(s.get("seed"))),
        ("Requests", _e(stats["requests"])), ("Served by", served or "nobody"),
        ("Upstream calls", _e(stats["upstream_calls"])), ("Audit events", _e(stats["audit_events"])),
        ("Fault windows", _e(len(stats["fault_windows"]))), ("Duration", f"{_e(stats['duration_s'])} s"),
        ("Run id", f"<code>{_e(summary.get('run_id'))}</code>"),
    ]
    cells = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (f'<header><h1>Fallback governance report: {_e(s.get("name"))}</h1>'
            f'<dl class="facts">{cells}</dl>'
            f'<p class="repro">Reproduce: <code>{_e(summary["reproduce"].get("run"))}</code><br>'
            f'Re-judge offline: <code>{_e(summary["reproduce"].get("check"))}</code></p></header>')


def _verdicts(summary: dict[str, Any]) -> str:
    rows = []
    for c in summary["checks"]:
        name = _e(c["check"])
        link = f'<a href="#v-{name}">{name}</a>' if c["violations"] else name
        rows.append(f'<tr class="r-{_e(c["verdict"])}"><th scope="row">{link}</th><td>{_badge(c["verdict"])}</td>'
                    f'<td>{_e(c["summary"])}</td><td>{_evidences(c.get("evidences", []))}</td></tr>')
    return ('<section id="verdicts"><h2>Verdicts</h2><table class="verdicts"><caption>One row per check; verdicts '
            'compose as fail &gt; unknown &gt; pass.</caption><thead><tr><th scope="col">Check</th>'
            '<th scope="col">Verdict</th><th scope="col">Summary</th><th scope="col">Evidences</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


def _timeline(summary: dict[str, Any], picture: Picture) -> str:
    span = float(summary["stats"].get("duration_s") or 0)
    legend = "".join(f'<li><span class="swatch" style="background:{col}"></span>{_e(label)}</li>'
                     for label, col in CATEGORIES.values())
    return ('<section id="timeline"><h2>Timeline</h2><p class="hint">Each mark is one request, in the lane of the '
            'provider that really answered it (provider-side ground truth, not the gateway\'s claim). Red bands are '
            'fault windows (darker on the faulted provider\'s lane); blue hatched bands are kill-switch windows. '
            'Hover a mark or a band for details.</p>'
            f'<figure>{timeline_svg(picture, span)}<figcaption><ul class="legend">{legend}'
            '<li><span class="swatch fault-swatch"></span>fault window</li>'
            '<li><span class="swatch switch-swatch"></span>kill switch: fallback off</li></ul></figcaption></figure>'
            '<h3>Success rate per second</h3>'
            f'<figure>{success_rate_svg(picture, span)}<figcaption>Share of the requests sent in each second that got '
            'a 2xx status (one the gateway signalled as cut is not counted; a cut stream passed off as a clean 2xx '
            'is, and shows as incomplete in the timeline).</figcaption></figure></section>')


def _envelope(env: dict[str, Any]) -> str:
    if not env["changes"]:
        return '<span class="ok">unchanged</span>'
    items = []
    for c in env["changes"]:
        extra = (f' <span class="muted">allowed by exception {_e(c["exception"]["approval_ref"])}</span>'
                 if c.get("exception") else "")
        cls = "breach" if c["breach"] else "changed"
        items.append(f'<li class="{cls}">{_e(c["summary"])} <span class="muted">({c["requests"]} req.)</span>'
                     f'{extra}</li>')
    return f'<ul class="plain">{"".join(items)}</ul>'


def _capability(t: dict[str, Any]) -> str:
    """What the move changed besides the trust envelope: the vendor's own reroute, capabilities lost."""
    items = []
    reroute = t.get("vendor_reroute")
    if reroute:
        items.append(f'<li class="breach">{_e(reroute["summary"])} <span class="muted">(the gateway did not see '
                     "it)</span></li>")
    cap = t.get("capability") or {}
    for item in cap.get("lost", []):
        # A loss the approval names (`degrades`) is a known degradation; any other is a change nobody approved.
        note = "declared in degrades" if item["declared"] else "not declared"
        items.append(f'<li class="{"changed" if item["declared"] else "breach"}">{_e(item["summary"])} '
                     f'<span class="muted">({note})</span></li>')
    if not items:
        return '<span class="ok">unchanged</span>' if cap else '<span class="muted">-</span>'
    return f'<ul class="plain">{"".join(items)}</ul>'


def _transition_row(t: dict[str, Any]) -> str:
    status = t["status"]
    cls = {"unapproved": "row-unapproved", "partly unapproved": "row-partly"}.get(status, "row-approved")
    approval = f'<span class="tag t-{_e(status.replace(" ", "-"))}">{_e(status.upper())}</span>'
    if t["approval_ref"]:
        approval += f"<br><code>{_e(t['approval_ref'])}</code>"
    if t["requests_outside_approval"]:
        approval += f'<br><span class="muted">{t["requests_outside_approval"]} request(s) outside approval</span>'
    owner = _e(t["owner"] or t["approved_by"] or "-")  # the approver answers for it when no owner is named
    if t["owner"] and t["approved_by"]:
        owner += f'<br><span class="muted">approved by {_e(t["approved_by"])}</span>'
    doc = _e(t["equivalence"] or "-")
    if t["documentation"]:
        doc += f"<br><code>{_e(t['documentation'])}</code>"
    affected = (f"tenants: {_counts(t['tenants'])}<br>regions: {_counts(t['regions'])}<br>"
                f"classes: {_counts(t['request_classes'])}")
    if t.get("fail_closed_requests"):
        affected += f'<br><span class="breach">{t["fail_closed_requests"]} fail-closed request(s) moved</span>'
    envelope_cls = ' class="breach-cell"' if t["trust_envelope"]["breach"] else ""
    move = f'{_e(t["route"])}: {_e(t["primary"])} &rarr; {_e(t["fallback"])}'
    if t.get("vendor_reroute"):
        move += (f'<br><span class="tag t-vendor">VENDOR REROUTE</span><br><span class="muted">answered through '
                 f'{_e(t["vendor_reroute"]["from"])}</span>')
        cls += " row-vendor"
    return (f'<tr class="{cls}"><th scope="row">{move}</th>'
            f'<td>{approval}</td><td>{owner}</td><td>{doc}</td><td class="affected">{affected}</td>'
            f'<td class="num">{t["requests"]}<br><span class="muted">{t["served"]} served, {t["calls"]} calls</span>'
            f'</td><td class="num">{t["first_s"]:g} &ndash; {t["last_s"]:g} s</td><td>{_counts(t["triggers"])}</td>'
            f'<td class="capability">{_capability(t)}</td>'
            f"<td{envelope_cls}>{_envelope(t['trust_envelope'])}</td></tr>")


def _transitions(summary: dict[str, Any]) -> str:
    head = '<section id="transitions"><h2>Dependency transitions</h2>'
    if "transitions" not in summary:
        return head + '<p class="muted">Not available: this summary was built without the scenario.</p></section>'
    rows = summary["transitions"]
    if not rows:
        return head + "<p>No request was sent to a provider other than its route's primary.</p></section>"
    cols = ("Route: primary &rarr; fallback", "Approval", "Owner", "Equivalence / docs", "Affected",
            "Requests", "First &ndash; last", "Triggered by", "Capability / behaviour", "Trust envelope")
    header = "".join(f'<th scope="col">{c}</th>' for c in cols)
    return (head + '<p class="hint">Every primary &rarr; fallback move seen in the providers\' records, including a '
            'vendor\'s own reroute the gateway never saw. Unapproved moves, trust-envelope breaches and capabilities '
            'lost without being declared in the approval (<code>degrades</code>) are highlighted; times are seconds '
            'since the run started.</p>'
            f'<div class="scroll"><table class="transitions"><thead><tr>{header}</tr></thead><tbody>'
            f'{"".join(_transition_row(t) for t in rows)}</tbody></table></div></section>')


def _violations(summary: dict[str, Any]) -> str:
    parts = ['<section id="violations"><h2>Violations and evidence</h2>']
    failing = [c for c in summary["checks"] if c["violations"]]
    if not failing:
        parts.append("<p>No check recorded a violation.</p>")
    for c in failing:
        parts.append(f'<h3 id="v-{_e(c["check"])}">{_e(c["check"])} {_badge(c["verdict"])}</h3>')
        for v in c["violations"]:
            ids = v.get("request_ids") or []
            count = (v.get("observed") or {}).get("count") if isinstance(v.get("observed"), dict) else None
            shown = ", ".join(f"<code>{_e(i)}</code>" for i in ids[:MAX_IDS_SHOWN])
            more = f" &hellip; of {count}" if isinstance(count, int) and count > len(ids[:MAX_IDS_SHOWN]) else ""
            evidence = "".join(f'<div><h5>{key}</h5>{(_diff if key == "diff" else _pretty)(v[key])}</div>'
                               for key in ("expected", "observed", "diff") if v.get(key) not in (None, {}, []))
            parts.append(f'<article class="violation"><h4>{_e(v["message"])}</h4>'
                         + (f'<p class="ids">Requests: {shown}{more}</p>' if ids else "")
                         + f'<div class="evidence">{evidence}</div></article>')
    parts.append(f'<p class="repro">Reproduce: <code>{_e(summary["reproduce"].get("run"))}</code></p></section>')
    return "".join(parts)


def _frameworks(summary: dict[str, Any]) -> str:
    fw = summary.get("frameworks")
    head = '<section id="frameworks"><h2>What the checks evidence</h2>'
    if not fw:
        return head + '<p class="muted">Not available in this summary.</p></section>'
    meanings = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in fw["evidences"].items())
    rows = []
    for c in fw["checks"]:
        cited = "".join(f"<li><strong>{_e(name)}:</strong> {_e(', '.join(parts))}</li>"
                        for name, parts in c["frameworks"].items() if parts)
        rows.append(f'<tr><th scope="row">{_e(c["check"])}</th><td>{_badge(c["verdict"])}</td>'
                    f'<td>{_evidences([e["name"] for e in c["evidences"]])}</td>'
                    f'<td><ul class="plain">{cited or "<li>-</li>"}</ul></td></tr>')
    return (head + f'<dl class="meanings">{meanings}</dl><table class="frameworks"><caption>{_e(fw["note"])}'
            '</caption><thead><tr><th scope="col">Check</th><th scope="col">Verdict</th><th scope="col">Evidences</th>'
            f'<th scope="col">Frameworks (by name)</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>')


def _load(summary: dict[str, Any]) -> str:
    """`harness load` runs: locust's totals, the count check, and figures before / during / after each window."""
    load = summary.get("load")
    if not load:
        return ""
    obs, locust = load.get("observations") or {}, load.get("locust") or {}
    rows = [("overall", load["phases"]["overall"])]
    for window in load["phases"].get("windows", []):
        rows += [(f"{window['fault']}: {p['phase']}", p) for p in window["phases"]]
    body = "".join(f"<tr><th scope=\"row\">{_e(name)}</th><td>{p['requests']}</td><td>{p['failures']}</td>"
                   f"<td>{p['rps']}</td><td>{p['p50_ms']}</td><td>{p['p95_ms']}</td><td>{p['p99_ms']}</td></tr>"
                   for name, p in rows)
    workers = (obs.get("remote") or {}).get("workers") or []
    remote = "".join(f"<tr><th scope=\"row\">worker {_e(w['index'])} ({_e(w['host'])})</th>"
                     f"<td>{_e(w['locust_requests'])}</td><td>{_e(w['ledger_requests'])}</td>"
                     f"<td>{'shipped everything' if w['done'] else 'lost mid-run'}</td><td>{_e(w['lost'])}</td></tr>"
                     for w in workers)
    remote_table = ("<table><thead><tr><th>remote worker</th><th>locust counted</th><th>in the ledger</th><th>end</th>"
                    f"<th>lost</th></tr></thead><tbody>{remote}</tbody></table>") if workers else ""
    return ('<section id="load"><h2>Under load</h2>'
            f"<p>{_e(load.get('users'))} users, "
            + (f"{_e(load.get('workers_expected'))} remote workers" if load.get("workers_expected")
               else f"{_e(load.get('processes'))} worker processes")
            + f"; locust counted "
            f"{_e(obs.get('locust_requests'))} requests, the ledger holds {_e(obs.get('ledger_requests'))} "
            f"(lost: {_e(obs.get('lost'))}); locust: {_e(locust.get('rps'))} req/s, p95 "
            f"{_e(locust.get('p95_ms'))} ms.</p>"
            "<table><thead><tr><th>phase</th><th>requests</th><th>failures</th><th>req/s</th><th>p50 ms</th>"
            f"<th>p95 ms</th><th>p99 ms</th></tr></thead><tbody>{body}</tbody></table>{remote_table}</section>")


def render_html(summary: dict[str, Any], picture: Picture) -> str:
    """The whole page as one string; `picture` supplies the marks of the timeline (harness.reporting.picture)."""
    title = f"{summary['scenario'].get('name')}: {summary['verdict'].upper()} - fallback harness report"
    nav = "".join(f'<a href="#{a}">{label}</a>' for a, label in (
        ("verdicts", "Verdicts"), ("timeline", "Timeline"), ("transitions", "Transitions"),
        ("violations", "Violations"), ("frameworks", "Frameworks")))
    footer = (f"Generated offline from <code>{_e(summary.get('ledger'))}</code> by fallback-harness "
              f"{_e(summary.get('harness_version'))}; scenario sha256 <code>{_e(summary['scenario'].get('sha256'))}"
              "</code>. This page loads nothing from the network.")
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            f'initial-scale=1"><title>{_e(title)}</title><style>{CSS}</style></head><body>'
            f'{_header(summary)}<nav aria-label="Sections">{nav}</nav><main>{_verdicts(summary)}'
            f"{_timeline(summary, picture)}{_load(summary)}{_transitions(summary)}{_violations(summary)}"
            f"{_frameworks(summary)}"
            f"</main><footer>{footer}</footer></body></html>\n")

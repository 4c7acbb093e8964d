"""lint-config reports: the terminal's text and JSON (SARIF is harness.lint.sarif)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from harness.core.safe_text import printable
from harness.lint.model import Finding
from harness.lint.policy_view import shown


@dataclass(frozen=True)
class Linted:
    """One configuration, judged: what it is, what it was judged against, what was found."""

    path: str
    kind: str
    judged_against: tuple[str, ...]   # the drills (or the registry) whose policy judged it
    findings: tuple[Finding, ...]


def errors(results: list[Linted]) -> int:
    return sum(1 for r in results for f in r.findings if f.level == "error")


def finding_dict(finding: Finding) -> dict[str, object]:
    return {"file": shown(finding.where.file), "line": finding.where.line, "column": finding.where.column,
            "rule": finding.rule, "level": finding.level, "message": finding.message, "route": finding.route,
            "registry_entry": finding.registry_entry, "scenario": finding.scenario, "check": finding.check}


def render_json(results: list[Linted]) -> str:
    findings = [finding_dict(f) for r in results for f in r.findings]
    return json.dumps({
        "tool": "fallback-harness lint-config",
        "configs": [{"path": r.path, "kind": r.kind, "judged_against": list(r.judged_against),
                     "findings": len(r.findings)} for r in results],
        "findings": findings,
        "summary": {"configs": len(results), "errors": errors(results),
                    "warnings": sum(1 for f in findings if f["level"] != "error")},
    }, indent=2)


def render_text(results: list[Linted]) -> str:
    """Errors first (what fails the review), then warnings (true of the file, not yet shown by a drill)."""
    lines: list[str] = []
    for level in ("error", "warning", "note"):
        for f in (f for r in results for f in r.findings if f.level == level):
            where = f"{shown(f.where.file)}:{f.where.line}:{f.where.column}"
            lines.append(printable(f"{where}: {f.level} {f.rule}: {f.message}", one_line=True))
            if f.registry_entry:
                lines.append(printable(f"  registry entry: {f.registry_entry}", one_line=True))
            if f.scenario:
                lines.append(printable(f"  demonstrated by: {f.scenario} (check {f.check})", one_line=True))
            elif f.check and f.check != "none" and f.level == "error":
                lines.append(f"  runtime check: {f.check} (no drill in the scenarios folder runs this configuration: "
                             f"judged against the registry alone)")
            elif f.check and f.check != "none":
                lines.append(f"  runtime check: {f.check} (the drills of this configuration never take the path)")
    count = sum(len(r.findings) for r in results)
    judged = sorted({j for r in results for j in r.judged_against})
    lines.append(f"{count} finding{'s' if count != 1 else ''} ({errors(results)} error"
                 f"{'s' if errors(results) != 1 else ''}) in {len(results)} configuration"
                 f"{'s' if len(results) != 1 else ''}; judged against {', '.join(judged) or 'nothing'}")
    return "\n".join(lines) + "\n"

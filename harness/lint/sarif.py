"""lint-config findings as SARIF 2.1.0, the format code-scanning UIs show on a pull request.

One run; the rules table is read from harness.lint.rules.RULES. Locations are relative to the working
directory under the uriBaseId %SRCROOT% (run lint-config from the repository root), the registry entry a
finding conflicts with is a related location, and the demonstrating drill and check are properties.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.lint.model import Finding
from harness.lint.output import Linted
from harness.lint.policy_view import shown
from harness.lint.rules import RULES

SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
TOOL = "fallback-harness lint-config"
DOCS = "docs/lint-config.md"
SRCROOT = "%SRCROOT%"
# "policy/fallback-registry.yaml:14:9 (chat: gpt-eu -> claude-eu)": a place and what is there.
_ENTRY = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::(?P<column>\d+))?(?: \((?P<what>.*)\))?$")


def _rules() -> list[dict[str, object]]:
    return [{"id": r.id, "name": r.id.replace("-", " ").title().replace(" ", ""),
             "shortDescription": {"text": r.short}, "fullDescription": {"text": r.full},
             "help": {"text": f"How to fix: {r.fix}"}, "helpUri": f"{DOCS}#{r.id}",
             "defaultConfiguration": {"level": "error"}, "properties": {"check": r.check}}
            for r in RULES.values()]


def _location(file: str, line: int, column: int | None) -> dict[str, object]:
    region: dict[str, int] = {"startLine": max(1, line)}
    if column is not None:
        region["startColumn"] = max(1, column)
    return {"physicalLocation": {"artifactLocation": _artifact(file), "region": region}}


def _artifact(file: str) -> dict[str, str]:
    """Relative to the repository root (%SRCROOT%); a file outside it by its absolute file URI."""
    path = Path(file)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    return {"uri": path.as_posix(), "uriBaseId": SRCROOT}


def _related(entry: str | None) -> list[dict[str, object]]:
    m = _ENTRY.match(entry or "")
    if m is None:
        return []
    column = int(m["column"]) if m["column"] else None
    return [{"id": 1, **_location(m["file"], int(m["line"]), column),
             "message": {"text": f"registry entry: {m['what'] or entry}"}}]


def _result(finding: Finding, index: dict[str, int]) -> dict[str, object]:
    props = {k: v for k, v in (("registry_entry", finding.registry_entry), ("scenario", finding.scenario),
                               ("check", finding.check), ("route", finding.route)) if v is not None}
    text = finding.message
    if finding.scenario:
        text += f" (demonstrated at run time by {finding.scenario}, check {finding.check})"
    result: dict[str, object] = {
        "ruleId": finding.rule, "ruleIndex": index[finding.rule], "level": finding.level, "message": {"text": text},
        "locations": [_location(shown(finding.where.file), finding.where.line, finding.where.column)],
        "properties": props}
    related = _related(finding.registry_entry)
    if related:
        result["relatedLocations"] = related
    return result


def render_sarif(results: list[Linted]) -> str:
    index = {rule_id: i for i, rule_id in enumerate(RULES)}
    root = Path.cwd().resolve().as_uri() + "/"
    doc = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL, "rules": _rules()}},
            "originalUriBaseIds": {SRCROOT: {"uri": root}},
            "artifacts": [{"location": _artifact(r.path),
                           "properties": {"kind": r.kind, "judged_against": list(r.judged_against)}}
                          for r in results],
            "results": [_result(f, index) for r in results for f in r.findings],
            "columnKind": "unicodeCodePoints",
        }],
    }
    return json.dumps(doc, indent=2)

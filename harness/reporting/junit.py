"""junit.xml: one test case per check, so any CI shows governance checks as tests.

A fail is a <failure>; an unknown is <skipped> with its reason, never a pass. Every string passes
through `printable` first: XML 1.0 forbids most control characters even as character references, and
an audit field may hold any.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.core.safe_text import printable_tree
from harness.reporting.diffs import diff_lines


def write_junit(path: Path, summary: dict[str, Any]) -> None:
    summary = printable_tree(summary)
    name = str(summary["scenario"]["name"])
    checks = summary["checks"]
    suite = ET.Element("testsuite", {
        "name": name,
        "tests": str(len(checks)),
        "failures": str(sum(c["verdict"] == "fail" for c in checks)),
        "skipped": str(sum(c["verdict"] == "unknown" for c in checks)),
        "errors": "0",
        "time": str(summary["stats"].get("duration_s", 0)),
    })
    props = ET.SubElement(suite, "properties")
    for key, value in (("run_id", summary["run_id"]), ("seed", summary["scenario"]["seed"]),
                       ("ledger", summary["ledger"]), ("status", summary["status"])):
        ET.SubElement(props, "property", {"name": key, "value": str(value)})
    for check in checks:
        case = ET.SubElement(suite, "testcase", {"classname": f"harness.{name}", "name": check["check"], "time": "0"})
        if check["verdict"] == "fail":
            failure = ET.SubElement(case, "failure", {"message": check["summary"], "type": "GovernanceViolation"})
            failure.text = _details(check, summary)
        elif check["verdict"] == "unknown":
            ET.SubElement(case, "skipped", {"message": f"unknown: {check['summary']}"})
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _details(check: dict[str, Any], summary: dict[str, Any]) -> str:
    lines = []
    for v in check["violations"]:
        lines.append(v["message"])
        if v["request_ids"]:
            lines.append("  requests: " + ", ".join(v["request_ids"]))
        for key in ("expected", "observed", "diff"):
            if v.get(key) not in (None, {}, []):
                lines.append(f"  {key}: {json.dumps(v[key], default=str)}")
        readable = diff_lines(v.get("diff"))
        if readable:  # the same diff, one change a line, for CI pages that show the failure text as is
            lines.extend(f"    {line}" for line in readable)
    lines.append(f"reproduce: {summary['reproduce']['run']}")
    lines.append(f"re-judge:  {summary['reproduce']['check']}")
    return "\n".join(lines)

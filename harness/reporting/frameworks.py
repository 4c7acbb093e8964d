"""What each check evidences for a reviewer, and where that sits in the frameworks platform teams cite.

Derived from the checks' own declarations (harness.core.registry): a check maps itself, in its module.
The vocabulary (framework names, what each evidence means) is harness.core.frameworks.
"""

from __future__ import annotations

from typing import Any

from harness.core.frameworks import EVIDENCES, FRAMEWORKS, NOTE
from harness.core.registry import checks
from harness.core.verdict import CheckResult


def framework_mapping(results: list[CheckResult]) -> dict[str, Any]:
    """summary['frameworks']: for each check run, its verdict, what it evidences and where that maps."""
    known = checks()
    out = []
    for r in results:
        mapping = known[r.check].frameworks if r.check in known else {}
        out.append({
            "check": r.check,
            "verdict": r.verdict.value,
            "evidences": [{"name": e, "meaning": EVIDENCES.get(e, "")} for e in r.evidences],
            # Every framework key present (empty list = no honest counterpart), so tables line up.
            "frameworks": {name: list(mapping.get(name, ())) for name in FRAMEWORKS},
        })
    return {"note": NOTE, "frameworks": dict(FRAMEWORKS), "evidences": dict(EVIDENCES), "checks": out}

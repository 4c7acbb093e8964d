"""Verdicts compose as fail > unknown > pass (Jepsen's false > unknown > true)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"

    @staticmethod
    def combine(verdicts: list[Verdict]) -> Verdict:
        if any(v is Verdict.FAIL for v in verdicts):
            return Verdict.FAIL
        if not verdicts or any(v is Verdict.UNKNOWN for v in verdicts):
            return Verdict.UNKNOWN
        return Verdict.PASS


@dataclass(frozen=True)
class Violation:
    """One breach, with enough evidence for a reviewer to see it without the ledger."""

    message: str
    request_ids: list[str] = field(default_factory=list)
    expected: Any = None
    observed: Any = None
    diff: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckResult:
    check: str
    verdict: Verdict
    summary: str
    violations: list[Violation] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    evidences: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "verdict": self.verdict.value,
            "summary": self.summary,
            "evidences": list(self.evidences),
            "violations": [v.to_dict() for v in self.violations],
            "stats": self.stats,
        }

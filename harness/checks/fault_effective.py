"""fault_effective: every injected fault really hit traffic, else the run proved nothing about it."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from harness.checks.common import Groups, all_of, plural, result
from harness.core.model import Scenario
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.history import FaultWindow, History

NAME = "fault_effective"


@check(NAME, evidences=("traceability",))
def fault_effective(scenario: Scenario, history: History) -> CheckResult:
    """Each fault window decided the outcome of at least one upstream call."""
    groups = Groups()  # never filled: a fault that missed proves nothing, it breaches nothing
    windows = history.windows
    if not windows:
        return result(NAME, Verdict.UNKNOWN, "no fault was injected: nothing proves fallback was exercised", groups,
                      {"windows": []})
    # A fault name may come back (the same fault twice): a hit belongs to the latest window started before it.
    by_name: dict[str, list[FaultWindow]] = {}
    for w in windows:  # History sorts windows by start
        by_name.setdefault(w.name, []).append(w)
    starts = {name: [w.start for w in ws] for name, ws in by_name.items()}
    hits: dict[int, int] = {}
    first: dict[int, float] = {}
    for calls in (*history.upstream.values(), history.orphan_upstream):
        for call in calls:
            name = call.get("fault")
            if not name or name not in by_name:
                continue
            ws = by_name[name]
            index = max(bisect_right(starts[name], call["ts"]) - 1, 0) if len(ws) > 1 else 0
            key = id(ws[index])
            hits[key] = hits.get(key, 0) + 1
            first[key] = min(first.get(key, call["ts"]), call["ts"])

    entries: list[dict[str, Any]] = []
    missed: list[str] = []
    for w in windows:
        n = hits.get(id(w), 0)
        if not n:
            missed.append(w.name)
        entries.append({"window": w.name, "targets": list(w.targets), "start_s": history.rel(w.start),
                        "end_s": history.rel(w.end), "healed": w.healed, "hits": n,
                        "first_hit_s": history.rel(first[id(w)]) if n else None})
    stats = {"windows": entries, "hits": sum(hits.values())}
    if missed:
        reasons = "; ".join(f"fault {name} never hit traffic" for name in missed)
        return result(NAME, Verdict.UNKNOWN, f"{len(missed)} of {plural(len(windows), 'fault window')}: {reasons}",
                      groups, stats)
    return result(NAME, Verdict.PASS, f"{all_of(len(windows), 'fault window')} hit traffic "
                  f"({plural(stats['hits'], 'faulted upstream call')})", groups, stats)

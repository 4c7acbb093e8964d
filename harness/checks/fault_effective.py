"""fault_effective: every injected fault really hit traffic, else the run proved nothing about it."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from harness.checks.common import Event, Groups, all_of, attributed, plural, result
from harness.core.frameworks import MAESTRO, NIST, OBSERVE_LAYER, TRACEABILITY, VALID
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, RunFrame, Totals

NAME = "fault_effective"


@check(
    name=NAME,
    description="Each fault window decided the outcome of at least one upstream call.",
    evidences=(TRACEABILITY,),
    severity="minor",
    frameworks={
        NIST: ("MEASURE function", VALID),
        MAESTRO: (OBSERVE_LAYER,),
    },
    order=100,
)
class FaultEffective(Accumulator):

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        # A fault name may come back (the same fault twice): a hit belongs to the latest window started
        # before it. Windows are identified by their place in the frame's list (sorted by start).
        self.by_name: dict[str, list[int]] = {}
        for index, w in enumerate(frame.windows):
            self.by_name.setdefault(w.name, []).append(index)
        self.starts = {name: [frame.windows[i].start for i in ws] for name, ws in self.by_name.items()}
        self.hits: dict[int, int] = {}
        self.first: dict[int, float] = {}
        # A container outage is not stamped on calls (the proxy only sees its upstream fail): a failed
        # call to a provider the container serves, inside the window, is its hit.
        self.container_windows = [(i, w) for i, w in enumerate(frame.windows) if w.backend == "docker"]

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        by_name = self.by_name
        if not by_name:
            return
        calls = attributed(calls, owner)  # a fault hit by somebody else's call proves nothing of the gateway
        for index, w in self.container_windows:
            for call in calls:
                if call["provider"] in w.targets and call["outcome"] != "ok" and w.contains(call["ts"]):
                    self._hit(index, call["ts"])
        for call in calls:
            self._named(call)

    def plain(self, batch: list[Plain]) -> None:
        """`calls` for requests whose one call answered ok: hit only by the fault it names (a delay, say)."""
        by_name = self.by_name
        if not by_name:
            return
        for _, call, _ in batch:
            if call.get("fault") is not None:
                self._named(call)

    def _named(self, call: Event) -> None:
        """A hit of the window of the fault the call names, if the call names one of the run's."""
        name = call.get("fault")
        if not name or name not in self.by_name:
            return
        ws, ts = self.by_name[name], call["ts"]
        key = ws[max(bisect_right(self.starts[name], ts) - 1, 0)] if len(ws) > 1 else ws[0]
        self._hit(key, ts)

    def _hit(self, key: int, ts: float) -> None:
        self.hits[key] = self.hits.get(key, 0) + 1
        self.first[key] = min(self.first.get(key, ts), ts)

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups = Groups()  # never filled: a fault that missed proves nothing, it breaches nothing
        windows = frame.windows
        if not windows:
            return result(NAME, Verdict.UNKNOWN, "no fault was injected: nothing proves fallback was exercised",
                          groups, {"windows": []})
        entries: list[dict[str, Any]] = []
        missed: list[str] = []
        for index, w in enumerate(windows):
            n = self.hits.get(index, 0)
            if not n:
                missed.append(w.name)
            entries.append({"window": w.name, "targets": list(w.targets), "start_s": frame.rel(w.start),
                            "end_s": frame.rel(w.end), "healed": w.healed, "hits": n,
                            "first_hit_s": frame.rel(self.first[index]) if n else None})
        stats = {"windows": entries, "hits": sum(self.hits.values())}
        if missed:
            reasons = "; ".join(f"fault {name} never hit traffic" for name in missed)
            return result(NAME, Verdict.UNKNOWN,
                          f"{len(missed)} of {plural(len(windows), 'fault window')}: {reasons}", groups, stats)
        return result(NAME, Verdict.PASS, f"{all_of(len(windows), 'fault window')} hit traffic "
                      f"({plural(stats['hits'], 'faulted upstream call')})", groups, stats)


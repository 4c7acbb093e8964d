"""The history of a run, indexed for the checks: requests, their upstream calls, audits, windows."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core import events as ev
from harness.core.errors import InputError, InputProblem
from harness.ledger.reader import read_events


@dataclass(frozen=True)
class FaultWindow:
    name: str
    start: float
    end: float                      # heal time, or the last moment of the run if never healed
    targets: tuple[str, ...]
    effect: dict[str, Any]
    match: dict[str, Any] | None
    healed: bool

    def contains(self, ts: float) -> bool:
        return self.start <= ts <= self.end


@dataclass(frozen=True)
class KillSwitchWindow:
    start: float                    # the gateway acknowledged fallback off
    end: float                      # the call switching it on again was sent, or the end of the run


@dataclass
class History:
    path: str
    run_start: dict[str, Any]
    run_end: dict[str, Any] | None
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    upstream: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    orphan_upstream: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    windows: list[FaultWindow] = field(default_factory=list)
    kill_switch: list[KillSwitchWindow] = field(default_factory=list)
    kill_switch_events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    topology: dict[str, Any] | None = None
    t_last: float = 0.0

    @property
    def t0(self) -> float:
        return float(self.run_start["ts"])

    @property
    def completed(self) -> bool:
        return self.run_end is not None and self.run_end.get("status") == "completed"

    def calls(self, request_id: str) -> list[dict[str, Any]]:
        """Upstream calls providers recorded for one request, oldest first."""
        return self.upstream.get(request_id, [])

    def served_by(self, request_id: str) -> str | None:
        """The provider that really answered the request successfully (ground truth)."""
        ok = [c for c in self.calls(request_id) if c["outcome"] == "ok"]
        return ok[-1]["provider"] if ok else None

    def rel(self, ts: float) -> float:
        """Seconds since the run started."""
        return round(ts - self.t0, 3)


def load_history(path: str | Path) -> History:
    history: History | None = None
    open_faults: dict[str, dict[str, Any]] = {}
    ended: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    switch_off: float | None = None
    for event in read_events(path):
        kind = event["type"]
        if history is None:
            if kind != ev.RUN_START:
                raise InputError([InputProblem(str(path), 1, 1, "type", f"the first event is {kind!r}, not run_start",
                                               "pass a ledger written by `harness run`")])
            history = History(path=str(path), run_start=event, run_end=None)
            continue
        history.t_last = max(history.t_last, float(event.get("ts", 0.0)))
        if kind == ev.REQUEST:
            history.requests[event["id"]] = event
        elif kind == ev.UPSTREAM:
            if event.get("id"):
                history.upstream[event["id"]].append(event)
            else:
                history.orphan_upstream.append(event)
        elif kind == ev.AUDIT:
            history.audits.append(event)
        elif kind == ev.FAULT_START:
            open_faults[event["fault"]] = event
        elif kind == ev.FAULT_END and event["fault"] in open_faults:
            ended.append((open_faults.pop(event["fault"]), event))
        elif kind == ev.KILL_SWITCH:
            history.kill_switch_events.append(event)
            if not event.get("ok"):
                continue
            if event["state"] == "off" and switch_off is None:
                switch_off = float(event["ts"])
            elif event["state"] == "on" and switch_off is not None:
                # Off from the moment the gateway acknowledged it until the "on" call was sent.
                on_sent = float(event.get("ts_sent", event["ts"]))
                history.kill_switch.append(KillSwitchWindow(switch_off, on_sent))
                switch_off = None
        elif kind == ev.RUN_END:
            history.run_end = event
        elif kind == ev.TOPOLOGY:
            history.topology = event
        elif kind == ev.NOTE:
            history.notes.append(event)
    if history is None:
        raise InputError([InputProblem(str(path), None, None, "", "the ledger is empty",
                                       "the run wrote nothing; run it again")])
    last = history.t_last
    for start, end in ended + [(s, None) for s in open_faults.values()]:
        stop = float(end["ts"]) if end else min(last, float(start.get("deadline_ts") or last))
        history.windows.append(FaultWindow(
            name=start["fault"], start=float(start["ts"]), end=stop, targets=tuple(start.get("targets", ())),
            effect=start.get("effect", {}), match=start.get("match"), healed=bool(end and end.get("healed")),
        ))
    history.windows.sort(key=lambda w: w.start)
    if switch_off is not None:
        history.kill_switch.append(KillSwitchWindow(switch_off, last))
    for calls in history.upstream.values():
        calls.sort(key=lambda c: c["ts"])
    return history

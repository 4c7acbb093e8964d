"""The history of a run, indexed for the checks: requests, their upstream calls, audits, windows."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core import events as ev
from harness.core.errors import InputError, InputProblem
from harness.ledger.reader import read_numbered


@dataclass(frozen=True)
class FaultWindow:
    name: str
    start: float
    end: float                      # heal time, or the last moment of the run if never healed
    targets: tuple[str, ...]
    effect: dict[str, Any]
    match: dict[str, Any] | None
    healed: bool
    backend: str = "mock"

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


_ONE_RUN = "a ledger holds one run, from its run_start to its run_end; judge each run's ledger.jsonl on its own"


_ONCE = frozenset((ev.RUN_START, ev.TOPOLOGY, ev.RUN_END))


class GlobalEvents:
    """Builds the run's frame from its global events: fault windows, kill-switch windows, start, end.

    Shared by `load_history` and the streaming judge's first pass, so both see the same windows. A
    window still open at the end of the run ends with the run (`last`); the streaming pass does not
    know that moment yet and passes `inf`, which gives the same answer to every "was ts inside?"
    question about an event of the run (none is later than `last`); `clamp` fixes the ends afterwards.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.run_start: dict[str, Any] | None = None
        self.run_end: dict[str, Any] | None = None
        self.topology: dict[str, Any] | None = None
        self.notes: list[dict[str, Any]] = []
        self.kill_switch_events: list[dict[str, Any]] = []
        self.t_last = 0.0
        self._open_faults: dict[str, dict[str, Any]] = {}
        self._ended: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self._switches: list[KillSwitchWindow] = []
        self._switch_off: float | None = None

    def first(self, event: dict[str, Any]) -> None:
        """The ledger's first event, which must be run_start."""
        if event["type"] != ev.RUN_START:
            raise InputError([InputProblem(self.path, 1, 1, "type", f"the first event is {event['type']!r}, "
                                           "not run_start", "pass a ledger written by `harness run`")])
        self.run_start = event

    def add(self, event: dict[str, Any], number: int | None = None) -> None:
        """A later event that is not a request, an upstream call or an audit (line `number`)."""
        if self.run_end is not None:
            self.after_end(event, number)
        self.t_last = max(self.t_last, float(event.get("ts", 0.0)))
        kind = event["type"]
        if kind == ev.RUN_START:
            raise InputError([InputProblem(self.path, number, 1, "type", f"a second run_start at line {number}: "
                                           "two ledgers concatenated?", _ONE_RUN)])
        if kind == ev.FAULT_START:
            self._open_faults[event["fault"]] = event
        elif kind == ev.FAULT_END and event["fault"] in self._open_faults:
            self._ended.append((self._open_faults.pop(event["fault"]), event))
        elif kind == ev.KILL_SWITCH:
            self.kill_switch_events.append(event)
            if not event.get("ok"):
                return
            if event["state"] == "off" and self._switch_off is None:
                self._switch_off = float(event["ts"])
            elif event["state"] == "on" and self._switch_off is not None:
                # Off from the moment the gateway acknowledged it until the "on" call was sent.
                on_sent = float(event.get("ts_sent", event["ts"]))
                self._switches.append(KillSwitchWindow(self._switch_off, on_sent))
                self._switch_off = None
        elif kind == ev.RUN_END:
            self.run_end = event
        elif kind == ev.TOPOLOGY:
            self.topology = event
        elif kind == ev.NOTE:
            self.notes.append(event)

    def after_end(self, event: dict[str, Any], number: int | None) -> None:
        """What only a run's start writes (run_start, topology) or a second run_end, after run_end: the file
        holds more than one run. Anything else may follow it (writers still flushing, a late heal)."""
        if event["type"] not in _ONCE:
            return
        what = "a second run_start" if event["type"] == ev.RUN_START else f"a {event['type']} event"
        raise InputError([InputProblem(self.path, number, 1, "type", f"{what} at line {number}, after run_end: "
                                       "two ledgers concatenated?", _ONE_RUN)])

    def require_start(self) -> dict[str, Any]:
        if self.run_start is None:
            raise InputError([InputProblem(self.path, None, None, "", "the ledger is empty",
                                           "the run wrote nothing; run it again")])
        return self.run_start

    def windows(self, last: float) -> list[FaultWindow]:
        windows = []
        for start, end in self._ended + [(s, None) for s in self._open_faults.values()]:
            stop = float(end["ts"]) if end else min(last, float(start.get("deadline_ts") or last))
            windows.append(FaultWindow(
                # The providers a fault affects (a container fault: those it serves); older ledgers name only targets.
                name=start["fault"], start=float(start["ts"]), end=stop,
                targets=tuple(start.get("providers", start.get("targets", ()))),
                effect=start.get("effect", {}), match=start.get("match"), healed=bool(end and end.get("healed")),
                backend=str(start.get("backend", "mock")),
            ))
        windows.sort(key=lambda w: w.start)
        return windows

    def kill_switch(self, last: float) -> list[KillSwitchWindow]:
        if self._switch_off is None:
            return list(self._switches)
        return [*self._switches, KillSwitchWindow(self._switch_off, last)]


def clamp_windows(windows: list[FaultWindow], last: float) -> list[FaultWindow]:
    """Windows built with an unknown end of run (`inf`), ended at the run's real last moment."""
    return [w if w.end <= last else replace(w, end=last) for w in windows]


def clamp_kill_switch(windows: list[KillSwitchWindow], last: float) -> list[KillSwitchWindow]:
    return [k if k.end <= last else KillSwitchWindow(k.start, last) for k in windows]


def load_history(path: str | Path) -> History:
    frame = GlobalEvents(path)
    history: History | None = None
    for number, event in read_numbered(path):
        if history is None:
            frame.first(event)
            history = History(path=str(path), run_start=event, run_end=None)
            continue
        kind = event["type"]
        if kind == ev.REQUEST:
            history.t_last = max(history.t_last, float(event.get("ts", 0.0)))
            history.requests[event["id"]] = event
        elif kind == ev.UPSTREAM:
            history.t_last = max(history.t_last, float(event.get("ts", 0.0)))
            if event.get("id"):
                history.upstream[event["id"]].append(event)
            else:
                history.orphan_upstream.append(event)
        elif kind == ev.AUDIT:
            history.t_last = max(history.t_last, float(event.get("ts", 0.0)))
            history.audits.append(event)
        else:
            frame.add(event, number)
    frame.require_start()
    assert history is not None
    last = history.t_last = max(history.t_last, frame.t_last)
    history.run_end, history.topology, history.notes = frame.run_end, frame.topology, frame.notes
    history.kill_switch_events = frame.kill_switch_events
    history.windows = frame.windows(last)
    history.kill_switch = frame.kill_switch(last)
    for calls in history.upstream.values():
        calls.sort(key=lambda c: c["ts"])
    return history

"""Streaming passes over a ledger, for judging runs too big to hold in memory.

Pass 1 (`read_frame`) keeps only the small global events: the run's start (with its scenario), its
end, fault and kill-switch windows, notes. Requests, upstream calls and audits are most of the file;
it skips them with a prefix test on the raw line, before any JSON parsing. Pass 2 (`harness.ledger.join`)
streams those, joined, to the checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import events as ev
from harness.ledger.history import (
    FaultWindow,
    GlobalEvents,
    KillSwitchWindow,
    clamp_kill_switch,
    clamp_windows,
)
from harness.ledger.reader import open_ledger, parse_line

# How the ledger writer starts the lines of the bulk events. A line written any other way is parsed
# and sorted by its type, so this is only a shortcut, never a requirement.
BULK_PREFIXES = (b'{"type":"' + ev.REQUEST.encode() + b'"', b'{"type":"' + ev.UPSTREAM.encode() + b'"',
                 b'{"type":"' + ev.AUDIT.encode() + b'"')
BULK_TYPES = frozenset((ev.REQUEST, ev.UPSTREAM, ev.AUDIT))
INF = float("inf")


@dataclass(frozen=True)
class Frame:
    """What pass 1 learns. Windows still open at the end of the run end at `inf` here (see GlobalEvents);
    `final(t_last)` gives them the run's real end once pass 2 has seen every event."""

    path: str
    run_start: dict[str, Any]
    run_end: dict[str, Any] | None
    topology: dict[str, Any] | None
    notes: list[dict[str, Any]]
    windows: list[FaultWindow]
    kill_switch: list[KillSwitchWindow]
    kill_switch_events: list[dict[str, Any]]
    t_last: float  # the latest ts among the global events

    @property
    def t0(self) -> float:
        return float(self.run_start["ts"])

    def final(self, t_last: float) -> Frame:
        last = max(self.t_last, t_last)
        return Frame(self.path, self.run_start, self.run_end, self.topology, self.notes,
                     clamp_windows(self.windows, last), clamp_kill_switch(self.kill_switch, last),
                     self.kill_switch_events, last)


def read_frame(path: str | Path) -> Frame:
    """Pass 1: the global events. Raises the same InputErrors as load_history for them."""
    path = Path(path)
    found = GlobalEvents(path)
    started = False
    with open_ledger(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if started and raw.startswith(BULK_PREFIXES):
                continue
            if not raw.strip():
                continue
            event = parse_line(path, number, raw)
            if event is None:
                break
            if not started:
                found.first(event)
                started = True
            elif event["type"] not in BULK_TYPES:
                found.add(event, number)
    start = found.require_start()
    return Frame(str(path), start, found.run_end, found.topology, found.notes, found.windows(INF),
                 found.kill_switch(INF), found.kill_switch_events, found.t_last)

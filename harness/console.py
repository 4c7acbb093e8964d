"""The live view of a run, for game days: the room watches traffic leave the primary and come back.

It follows the run's ledger as it grows (the ground truth the providers record), so what it
shows is what really happened, not what the gateway claims. Rich renders it on a terminal;
with NO_COLOR or without a TTY it prints a plain line every few seconds instead.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from harness.core import events as ev
from harness.core.safe_text import printable

REFRESH_S = 0.5
PLAIN_EVERY_S = 2.0


class RunState:
    """What the live view knows, rebuilt from ledger events."""

    def __init__(self, planned_s: float) -> None:
        self.planned_s = planned_s
        self.t0: float | None = None
        self.phase = "starting"
        self.active_faults: dict[str, list[str]] = {}
        self.switch_off = False
        self.served: dict[str, deque[float]] = {}       # provider -> timestamps of ok calls (last seconds)
        self.totals: Counter[str] = Counter()
        self.requests = 0
        self.errors = 0

    def feed(self, event: dict[str, Any]) -> None:
        kind, ts = event.get("type"), float(event.get("ts", 0.0))
        if kind == ev.RUN_START:
            self.t0 = ts
        elif kind == ev.TOPOLOGY:
            self.phase = "steady state"
        elif kind == ev.FAULT_START:
            self.active_faults[event["fault"]] = list(event.get("targets", []))
            self.phase = "fault"
        elif kind == ev.FAULT_END:
            self.active_faults.pop(event["fault"], None)
            self.phase = "fault" if self.active_faults else "recovery"
        elif kind == ev.KILL_SWITCH and event.get("ok"):
            self.switch_off = event["state"] == "off"
        elif kind == ev.UPSTREAM and event.get("outcome") == "ok":
            self.served.setdefault(event["provider"], deque()).append(ts)
            self.totals[event["provider"]] += 1
        elif kind == ev.REQUEST:
            self.requests += 1
            self.errors += event.get("outcome") != "ok"
        elif kind == ev.RUN_END:
            self.phase = f"ended ({event.get('status')})"

    def rates(self, now: float, window_s: float = 1.0) -> dict[str, float]:
        out = {}
        for provider, stamps in self.served.items():
            while stamps and stamps[0] < now - 5:
                stamps.popleft()
            out[provider] = sum(1 for t in stamps if t >= now - window_s) / window_s
        return out

    def elapsed(self, now: float) -> float:
        return 0.0 if self.t0 is None else now - self.t0


class LiveView:
    def __init__(self, planned_s: float, stream: TextIO = sys.stderr) -> None:
        self.state = RunState(planned_s)
        self.stream = stream
        self.fancy = stream.isatty() and not os.environ.get("NO_COLOR")
        self._ledger: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offset = 0
        self._pending = b""

    def follow(self, run_dir: Path) -> None:
        """Called by the engine once the run folder exists."""
        self._ledger = run_dir / "ledger.jsonl"
        self._thread = threading.Thread(target=self._loop, name="live-view", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _read(self) -> None:
        if self._ledger is None or not self._ledger.exists():
            return
        with self._ledger.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            try:
                self.state.feed(json.loads(line))
            except ValueError:
                continue

    def _loop(self) -> None:
        if self.fancy:
            console = Console(file=self.stream)
            with Live(self._table(), console=console, refresh_per_second=4, transient=True) as live:
                while not self._stop.wait(REFRESH_S):
                    self._read()
                    live.update(self._table())
            self._read()
            return
        last = 0.0
        while not self._stop.wait(REFRESH_S):
            self._read()
            if time.monotonic() - last >= PLAIN_EVERY_S:
                last = time.monotonic()
                print(self.plain_line(), file=self.stream, flush=True)
        self._read()

    def plain_line(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        s = self.state
        rates = " ".join(f"{p} {r:.0f}/s" for p, r in sorted(s.rates(now).items()))
        faults = ",".join(s.active_faults) or "-"
        switch = " fallback=OFF" if s.switch_off else ""
        # Provider and fault names come from the ledger: no raw control character reaches the terminal.
        return printable(f"[live] t={s.elapsed(now):5.1f}s/{s.planned_s:g}s phase={s.phase} faults={faults}{switch} "
                         f"requests={s.requests} errors={s.errors} served: {rates or '-'}", one_line=True)

    def _table(self) -> Table:
        now = time.time()
        s = self.state
        table = Table(title=f"{s.phase}  {s.elapsed(now):.1f}s / {s.planned_s:g}s   "
                            f"faults: {_safe(', '.join(s.active_faults)) or 'none'}"
                            + ("   FALLBACK SWITCHED OFF" if s.switch_off else ""))
        table.add_column("provider")
        table.add_column("served/s", justify="right")
        table.add_column("served total", justify="right")
        table.add_column("", justify="left")
        rates = s.rates(now)
        faulted = {t for targets in s.active_faults.values() for t in targets}
        for provider in sorted(set(rates) | set(s.totals) | faulted):
            rate = rates.get(provider, 0.0)
            bar = "█" * min(40, int(rate))
            name = f"[red]{_safe(provider)} (fault)[/red]" if provider in faulted else _safe(provider)
            table.add_row(name, f"{rate:.0f}", str(s.totals[provider]), bar)
        table.caption = f"requests {s.requests}, client-side errors {s.errors}"
        return table


def _safe(name: Any) -> str:
    """A name from the ledger as Rich shows it: control characters escaped, no markup of its own."""
    return escape(printable(name, one_line=True))

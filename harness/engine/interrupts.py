"""SIGINT / SIGTERM during a run, any number of them: the first cancels the run, whose `finally` heals
every fault, stops what the run started and writes `run_end`; every later one only says healing goes
on. After `run_end`, while the reports are written, a signal only says so. No signal ever skips
healing, the ledger's end or the reports (a second Ctrl-C once hit Python's default handler).

The handlers are plain `signal.signal` ones for the whole of `execute` (the event loop's own are
removed when the loop closes, which would leave the reports to the default handler). While the loop
runs, a handler only hands the signal to it (`call_soon_threadsafe`); the rest happens in the loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class HealingInterrupts:
    def __init__(self, log: Callable[[str], None], stopping: str) -> None:
        self.log = log
        self.stopping = stopping        # what the first signal stops, for the message
        self.count = 0
        self._old: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[Any] | None = None
        self._on_first: Callable[[str], None] | None = None
        self._pending: str | None = None   # a signal that came before the run could take it
        self._ended = False

    # --- the whole of `execute`: the run, then its reports ---

    def __enter__(self) -> HealingInterrupts:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    # --- while the run is live (inside its event loop) ---

    def attach(self, main: asyncio.Task[Any] | None, on_first: Callable[[str], None]) -> None:
        """The run started: a first signal records why it ends (`on_first`) and cancels `main`."""
        self._loop = asyncio.get_running_loop()
        self._main = main
        self._on_first = on_first
        if self._pending is not None:
            self._loop.call_soon(self._in_loop, self._pending, 1)
            self._pending = None

    def settle(self) -> None:
        """The run is ending (healing, stopping, writing run_end): a first signal from now on still records
        why, but cancels nothing, so nothing of the ending is cut short."""
        self._main = None

    def detach(self) -> None:
        """run_end is written: later signals only say the reports are being written."""
        self._loop = self._main = None
        self._on_first = None
        self._ended = True

    # --- the handlers ---

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._in_loop, name, self.count)
                return
            except RuntimeError:
                pass  # the loop has just closed
        if not self._ended and self.count == 1:
            self._pending = name  # the run is starting: it takes the signal as soon as it can
            self._say(f"{name}: the run stops as soon as it has started, then heals and {self.stopping}")
        else:
            self._say(f"{name}: the run has ended; writing its reports, please wait")

    def _in_loop(self, name: str, count: int) -> None:
        if count == 1 and self._on_first is not None:
            self.log(f"{name}: healing faults and {self.stopping} (the run ends as unknown)")
            self._on_first(name)
            if self._main is not None:
                self._main.cancel()
        elif self._on_first is not None:
            self.log(f"{name} again: still healing, please wait")
        else:
            self.log(f"{name}: the run has ended; writing its reports, please wait")

    @staticmethod
    def _say(message: str) -> None:
        # Straight to the file descriptor: a handler may run in the middle of a buffered write to stderr.
        try:
            os.write(sys.stderr.fileno(), f"[harness] {message}\n".encode())
        except (OSError, ValueError, AttributeError):
            pass

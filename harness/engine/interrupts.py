"""SIGINT / SIGTERM during a run: the first one cancels the run, whose `finally` heals every fault;
any later one only says healing goes on (a second Ctrl-C never skips healing)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class HealingInterrupts:
    def __init__(self, log: Callable[[str], None], on_first: Callable[[str], None], stopping: str) -> None:
        self.log = log
        self.on_first = on_first        # records why the run ends (status "interrupted")
        self.stopping = stopping        # what the first signal stops, for the message
        self.count = 0

    def install(self, main: asyncio.Task[Any] | None) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(name: str) -> None:
            self.count += 1
            if self.count == 1:
                self.log(f"{name}: healing faults and {self.stopping} (the run ends as unknown)")
                self.on_first(name)
                if main is not None:
                    main.cancel()
            else:
                self.log(f"{name} again: still healing, please wait")

        for sig in SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig.name)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)

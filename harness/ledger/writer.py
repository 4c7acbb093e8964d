"""Append one JSON line per event, immediately.

Several processes of a run (engine, mock providers) append to the same file. Each event is
one `os.write` on an O_APPEND descriptor, so lines never interleave and a killed run
leaves every line written so far readable.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class LedgerWriter:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, event: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError(f"ledger {self.path} is closed")
        if "ts" not in event:
            event = {**event, "ts": time.time()}
        line = json.dumps(event, separators=(",", ":"), default=str) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

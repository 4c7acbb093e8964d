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

try:  # an event serialised about 15x faster than json.dumps; orjson is a dependency, the stdlib a fallback
    from orjson import dumps as _fast_dumps
except ImportError:  # pragma: no cover - depends on the environment
    _fast_dumps = None

_SCALARS = frozenset((str, int, bool, type(None)))


def _plain(values: Any) -> bool:
    """Whether every value (recursively) is one orjson writes exactly as json.dumps does: str, int, bool,
    None, a finite float (orjson writes NaN and Infinity as null), or a dict or list or tuple of them.
    Anything else (a str or int subclass, an Enum, a datetime, a dataclass: json.dumps writes their str())
    goes to json.dumps. Non-str keys need no test here: orjson refuses them (TypeError)."""
    for value in values:
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is float:
            if value - value != 0.0:  # NaN - NaN and inf - inf are NaN
                return False
        elif kind is dict:
            if not _plain(value.values()):
                return False
        elif kind is list or kind is tuple:
            if not _plain(value):
                return False
        else:
            return False
    return True


def event_line(event: dict[str, Any]) -> bytes:
    """One ledger line: `json.dumps(event, separators=(",", ":"), default=str)` and a newline, as the
    ledger has always been written; through orjson where it gives the same JSON. The same JSON means
    the same values when read back (harness.ledger.reader), and pure ASCII: json.dumps escapes every
    non-ASCII character, and a raw U+2028 or U+0085 would end a line for a reader that splits text
    lines. An event orjson would write otherwise (a non-finite float, a value only str() names, a
    non-str key, an integer over 64 bits, non-ASCII text, a lone surrogate) is written by json.dumps."""
    if _fast_dumps is not None and _plain(event.values()):
        try:
            line: bytes = _fast_dumps(event)
        except TypeError:  # non-str keys, huge integers, lone surrogates, nesting too deep (JSONEncodeError)
            pass
        else:
            if line.isascii():
                return line + b"\n"
    return (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()


class LedgerWriter:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, event: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError(f"ledger {self.path} is closed")
        if "ts" not in event:
            event = {**event, "ts": time.time()}
        os.write(self._fd, event_line(event))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Read a ledger line by line; a torn last line (killed writer) is skipped, not fatal."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from harness.core.errors import InputError, InputProblem

try:  # orjson parses a ledger line about 3x faster than the stdlib; same values, so same verdicts
    import orjson

    fast_loads: Callable[[bytes], Any] | None = orjson.loads
except ImportError:  # pragma: no cover - the stdlib is enough, only slower
    fast_loads = None

_HINT = "a ledger is one JSON object per line, as `harness run` writes it"


def loads(raw: bytes) -> Any:
    """One JSON line. orjson first; the stdlib decides whatever orjson refuses (NaN, huge integers, bad
    input), so what is accepted and every error message are exactly the stdlib's."""
    if fast_loads is not None:
        try:
            return fast_loads(raw)
        except ValueError:
            pass
    return json.loads(raw)


@contextmanager
def open_ledger(path: str | Path) -> Iterator[IO[bytes]]:
    """The ledger's bytes, gunzipped when it ends in .gz; unreadable files are an InputError."""
    path = Path(path)
    try:
        # Saved ledgers may be gzipped (fixtures, archives); a run writes plain JSONL.
        handle: IO[bytes] = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb", buffering=1 << 20)
    except OSError as exc:
        raise InputError([InputProblem(str(path), None, None, "", f"cannot read ledger: {exc.strerror}",
                                       "pass the ledger.jsonl of a run (reports/<run-id>/ledger.jsonl)")]) from None
    with handle:
        try:
            yield handle
        except (OSError, EOFError) as exc:  # a corrupt or truncated gzip file
            raise InputError([InputProblem(str(path), None, None, "", f"cannot read ledger: {exc}",
                                           "pass the ledger.jsonl of a run, or that file gzipped")]) from None


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    with open_ledger(path) as handle:
        yield from _parse(Path(path), handle)


def parse_line(path: Path, number: int, raw: bytes) -> dict[str, Any] | None:
    """One line as an event; None for a torn last line (the writer was killed mid-line)."""
    try:
        event = loads(raw)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        if not raw.endswith(b"\n"):  # only the last line can lack its newline
            return None  # everything before it stands
        raise InputError([InputProblem(str(path), number, getattr(exc, "colno", None), "", "not a JSON line",
                                       _HINT)]) from None
    if not isinstance(event, dict) or "type" not in event:
        raise InputError([InputProblem(str(path), number, 1, "type", "each line must be an object with a 'type'",
                                       _HINT)])
    return event


def _parse(path: Path, handle: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    # Streamed line by line: a ledger of a million requests must not be held in memory twice.
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        event = parse_line(path, number, raw)
        if event is None:
            return
        yield event

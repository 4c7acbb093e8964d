"""Read a ledger line by line; a torn last line (killed writer) is skipped, not fatal."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.core.errors import InputError, InputProblem

_HINT = "a ledger is one JSON object per line, as `harness run` writes it"


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    try:
        # Saved ledgers may be gzipped (fixtures, archives); a run writes plain JSONL.
        handle: IO[bytes] = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except OSError as exc:
        raise InputError([InputProblem(str(path), None, None, "", f"cannot read ledger: {exc.strerror}",
                                       "pass the ledger.jsonl of a run (reports/<run-id>/ledger.jsonl)")]) from None
    with handle:
        try:
            yield from _parse(path, handle)
        except (OSError, EOFError) as exc:  # a corrupt or truncated gzip file
            raise InputError([InputProblem(str(path), None, None, "", f"cannot read ledger: {exc}",
                                           "pass the ledger.jsonl of a run, or that file gzipped")]) from None


def _parse(path: Path, handle: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    # Streamed line by line: a ledger of a million requests must not be held in memory twice.
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            if not raw.endswith(b"\n"):  # only the last line can lack its newline
                return  # the writer was killed mid-line: everything before it stands
            raise InputError([InputProblem(str(path), number, getattr(exc, "colno", None), "", "not a JSON line",
                                           _HINT)]) from None
        if not isinstance(event, dict) or "type" not in event:
            raise InputError([InputProblem(str(path), number, 1, "type", "each line must be an object with a 'type'",
                                           _HINT)])
        yield event

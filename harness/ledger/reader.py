"""Read a ledger line by line; a torn last line (killed writer) is skipped, not fatal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.core.errors import InputError, InputProblem


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError([InputProblem(str(path), None, None, "", f"cannot read ledger: {exc.strerror}",
                                       "pass the ledger.jsonl of a run (reports/<run-id>/ledger.jsonl)")]) from None
    with handle:
        lines = handle.readlines()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not raw.endswith(b"\n"):
                return  # the writer was killed mid-line: everything before it stands
            raise InputError([InputProblem(str(path), number, exc.colno, "", f"not a JSON line: {exc.msg}",
                                           "a ledger is one JSON object per line, as `harness run` writes it")]) from None
        if not isinstance(event, dict) or "type" not in event:
            raise InputError([InputProblem(str(path), number, 1, "type", "each line must be an object with a 'type'",
                                           "a ledger is one JSON object per line, as `harness run` writes it")])
        yield event

"""Read a ledger line by line; a torn last line (killed writer) is skipped, not fatal."""

from __future__ import annotations

import gzip
import json
import stat
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from harness.core import events as ev
from harness.core.errors import InputError, InputProblem
from harness.ledger import schema

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
        # A device never ends (/dev/zero would be read as one endless line); a pipe is fine (<(zcat ...)).
        mode = path.stat().st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode):
            raise InputError([InputProblem(str(path), None, None, "", "not a regular file",
                                           "pass the ledger.jsonl of a run (reports/<run-id>/ledger.jsonl)")])
        # Saved ledgers may be gzipped (fixtures, archives); a run writes plain JSONL.
        handle: IO[bytes] = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb", buffering=1 << 20)
    except OSError as exc:
        raise InputError([InputProblem(str(path), None, None, "", f"cannot read ledger: {exc.strerror}",
                                       "pass the ledger.jsonl of a run (reports/<run-id>/ledger.jsonl)")]) from None
    with handle:
        try:
            yield handle
        except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated gzip file
            raise InputError([InputProblem(str(path), None, None, "", f"cannot read ledger: {exc}",
                                           "pass the ledger.jsonl of a run, or that file gzipped")]) from None


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    for _number, event in read_numbered(path):
        yield event


def read_numbered(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, event) for every event of the ledger, validated."""
    with open_ledger(path) as handle:
        yield from _parse(Path(path), handle)


def parse_line(path: Path, number: int, raw: bytes) -> dict[str, Any] | None:
    """One line as a valid event (harness.ledger.schema); None for a torn last line (the writer was killed
    mid-line). Anything else that is not an event the checks can read is an InputError."""
    try:
        event = loads(raw)
    except RecursionError:  # orjson refuses depth > 1024, the stdlib then runs out of stack
        raise InputError([InputProblem(str(path), number, 1, "", "nested too deeply to be a ledger event",
                                       _HINT)]) from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        if not raw.endswith(b"\n"):  # only the last line can lack its newline
            return None  # everything before it stands
        raise InputError([InputProblem(str(path), number, getattr(exc, "colno", None), "", "not a JSON line",
                                       _HINT)]) from None
    schema.require(path, number, raw, event)
    return event  # type: ignore[no-any-return]


def _parse(path: Path, handle: Iterator[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    # Streamed line by line: a ledger of a million requests must not be held in memory twice.
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        event = parse_line(path, number, raw)
        if event is None:
            return
        yield number, event


def count_requests(path: str | Path) -> dict[str, Any]:
    """Request events in a ledger: how many, distinct ids, outcome unknown, per load worker (ids
    `l<worker>-<user>-<n>`), and per worker how many requests the ledger shows were sent: for each of its
    users the highest `n` named by a request event or by a provider's call (a request whose own event is
    missing still shows in the calls it caused, and in the numbers after it). Streams the file: any size."""
    total, unknown = 0, 0
    ids: set[str] = set()
    workers: Counter[str] = Counter()
    highest: dict[tuple[str, str], int] = {}
    for event in read_events(path):
        kind = event.get("type")
        if kind != ev.REQUEST and kind != ev.UPSTREAM:
            continue
        rid = event.get("id")
        rid = str(rid) if kind == ev.REQUEST else rid
        if isinstance(rid, str) and rid.startswith("l") and rid.count("-") == 2:
            worker, user, number = rid[1:].split("-")
            if number.isdigit() and highest.get((worker, user), 0) < int(number):
                highest[(worker, user)] = int(number)
        if kind != ev.REQUEST:
            continue
        total += 1
        ids.add(rid)
        unknown += event.get("outcome") == "unknown"
        if rid.startswith("l") and "-" in rid:
            workers[rid[1:].split("-", 1)[0]] += 1
    sent: Counter[str] = Counter()
    for (worker, _user), number in highest.items():
        sent[worker] += number
    return {"requests": total, "distinct_ids": len(ids), "duplicate_ids": total - len(ids),
            "unknown_outcome": unknown, "per_worker": dict(sorted(workers.items())),
            "sent_per_worker": dict(sorted(sent.items()))}


def requests_with_calls(path: str | Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The request events with these ids and every upstream call recorded for them (ts order), read in
    one streaming pass: evidence for a few offending requests without loading the run."""
    found: dict[str, dict[str, Any]] = {rid: {"request": None, "upstream_calls": []} for rid in ids}
    for event in read_events(path):
        rid = event.get("id")
        if not isinstance(rid, str) or rid not in found:
            continue
        if event.get("type") == ev.REQUEST:
            found[rid]["request"] = event
        elif event.get("type") == ev.UPSTREAM:
            found[rid]["upstream_calls"].append(event)
    for entry in found.values():
        entry["upstream_calls"].sort(key=lambda c: c.get("ts", 0.0))
    return found


def unreadable_line(path: str | Path) -> InputError | None:
    """The InputError for the first line a check may have choked on (harness.ledger.schema.thorough), or
    None. Only after a check raised: it reads the whole ledger again, field by field."""
    path = Path(path)
    try:
        with open_ledger(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                event = parse_line(path, number, raw)
                if event is None:
                    return None
                found = schema.thorough(event)
                if found is not None:
                    return schema.invalid(path, number, raw, found)
    except InputError as exc:
        return exc
    return None

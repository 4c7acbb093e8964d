"""The ledger writer's fast path (orjson) writes what json.dumps always wrote.

Every event goes through `event_line`; these compare it with the stdlib's line for the same event,
byte for byte where orjson is taken, and read the lines back with the ledger reader.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.ledger import LedgerWriter
from harness.ledger.reader import loads
from harness.ledger.writer import event_line


def stdlib_line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()


class Colour(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


UPSTREAM = {"type": "upstream", "ts": 1733256000.123456, "id": "r000042", "provider": "gpt-eu", "identity": "svc-eu",
            "key_fp": "fp-0123456789abcdef", "tools": ["search"], "model": "gpt-4o", "stream": False, "status": 200,
            "outcome": "ok", "fault": None, "tenant": "acme", "request_class": "chat", "region": "eu",
            "data_class": "internal"}

SAME_BYTES = [
    UPSTREAM,
    {**UPSTREAM, "note": "stream cut after 2 chunks", "extra": {"nested": [1, 2.5, [True, None]], "t": (1, "x")}},
    {"type": "audit", "ts": 2.0, "fields": {"fallback": "claude-eu\u0001\u001b[2J", "tab": "a\tb\nc\"\\/"}},
    {"type": "x", "ts": 0.1, "n": -0.0, "big": 2**63 - 1, "small": -(2**63), "empty": {}, "none": []},
]

# Written by json.dumps, whatever orjson would have made of them.
FALLBACK = [
    {"ts": 1.0, "latency": math.nan},
    {"ts": 1.0, "deep": {"v": [math.inf]}},
    {"ts": 1.0, "v": -math.inf},
    {"ts": 1.0, "when": datetime.datetime(2026, 1, 2, 3, 4, 5)},
    {"ts": 1.0, "colour": Colour.RED},
    {"ts": 1.0, "level": Level.HIGH},
    {"ts": 1.0, "name": Name("sub")},
    {"ts": 1.0, "path": Path("/tmp/x")},
    {"ts": 1.0, "keys": {1: "a", None: "b", False: "c", 2.5: "d"}},
    {"ts": 1.0, "huge": 2**64},
    {"ts": 1.0, "surrogate": "\ud800"},
    {"ts": 1.0, "text": "caf\u00e9 \u2028 \x85 \u65e5\u672c \U0001f600"},
    {"ts": 1.0, "set": {1}},
]


@pytest.mark.parametrize("event", SAME_BYTES, ids=range(len(SAME_BYTES)))
def test_fast_lines_are_the_stdlib_lines_byte_for_byte(event):
    assert event_line(event) == stdlib_line(event)


@pytest.mark.parametrize("event", FALLBACK, ids=range(len(FALLBACK)))
def test_what_orjson_writes_differently_is_written_by_the_stdlib(event):
    line = event_line(event)
    assert line == stdlib_line(event)
    assert line.isascii() and line.count(b"\n") == 1 and line.endswith(b"\n")


def test_where_the_bytes_differ_the_values_are_the_same():
    # The byte differences orjson makes (1e16 where json.dumps writes 1e+16, a raw DEL where it writes
    # \\u007f) are no value differences, and the line stays ASCII.
    event = {"ts": 1.0, "text": "a\x7fb"}
    assert event_line(event).isascii() and loads(event_line(event)) == json.loads(stdlib_line(event)) == event
    for value in (1e16, 1e-7, 123456789.123456789, 5e-324, 1.7976931348623157e308, 0.1 + 0.2):
        event = {"ts": value, "v": [value, -value]}
        assert loads(event_line(event)) == json.loads(stdlib_line(event)) == event


def test_an_event_without_ts_gets_one_and_lines_read_back(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with LedgerWriter(path) as writer:
        for event in [{"type": "upstream", "id": "a"}, *SAME_BYTES, *FALLBACK]:
            writer.append(event)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 + len(SAME_BYTES) + len(FALLBACK)
    first = loads(lines[0])
    assert list(first) == ["type", "id", "ts"] and isinstance(first["ts"], float)
    # The same values the stdlib's own lines give, in the same key order.
    for line, event in zip(lines[1:], [*SAME_BYTES, *FALLBACK], strict=True):
        assert list(loads(line).items()) == list(json.loads(stdlib_line(event)).items())
    # A reader that splits text lines (str.splitlines) sees exactly those lines: all ASCII.
    assert len(path.read_text().splitlines()) == len(lines)

"""Thousands of mutated ledgers, built from the recorded fixtures (issue 12, finding 3).

Judged in process through the same path as `harness check` (harness.engine.judge.judge_ledger). The
properties, stated precisely because not every dropped line is evidence a check needs:

- Nothing but an InputError (a HarnessError) ever escapes judging, whatever the mutation.
- A mangled field the schema fixes (wrong JSON type, NaN, an infinite number, a missing key, an unknown
  or non-string `type`) is always an InputError: never judged, never dropped.
- Dropped evidence is never PASS: without run_start the ledger is refused; without run_end, a request
  event, an upstream call that answered ok, or an audit event naming a fallback, the verdict is FAIL
  or UNKNOWN. (Dropping a call that failed, a fault_end, a topology or a note may leave a PASS: no check
  needs them to pass, and the fault window, for one, is also bounded by its deadline.)
- A ledger cut anywhere (a killed writer) is judged, and is not PASS once run_end is gone.

Derandomized: the same examples on every run. About 2,600 ledgers, about 8 ms each (about 20 s).
"""

from __future__ import annotations

import gzip
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.errors import HarnessError, InputError
from harness.core.verdict import Verdict
from harness.engine.judge import judge_ledger

FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures" / "ledgers").glob("*.jsonl.gz"))
LEDGERS: dict[str, list[bytes]] = {p.name: gzip.decompress(p.read_bytes()).splitlines(keepends=True)
                                   for p in FIXTURES}
NAMES = sorted(LEDGERS)

NAN, INF = math.nan, math.inf
NUMBER = ["x", None, [], {}, True, NAN, INF, -INF]
OPT_NUMBER = ["x", [], {}, True, NAN, INF]
STR = [None, 5, [], {}, True]
OPT_STR = [5, [], {}, True]
OPT_INT = ["200", 200.5, [], True]
OPT_STRINGS = ["x", {}, [1], [None]]
OBJ = [None, "x", [], 5]
OPT_OBJ = ["x", [], 5]
# What the schema fixes, per event type: the key and the values it must refuse there.
SCHEMA: dict[str, dict[str, list[Any]]] = {
    "request": {"ts": NUMBER, "ts_end": OPT_NUMBER, "id": STR, "route": STR, "outcome": STR, "status": OPT_INT,
                "tools": OPT_STRINGS},
    "upstream": {"ts": NUMBER, "id": OPT_STR, "provider": STR, "outcome": STR, "status": OPT_INT,
                 "tools": OPT_STRINGS},
    "audit": {"ts": NUMBER, "fields": OPT_OBJ, "leaked_identities": OPT_STRINGS},
    "run_start": {"ts": NUMBER, "scenario": OBJ},
    "fault_start": {"ts": NUMBER, "fault": STR, "deadline_ts": OPT_NUMBER, "effect": OPT_OBJ, "providers": OPT_STRINGS},
    "fault_end": {"ts": NUMBER, "fault": STR},
    "kill_switch": {"ts": NUMBER, "state": STR + ["sideways"], "ts_sent": OPT_NUMBER},
    "run_end": {"ts": NUMBER, "requests_sent": OPT_INT},
    "topology": {"providers": OPT_OBJ, "gateway": OPT_OBJ},
    "note": {"ts": OPT_NUMBER},
}
BAD_TYPES = [5, None, [], "nonsense", "Request"]
CONTROLS = "\u0001\u001b[2J\u009b31m\u0000"



def fuzz(examples: int) -> settings:
    return settings(derandomize=True, max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="harness-fuzz-") as folder:
        yield Path(folder)


def _judge(path: Path) -> Verdict | InputError:
    """The run's verdict, or the InputError it was refused with. Anything else escapes: the test fails."""
    try:
        judged = judge_ledger(path)
    except InputError as exc:
        return exc
    except HarnessError as exc:  # pragma: no cover - the property: only InputError, say which otherwise
        raise AssertionError(f"a HarnessError that is not an InputError: {exc!r}") from exc
    return judged.verdict


def _event(raw: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw)
    except ValueError:
        return None  # the killed fixture's torn last line
    return event if isinstance(event, dict) else None


def _write(workdir: Path, lines: list[bytes]) -> Path:
    path = workdir / "ledger.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event) + "\n").encode()  # NaN and inf as the stdlib writes them: NaN, Infinity


@st.composite
def mangled(draw: st.DrawFn) -> tuple[str, int, str, Any]:
    name = draw(st.sampled_from(NAMES))
    lines = LEDGERS[name]
    index = draw(st.integers(0, len(lines) - 1))
    event = _event(lines[index])
    if event is None:
        index, event = 0, _event(lines[0])
    assert event is not None
    rules = SCHEMA[event["type"]]
    key = draw(st.sampled_from(["type", *rules]))
    if key == "type":
        return name, index, key, draw(st.sampled_from(BAD_TYPES))
    action = draw(st.sampled_from(["value", "value", "value", "delete"]))
    if action == "delete":
        return name, index, key, KeyError  # delete the key: only where it is required
    return name, index, key, draw(st.sampled_from(rules[key]))


REQUIRED = {("request", k) for k in ("ts", "id", "route", "outcome")} | {
    ("upstream", k) for k in ("ts", "provider", "outcome")} | {
    ("audit", "ts"), ("run_start", "ts"), ("run_start", "scenario"), ("fault_start", "ts"), ("fault_start", "fault"),
    ("fault_end", "ts"), ("fault_end", "fault"), ("kill_switch", "ts"), ("kill_switch", "state"),
    ("run_end", "ts")}


@fuzz(1000)
@given(mangled())
def test_a_mangled_field_is_always_an_input_error(workdir, case):
    name, index, key, value = case
    lines = list(LEDGERS[name])
    event = _event(lines[index])
    assert event is not None
    if value is KeyError:
        if (event["type"], key) not in REQUIRED and key != "type":
            return  # an optional key may be absent
        del event[key]
    else:
        event[key] = value
    lines[index] = _line(event)
    found = _judge(_write(workdir, lines))
    assert isinstance(found, InputError), (name, index, key, value, found)
    assert f":{index + 1}:" in str(found) or index == 0 and "run_start" in str(found)


def _evidence(event: dict[str, Any]) -> bool:
    """A line no PASS may stand without (see the module)."""
    kind = event["type"]
    if kind in ("run_end", "request"):
        return True
    if kind == "upstream":
        return event.get("outcome") == "ok" and bool(event.get("id"))
    if kind == "audit":
        fields = event.get("fields") or {}
        return bool(fields.get("request_id")) and bool(fields.get("fallback"))
    return False


@fuzz(800)
@given(st.sampled_from(NAMES), st.integers(0, 10**6))
def test_dropped_evidence_is_never_pass(workdir, name, seed):
    lines = LEDGERS[name]
    index = seed % len(lines)
    event = _event(lines[index])
    found = _judge(_write(workdir, lines[:index] + lines[index + 1:]))
    if event is None:
        return  # the torn line of the killed fixture: nothing was there
    if event["type"] == "run_start":
        assert isinstance(found, InputError)
    elif _evidence(event):
        assert found is not Verdict.PASS, (name, index, event["type"])


@fuzz(800)
@given(st.sampled_from(NAMES), st.sampled_from(["duplicate", "swap", "cut", "controls", "flip"]),
       st.integers(0, 10**9), st.integers(0, 10**9))
def test_any_mutation_is_judged_or_refused_never_a_crash(workdir, name, how, a, b):
    lines = list(LEDGERS[name])
    i, j = a % len(lines), b % len(lines)
    ended = True
    if how == "duplicate":
        lines.insert(i, lines[i])
    elif how == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif how == "cut":  # a killed writer: the file ends anywhere, maybe mid-line
        data = b"".join(lines)
        cut = data[:b % (len(data) + 1)]
        lines = [cut]
        ended = any(b'"run_end"' in line and line.endswith(b"\n") for line in cut.splitlines(keepends=True))
    elif how == "controls":  # control characters in some string of some event: judged, never a crash
        event = _event(lines[i])
        if event is not None:
            strings = [k for k, v in event.items() if isinstance(v, str) and k != "type"]
            if strings:
                event[strings[b % len(strings)]] += CONTROLS
                lines[i] = _line(event)
    else:  # one byte of one line changed
        raw = bytearray(lines[i])
        raw[b % max(1, len(raw) - 1)] = a % 256
        lines[i] = bytes(raw)
    found = _judge(_write(workdir, lines))  # only an InputError may escape
    if how == "cut" and not ended:
        assert found is not Verdict.PASS

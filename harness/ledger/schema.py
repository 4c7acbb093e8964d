"""What a ledger line must hold before any check reads it.

A line the checks cannot read as the recorders write it is never dropped and never judged: it is an
InputError naming file:line:column and the key. Only the fields something downstream reads are
checked, and only their shape (type, finite numbers); extra keys are fine (forward compatibility).

Cheap on purpose: this runs once per line of ledgers of millions of lines, so it is plain class tests
(`x.__class__ is str`, which also refuses a bool where an int is due), not a schema library. A NaN or
an infinite number fails the range test (every comparison with NaN is false).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core import events as ev
from harness.core.errors import InputError, InputProblem

Problem = tuple[str, str]  # (key, what is wrong with it)
_MAX = 1.7976931348623157e308  # the largest finite float: NaN and +-inf fail `-_MAX <= x <= _MAX`
HINT = "a ledger is one JSON object per line, as `harness run` writes it; was it edited or cut and pasted?"


def _number(value: Any) -> bool:
    cls = value.__class__
    return (cls is float or cls is int) and -_MAX <= value <= _MAX


def _describe(value: Any) -> str:
    if value.__class__ is float:
        return f"must be a finite number, not {value!r}"
    return f"must be a number, not {_kind(value)}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}.get(value.__class__, "a number")


def _ts(event: dict[str, Any]) -> Problem | None:
    ts = event.get("ts")
    if _number(ts):
        return None
    return ("ts", "missing" if ts is None and "ts" not in event else _describe(ts))


def _optional_number(event: dict[str, Any], key: str) -> Problem | None:
    value = event.get(key)
    if value is None or _number(value):
        return None
    return (key, _describe(value))


def _string(event: dict[str, Any], key: str, nullable: bool = False) -> Problem | None:
    value = event.get(key)
    if value.__class__ is str or nullable and value is None:
        return None
    if value is None and key not in event:
        return (key, "missing")
    return (key, f"must be a string{' or null' if nullable else ''}, not {_kind(value)}")


def _int(event: dict[str, Any], key: str) -> Problem | None:
    value = event.get(key)
    if value is None or value.__class__ is int:
        return None
    return (key, f"must be an integer or null, not {_kind(value)}")


def _strings(event: dict[str, Any], key: str) -> Problem | None:
    value = event.get(key)
    if value is None:
        return None
    if value.__class__ is not list:
        return (key, f"must be an array of strings, not {_kind(value)}")
    for item in value:
        if item.__class__ is not str:
            return (key, f"must be an array of strings, holds {_kind(item)}")
    return None


def _object(event: dict[str, Any], key: str) -> Problem | None:
    value = event.get(key)
    if value is None or value.__class__ is dict:
        return None
    return (key, f"must be an object, not {_kind(value)}")


# The bulk events (most of a ledger) first pass one expression on the fields the join and every check
# read (about 0.3 µs); only a line that fails it is looked at field by field, to say what is wrong.
# Fields a check may read but no join needs: checked only to name the line a check choked on (thorough).
_LABELS = ("tenant", "region", "request_class", "data_class")
_REQUEST_EXTRA = (*_LABELS, "claimed_target", "claimed_raw", "error")
# Keys the checks index without a default (events.py's contract): present on every line of their type.
_PRESENT = {ev.REQUEST: (*_LABELS, "status", "tools", "stream", "claimed_target"),
            ev.UPSTREAM: ("identity", "status", "tools")}
_UPSTREAM_EXTRA = (*_LABELS, "identity", "key_fp", "model", "fault", "caller", "claimed_id", "vendor_reroute", "api")


def request_problem(e: dict[str, Any]) -> Problem | None:
    ts, end, status, tools = e.get("ts"), e.get("ts_end"), e.get("status"), e.get("tools")
    if ((ts.__class__ is float or ts.__class__ is int) and -_MAX <= ts <= _MAX
            and (end is None or (end.__class__ is float or end.__class__ is int) and -_MAX <= end <= _MAX)
            and e.get("id").__class__ is str and e.get("route").__class__ is str
            and e.get("outcome").__class__ is str and (status is None or status.__class__ is int)
            and (tools is None or tools.__class__ is list  # one tool or none, the common case, without a call
                 and (not tools or tools[0].__class__ is str and (len(tools) == 1 or _all_strings(tools))))):
        return None
    return (_ts(e) or _optional_number(e, "ts_end") or _string(e, "id") or _string(e, "route")
            or _string(e, "outcome") or _int(e, "status") or _strings(e, "tools"))


def upstream_problem(e: dict[str, Any]) -> Problem | None:
    ts, rid, status, tools = e.get("ts"), e.get("id"), e.get("status"), e.get("tools")
    if ((ts.__class__ is float or ts.__class__ is int) and -_MAX <= ts <= _MAX
            and (rid is None or rid.__class__ is str) and e.get("provider").__class__ is str
            and e.get("outcome").__class__ is str and (status is None or status.__class__ is int)
            and (tools is None or tools.__class__ is list  # one tool or none, the common case, without a call
                 and (not tools or tools[0].__class__ is str and (len(tools) == 1 or _all_strings(tools))))):
        return None
    return (_ts(e) or _string(e, "id", nullable=True) or _string(e, "provider") or _string(e, "outcome")
            or _int(e, "status") or _strings(e, "tools"))


def _all_strings(items: list[Any]) -> bool:
    for item in items:
        if item.__class__ is not str:
            return False
    return True


def _audit(e: dict[str, Any]) -> Problem | None:
    return _ts(e) or _object(e, "fields") or _strings(e, "leaked_identities")


def _run_start(e: dict[str, Any]) -> Problem | None:
    if e.get("scenario").__class__ is not dict:
        return ("scenario", "missing" if "scenario" not in e else f"must be an object, not {_kind(e['scenario'])}")
    return _ts(e)


def _fault_start(e: dict[str, Any]) -> Problem | None:
    return (_ts(e) or _string(e, "fault") or _optional_number(e, "deadline_ts") or _object(e, "effect")
            or _object(e, "match") or _strings(e, "providers") or _strings(e, "targets")
            or _string(e, "backend", nullable=True))


def _fault_end(e: dict[str, Any]) -> Problem | None:
    return _ts(e) or _string(e, "fault")


def _kill_switch(e: dict[str, Any]) -> Problem | None:
    problem = _ts(e) or _string(e, "state") or _optional_number(e, "ts_sent") or _int(e, "status")
    if problem is None and e.get("state") not in ("on", "off"):
        return ("state", f"must be 'on' or 'off', not {e['state']!r}")
    return problem


def _run_end(e: dict[str, Any]) -> Problem | None:
    return _ts(e) or _string(e, "status", nullable=True) or _int(e, "requests_sent")


def _note(e: dict[str, Any]) -> Problem | None:
    return _optional_number(e, "ts")  # notes are told, never judged: a note without ts is still a note


def _topology(e: dict[str, Any]) -> Problem | None:
    return _optional_number(e, "ts") or _object(e, "providers") or _object(e, "gateway")


CHECKS: dict[str, Callable[[dict[str, Any]], Problem | None]] = {
    ev.REQUEST: request_problem, ev.UPSTREAM: upstream_problem, ev.AUDIT: _audit, ev.RUN_START: _run_start,
    ev.FAULT_START: _fault_start, ev.FAULT_END: _fault_end, ev.KILL_SWITCH: _kill_switch, ev.RUN_END: _run_end,
    ev.NOTE: _note, ev.TOPOLOGY: _topology,
}
KNOWN_TYPES = frozenset(CHECKS)


def problem(event: Any) -> Problem | None:
    """What is wrong with one parsed line, or None."""
    if event.__class__ is not dict:
        return ("", f"each line must be a JSON object, not {_kind(event)}")
    kind = event.get("type")
    check = CHECKS.get(kind) if kind.__class__ is str else None
    if check is None:
        if kind.__class__ is str:
            return ("type", f"unknown event type {kind!r} (known: {', '.join(sorted(KNOWN_TYPES))})")
        return ("type", "missing" if "type" not in event else f"must be an event type string, not {_kind(kind)}")
    return check(event)


def thorough(event: Any) -> Problem | None:
    """`problem`, and the fields a check may read that no join needs (labels, claims): slower, for naming
    the line a check could not read."""
    found = problem(event)
    if found is not None:
        return found
    for key in _PRESENT.get(event["type"], ()):
        if key not in event:
            return (key, "missing (the checks read it)")
    extra = {ev.REQUEST: _REQUEST_EXTRA, ev.UPSTREAM: _UPSTREAM_EXTRA}.get(event["type"], ())
    for key in extra:
        value = event.get(key)
        if value is not None and value.__class__ is not str:
            return _string(event, key, nullable=True)
    for key in ("stream", "body_valid", "stream_complete", "healed", "ok"):
        value = event.get(key)
        if value is not None and value.__class__ is not bool:
            return (key, f"must be true, false or null, not {_kind(value)}")
    if event["type"] == ev.AUDIT:
        fields = event.get("fields") or {}
        for key in ("request_id", "fallback", "primary", "route"):
            value = fields.get(key)
            if value is not None and value.__class__ not in (str, int, float, bool):
                return (f"fields.{key}", f"must be a string, not {_kind(value)}")
    return None


def column(raw: bytes, key: str) -> int:
    """The 1-based column of `key`'s value in the raw line (1 when it cannot be found): only on an error."""
    if not key:
        return 1
    at = raw.find(b'"' + key.encode() + b'"')
    if at < 0:
        return 1
    colon = raw.find(b":", at)
    start = colon + 1 if colon >= 0 else at
    while start < len(raw) and raw[start:start + 1] in b" \t":
        start += 1
    return len(raw[:start].decode("utf-8", "replace")) + 1


def invalid(path: str | Path, number: int, raw: bytes, found: Problem) -> InputError:
    key, message = found
    return InputError([InputProblem(str(path), number, column(raw, key), key, message, HINT)])


def require(path: str | Path, number: int, raw: bytes, event: Any) -> None:
    """Raise the InputError for a line that is not an event the checks can read."""
    found = problem(event)
    if found is not None:
        raise invalid(path, number, raw, found)

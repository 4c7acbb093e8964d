"""Pass 2 of the streaming judge: requests joined with their upstream calls, in bounded memory.

Several processes append to a ledger as things happen: a provider records a call when it receives
it, the driver writes a request when its response ended, the collector writes an audit event when
it arrives. So a request's calls come before it and lines of concurrent requests interleave. The
join buffers calls by request id until their request arrives: memory follows the requests in flight,
not the length of the run.

Two modes (`Bounds.call_hold_s`). Held: a request is handed on once the stream has moved
`call_hold_s` past its end, so calls written after it (a gateway still calling after the client gave
up, or writers slightly out of order) join it. Prompt (`call_hold_s` = 0, the default, and half the
cost of joining): a request is handed on as soon as it is read; a call that turns up later for it
stops the stream with `Disorder`, and the caller judges again in held mode.

Nothing is ever silently mis-joined: a ledger outside the bounds raises `Disorder` (see there) and
the caller judges it another way: held mode, then in memory.

Time is the ledger's own: the watermark is the newest write time seen (a request's ts_end, else ts).
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from harness.core import events as ev
from harness.ledger.bounds import (
    NO_PROVIDERS,
    ORPHAN_RANK,
    Bounds,
    Disorder,
    Event,
    Handed,
    JoinSink,
    fallback_audit_id,
)
from harness.ledger.reader import fast_loads, loads, open_ledger, parse_line
from harness.ledger.schema import invalid, problem, request_problem, upstream_problem
from harness.ledger.stream import BULK_PREFIXES, BULK_TYPES

__all__ = ["ORPHAN_RANK", "Bounds", "Disorder", "Join", "JoinSink", "fallback_audit_id", "join_ledger"]
_EMPTY: frozenset[str] = frozenset()
_NO_CALLS: list[Event] = []  # what a request without calls is handed on with (never appended to)
_NO_ROUTE = object()  # the primary of a route the policy does not declare: no provider is it
_DRAIN_EVERY = 256  # lines between two looks at what can be handed on (results do not depend on it)
_UPSTREAM, _REQUEST, _AUDIT = ev.UPSTREAM, ev.REQUEST, ev.AUDIT


# One request id in flight is a list (made once per request: cheaper than an object): its calls so far, the
# line of its first call (History lists ids in that order), the whole second of its earliest call or
# request end (see _settled), its latest call, and in held mode its request and the latest of that
# request's end and its calls.
_CALLS, _RANK, _BUCKET, _LAST, _REQ, _READY = range(6)


def _entry(rank: int, bucket: int, last_call: float, calls: list[Event]) -> list[Any]:
    return [calls, rank, bucket, last_call, None, last_call]


class Join:
    def __init__(self, sink: JoinSink, bounds: Bounds) -> None:
        self.sink, self.bounds = sink, bounds
        self.prompt = bounds.call_hold_s <= 0
        self.watermark = float("-inf")
        self.t_last = 0.0
        self.live: dict[str, list[Any]] = {}
        self._fifo: deque[tuple[str, list[Any]]] = deque()  # held mode: requests in ledger order
        self._audits: deque[tuple[Event, str, float]] = deque()
        self._audit_min: deque[float] = deque()  # the queue's ts, ascending: its minimum in O(1)
        self.handed = Handed(bounds.audit_hold_s + bounds.orphan_hold_s)
        self._unmatched: set[str] = set()  # ids audit events named before any line of theirs came
        self._buckets: dict[int, int] = {}  # live calls and request ends per whole second
        self._low: int | None = None
        self._next_scan = float("-inf")
        self._lag = bounds.lag_s
        self._joined = getattr(sink, "joined", None) or self._record_then_calls

    def _record_then_calls(self, request: Event, calls: list[Event], rank: int) -> None:
        self.sink.record(request, calls)
        self.sink.calls(calls, request, rank)

    # --- reading ---------------------------------------------------------------------------------

    def read(self, path: Path) -> None:
        fast = fast_loads or loads  # orjson straight, no wrapper: this loop runs once per line
        live, buckets, handed, lag, prompt = self.live, self._buckets, self.handed, self._lag, self.prompt
        record, sink_calls, joined = self.sink.record, self.sink.calls, self._joined
        shared = handed.shared
        lane = self.sink.plain_lane() if hasattr(self.sink, "plain_lane") else None
        lane_primaries, lane_append = (lane[0], lane[1].append) if lane is not None else ({}, None)
        # The watermark and the latest ts live in locals here, written back before anything else reads them.
        watermark, t_last = self.watermark, self.t_last
        young, old = handed.young, handed.old
        number = passed = 0
        torn = False
        with open_ledger(path) as handle:
            lines = enumerate(handle, start=1)
            for number, raw in lines:  # noqa: B007  # up to the first line (run_start: pass 1 has it)
                if raw.strip():
                    break
            # Every _DRAIN_EVERY-th line (by number) ends with a look at what can be handed on, unless
            # it is blank or a global event; the lines in between run without that test.
            while True:
                drain_at = (number // _DRAIN_EVERY + 1) * _DRAIN_EVERY
                chunk = islice(lines, drain_at - number)
                for number, raw in chunk:
                    if raw.startswith(BULK_PREFIXES):
                        try:
                            event = fast(raw)
                        except ValueError:
                            event = parse_line(path, number, raw)  # validated there
                            if event is None:
                                torn = True
                                break
                    else:
                        if not raw.strip():
                            passed = number
                            continue
                        event = parse_line(path, number, raw)
                        if event is None:
                            torn = True
                            break
                        if event["type"] not in BULK_TYPES:
                            passed = number
                            continue
                    kind = event["type"]
                    if kind == _UPSTREAM:
                        if (bad := upstream_problem(event)) is not None:  # the schema, by its type (cheaper)
                            raise invalid(path, number, raw, bad)
                        # A call, joined by its request id. Inlined (not a method): about half the lines are calls.
                        ts = event.get("ts", 0.0)
                        if ts > t_last:
                            t_last = ts  # float() once, at the end
                        if ts > watermark:
                            watermark = ts
                        elif ts < watermark - lag:
                            self.watermark = watermark
                            self._late(ts)
                        rid = event.get("id")
                        if not rid:
                            sink_calls([event], None, ORPHAN_RANK + number)
                        elif (entry := live.get(rid)) is None:
                            if rid in young or rid in old:  # Handed.__contains__, inlined
                                raise Disorder(f"a call for {rid} came after its request was judged")
                            if self._unmatched and rid in self._unmatched:
                                raise Disorder(f"an audit event named {rid} before anything of it was written")
                            bucket = int(ts)
                            buckets[bucket] = buckets.get(bucket, 0) + 1
                            live[rid] = [[event], number, bucket, ts, None, ts]  # _entry(number, bucket, ts, [event])
                        else:
                            calls = entry[_CALLS]
                            if not calls:
                                entry[_RANK] = number  # held mode: its request came first
                            if ts > entry[_LAST]:
                                entry[_LAST] = ts
                                if ts > entry[_READY]:
                                    entry[_READY] = ts
                            if ts < entry[_BUCKET]:
                                self._rebucket(entry, int(ts))
                            calls.append(event)
                    elif kind == _REQUEST:
                        if (bad := request_problem(event)) is not None:
                            raise invalid(path, number, raw, bad)
                        if not prompt:
                            self.watermark, self.t_last = watermark, t_last
                            self._request(event)
                            watermark, t_last = self.watermark, self.t_last
                        else:
                            # Join._request in prompt mode, inlined: about half the lines are requests.
                            ts = event["ts"]
                            end = event.get("ts_end")
                            if end is None:
                                end = ts
                            if ts > t_last:
                                t_last = ts
                            if end > watermark:
                                watermark = end
                            elif end < watermark - lag:
                                self.watermark = watermark
                                self._late(end)
                            rid = event["id"]
                            entry = live.pop(rid, None)
                            if entry is None:
                                # An id in flight was never handed on (live and handed never share one).
                                if rid in young or rid in old:
                                    raise Disorder(f"request {rid} was written twice")
                                self.watermark = watermark
                                self._no_calls_yet(rid, ts)
                                record(event, _NO_CALLS)
                                young[rid] = (NO_PROVIDERS, float(end))  # Handed.keep of no calls, inlined
                            else:
                                buckets[entry[_BUCKET]] -= 1
                                calls = entry[_CALLS]
                                if len(calls) == 1:
                                    # The record first, then its calls (joined): a check's timeline still counts
                                    # this request's calls as to come (_settled). A plain one straight into the
                                    # sink's batch (plain_lane).
                                    call = calls[0]
                                    provider = call["provider"]
                                    if (lane_append is not None and call["outcome"] == "ok"
                                            and provider == lane_primaries.get(event["route"], _NO_ROUTE)):
                                        lane_append((event, call, entry[_RANK]))
                                    else:
                                        joined(event, calls, entry[_RANK])
                                    # Handed.keep of one call, inlined
                                    providers = shared.get(provider) or shared.setdefault(provider,
                                                                                          frozenset((provider,)))
                                    young[rid] = (providers, float(end))
                                else:
                                    calls.sort(key=_ts)
                                    joined(event, calls, entry[_RANK])
                                    handed.keep(rid, calls, float(end))
                    else:
                        bad = problem(event)
                        if bad is None and kind != _AUDIT:  # begins as a bulk event, another `type` later on
                            bad = ("type", f"written twice in the line, the last one {kind!r}")
                        if bad is not None:
                            raise invalid(path, number, raw, bad)
                        self.watermark, self.t_last = watermark, t_last
                        self._audit(event)
                        watermark, t_last = self.watermark, self.t_last
                if torn or number != drain_at:  # a torn last line, or the end of the ledger
                    break
                if passed != number:
                    self.watermark, self.t_last = watermark, t_last
                    self.drain()
                    young, old = handed.young, handed.old  # a drain may swap the generations
        self.watermark, self.t_last = watermark, float(t_last)
        self.close()

    def _late(self, written: float) -> None:
        raise Disorder(f"a line written at {written} comes after one written at {self.watermark}")

    def _request(self, event: Event) -> None:
        ts = event["ts"]
        end = event.get("ts_end")
        end = ts if end is None else end
        if ts > self.t_last:
            self.t_last = float(ts)
        if end > self.watermark:
            self.watermark = end
        elif end < self.watermark - self._lag:
            self._late(end)
        rid = event["id"]
        if rid in self.handed:
            raise Disorder(f"request {rid} was written twice")  # History keeps the later one, merged
        entry = self.live.get(rid)
        if self.prompt:
            if entry is None:
                self._no_calls_yet(rid, ts)
                self._emit(rid, event, [], 0, end)
            else:
                del self.live[rid]
                self._buckets[entry[_BUCKET]] -= 1
                self._emit(rid, event, entry[_CALLS], entry[_RANK], end)
            return
        if entry is None:
            self._no_calls_yet(rid, ts)
            bucket = int(end)
            self._buckets[bucket] = self._buckets.get(bucket, 0) + 1
            entry = self.live[rid] = _entry(0, bucket, float("-inf"), [])
        elif end < entry[_BUCKET]:
            self._rebucket(entry, int(end))
        if entry[_REQ] is None:
            self._fifo.append((rid, entry))
        entry[_REQ] = event  # a request written twice while in flight: the later wins, as in History
        if end > entry[_READY]:
            entry[_READY] = end

    def _no_calls_yet(self, rid: str, ts: float) -> None:
        if self._unmatched and rid in self._unmatched:
            raise Disorder(f"an audit event named {rid} before anything of it was written")
        # A request longer than the orphan hold: its calls may have been given up already.
        if ts + self.bounds.orphan_hold_s <= self.watermark and self.handed.maybe(rid):
            raise Disorder(f"request {rid} came after its calls were taken for orphans")

    def _audit(self, event: Event) -> None:
        ts = event.get("ts", 0.0)
        if ts > self.t_last:
            self.t_last = float(ts)
        if ts > self.watermark:
            self.watermark = ts
        elif ts < self.watermark - self._lag:
            self._late(ts)
        self.sink.audit(event)
        rid = fallback_audit_id(event)
        if rid is not None:
            self._audits.append((event, rid, ts))
            lows = self._audit_min
            while lows and lows[-1] > ts:
                lows.pop()
            lows.append(ts)

    def _rebucket(self, entry: list[Any], bucket: int) -> None:
        self._buckets[entry[_BUCKET]] -= 1
        self._buckets[bucket] = self._buckets.get(bucket, 0) + 1
        entry[_BUCKET] = bucket

    # --- handing on ------------------------------------------------------------------------------

    def drain(self) -> None:
        w, bounds = self.watermark, self.bounds
        fifo = self._fifo
        while fifo and fifo[0][1][_READY] + bounds.call_hold_s <= w:
            rid, entry = fifo.popleft()
            self._emit_held(rid, entry)
        if w >= self._next_scan:  # calls whose request never came: looked for once a second
            self._next_scan = w + 1.0
            cutoff = w - bounds.orphan_hold_s
            for rid in [rid for rid, e in self.live.items() if e[_REQ] is None and e[_LAST] <= cutoff]:
                self._orphans(rid, self.live.pop(rid))
        self._resolve(final=False)
        self.handed.expire(w)
        lows = self._audit_min
        audited = min(lows[0], w - bounds.lag_s) if lows else w - bounds.lag_s
        self.sink.advance(w, self._settled(), audited)

    def close(self) -> None:
        while self._fifo:
            self._emit_held(*self._fifo.popleft())
        for rid in list(self.live):
            self._orphans(rid, self.live.pop(rid))
        self._resolve(final=True)
        inf = float("inf")
        self.sink.advance(inf, inf, inf)

    def _emit_held(self, rid: str, entry: list[Any]) -> None:
        del self.live[rid]
        self._buckets[entry[_BUCKET]] -= 1
        request = entry[_REQ]
        assert request is not None
        end = request.get("ts_end")
        self._emit(rid, request, entry[_CALLS], entry[_RANK], request["ts"] if end is None else end)

    def _emit(self, rid: str, request: Event, calls: list[Event], rank: int, end: float) -> None:
        if len(calls) > 1:
            calls.sort(key=_ts)
        # The record first: a check's timeline still counts this request's calls as to come (_settled).
        if calls:
            self._joined(request, calls, rank)
        else:
            self.sink.record(request, calls)
        self.handed.keep(rid, calls, float(end))

    def _orphans(self, rid: str, entry: list[Any]) -> None:
        """Calls whose request never came."""
        if self.handed.maybe(rid):
            raise Disorder(f"calls for {rid} came after its request was judged")
        self._buckets[entry[_BUCKET]] -= 1
        calls = entry[_CALLS]
        calls.sort(key=_ts)
        self.sink.calls(calls, None, entry[_RANK])
        self.handed.keep(rid, calls, None)

    def _resolve(self, final: bool) -> None:
        """Hand on audits naming a fallback, in ledger order, once their request's calls are final."""
        audits, bounds = self._audits, self.bounds
        while audits:
            audit, rid, ts = audits[0]
            if rid in self.live:
                break
            known = self.handed.get(rid)
            if known is None:
                if not final and self.watermark < ts + bounds.orphan_hold_s:
                    break  # its request may still come
                if self.handed.maybe(rid):
                    raise Disorder(f"audit event for {rid} came long after its request")
                self._unmatched.add(rid)  # should its request or calls still come, they would miss it
                providers = _EMPTY
            else:
                providers, ts_end = known
                if ts_end is not None and ts > ts_end + bounds.audit_hold_s - bounds.lag_s:
                    raise Disorder(f"audit event for {rid} came after its audit trail was judged")
            audits.popleft()
            if self._audit_min and self._audit_min[0] == ts:
                self._audit_min.popleft()
            self.sink.audit_calls(audit, providers)

    def _settled(self) -> float:
        if self.watermark == float("-inf"):
            return self.watermark  # no request, call or audit read yet
        limit = int(self.watermark - self.bounds.lag_s)
        low, buckets = self._low, self._buckets
        if low is None:  # the first time: from the earliest entry in flight, or what may still come
            low = min(min((b for b, n in buckets.items() if n), default=limit), limit)
        while low < limit and not buckets.get(low):
            buckets.pop(low, None)
            low += 1
        self._low = low
        return float(low)


def _ts(call: Event) -> float:
    return call["ts"]  # type: ignore[no-any-return]


def join_ledger(path: str | Path, sink: JoinSink, bounds: Bounds) -> float:
    """Stream the ledger's requests, calls and audits into `sink`; returns the latest ts seen."""
    join = Join(sink, bounds)
    with rare_collections():
        join.read(Path(path))
    return join.t_last


@contextmanager
def rare_collections(young: int = 100_000) -> Iterator[None]:
    """The cyclic garbage collector's first generation `young` objects wide while the ledger streams.

    The join makes a few million short-lived dicts and lists, freed by their reference counts; what it
    keeps (ids handed on, requests in flight, the checks' queues) grows by one or two objects per request
    and set off a collection every few hundred requests, each scanning what survived, about a tenth
    of the judging time. Nothing the join makes is cyclic garbage, so collecting rarely loses nothing."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], young), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)

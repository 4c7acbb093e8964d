"""Accumulators: each is fed a run one joined record at a time, then asked for its result.

Checks (harness.checks) and report figures (harness.reporting) are accumulators. One implementation
of each serves two feeds: `feed_history` (a History in memory) and the streaming join (`feed_ledger`:
a ledger of any size, read from disk in bounded memory). An accumulator keeps compact state
(counters, violation groups of at most 20 ids, per-route and per-window figures), never the requests
themselves.

What an accumulator may rely on, in both feeds:
- `request`: every request, routed or not (its Record's primary is None), in ledger order.
- `record`: every request whose route the policy declares (or only those its `records` asks for), in
  ledger order, with all its calls (ts order). What it does may depend on that order.
- `calls`: every upstream call exactly once, a request's calls together, with the request (None for
  orphans) and the id's rank in History's order; the order between requests is not the same in both
  feeds, so what it does must not depend on it.
- `audit`: every audit event, in ledger order. `audit_calls`: those naming a fallback and a request,
  in ledger order, with the providers that request's calls reached.
- `advance(watermark, settled, audited)` (see JoinSink): the moment to judge what no later line can
  change. The History feed calls it once, at the end, with infinity.
- `plain` (optional, the fast lane of the streaming feed): most requests made one call, to their route's
  primary, which answered ok. An accumulator that overrides `plain` gets those as (request, call, rank) in
  batches instead of their `request`, `record` and `calls`: each batch before anything else fed after
  its requests, so its order among the other feeds is kept. The History feed never uses it, so judging
  the same ledger both ways (tests) holds `plain` to what `request`, `record` and `calls` do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.core.errors import InputError
from harness.core.model import Scenario
from harness.ledger.bounds import ORPHAN_RANK, Bounds, Disorder, fallback_audit_id
from harness.ledger.history import FaultWindow, History, KillSwitchWindow, load_history
from harness.ledger.join import join_ledger
from harness.ledger.stream import Frame, read_frame

Event = dict[str, Any]
Plain = tuple[Event, Event, int]  # a request whose one call went to its primary and answered ok, the call, its rank
INF = float("inf")
_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RunFrame:
    """What a check judges against besides the records. While a ledger streams, windows still open at
    the end of the run end at infinity (same answer to "was ts inside?"); `finish` gets the real ends."""

    scenario: Scenario
    t0: float
    windows: Sequence[FaultWindow]
    kill_switch: Sequence[KillSwitchWindow]
    kill_switch_events: Sequence[Event]
    bounds: Bounds
    run_start: dict[str, Any] = field(default_factory=dict)

    def rel(self, ts: float) -> float:
        """Seconds since the run started (History.rel)."""
        return round(ts - self.t0, 3)

    @property
    def mode(self) -> str:
        """How the traffic was made: "run" (the harness driver) or "load" (locust)."""
        return str(self.run_start.get("mode") or "run")


@dataclass(frozen=True)
class Totals:
    requests: int   # every request, routed or not
    routed: int
    unrouted: int
    audits: int

    def scan_stats(self) -> dict[str, int]:
        return {"requests": self.routed, "unrouted_requests": self.unrouted}


class Record:
    """One request on a declared route, with its calls and what every check asks of them first."""

    __slots__ = ("request", "rid", "route", "primary", "calls", "served", "fallback", "failed", "success")

    def __init__(self, request: Event, primary: str | None, calls: list[Event]) -> None:
        self.request = request
        self.rid: str = request["id"]
        self.route: str = request["route"]
        self.primary = primary  # None: a route the policy does not declare (only the `request` feed sees it)
        self.calls = calls
        if len(calls) == 1:  # most requests: one call, the same answers as the loop below
            call = calls[0]
            provider = call["provider"]
            if call["outcome"] == "ok":
                self.served = None if provider is None else str(provider)
                self.failed = False
            else:
                self.served = None
                self.failed = True
            self.fallback = provider != primary
        else:
            served: str | None = None
            fallback = failed = False
            for call in calls:
                if call["outcome"] == "ok":
                    served = call["provider"]
                else:
                    failed = True
                if call["provider"] != primary:
                    fallback = True
            self.served = None if served is None else str(served)  # the provider that really answered
            self.fallback = fallback  # some call went to another provider than the primary
            self.failed = failed      # some call did not answer ok
        status = request.get("status")  # common.is_2xx, inlined: once per request
        self.success = status is not None and 200 <= status < 300 and request.get("outcome") != "transport_error"


class Accumulator:
    """Base of every check and report figure. Subclasses override the feeds they need (the others cost
    nothing)."""

    name: ClassVar[str]
    # Which records `record` gets: "all", "fallback" (some call left the primary) or "eventful"
    # (a fallback or a failed call). Most requests are neither: skipping them is most of the speed.
    records: ClassVar[str] = "all"

    def __init__(self, frame: RunFrame) -> None:
        self.frame = frame
        self.scenario = frame.scenario

    def request(self, rec: Record) -> None:
        pass

    def record(self, rec: Record) -> None:
        pass

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        pass

    def audit(self, audit: Event) -> None:
        pass

    def audit_calls(self, audit: Event, providers: frozenset[str]) -> None:
        pass

    def advance(self, watermark: float, settled: float, audited: float) -> None:
        pass

    def plain(self, batch: list[Plain]) -> None:
        """Requests whose only call went to their route's primary and answered ok: (request, call, rank),
        in ledger order; what `request`, `record` and `calls` would do with each (see the module)."""

    def finish(self, frame: RunFrame, totals: Totals) -> Any:
        """A check returns its CheckResult; a report figure, its data."""
        raise NotImplementedError


def _overrides(acc: Accumulator, method: str) -> bool:
    return getattr(type(acc), method) is not getattr(Accumulator, method)


class Feeder:
    """Hands each feed on to the accumulators that want it (a JoinSink for the streaming join).

    With `plain`, requests the join hands on by `joined` whose one call went to the primary and answered
    ok take the fast lane: accumulators that override `plain` get them in batches (see the module);
    `record` and `calls` always take the general one."""

    def __init__(self, scenario: Scenario, accumulators: Sequence[Accumulator], plain: bool = True) -> None:
        self.accumulators = list(accumulators)
        self._primaries = {name: route.primary for name, route in scenario.policy.routes.items()}
        self._request = [a.request for a in accumulators if _overrides(a, "request")]
        wants = [a for a in accumulators if _overrides(a, "record")]
        self._record = [a.record for a in wants if a.records == "all"]
        self._record_eventful = [a.record for a in wants if a.records in ("fallback", "eventful")]
        self._eventful_only = [a.record for a in wants if a.records == "eventful"]
        self._calls = [a.calls for a in accumulators if _overrides(a, "calls")]
        self._audit = [a.audit for a in accumulators if _overrides(a, "audit")]
        self._audit_calls = [a.audit_calls for a in accumulators if _overrides(a, "audit_calls")]
        self._advance = [a.advance for a in accumulators if _overrides(a, "advance")]
        self.requests = self.unrouted = self.audits = 0
        # The fast lane: who takes plain requests in batches, and what the others still get of them.
        fast = [a for a in accumulators if plain and _overrides(a, "plain")]
        slow = [a for a in accumulators if not any(a is f for f in fast)]
        self._plain = [a.plain for a in fast]
        self._slow_request = [a.request for a in slow if _overrides(a, "request")]
        self._slow_record = [a.record for a in slow if _overrides(a, "record") and a.records == "all"]
        self._slow_calls = [a.calls for a in slow if _overrides(a, "calls")]
        self._slow = bool(self._slow_request or self._slow_record or self._slow_calls)
        self._batch: list[Plain] = []

    def record(self, request: Event, calls: list[Event]) -> None:
        if self._batch:
            self._flush()
        self.requests += 1
        primary = self._primaries.get(request["route"])
        rec = Record(request, primary, calls)
        for each in self._request:
            each(rec)
        if primary is None:
            self.unrouted += 1
            return
        for fn in self._record:
            fn(rec)
        if rec.fallback:
            for fn in self._record_eventful:
                fn(rec)
        elif rec.failed:
            for fn in self._eventful_only:
                fn(rec)

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        if self._batch:
            self._flush()
        for fn in self._calls:
            fn(calls, owner, rank)

    def joined(self, request: Event, calls: list[Event], rank: int) -> None:
        """`record` then `calls` (JoinSink.joined): a plain request straight into the batch, handed on
        before anything else is fed, at the latest at the join's next `advance` (every few hundred lines:
        memory stays flat)."""
        if self._plain and len(calls) == 1:
            call = calls[0]
            if call["outcome"] == "ok":
                primary = self._primaries.get(request["route"])
                if primary is not None and call["provider"] == primary:
                    self._batch.append((request, call, rank))  # counted in `requests` when handed on
                    if self._slow:
                        rec = Record(request, primary, calls)
                        for each in self._slow_request:
                            each(rec)
                        for fn in self._slow_record:
                            fn(rec)
                        for fn in self._slow_calls:
                            fn(calls, request, rank)
                    return
        self.record(request, calls)
        self.calls(calls, request, rank)

    def plain_lane(self) -> tuple[dict[str, str], list[Plain]] | None:
        """JoinSink.plain_lane: the routes' primaries and the batch a join may append plain requests to
        itself, when only accumulators that take them in batches want them (else None: `joined`)."""
        if not self._plain or self._slow:
            return None
        return self._primaries, self._batch

    def _flush(self) -> None:
        batch = self._batch[:]  # the same list stays the batch: a join may hold it (plain_lane)
        self._batch.clear()
        self.requests += len(batch)
        for fn in self._plain:
            fn(batch)

    def audit(self, audit: Event) -> None:
        if self._batch:
            self._flush()
        self.audits += 1
        for fn in self._audit:
            fn(audit)

    def audit_calls(self, audit: Event, providers: frozenset[str]) -> None:
        if self._batch:
            self._flush()
        for fn in self._audit_calls:
            fn(audit, providers)

    def advance(self, watermark: float, settled: float, audited: float) -> None:
        if self._batch:
            self._flush()
        for fn in self._advance:
            fn(watermark, settled, audited)

    def totals(self) -> Totals:
        requests = self.requests + len(self._batch)
        return Totals(requests, requests - self.unrouted, self.unrouted, self.audits)

    def finish(self, frame: RunFrame) -> list[Any]:
        if self._batch:
            self._flush()
        totals = self.totals()
        return [acc.finish(frame, totals) for acc in self.accumulators]


def history_frame(scenario: Scenario, history: History) -> RunFrame:
    return RunFrame(scenario, history.t0, history.windows, history.kill_switch, history.kill_switch_events, Bounds(),
                    history.run_start)


def feed_history(scenario: Scenario, history: History, accumulators: Sequence[Accumulator]) -> Feeder:
    """Feed a History in memory: calls, then requests, then audits, then the end."""
    feeder = Feeder(scenario, accumulators, plain=False)  # every record by `record`: what `plain` must match
    requests = history.requests
    for rank, (rid, calls) in enumerate(history.upstream.items()):
        if calls:
            feeder.calls(calls, requests.get(rid), rank)
    for index, call in enumerate(history.orphan_upstream):
        feeder.calls([call], None, ORPHAN_RANK + index)
    empty: list[Event] = []
    upstream = history.upstream
    for request in requests.values():
        feeder.record(request, upstream.get(request["id"], empty))  # .get: the defaultdict would grow
    for audit in history.audits:
        feeder.audit(audit)
        rid = fallback_audit_id(audit)
        if rid is not None:
            calls = upstream.get(rid, empty)
            feeder.audit_calls(audit, frozenset(c["provider"] for c in calls) if calls else _EMPTY)
    feeder.advance(INF, INF, INF)
    return feeder


Make = Callable[[RunFrame], Sequence[Accumulator]]


@dataclass(frozen=True)
class Fed:
    """What feeding a run gave: each accumulator's result (in the order `make` made them), the counts,
    the final frame (windows with their real ends) and how the ledger was fed."""

    results: list[Any]
    totals: Totals
    frame: RunFrame
    run_start: dict[str, Any]
    run_end: dict[str, Any] | None
    t_last: float
    how: str


def feed_history_run(scenario: Scenario, history: History, make: Make, how: str = "in memory") -> Fed:
    frame = history_frame(scenario, history)
    feeder = feed_history(scenario, history, make(frame))
    return Fed(feeder.finish(frame), feeder.totals(), frame, history.run_start, history.run_end, history.t_last, how)


def bounds_for(scenario: Scenario) -> Bounds:
    return Bounds.for_run(scenario.traffic.timeout_s, scenario.policy.logging.within_s)


HELD_SCALES = (1.0, 4.0)  # after the prompt join: held with the scenario's bounds, then four times wider


def _stream(scenario: Scenario, frame: Frame, make: Make, bounds: Bounds, how: str) -> Fed:
    """One streamed join of the ledger `frame` was read from. Raises Disorder when the ledger breaks
    the join's bounds."""
    run = RunFrame(scenario, frame.t0, frame.windows, frame.kill_switch, frame.kill_switch_events, bounds,
                   frame.run_start)
    feeder = Feeder(scenario, make(run))
    final = frame.final(join_ledger(frame.path, feeder, bounds))
    end = RunFrame(scenario, final.t0, final.windows, final.kill_switch, final.kill_switch_events, bounds,
                   final.run_start)
    return Fed(feeder.finish(end), feeder.totals(), end, final.run_start, final.run_end, final.t_last, how)


def read_run_frame(path: str | Path) -> Frame:
    """Pass 1 over a ledger (its global events); a bad ledger is the InputError History reports for it."""
    try:
        return read_frame(path)
    except InputError:
        load_history(path)  # the error History reports first for this ledger
        raise


def feed_ledger(path: str | Path, scenario: Scenario, make: Make, frame: Frame | None = None,
                in_memory: bool = True) -> Fed:
    """Stream a saved run into the accumulators `make` makes, in bounded memory: the prompt join first,
    held joins if the ledger is out of order, and a History in memory only if none could join it
    exactly (the same results either way; `Fed.how` says which). With `in_memory=False` a ledger no
    streamed join takes raises Disorder instead."""
    frame = frame or read_run_frame(path)
    base = bounds_for(scenario)
    attempts = [("prompt", base)] + [(f"held x{scale:g}", base.held(scale)) for scale in HELD_SCALES]
    for index, (mode, bounds) in enumerate(attempts):
        try:
            return _stream(scenario, frame, make, bounds, f"streamed ({mode} join)")
        except Disorder as exc:
            if not in_memory and index == len(attempts) - 1:
                raise
            reason = str(exc)
        # An InputError (a malformed line) goes up as it is: History reads lines with the same schema.
    return feed_history_run(scenario, load_history(path), make, f"in memory ({reason})")

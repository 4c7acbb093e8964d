"""A seeded, open-loop traffic driver: request i leaves at i / rate, whatever came back before.

Open loop matters: a gateway that slows down must not slow the offered load, or an outage
would hide itself by throttling the traffic that should observe it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from harness.core.events import CUT_IN_FLIGHT, EventSink
from harness.core.model import ServedTarget, Traffic
from harness.traffic.answers import AnswerParts
from harness.traffic.requests import (
    PlannedRequest,
    StreamReader,
    claimed_target,
    error_text,
    request_event,
    valid_completion,
)
from harness.traffic.source import Overrides, TrafficReport, TrafficTarget

# Entries drawn from the RNG at a time: memory stays this small whatever the rate and duration.
SCHEDULE_CHUNK = 1024


def schedule(traffic: Traffic, seed: int) -> Iterator[PlannedRequest]:
    """The request schedule, fixed by the seed, made as it is consumed (memory independent of duration).

    The same requests as one `rng.choices(mix, weights, k=count)` call: with weights, CPython's
    `choices` draws exactly one `random()` per item, so drawing in chunks consumes the generator in
    the same order (tests/test_schedule.py compares both)."""
    rng = random.Random(seed)
    count = schedule_length(traffic)
    weights = [m.weight for m in traffic.mix]
    cum_weights = list(itertools.accumulate(weights))
    done = 0
    while done < count:
        chunk = min(SCHEDULE_CHUNK, count - done)
        for entry in rng.choices(traffic.mix, cum_weights=cum_weights, k=chunk):
            yield PlannedRequest(f"r{done:06d}", done / traffic.rate_per_s, entry)
            done += 1


def schedule_length(traffic: Traffic) -> int:
    return max(1, int(traffic.rate_per_s * traffic.duration_s))


def plan(traffic: Traffic, seed: int) -> list[PlannedRequest]:
    """The whole schedule as a list: for short schedules (tests, previews) only."""
    return list(schedule(traffic, seed))


class TrafficDriver:
    def __init__(
        self,
        traffic: Traffic,
        seed: int,
        gateway_url: str,
        sink: EventSink,
        served_target: ServedTarget,
        client_key: str | None = None,
        on_result: Callable[[dict[str, Any]], None] | None = None,
        extra_headers: dict[str, str] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.traffic = traffic
        self.url = gateway_url.rstrip("/") + "/v1/chat/completions"
        self.sink = sink
        self.served_target = served_target
        self.client_key = client_key
        self.on_result = on_result
        self.extra_headers = dict(extra_headers or {})
        self.redact = redact
        # Set while a per-request kill switch is off (headers, body fields added to each request).
        self.overrides: Overrides | None = None
        self.schedule = schedule(traffic, seed)
        self.sent = 0  # requests that left: counted as each one starts, so a cancelled-before-sent one is not
        self._inflight: dict[str, tuple[PlannedRequest, float]] = {}

    async def run(self, start: float) -> int:
        """Send the schedule; `start` is the loop time traffic begins. Returns requests sent."""
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=self.traffic.timeout_s)
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            try:
                for planned in self.schedule:
                    delay = start + planned.offset_s - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    task = asyncio.create_task(self._one(session, planned))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.wait(tasks)
            finally:
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.wait(tasks)
                self._record_unfinished()
        return self.sent

    def _record_unfinished(self) -> None:
        # Requests cut off by an abort are recorded with an unknown outcome, never dropped.
        now = time.time()
        for planned, sent_ts in list(self._inflight.values()):
            self._record(planned, sent_ts, now, status=None, outcome="unknown", error="run aborted before it ended")
        self._inflight.clear()

    async def _one(self, session: aiohttp.ClientSession, planned: PlannedRequest) -> None:
        sent_ts = time.time()
        self._inflight[planned.id] = (planned, sent_ts)
        self.sent += 1
        headers = {**{k: planned.fill(v) for k, v in self.extra_headers.items()},
                   **planned.headers(self.traffic.headers, self.client_key)}
        body = planned.body()
        if self.overrides is not None:
            headers.update(self.overrides[0])
            body.update(self.overrides[1])
        try:
            async with session.post(self.url, json=body, headers=headers) as resp:
                if planned.entry.stream and resp.status < 300:
                    await self._read_stream(planned, sent_ts, resp)
                else:
                    await self._read_body(planned, sent_ts, resp)
        except TimeoutError:
            self._record(planned, sent_ts, time.time(), status=None, outcome="timeout", error="client timeout")
        except aiohttp.ClientError as exc:
            self._record(planned, sent_ts, time.time(), status=None, outcome="transport_error",
                         error=f"{type(exc).__name__}: {exc}")
        except (ValueError, OSError) as exc:
            # Never drop a request silently: whatever broke on our side is recorded with it.
            self._record(planned, sent_ts, time.time(), status=None, outcome="unknown",
                         error=f"client could not send it: {type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            # An interrupt: the request may well have reached the gateway and its providers; its answer
            # will never be known, and it is recorded as such (never dropped).
            if self._inflight.pop(planned.id, None) is not None:
                self._record(planned, sent_ts, time.time(), status=None, outcome="unknown",
                             error=CUT_IN_FLIGHT)
            raise
        finally:
            self._inflight.pop(planned.id, None)

    async def _read_body(self, planned: PlannedRequest, sent_ts: float, resp: aiohttp.ClientResponse) -> None:
        raw = await resp.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        ok = resp.status < 300
        claimed, claimed_raw = claimed_target(self.served_target, resp.headers, body)
        self._record(planned, sent_ts, time.time(), status=resp.status, outcome="ok" if ok else "http_error",
                     claimed=claimed, claimed_raw=claimed_raw, body_valid=valid_completion(body) if ok else None,
                     error=None if ok else error_text(body, raw),
                     answer=planned.answer(AnswerParts.of_body(body), resp.headers) if ok else None)

    async def _read_stream(self, planned: PlannedRequest, sent_ts: float, resp: aiohttp.ClientResponse) -> None:
        reader = StreamReader()
        try:
            async for data in resp.content.iter_any():
                reader.feed(data)
        except aiohttp.ClientError as exc:
            # The gateway broke the connection: it signalled the failure instead of faking success.
            claimed, raw = claimed_target(self.served_target, resp.headers, reader.first_body)
            self._record(planned, sent_ts, time.time(), status=resp.status, outcome="transport_error",
                         claimed=claimed, claimed_raw=raw, stream_complete=False,
                         error=f"stream broke: {type(exc).__name__}")
            return
        claimed, raw = claimed_target(self.served_target, resp.headers, reader.first_body)
        self._record(planned, sent_ts, time.time(), status=resp.status, outcome="ok", claimed=claimed,
                     claimed_raw=raw, stream_complete=reader.complete,
                     answer=planned.answer(reader.parts if reader.chunks else None, resp.headers))

    def _record(self, planned: PlannedRequest, sent_ts: float, end_ts: float, **record: Any) -> None:
        if self.redact is not None:
            for key in ("error", "claimed", "claimed_raw"):
                if isinstance(record.get(key), str):
                    record[key] = self.redact(record[key])
        event = request_event(planned, sent_ts, end_ts, record)
        self.sink.append(event)
        if self.on_result:
            self.on_result(event)


class DriverSource:
    """The traffic source of `harness run`: the seeded open-loop driver, in the harness's own process."""

    mode = "run"
    stopping = "the traffic"

    def __init__(self, traffic: Traffic, seed: int) -> None:
        self.traffic = traffic
        self.seed = seed
        self.driver: TrafficDriver | None = None
        self._start = 0.0

    def describe(self) -> dict[str, Any]:
        return {}

    def plan_line(self) -> str:
        return f"traffic {self.traffic.rate_per_s:g}/s for {self.traffic.duration_s:g} s"

    async def start(self, target: TrafficTarget, sink: EventSink) -> float:
        self.driver = TrafficDriver(self.traffic, self.seed, target.gateway_url, sink, target.served_target,
                                    target.client_key, extra_headers=target.request_headers, redact=target.redact)
        self._start = asyncio.get_running_loop().time() + 0.05
        return self._start

    def set_overrides(self, overrides: Overrides | None) -> None:
        assert self.driver is not None, "the kill switch acts only once traffic started"
        self.driver.overrides = overrides

    async def wait(self) -> None:
        assert self.driver is not None
        await self.driver.run(self._start)

    async def stop(self) -> None:
        """Nothing outlives the driver: cancelled, it records its requests in flight as unknown."""

    def conclude(self, completed: bool) -> TrafficReport:
        return TrafficReport(requests_sent=self.driver.sent if self.driver is not None else 0)

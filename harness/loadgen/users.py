"""The locust user that sends the scenario's traffic mix, each request recorded as the harness driver does.

Imported only by the locust entry (harness/locustfile.py), in locust's own processes: `import locust`
monkey-patches the standard library with gevent. Each user draws mix entries with the scenario's
weights (seeded per user) and builds every request exactly as the harness driver does: the
correlation token in the content and the headers. Ids are `l<worker>-<user>-<n>`, unique across users
and worker processes. When the entry hands it a sink (under `harness load`), every request is
recorded in a `finally`: a request cut off by a stop is still recorded, with outcome `unknown`, and
counted in locust's statistics as a failure, so the two counts compare. Plain locust use records
nothing and, like locust, does not count a request cut off by the stop.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
from locust import FastHttpUser, task

from harness.core.events import EventSink, request_failed
from harness.loadgen import LoadConfig, read_switch
from harness.traffic.answers import AnswerParts
from harness.traffic.requests import (
    PlannedRequest,
    StreamReader,
    claimed_target,
    error_text,
    request_event,
    valid_completion,
)
from harness.traffic.source import Overrides

PATH = "/v1/chat/completions"
ALL_STATUSES = frozenset(range(100, 600))  # every status is an answer to record, not an error to retry
CUT = "stopped before the response ended"


class State:
    """What the locust entry hands the users of this process."""

    config: LoadConfig | None = None
    # Opens the run's ledger in the process that sends (after any fork); None: record nothing.
    open_sink: Callable[[], EventSink] | None = None
    sink: EventSink | None = None
    switch: SwitchReader | None = None


class SwitchReader(Protocol):
    def current(self) -> Overrides | None: ...


class Switch:
    """The per-request kill switch the harness publishes; re-read only when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: int | None = None
        self.overrides: Overrides | None = None

    def current(self) -> Overrides | None:
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return None
        if stamp != self.stamp:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            self.overrides = read_switch(data)
            self.stamp = stamp
        return self.overrides


def _sink() -> EventSink | None:
    if State.sink is None and State.open_sink is not None:
        # Opened in the process that sends, kept until it exits: a user cut off while locust shuts
        # down still records its request.
        State.sink = State.open_sink()
    return State.sink


_USERS = itertools.count()
CONFIG_WAIT_S = 30.0  # a remote worker's users wait this long for the master's config


def _config() -> LoadConfig:
    """The request config; on a remote worker it comes from the master, just before the users start."""
    deadline = time.monotonic() + CONFIG_WAIT_S
    while State.config is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no request config from the master within {CONFIG_WAIT_S:g} s")
        gevent.sleep(0.05)
    return State.config


class HarnessUser(FastHttpUser):
    """One client of the gateway: sends the scenario's mix, one request per task."""

    def on_start(self) -> None:
        config = _config()
        index = int(getattr(self.environment.runner, "worker_index", 0))
        self.worker = str(index) if index >= 0 else f"p{os.getpid()}"  # unique even if the index is not known
        self.index = next(_USERS)
        self.sent = 0
        self.rng = random.Random(f"{config.seed}:{self.worker}:{self.index}")
        self.mix = config.traffic.mix
        self.weights = [m.weight for m in self.mix]
        self.client.client.valid_response_codes = ALL_STATUSES
        self.period = 1.0 / config.user_rate if config.user_rate > 0 else 0.0
        # Spread the users' first requests over one period, or they all fire (and stop) in lockstep.
        gevent.sleep(self.rng.random() * self.period)
        self.due = time.monotonic()

    def wait_time(self) -> float:
        """Constant throughput per user, each on its own phase: one request every `period` seconds
        (at once when a request took longer than that)."""
        now = time.monotonic()
        self.due = max(self.due + self.period, now)
        return self.due - now

    @task
    def chat(self) -> None:
        entry = self.rng.choices(self.mix, weights=self.weights)[0]
        self.sent += 1
        self.send(PlannedRequest(f"l{self.worker}-{self.index}-{self.sent}", 0.0, entry))

    def send(self, planned: PlannedRequest) -> None:
        config = State.config
        assert config is not None
        e = planned.entry
        headers = {**config.request_headers, **planned.headers(config.traffic.headers, config.client_key)}
        body = planned.body()
        overrides = State.switch.current() if State.switch else None
        if overrides is not None:
            headers.update(overrides[0])
            body.update(overrides[1])
        label = f"{e.route} {e.request_class}" + (" stream" if e.stream else "")
        record: dict[str, Any] = {"status": None, "outcome": "unknown", "error": CUT}
        sent_ts, started = time.time(), time.perf_counter()
        reported = False
        timer = gevent.Timeout(config.traffic.timeout_s)
        timer.start()
        try:
            with self.client.request("POST", PATH, name=label, data=json.dumps(body), headers=headers,
                                     stream=True, catch_response=True) as resp:
                record = _read(resp, planned, config, timer)
                resp.request_meta["response_time"] = (time.perf_counter() - started) * 1000
                resp.request_meta["response_length"] = record.pop("length", 0)
                if request_failed(record):
                    resp.failure(record["error"] or _failure_text(record))
                else:
                    resp.success()
            reported = True
        finally:
            timer.close()
            end_ts = time.time()
            sink = _sink()
            if sink is not None:
                if not reported:  # cut off (a stop, a bug): counted by locust too, as a failure
                    self.environment.events.request.fire(
                        request_type="POST", name=label, response_time=(end_ts - sent_ts) * 1000,
                        response_length=0, response=None, context={},
                        exception=RuntimeError(record["error"] or CUT), start_time=sent_ts, url=PATH)
                sink.append(request_event(planned, sent_ts, end_ts, record))


def _read(resp: Any, planned: PlannedRequest, config: LoadConfig, timer: gevent.Timeout) -> dict[str, Any]:
    """Read the response like the harness driver does; what it says, never raised."""
    stream = planned.entry.stream
    error = getattr(resp, "error", None)
    status = int(resp.status_code or 0)
    if status == 0:  # no HTTP answer at all
        if isinstance(error, gevent.Timeout | TimeoutError):
            return {"status": None, "outcome": "timeout", "error": "client timeout"}
        return {"status": None, "outcome": "transport_error", "error": f"{type(error).__name__}: {error}"}
    headers = resp.headers or {}
    try:
        raw: bytes = resp.content or b""
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        return {"status": None, "outcome": "timeout", "error": "client timeout"}  # as the driver records it
    except Exception as exc:  # noqa: BLE001 - the connection broke mid-body (ConnectionError, HTTPParseError, ...)
        claimed, claimed_raw = claimed_target(config.served_target, headers, None)
        return {"status": status, "outcome": "transport_error", "claimed": claimed, "claimed_raw": claimed_raw,
                "stream_complete": False if stream else None,
                "error": f"{'stream' if stream else 'body'} broke: {type(exc).__name__}"}
    if stream and status < 300:
        reader = StreamReader()
        reader.feed(raw + b"\n")
        claimed, claimed_raw = claimed_target(config.served_target, headers, reader.first_body)
        return {"status": status, "outcome": "ok", "claimed": claimed, "claimed_raw": claimed_raw,
                "stream_complete": reader.complete, "error": None, "length": len(raw),
                "answer": planned.answer(reader.parts if reader.chunks else None, headers)}
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = None
    ok = status < 300
    claimed, claimed_raw = claimed_target(config.served_target, headers, body)
    return {"status": status, "outcome": "ok" if ok else "http_error", "claimed": claimed, "claimed_raw": claimed_raw,
            "body_valid": valid_completion(body) if ok else None, "error": None if ok else error_text(body, raw),
            "length": len(raw), "answer": planned.answer(AnswerParts.of_body(body), headers) if ok else None}


def _failure_text(record: dict[str, Any]) -> str:
    if record.get("body_valid") is False:
        return "invalid completion body"
    if record.get("stream_complete") is False:
        return "incomplete stream"
    return str(record["outcome"])



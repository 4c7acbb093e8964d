"""The scenario's traffic mix as locust users, each request recorded in the run's ledger.

    harness load scenarios/x.yaml --users 50 --run-time 60           # the governed path
    locust -f harness/loadgen/locustfile.py --harness-scenario scenarios/x.yaml --host http://...

Each user draws mix entries with the scenario's weights (seeded per user) and builds every
request exactly as the harness driver does: the correlation token in the content and the
headers. Ids are `l<worker>-<user>-<n>`, unique across users and worker processes. Under
`harness load` every request is appended to the ledger (one O_APPEND write per event, so
workers append directly) in a `finally`: a request cut off by a stop is still recorded, with
outcome `unknown`, and counted in locust's statistics as a failure, so the two counts compare.
Plain locust use records nothing and, like locust, does not count a request cut off by the stop.
Faults and checks stay in the harness process, never here.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from harness.ledger import LedgerWriter
from harness.loadgen import CONFIG_ENV, LoadConfig
from harness.loadgen.stats import is_failure
from harness.scenario import load_scenario
from harness.traffic.requests import (
    PlannedRequest,
    StreamReader,
    claimed_target,
    error_text,
    request_event,
    valid_completion,
)

PATH = "/v1/chat/completions"
ALL_STATUSES = frozenset(range(100, 600))  # every status is an answer to record, not an error to retry
CUT = "stopped before the response ended"


class _State:
    config: LoadConfig | None = None
    ledger: LedgerWriter | None = None
    switch: _Switch | None = None


class _Switch:
    """The per-request kill switch the harness publishes; re-read only when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: int | None = None
        self.overrides: tuple[dict[str, str], dict[str, Any]] | None = None

    def current(self) -> tuple[dict[str, str], dict[str, Any]] | None:
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return None
        if stamp != self.stamp:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            self.overrides = (data["headers"], data["body"]) if data else None
            self.stamp = stamp
        return self.overrides


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--harness-scenario", default=None, env_var="LOCUST_HARNESS_SCENARIO",
                        help="scenario file whose traffic mix the users send (plain locust use)")
    parser.add_argument("--harness-user-rate", type=float, default=1.0, env_var="LOCUST_HARNESS_USER_RATE",
                        help="requests per second per user (0: no wait); default 1")
    parser.add_argument("--harness-seed", type=int, default=None, help="override the scenario's seed")


@events.init.add_listener
def _init(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    private = os.environ.get(CONFIG_ENV)
    if private:
        config = LoadConfig.read(private)
    elif options is not None and options.harness_scenario:
        scenario = load_scenario(options.harness_scenario).scenario
        config = LoadConfig(traffic=scenario.traffic, seed=scenario.seed if options.harness_seed is None
                            else options.harness_seed, served_target=scenario.gateway.served_target,
                            client_key=scenario.gateway.client_key, user_rate=options.harness_user_rate)
    else:
        raise SystemExit(f"harness locustfile: pass --harness-scenario FILE (or set {CONFIG_ENV})")
    _State.config = config
    _State.switch = _Switch(config.switch_path) if config.switch_path else None
    HarnessUser.network_timeout = HarnessUser.connection_timeout = config.traffic.timeout_s


@events.test_start.add_listener
def _started(environment: Environment, **_kwargs: Any) -> None:
    config = _State.config
    if config and config.started_path and not isinstance(environment.runner, WorkerRunner):
        with open(config.started_path, "w", encoding="utf-8") as handle:
            handle.write(f"{time.time()}\n")


def _ledger() -> LedgerWriter | None:
    config = _State.config
    if _State.ledger is None and config is not None and config.ledger_path:
        # Opened in the process that sends (after any fork), closed when it exits: a user cut off
        # while locust shuts down still records its request.
        _State.ledger = LedgerWriter(config.ledger_path)
    return _State.ledger


_USERS = itertools.count()


class HarnessUser(FastHttpUser):
    """One client of the gateway: sends the scenario's mix, one request per task."""

    def on_start(self) -> None:
        config = _State.config
        assert config is not None
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
        config = _State.config
        assert config is not None
        e = planned.entry
        headers = {**config.request_headers, **planned.headers(config.traffic.headers, config.client_key)}
        body = planned.body()
        overrides = _State.switch.current() if _State.switch else None
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
                if is_failure(record):
                    resp.failure(record["error"] or _failure_text(record))
                else:
                    resp.success()
            reported = True
        finally:
            timer.close()
            end_ts = time.time()
            ledger = _ledger()
            if ledger is not None:
                if not reported:  # cut off (a stop, a bug): counted by locust too, as a failure
                    self.environment.events.request.fire(
                        request_type="POST", name=label, response_time=(end_ts - sent_ts) * 1000,
                        response_length=0, response=None, context={},
                        exception=RuntimeError(record["error"] or CUT), start_time=sent_ts, url=PATH)
                ledger.append(request_event(planned, sent_ts, end_ts, record))


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
                "stream_complete": reader.complete, "error": None, "length": len(raw)}
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = None
    ok = status < 300
    claimed, claimed_raw = claimed_target(config.served_target, headers, body)
    return {"status": status, "outcome": "ok" if ok else "http_error", "claimed": claimed, "claimed_raw": claimed_raw,
            "body_valid": valid_completion(body) if ok else None, "error": None if ok else error_text(body, raw),
            "length": len(raw)}


def _failure_text(record: dict[str, Any]) -> str:
    if record.get("body_valid") is False:
        return "invalid completion body"
    if record.get("stream_complete") is False:
        return "incomplete stream"
    return str(record["outcome"])



"""Remote locust workers: the master hands them the request config and the kill switch, and writes the
observations they ship into the run's one ledger.

Imported only by the locust entry (harness/locustfile.py), in locust's own processes (gevent). Under
`harness load --workers-expected N` the locust master runs on the harness's machine; workers
(`harness worker --master HOST:PORT`) may run anywhere and share no file with it:

- a worker says hello once its handlers are in place (a message locust delivers before that is dropped),
  sealed with the run's worker token (harness.loadgen.channel); the master answers with the request config
  (`LoadConfig.for_worker`, the client key included) and the kill switch, sealed likewise;
- each worker buffers its request events and ships them in sealed, numbered batches (at most
  `BATCH_EVENTS` events or `FLUSH_S` old); the master checks each batch (sealed by a token holder, sent by
  the worker it names, the next in that worker's sequence, request events with that worker's ids only)
  and appends its events to the ledger. Anything else is refused and counted;
- when the test ends the master stops the workers, each ships what it still holds and says `done` with
  how many requests locust counted on it; the master writes what every worker shipped to
  `workers_path`. A worker that never said `done` died or was cut off: what it had not shipped is lost,
  and the harness says so (harness.loadgen.stats.compare_workers).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import STATE_MISSING

from harness.core.events import EventSink
from harness.loadgen import LoadConfig, read_switch, switch_json
from harness.loadgen.channel import CONFIG, DONE, HELLO, OBSERVATIONS, REFUSED, SWITCH, Channel, ChannelError
from harness.loadgen.users import HarnessUser, State, Switch
from harness.traffic.source import Overrides

BATCH_EVENTS = 200   # a batch is shipped when it holds this many request events ...
FLUSH_S = 0.2        # ... or when its oldest is this old: what a worker that dies takes with it
DONE_WAIT_S = 15.0   # after the workers stopped, how long the master waits for their last batches
SWITCH_POLL_S = 0.02  # how often the master looks for a new kill switch to pass on
QUIT_AFTER_S = 0.5   # a worker that said done quits this soon after (its last messages are on their way)

log = logging.getLogger("harness.remote")


@dataclass
class Shipped:
    """What the master knows of one remote worker."""

    client_id: str
    index: int
    host: str | None = None
    received: int = 0            # request events of it written to the ledger
    batches: int = 0             # the sequence number its next batch must carry
    counted: int | None = None   # requests locust counted on it (its last report, then its `done`)
    done: bool = False           # it shipped everything and said so
    refused: int = 0             # its messages that failed a check (never written)


class MasterHub:
    """The master's side: config and kill switch out, observations in, what each worker shipped at the end."""

    def __init__(self, environment: Environment, config: LoadConfig, channel: Channel, ledger: EventSink) -> None:
        assert config.workers_path
        self.environment = environment
        self.runner: Any = environment.runner
        self.config = config
        self.channel = channel
        self.ledger = ledger  # the run's ledger (each event one O_APPEND write: nothing to flush at the end)
        self.switch = Switch(config.switch_path) if config.switch_path else None
        self.workers: dict[str, Shipped] = {}
        self.refused = 0             # messages from no known worker, or not sealed with the token
        self.written = False
        self.runner.register_message(HELLO, self.on_hello)
        self.runner.register_message(OBSERVATIONS, self.on_observations)
        self.runner.register_message(DONE, self.on_done)
        events = environment.events
        events.worker_report.add_listener(self.on_report)
        events.test_start.add_listener(self.on_test_start)
        events.quitting.add_listener(self.on_quitting)
        gevent.spawn(self.pass_on_switch)

    # -- out ------------------------------------------------------------------------------------
    def on_hello(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        client_id = msg.node_id
        try:
            hello = self.channel.open(msg.data)
        except ChannelError:
            hello = None
        if not isinstance(hello, dict) or hello.get("worker") != client_id:
            self.refused += 1
            log.warning("refused a worker at %s: its hello was not sealed with the run's worker token", client_id)
            self._send_away(client_id)
            return
        if client_id not in self.workers:
            self.workers[client_id] = Shipped(client_id, int(self.runner.get_worker_index(client_id)),
                                              host=hello.get("host"))
        current = self.switch.current() if self.switch else None
        sealed = self.channel.seal({"config": self.config.for_worker().to_json(), "switch": switch_json(current)})
        self.runner.send_message(CONFIG, sealed, client_id)

    def pass_on_switch(self) -> None:
        if self.switch is None:
            return
        stamp = self.switch.stamp
        while True:
            gevent.sleep(SWITCH_POLL_S)
            current = self.switch.current()
            if self.switch.stamp != stamp:
                stamp = self.switch.stamp
                self.runner.send_message(SWITCH, self.channel.seal(switch_json(current)))

    # -- in -------------------------------------------------------------------------------------
    def _opened(self, msg: Any) -> tuple[Shipped, dict[str, Any]] | None:
        worker = self.workers.get(msg.node_id)
        try:
            data = self.channel.open(msg.data)
        except ChannelError:
            data = None
        if worker is None or not isinstance(data, dict) or data.get("worker") != msg.node_id \
                or data.get("seq") != worker.batches:
            if worker is not None:
                worker.refused += 1
            else:
                self.refused += 1
            log.warning("refused a %s message from %s: not sealed with the run's worker token, not from the "
                        "worker it names, or out of sequence", msg.type, msg.node_id)
            return None
        return worker, data

    def _send_away(self, client_id: str) -> None:
        """Forget a worker that does not hold the token (it must not hold one of the places the test waits for,
        nor get users), then tell it why. Forgotten first: locust ends a headless test when its last known
        worker quits, and the intruder may be the only one so far."""
        client = self.runner.clients.get(client_id)
        if client is not None:
            del self.runner.clients[client_id]
            dispatcher = getattr(self.runner, "_users_dispatcher", None)
            if dispatcher is not None:
                dispatcher.remove_worker(client)
        self.runner.send_message(REFUSED, None, client_id)

    def on_observations(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        opened = self._opened(msg)
        if opened is None:
            return
        worker, data = opened
        prefix = f"l{worker.index}-"
        events = data.get("events")
        if not isinstance(events, list) or not all(
                isinstance(e, dict) and e.get("type") == "request" and str(e.get("id", "")).startswith(prefix)
                for e in events):
            worker.refused += 1
            log.warning("refused a batch of worker %s: only its own request events may be shipped", worker.index)
            return
        for event in events:
            self.ledger.append(event)
        worker.batches += 1
        worker.received += len(events)

    def on_done(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        opened = self._opened(msg)
        if opened is None:
            return
        worker, data = opened
        worker.done, worker.counted, worker.host = True, int(data.get("counted") or 0), data.get("host")

    def on_report(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        worker = self.workers.get(client_id)
        if worker is None or worker.done or "harness" not in data:
            return
        try:
            report = self.channel.open(data["harness"])
        except ChannelError:
            worker.refused += 1
            return
        if isinstance(report, dict) and report.get("worker") == client_id:
            worker.counted, worker.host = int(report.get("counted") or 0), report.get("host")

    # -- the end ----------------------------------------------------------------------------------
    def on_test_start(self, **_kw: Any) -> None:
        if self.config.run_time_s:
            gevent.spawn_later(self.config.run_time_s, self.finish)

    def finish(self) -> None:
        """Stop the workers (each ships what it holds, then says done), wait for them, write, quit."""
        self.runner.stop()
        deadline = time.monotonic() + DONE_WAIT_S
        while time.monotonic() < deadline and not all(w.done or self._gone(w) for w in self.workers.values()):
            gevent.sleep(0.05)
        self.write()
        self.runner.quit()

    def _gone(self, worker: Shipped) -> bool:
        client = self.runner.clients.get(worker.client_id)
        return client is None or client.state == STATE_MISSING

    def on_quitting(self, **_kw: Any) -> None:
        self.write()  # a master stopped early (a signal) still says what each worker shipped

    def write(self) -> None:
        if self.written or not self.config.workers_path:
            return
        self.written = True
        data = {"workers": [asdict(w) for w in sorted(self.workers.values(), key=lambda w: w.index)],
                "refused_messages": self.refused}
        tmp = f"{self.config.workers_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(tmp, self.config.workers_path)


class RemoteSwitch:
    """The kill switch as the master last passed it on."""

    def __init__(self, overrides: Overrides | None) -> None:
        self.overrides = overrides

    def current(self) -> Overrides | None:
        return self.overrides


class WorkerShipper:
    """A remote worker's side: takes the config and the kill switch, ships every request event it records."""

    def __init__(self, environment: Environment, channel: Channel) -> None:
        self.environment = environment
        self.runner: Any = environment.runner
        self.channel = channel
        self.buffer: list[dict[str, Any]] = []
        self.oldest = 0.0
        self.seq = 0
        self.counted = 0     # requests locust counted here (its `request` events)
        self.done = False
        self.host = socket.gethostname()
        self.runner.register_message(CONFIG, self.on_config)
        self.runner.register_message(SWITCH, self.on_switch)
        self.runner.register_message(REFUSED, self.on_refused)
        events = environment.events
        events.request.add_listener(self.on_request)
        events.report_to_master.add_listener(self.on_report)
        events.test_stop.add_listener(self.finish)
        events.quitting.add_listener(self.finish)
        gevent.spawn(self.flusher)
        gevent.spawn(self.hello)

    def hello(self) -> None:
        """Ask the master for the config, again until it comes (it may not be listening for us yet)."""
        while State.config is None:
            self.runner.connection_event.wait()  # the master acknowledged this worker
            self.runner.send_message(HELLO, self.channel.seal({"worker": self.runner.client_id, "host": self.host}))
            gevent.sleep(1.0)

    def _open(self, msg: Any) -> Any:
        try:
            return self.channel.open(msg.data)
        except ChannelError:
            log.error("the master's %s message was not sealed with this worker's HARNESS_WORKER_TOKEN: check that "
                      "the master and the workers were given the same token", msg.type)
            self.environment.process_exit_code = 2
            gevent.spawn(self.runner.quit)
            return None

    def on_refused(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        log.error("the master refused this worker: its HARNESS_WORKER_TOKEN is not the run's")
        environment.process_exit_code = 2
        gevent.spawn(self.runner.quit)

    def on_config(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        data = self._open(msg)
        if data is None:
            return
        config = LoadConfig.from_json(data["config"])
        State.config = config
        State.switch = RemoteSwitch(read_switch(data.get("switch") or {}))
        State.open_sink = lambda: self
        HarnessUser.network_timeout = HarnessUser.connection_timeout = config.traffic.timeout_s

    def on_switch(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        data = self._open(msg)
        if data is not None and isinstance(State.switch, RemoteSwitch):
            State.switch.overrides = read_switch(data)

    def on_request(self, **_kw: Any) -> None:
        self.counted += 1

    # -- the sink the users record into ---------------------------------------------------------------
    def append(self, event: dict[str, Any]) -> None:
        if not self.buffer:
            self.oldest = time.monotonic()
        self.buffer.append(event)
        if len(self.buffer) >= BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        events, self.buffer = self.buffer, []
        sealed = self.channel.seal({"worker": self.runner.client_id, "seq": self.seq, "events": events})
        self.seq += 1
        self.runner.send_message(OBSERVATIONS, sealed)

    def flusher(self) -> None:
        while True:
            gevent.sleep(FLUSH_S / 4)
            if self.buffer and time.monotonic() - self.oldest >= FLUSH_S:
                self.flush()

    def on_report(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        # Shipped first: the count the master reads then is never ahead of what reached it.
        self.flush()
        data["harness"] = self.channel.seal({"worker": client_id, "counted": self.counted, "host": self.host})

    def finish(self, **_kw: Any) -> None:
        if self.done or State.config is None:
            return
        self.flush()
        self.done = True
        # Locust's last statistics too, now: after a stop the worker's message loop sleeps through the stop
        # timeout, and the master, whose end follows this `done`, would quit before they came.
        send_stats = getattr(self.runner, "_send_stats", None)
        if send_stats is not None:
            send_stats()
        self.runner.send_message(DONE, self.channel.seal({"worker": self.runner.client_id, "seq": self.seq,
                                                          "counted": self.counted, "host": self.host}))
        # One run, one test: the worker ends with it. Locust's own `quit` from the master may never come (the
        # worker sleeps through its stop timeout first, and the master is gone by then).
        gevent.spawn_later(QUIT_AFTER_S, self.runner.quit)

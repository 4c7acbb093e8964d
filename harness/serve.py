"""Process entry point for the harness's own servers.

    python -m harness.serve providers CONFIG.json
    python -m harness.serve gateway CONFIG.json

CONFIG.json may be `-`: the config comes on stdin (how the engine hands the providers their
secrets: no file, no command line). A config's `fingerprint_key` (hex) keys every credential
fingerprint this process computes (harness.core.identity): the run's key, never written anywhere.

Each prints one JSON "ready" line on stdout once it listens (the engine waits for it), then
serves until SIGTERM or SIGINT. Providers run in a process of their own so that a load test
measures the gateway, not the harness's event loop; they append to the run's ledger directly.
A provider with `upstream` is served by a fault proxy in front of that endpoint instead of a mock;
the proxies of one process share one pooled upstream session.

A provider with `processes: N` is served by N processes on its one port (harness.topology.replicas):
this process and replicas it starts (`python -m harness.serve replica -`, never by hand), each
recording into the ledger and applying every fault together; the ready line waits for all of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from harness.core.identity import use_fingerprint_key
from harness.ledger import LedgerWriter
from harness.topology import replicas
from harness.topology.fault_proxy import build_proxy_app, upstream_session
from harness.topology.faults_table import SIBLINGS_KEY, FaultTable
from harness.topology.mock_provider import FAULTS_KEY, ProviderSpec, build_provider_app
from harness.topology.reference_gateway import GatewayConfig, build_gateway_app
from harness.topology.replicas import Member, Replica, Roster, Siblings
from harness.topology.serving import start_app

USAGE = "usage: python -m harness.serve {providers|gateway} CONFIG.json|-"
ROLES = ("providers", "gateway", "replica")  # replica: started by a providers process only (`processes: N`)


def _ready(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"ready": True, **message}) + "\n")
    sys.stdout.flush()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


class ProviderProcess:
    """What one process of the providers serves: the providers process (all of them), or a replica (those
    with `processes` > its index). Each process appends to the run's ledger on a descriptor of its own."""

    def __init__(self, config: dict[str, Any], siblings: Siblings | None) -> None:
        self.config = config
        self.siblings = siblings
        self.writer = LedgerWriter(config["ledger_path"])
        self.runners: list[web.AppRunner] = []
        self.tables: dict[str, FaultTable] = {}
        self.session: aiohttp.ClientSession | None = None

    async def serve(self, name: str, port: int, reuse_port: bool) -> str:
        config = self.config
        raw = config["providers"][name]
        identities_by_fp = {str(fp): str(n) for fp, n in config.get("identities_by_fp", {}).items()}
        token, seed = str(config["control_token"]), int(config.get("seed", 0))
        secrets = {str(k): str(v) for k, v in (config.get("signing_secrets") or {}).items()}
        spec = ProviderSpec.from_dict(raw, name, config["providers"])
        if raw.get("upstream"):
            self.session = self.session or upstream_session()
            app = build_proxy_app(name, spec, str(raw["upstream"]), self.writer, token, identities_by_fp, seed,
                                  session=self.session, secrets=secrets)
        else:
            app = build_provider_app(name, spec, self.writer, token, identities_by_fp, seed, secrets)
        fan_out = self.siblings.fan_out_for(name) if self.siblings is not None else None
        if fan_out is not None:  # before it starts: a started application is frozen
            app[SIBLINGS_KEY] = fan_out
        self.tables[name] = app[FAULTS_KEY]
        runner, url = await start_app(app, port, reuse_port=reuse_port)
        self.runners.append(runner)
        return url

    async def serve_sibling_control(self, sock: socket.socket) -> None:
        app = replicas.sibling_control_app(self.tables, str(self.config["control_token"]))
        self.runners.append(await replicas.serve_on(app, sock))

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        if self.session is not None:  # after the proxies: their last relays still use it
            await self.session.close()
        if self.siblings is not None:
            await self.siblings.close()
        self.writer.close()


async def serve_providers(config: dict[str, Any]) -> None:
    stop = _stop_event()
    processes = {name: int(raw.get("processes") or 1) for name, raw in config["providers"].items()}
    roster = Roster(processes, str(config["control_token"]))
    served = ProviderProcess(config, roster.siblings())
    started: list[Replica] = []
    try:
        urls: dict[str, str] = {}
        for name, raw in config["providers"].items():
            urls[name] = await served.serve(name, int(raw.get("port") or 0), reuse_port=processes[name] > 1)
        if roster.listeners:
            await served.serve_sibling_control(roster.listeners[0])
            ports = {name: int(url.rsplit(":", 1)[1]) for name, url in urls.items() if processes[name] > 1}
            started = await roster.start_replicas(config, ports)
        _ready({"providers": urls})  # only now: every process of every provider listens
        watches = [asyncio.create_task(replica.watch()) for replica in started]
        await stop.wait()
        for watch in watches:  # a replica stopped by us below is no news
            watch.cancel()
    finally:
        # The replicas first, and waited for: none of them outlives this process.
        await asyncio.gather(*(replica.stop() for replica in started), return_exceptions=True)
        await served.close()


async def serve_replica(config: dict[str, Any]) -> None:
    """A replica of the providers process: the providers with `processes` > its index, on their ports."""
    stop = _stop_event()
    replicas.watch_parent_pipe(stop)
    own = config["replica"]
    index = int(own["index"])
    members = [Member.from_dict(m) for m in own["roster"]]
    served = ProviderProcess(config, Siblings(members, index, str(config["control_token"])))
    try:
        for name in sorted(members[index].providers):
            await served.serve(name, int(own["ports"][name]), reuse_port=True)
        await served.serve_sibling_control(socket.socket(fileno=int(own["control_fd"])))
        _ready({"replica": index})
        # To the providers log (stderr is the providers process's): who serves what, for a reader of the run.
        print(f"provider replica {index} (pid {os.getpid()}) serves {', '.join(sorted(members[index].providers))}",
              file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await served.close()


async def serve_gateway(config: dict[str, Any]) -> None:
    stop = _stop_event()
    app = build_gateway_app(GatewayConfig.from_dict(config))
    runner, url = await start_app(app, int(config.get("port") or 0), host=str(config.get("host") or "127.0.0.1"))
    try:
        _ready({"url": url})
        await stop.wait()
    finally:
        await runner.cleanup()


def _event_loop_runner(role: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    """The providers' processes run on uvloop where installed (a dependency on Linux and macOS): the same
    behaviour (streams, resets, holds, cuts: the provider tests pass on it) for about 0.8x the CPU per
    recorded call. The reference gateway, and any process without uvloop, run on asyncio's own loop."""
    if role == "gateway":
        return asyncio.run
    try:
        import uvloop
    except ImportError:  # pragma: no cover - depends on the machine
        return asyncio.run
    return uvloop.run


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ROLES:
        print(USAGE, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    role, path = args
    if role == "replica":
        replicas.die_with_parent()  # first: it must not outlive the providers process, whatever happens next
    try:
        # A replica's stdin stays open (its end tells that the providers process is gone): one line only.
        text = (sys.stdin.readline() if role == "replica" else sys.stdin.read()) if path == "-" else Path(
            path).read_text(encoding="utf-8")
        config = json.loads(text)
        if config.get("fingerprint_key"):  # kept in the config: the replicas get it on their stdin too
            use_fingerprint_key(bytes.fromhex(str(config["fingerprint_key"])))
    except (OSError, ValueError, AttributeError) as exc:
        # The messages name a position, never the config's content (it holds keys).
        print(f"cannot read config {'from stdin' if path == '-' else path}: {exc}", file=sys.stderr)
        return 2
    try:
        server = {"providers": serve_providers, "gateway": serve_gateway, "replica": serve_replica}[role]
        _event_loop_runner(role)(server(config))
    except (KeyError, TypeError, ValueError, OSError) as exc:
        # Never print the config itself: it holds keys. The exception names the field only.
        print(f"bad {role} config: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # SIGINT before the handler was installed
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

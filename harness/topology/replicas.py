"""A provider served by several processes that share its one port (`processes: N`, SO_REUSEPORT).

The providers process (index 0) serves every provider; it starts max(N) - 1 replica processes, and
replica k serves every provider with `processes` > k, on the same ports: the kernel spreads the
connections over the listening sockets. Each process appends to the run's ledger on its own O_APPEND
descriptor (one write per event), so every call is recorded once, by the process that answered it.

Faults: a control request (PUT/DELETE /_harness/faults/{name}) lands on whichever process the kernel
picked. That process first applies the change on every sibling of the provider, through their private
control listeners (127.0.0.1, the run's control token), and answers only then; a sibling that cannot be
reached makes the request fail with a 502, never a fault set on some processes only. Every process
holds the same table, and a fault's draw is a pure function of (seed, fault, correlation id): they
decide every request alike.

The private listeners are bound by the providers process before any replica starts and handed to
each replica as an inherited descriptor, so every process knows the whole roster from its start.
A replica gets its config (keys, tokens) on its stdin like the providers process, never on its
command line. It never outlives the providers process: the kernel sends it SIGTERM when its parent
dies (PR_SET_PDEATHSIG), and it stops when its stdin (a pipe the parent holds open) reaches its end.
"""

from __future__ import annotations

import asyncio
import ctypes
import hmac
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from harness.core.launch import SERVER_MODULE
from harness.topology.faults_table import TOKEN_HEADER, FaultSpecError, FaultTable, SiblingFanOut, SiblingsUnreachable
from harness.topology.serving import HOST

ROUTE = "/_harness/replica/{provider}/faults/{name}"
FAN_OUT_TIMEOUT_S = 5.0   # a sibling on this machine answers in milliseconds; a stuck one must not hang the run
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1
PARENT_ENV = "HARNESS_PROVIDERS_PID"  # the providers process that started a replica (not a secret)


def replica_count(processes: Mapping[str, int]) -> int:
    """How many replica processes the providers process starts (beside itself)."""
    return max(processes.values(), default=1) - 1


def served_by(index: int, processes: Mapping[str, int]) -> list[str]:
    """The providers process `index` serves (0: the providers process, which serves them all)."""
    return [name for name, count in processes.items() if count > index]


@dataclass(frozen=True)
class Member:
    """One process of the providers: its private control listener and the providers it serves."""

    control_url: str
    providers: frozenset[str]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Member:
        return cls(str(data["control_url"]), frozenset(str(p) for p in data["providers"]))

    def to_dict(self) -> dict[str, Any]:
        return {"control_url": self.control_url, "providers": sorted(self.providers)}


def control_listener() -> socket.socket:
    """A private control listener on 127.0.0.1, on a port the kernel picks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(128)
    return sock


def listener_url(sock: socket.socket) -> str:
    return f"http://{HOST}:{sock.getsockname()[1]}"


class Siblings:
    """Reaches the other processes of this process's providers on their private control listeners."""

    def __init__(self, roster: list[Member], index: int, token: str) -> None:
        self.roster = roster
        self.index = index
        self.token = token
        self._session: aiohttp.ClientSession | None = None

    def fan_out_for(self, provider: str) -> SiblingFanOut | None:
        urls = [m.control_url for i, m in enumerate(self.roster) if i != self.index and provider in m.providers]
        if not urls:
            return None

        async def fan_out(method: str, name: str, raw: bytes) -> None:
            results = await asyncio.gather(*(self._send(url, provider, method, name, raw) for url in urls))
            errors = [error for error in results if error is not None]
            if errors:
                raise SiblingsUnreachable(f"{len(errors)} of {len(urls)} sibling processes not reached "
                                          f"({'; '.join(errors)})")
        return fan_out

    async def _send(self, url: str, provider: str, method: str, name: str, raw: bytes) -> str | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FAN_OUT_TIMEOUT_S))
        target = f"{url}{ROUTE.format(provider=provider, name=name)}"
        try:
            async with self._session.request(method, target, data=raw or None,
                                             headers={TOKEN_HEADER: self.token}) as resp:
                if resp.status >= 300:
                    return f"{url}: HTTP {resp.status} {(await resp.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{url}: {type(exc).__name__} {exc}".rstrip()
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def sibling_control_app(tables: Mapping[str, FaultTable], token: str) -> web.Application:
    """The private control listener: applies a change to this process's own table only (no fan-out)."""
    expected = token.encode()

    async def change(request: web.Request) -> web.Response:
        given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "missing or wrong control token"}, status=401)
        table = tables.get(request.match_info["provider"])
        if table is None:
            return web.json_response({"error": "this process does not serve that provider"}, status=404)
        name = request.match_info["name"]
        if request.method == "DELETE":
            return web.json_response({"name": name, "removed": table.delete(name)})
        try:
            fault = table.put(name, json.loads(await request.read()))
        except (ValueError, FaultSpecError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"fault": fault.public()})

    app = web.Application()
    app.router.add_put(ROUTE, change)
    app.router.add_delete(ROUTE, change)
    return app


async def serve_on(app: web.Application, sock: socket.socket) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


# -- in a replica ------------------------------------------------------------------------------------
def die_with_parent() -> None:
    """SIGTERM from the kernel when the providers process dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the stdin watch below still stops it
        pass
    expected = os.environ.get(PARENT_ENV)
    if expected is not None and os.getppid() != int(expected):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def watch_parent_pipe(stop: asyncio.Event) -> None:
    """Stop when stdin, a pipe the providers process holds open, reaches its end (the parent is gone)."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)


# -- in the providers process ------------------------------------------------------------------------
class Replica:
    """A replica process started by the providers process: same process group, config on stdin."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc

    @classmethod
    async def start(cls, index: int, config: dict[str, Any], listener: socket.socket) -> Replica:
        # stdin stays open for the replica's life: its end is how the replica learns that we are gone.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", SERVER_MODULE, "replica", "-", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, pass_fds=(listener.fileno(),),
            env={**os.environ, PARENT_ENV: str(os.getpid())})
        assert proc.stdin is not None
        config = {**config, "replica": {**config["replica"], "index": index, "control_fd": listener.fileno()}}
        proc.stdin.write(json.dumps(config).encode() + b"\n")
        await proc.stdin.drain()
        return cls(index, proc)

    async def ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        try:
            ok = bool(json.loads(line).get("ready")) if line else False
        except ValueError:
            ok = False
        if not ok:
            code = await asyncio.wait_for(self.proc.wait(), STOP_GRACE_S) if not line else None
            raise OSError(f"provider replica {self.index} did not start (exit code {code}); its error is above")

    async def watch(self) -> None:
        """Say so in the providers log when a replica dies during the run: its share of new connections goes
        to the others from then on, and a fault change fails (502) because it cannot be reached."""
        code = await self.proc.wait()
        print(f"provider replica {self.index} exited with code {code}: fault changes on its providers now fail "
              "(HTTP 502)", file=sys.stderr, flush=True)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


class Roster:
    """Every process of the providers with its private control listener, bound before any of them starts
    (so each knows its siblings from the start). Empty when no provider has `processes` > 1."""

    def __init__(self, processes: Mapping[str, int], token: str) -> None:
        self.processes = dict(processes)
        self.token = token
        count = replica_count(processes)
        self.listeners = [control_listener() for _ in range(count + 1)] if count else []
        self.members = [Member(listener_url(sock), frozenset(served_by(i, processes)))
                        for i, sock in enumerate(self.listeners)]

    def siblings(self) -> Siblings | None:
        """The providers process's view of its siblings."""
        return Siblings(self.members, 0, self.token) if self.members else None

    async def start_replicas(self, config: dict[str, Any], ports: Mapping[str, int]) -> list[Replica]:
        """Start the replicas once the providers process listens on `ports` (provider -> port); return
        when every one of them listens too."""
        shared = {**config, "replica": {"roster": [m.to_dict() for m in self.members], "ports": dict(ports)}}
        replicas: list[Replica] = []
        try:
            for index in range(1, len(self.listeners)):
                replicas.append(await Replica.start(index, shared, self.listeners[index]))
                self.listeners[index].close()  # the replica holds its own copy now
            await asyncio.gather(*(replica.ready() for replica in replicas))
        except BaseException:
            await asyncio.gather(*(replica.stop() for replica in replicas), return_exceptions=True)
            raise
        return replicas

"""A mock provider (or a fault proxy in front of one) on a loop of its own, for the official openai SDK's
synchronous clients to call as they call the real service: the SDK blocks the test's thread while the
servers answer in theirs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import aiohttp
import openai
from aiohttp import web
from conftest_topology import ListSink

from harness.core.correlation import Correlation
from harness.core.identity import fingerprint
from harness.topology.fault_proxy import build_proxy_app
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.serving import start_app

T = TypeVar("T")
TOKEN = "control-secret"
KEY = "azure-key-eu-0123456789abcdef"
OTHER_KEY = "azure-key-us-fedcba9876543210"
IDENTITIES = {fingerprint(KEY): "svc-eu", fingerprint(OTHER_KEY): "svc-us"}


def token(rid: str, tenant: str = "acme") -> str:
    return Correlation(rid, tenant, "chat", "eu", "internal").token()


class Loop:
    """An event loop in a background thread: servers live there, the test drives them from its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def serve(self, app: web.Application) -> str:
        runner, url = self.run(start_app(app))
        self.runners.append(runner)
        return url

    def close(self) -> None:
        for runner in reversed(self.runners):
            self.run(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Rig:
    """One mock provider of an API (and optionally a fault proxy in front of it), recording into `sink`."""

    def __init__(self, loop: Loop, api: str, name: str = "prov", model: str = "gpt-4o", proxy: bool = False,
                 **spec: Any) -> None:
        self.loop = loop
        self.name = name
        self.sink = ListSink()
        data = {"model": model, "region": "eu", "identity": "svc-eu", "api": api, **spec}
        provider_spec = ProviderSpec.from_dict(data, name)
        # Behind a proxy the mock is "the real upstream": its own records go elsewhere, the proxy's are judged.
        upstream_sink = ListSink() if proxy else self.sink
        self.mock_url = loop.serve(build_provider_app(name, provider_spec, upstream_sink, TOKEN, IDENTITIES, 3))
        self.url = self.mock_url
        if proxy:
            self.url = loop.serve(build_proxy_app(name, provider_spec, self.mock_url, self.sink, TOKEN, IDENTITIES, 3))

    def fault(self, name: str, effect: dict[str, Any], ttl_s: float = 30, upstream: bool = False) -> None:
        """PUT a fault on the proxy (or, upstream=True, on the mock behind it: a fault of "the real upstream")."""
        body = {"effect": effect, "match": None, "probability": 1.0, "deadline_ts": time.time() + ttl_s}
        url = self.mock_url if upstream else self.url

        async def put() -> None:
            async with aiohttp.ClientSession() as session, session.put(
                    f"{url}/_harness/faults/{name}", json=body, headers={"x-harness-token": TOKEN}) as resp:
                assert resp.status == 200, await resp.text()
        self.loop.run(put())

    def post(self, path: str, body: dict[str, Any] | bytes, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                                              bytes]:
        """A raw call (what no SDK sends): status, headers, and the body, or as much of it as came before the
        line broke."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()

        async def send() -> tuple[int, dict[str, str], bytes]:
            received = b""
            async with aiohttp.ClientSession() as session, session.post(f"{self.url}{path}", data=data,
                                                                        headers=headers) as resp:
                try:
                    async for piece in resp.content.iter_any():
                        received += piece
                except aiohttp.ClientPayloadError:
                    pass  # a cut stream: what came is what the caller gets
                return resp.status, dict(resp.headers), received
        return self.loop.run(send())

    def calls(self, rid: str | None = None) -> list[dict[str, Any]]:
        """The calls recorded for `rid`: its own and those an unknown caller made claiming it."""
        return self.sink.upstream() if rid is None else self.sink.claiming(rid)


def recorded(sink: ListSink, rid: str, count: int = 1, timeout_s: float = 3.0) -> list[dict[str, Any]]:
    """The calls recorded for `rid`, once there are `count`: the fault proxy records a whole stream after
    relaying its end, so a client may have read it all a moment before the record lands."""
    deadline = time.monotonic() + timeout_s
    while len(sink.upstream(rid)) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return sink.upstream(rid)


@contextmanager
def rig_loop() -> Iterator[Loop]:
    loop = Loop()
    try:
        yield loop
    finally:
        loop.close()


def http_client() -> openai.DefaultHttpxClient:
    """The SDK's own HTTP client, blind to proxy settings of the environment: only 127.0.0.1 is called."""
    return openai.DefaultHttpxClient(trust_env=False)


_OPEN: list[openai.OpenAI] = []
C = TypeVar("C", bound=openai.OpenAI)


def opened(client: C) -> C:
    """An SDK client, closed by `close_clients` after its test: one left to the garbage collector warns of its
    sockets wherever collection happens to run, and on Python 3.11 a warning raised inside pytest's own
    ast.parse of a traceback breaks the run (CPython gh-106905)."""
    _OPEN.append(client)
    return client


def close_clients() -> None:
    while _OPEN:
        _OPEN.pop().close()

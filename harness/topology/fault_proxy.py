"""The fault proxy: a reverse proxy in front of a real model endpoint (or a local model server).

The gateway under test is pointed at the proxy instead of the upstream. The proxy records the
same ground truth as the mock providers and injects the same faults, through the same control
endpoint and fault table (`ProviderEndpoint`); the one difference is how a call no fault stops
is answered: it is forwarded to the upstream (same method, path, query, headers minus hop-by-hop
ones, body; the credential as is, the proxy keeps only its fingerprint) and the upstream's answer
is relayed, an SSE stream chunk by chunk as it arrives.

Which calls count: every POST outside `/_harness/` is a model call, recorded and subject to
faults, so no model endpoint is a blind spot; other methods (`GET /v1/models`, ...) are
forwarded untouched and unrecorded.

What is recorded is the outcome the upstream really produced: its status (`ok` for 2xx, `error`,
or `content_policy` for a 4xx whose error code says so); an upstream that cannot be reached is
`error` 502, one that does not answer in time `timeout`, a stream that breaks `reset`, and a
caller that goes away before the answer ended `timeout` (to the caller, that is what it was);
each with a `note` saying why. A call is recorded once, when its outcome is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from harness.core import events as ev
from harness.core.events import EventSink
from harness.core.identity import NOT_AN_IDENTITY
from harness.topology.apis.base import STREAM_TAIL
from harness.topology.faults_table import TOKEN_HEADER, ActiveFault, json_error
from harness.topology.mock_provider import MAX_BODY, Call, ProviderEndpoint, ProviderSpec, cut_after, reset_connection

CONNECT_TIMEOUT_S = 10.0
# A real model may think for minutes; the gateway under test decides when it gives up, not us.
READ_TIMEOUT_S = 300.0
# RFC 9110 7.6.1: these concern one connection and are never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade"})
# Set again by aiohttp for the next hop. Accept-Encoding: the proxy decodes answers to count SSE
# chunks, so it offers only what its client decodes; answers are relayed decoded.
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "accept-encoding", TOKEN_HEADER}
_RESPONSE_DROP = HOP_BY_HOP | {"content-length", "content-encoding"}

Record = Callable[[int, ev.UpstreamOutcome, str | None], None]


def upstream_session() -> aiohttp.ClientSession:
    """One pooled session per providers process; connections to an upstream are kept alive."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
    # No pool limit: the gateway under test bounds concurrency, the proxy must not add a queue of its own.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)


def _without(headers: CIMultiDictProxy[str], drop: frozenset[str]) -> CIMultiDict[str]:
    # Headers named in Connection are hop-by-hop for this one message too.
    listed = {h.strip().lower() for value in headers.getall("Connection", []) for h in value.split(",")}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop and k.lower() not in listed)


class _Broken(Exception):
    """The upstream's body ended badly (stalled or dropped) after its status line came."""

    def __init__(self, outcome: ev.UpstreamOutcome, note: str) -> None:
        super().__init__(note)
        self.outcome = outcome
        self.note = note


class _Once:
    """Records a call exactly once, whichever path ends it first (answer, failure, cancellation)."""

    def __init__(self, emit: Record) -> None:
        self.emit = emit
        self.done = False

    def __call__(self, status: int, outcome: ev.UpstreamOutcome, note: str | None = None) -> None:
        if not self.done:
            self.done = True
            self.emit(status, outcome, note)


class FaultProxy(ProviderEndpoint):
    refuses_invalid_body = False  # the upstream is the judge of what it accepts

    def __init__(self, name: str, spec: ProviderSpec, upstream_url: str, sink: EventSink, control_token: str,
                 identities_by_fp: dict[str, str], seed: int, read_timeout_s: float = READ_TIMEOUT_S,
                 secrets: Mapping[str, str] | None = None) -> None:
        super().__init__(name, spec, sink, control_token, identities_by_fp, seed, secrets)
        upstream = URL(upstream_url)
        # Never echo the URL itself: it may carry credentials (user:password@host).
        if upstream.scheme not in ("http", "https") or not upstream.host or upstream.query_string or upstream.fragment:
            raise ValueError(f"provider {name}: upstream must be an http(s) base URL with a host and no query")
        self.upstream_base = str(upstream).rstrip("/")
        self.read_timeout_s = read_timeout_s
        self.session: aiohttp.ClientSession | None = None

    async def own_session(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: a session of its own when the app was built without a shared one."""
        self.session = session = upstream_session()
        yield
        await session.close()

    async def route(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_harness/"):
            # The control namespace is ours: a wrong method or path there is never forwarded upstream.
            return json_error(404, "no such harness endpoint", "invalid_request_error")
        if request.method == "POST":
            return await self.chat(request)
        rec = _Once(lambda _status, _outcome, _note: None)  # not a model call: forwarded, not recorded
        return await self._exchange(request, await request.read(), rec, None)

    async def serve(self, request: web.Request, call: Call, raw: bytes, delay_s: float,
                    fault: ActiveFault | None) -> web.StreamResponse:
        name = fault.name if fault is not None else None
        rec = _Once(lambda status, outcome, note: self.record(call, status, outcome, name, note))
        # A signed call is signed again for the upstream's host, but only one whose signature verified here.
        resign = not self.openai and call.identity not in NOT_AN_IDENTITY
        try:
            await self.delay(delay_s)
            return await self._exchange(request, raw, rec, cut_after(fault), resign)
        except asyncio.CancelledError:
            # The caller (the gateway) gave up before the answer ended: to it, this upstream timed out.
            rec(0, "timeout", "the caller went away before the answer ended")
            raise

    async def _exchange(self, request: web.Request, raw: bytes, rec: _Once, cut: int | None,
                        resign: bool = False) -> web.StreamResponse:
        assert self.session is not None, "the proxy app is not started"
        target = URL(self.upstream_base + request.raw_path, encoded=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=self.read_timeout_s)
        headers = _without(request.headers, _REQUEST_DROP)
        if resign:
            headers = CIMultiDict(self.api.forward_headers(request.method, str(target), dict(headers), raw,
                                                           self.secrets))
        try:
            upstream = await self.session.request(request.method, target, data=raw or None, timeout=timeout,
                                                  headers=headers,
                                                  # Verbatim: no Content-Type or User-Agent the caller did not send.
                                                  skip_auto_headers=("Content-Type", "User-Agent"),
                                                  allow_redirects=False)  # a redirect is relayed, not followed
        except TimeoutError:  # before ClientError: aiohttp's timeouts are both
            rec(0, "timeout", f"no answer from the upstream within {self.read_timeout_s:g} s")
            return json_error(504, f"the upstream of {self.name} did not answer in time", "server_error",
                              "upstream_timeout")
        except aiohttp.ClientError as exc:
            rec(502, "error", f"upstream unreachable: {type(exc).__name__}: {str(exc)[:200]}")
            return json_error(502, f"the upstream of {self.name} is unreachable", "server_error",
                              "upstream_unreachable")
        async with upstream:  # releases the pooled connection, or closes it when the body was not read out
            if upstream.content_type in self.api.stream_content_types:
                return await self._relay(request, upstream, rec, cut)
            if cut is not None:
                rec(0, "reset", f"stream cut: the upstream answered {upstream.status} {upstream.content_type}, "
                    "not a stream, so the connection was reset")
                reset_connection(request)
                return web.Response(status=500)
            try:
                body = await upstream.read()
            except TimeoutError:
                rec(0, "timeout", f"the upstream's answer stalled for {self.read_timeout_s:g} s")
                return json_error(504, "the upstream's answer stalled", "server_error", "upstream_timeout")
            except aiohttp.ClientError as exc:
                rec(0, "reset", f"the upstream's answer broke off: {type(exc).__name__}")
                reset_connection(request)
                return web.Response(status=500)
            self._handed_over(request, rec, upstream.status, self.api.outcome(upstream.status, body))
            return web.Response(status=upstream.status, reason=upstream.reason, body=body,
                                headers=_without(upstream.headers, _RESPONSE_DROP))

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse, rec: _Once,
                     cut: int | None) -> web.StreamResponse:
        """Relay an SSE answer as it arrives; with `cut`, let that many chunks through, then drop the line."""
        out = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                 headers=_without(upstream.headers, _RESPONSE_DROP))
        await out.prepare(request)
        pending, sent, tail = b"", 0, b""
        try:
            while True:
                data = await self._read(upstream)
                if cut is None:
                    if not data:
                        break
                    await out.write(data)  # as it came: nothing is held back
                    tail = (tail + data)[-STREAM_TAIL:]  # its end says how it ended (a refusal's stop reason)
                    continue
                # Cutting needs whole events to count; at most one unfinished event is held.
                events, pending = self.api.split(pending + data, final=not data)
                # A cut never lets the end through, however large after_chunks is: it always breaks.
                cut_now = not data
                for event in events:
                    if sent >= cut or self.api.is_end(event):
                        cut_now = True
                        break
                    await out.write(event)
                    sent += self.api.is_chunk(event)  # a comment (keep-alive) is no chunk
                if cut_now:
                    rec(0, "reset", f"stream cut after {sent} chunks")
                    reset_connection(request, hard=False)
                    return out
        except _Broken as broken:
            rec(0, broken.outcome, broken.note)
            reset_connection(request, hard=False)  # pass the break on: ending cleanly would fake a whole answer
            return out
        except ConnectionError:  # writing to a caller that has gone
            rec(0, "timeout", "the caller went away mid-stream")
            return out
        self._handed_over(request, rec, upstream.status, self.api.stream_outcome(upstream.status, tail))
        await out.write_eof()
        return out

    @staticmethod
    def _handed_over(request: web.Request, rec: _Once, status: int, outcome: ev.UpstreamOutcome) -> None:
        """Record an answer the upstream gave in full, as its end goes out to the caller.

        A caller whose own deadline fell while the answer was being relayed (an upstream that comes
        back just as the gateway gives up) may have closed its end by now: the answer reaches nobody,
        and to the gateway this call timed out. Recording it `ok` would say the gateway fell back from
        an answer it had. A close still on its way is not seen (docs/checks.md, "An answer that lands on
        the gateway's own deadline"). Recorded before the end is sent, not after: a client that has
        read an answer to its end finds the call already in the ledger (the join relies on calls
        coming before their request).
        """
        transport = request.transport
        if transport is None or transport.is_closing():
            rec(0, "timeout", "the caller went away as the answer ended")
        else:
            rec(status, outcome)

    async def _read(self, upstream: aiohttp.ClientResponse) -> bytes:
        try:
            return await upstream.content.readany()
        except TimeoutError:
            raise _Broken("timeout", f"the upstream stream stalled for {self.read_timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise _Broken("reset", f"the upstream stream broke: {type(exc).__name__}") from None


def build_proxy_app(name: str, spec: ProviderSpec, upstream_url: str, sink: EventSink, control_token: str,
                    identities_by_fp: dict[str, str], seed: int, *, session: aiohttp.ClientSession | None = None,
                    read_timeout_s: float = READ_TIMEOUT_S,
                    secrets: Mapping[str, str] | None = None) -> web.Application:
    """The fault proxy for provider `name` in front of `upstream_url` (a base URL: the request path is
    appended to it). `session`: share one upstream pool between proxies; otherwise the app owns one."""
    proxy = FaultProxy(name, spec, upstream_url, sink, control_token, identities_by_fp, seed, read_timeout_s,
                       secrets)
    app = web.Application(client_max_size=MAX_BODY)
    proxy.mount_control(app)  # before the catch-all, so the control endpoint is matched first
    app.router.add_route("*", "/{tail:.*}", proxy.route)
    if session is None:
        app.cleanup_ctx.append(proxy.own_session)
    else:
        proxy.session = session
    return app

"""One call to an upstream provider, and relaying its answer to the client."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from harness.topology.reference_gateway.config import UpstreamProvider
from harness.topology.reference_gateway.routing import Cause

SERVED_BY = "x-served-by"
_RELAYED_HEADERS = ("Content-Type", "Retry-After")
_DONE = b"data: [DONE]"
# A refusal of the request's size, not an outage: cause "context_length" (harness.core.model.FallbackCause).
CONTEXT_LENGTH = "context_length"
_CONTEXT_CODE = "context_length_exceeded"


@dataclass
class Attempt:
    provider: str
    status: int | None              # None: no HTTP answer at all
    cause: Cause | None             # None: success (2xx)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # A successful stream is handed over still open, to be relayed chunk by chunk.
    response: aiohttp.ClientResponse | None = None

    @property
    def ok(self) -> bool:
        return self.cause is None


def function_tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


def _cause(status: int, body: bytes) -> Cause:
    """Why a call that answered non-2xx failed: its status, but a 400 `context_length_exceeded` is
    "context_length", so the policy can tell a prompt too long for this model from a broken request."""
    if status != 400:
        return status
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):  # not JSON, or JSON but no object
        return status
    return CONTEXT_LENGTH if isinstance(error, dict) and error.get("code") == _CONTEXT_CODE else status


async def call_upstream(session: aiohttp.ClientSession, provider: UpstreamProvider, payload: dict[str, Any],
                        key: str, extra_headers: dict[str, str], timeout_s: float, stream: bool,
                        relay: tuple[str, ...] = ()) -> Attempt:
    """One call. `relay`: response headers passed on to the client besides content type and Retry-After."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **extra_headers}
    if stream:
        # A stream may legitimately last longer than one timeout: bound each read instead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
    else:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
    url = f"{provider.url}/v1/chat/completions"
    try:
        response = await session.post(url, data=json.dumps(payload).encode(), headers=headers, timeout=timeout)
    except TimeoutError:  # before ClientError: aiohttp's timeouts are both
        return Attempt(provider.name, None, "timeout")
    except aiohttp.ClientError:
        return Attempt(provider.name, None, "connection_error")
    relayed = {h: response.headers[h] for h in (*_RELAYED_HEADERS, *relay) if h in response.headers}
    ok = 200 <= response.status < 300
    if stream and ok:
        return Attempt(provider.name, response.status, None, headers=relayed, response=response)
    try:
        body = await response.read()
    except TimeoutError:
        return Attempt(provider.name, response.status, "timeout")
    except aiohttp.ClientError:
        return Attempt(provider.name, response.status, "connection_error")
    finally:
        response.release()
    return Attempt(provider.name, response.status, None if ok else _cause(response.status, body), body, relayed)


def answer(attempt: Attempt, served_by: str | None) -> web.Response:
    """A buffered upstream answer, passed to the client as it came."""
    headers = dict(attempt.headers)
    if served_by is not None:
        headers[SERVED_BY] = served_by
    return web.Response(status=attempt.status or 502, body=attempt.body, headers=headers)


def _abort(request: web.Request) -> None:
    # Closing without the final chunk tells the client the stream broke; ending it cleanly
    # would pass a cut answer off as a complete one.
    if request.transport is not None:
        request.transport.abort()


async def relay_stream(request: web.Request, attempt: Attempt, served_by: str, truncate: bool) -> web.StreamResponse:
    upstream = attempt.response
    assert upstream is not None
    out = web.StreamResponse(status=attempt.status or 200, headers={
        **attempt.headers, "Content-Type": attempt.headers.get("Content-Type", "text/event-stream"),
        "Cache-Control": "no-cache", SERVED_BY: served_by,
    })
    try:
        await out.prepare(request)
        if truncate:
            await _relay_half(upstream, out)
            return out
        try:
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
        except (TimeoutError, aiohttp.ClientError):
            _abort(request)
            return out
        await out.write_eof()
        return out
    finally:
        upstream.release()


async def _relay_half(upstream: aiohttp.ClientResponse, out: web.StreamResponse) -> None:
    """The truncate-stream defect: about half the events, then a clean end without finish or [DONE]."""
    try:
        body = await upstream.read()
    except (TimeoutError, aiohttp.ClientError):
        body = b""
    events = [e for e in body.split(b"\n\n") if e.strip() and not e.strip().startswith(_DONE)]
    content = [e for e in events if b'"finish_reason": "stop"' not in e and b'"finish_reason":"stop"' not in e]
    for event in content[:max(1, len(events) // 2)]:
        await out.write(event + b"\n\n")
    await out.write_eof()

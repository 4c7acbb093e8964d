"""One call to an upstream provider, and relaying its answer to the client."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from harness.topology.apis import api_named
from harness.topology.apis.base import ClientTarget, StreamTranslator
from harness.topology.apis.openai import openai_cause
from harness.topology.reference_gateway.config import UpstreamProvider
from harness.topology.reference_gateway.routing import Cause

SERVED_BY = "x-served-by"
_RELAYED_HEADERS = ("Content-Type", "Retry-After")
_DONE = b"data: [DONE]"
# A refusal of the request's size, not an outage: cause "context_length" (harness.core.model.FallbackCause).
CONTEXT_LENGTH = "context_length"


@dataclass
class Attempt:
    provider: str
    status: int | None              # None: no HTTP answer at all
    cause: Cause | None             # None: success (2xx)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # A successful stream is handed over still open, to be relayed chunk by chunk.
    response: aiohttp.ClientResponse | None = None
    # A provider of another API: its stream, told in OpenAI's chunks (None: an OpenAI stream, relayed as is).
    translator: StreamTranslator | None = None
    # The provider's own name for what failed, where fallback_on may name it: content_policy, overloaded.
    named: str | None = None

    @property
    def ok(self) -> bool:
        return self.cause is None


def function_tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


async def call_upstream(session: aiohttp.ClientSession, provider: UpstreamProvider, payload: dict[str, Any],
                        key: str, extra_headers: dict[str, str], timeout_s: float, stream: bool,
                        relay: tuple[str, ...] = (), secret: str | None = None) -> Attempt:
    """One call. `relay`: response headers passed on to the client besides content type and Retry-After.
    A provider of another API is called in its own words (harness.topology.apis) and its answer told back
    in OpenAI's; `secret` signs a bedrock call."""
    if stream:
        # A stream may legitimately last longer than one timeout: bound each read instead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
    else:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
    api = api_named(provider.api) if provider.api != "openai" else None
    if api is None:
        url = f"{provider.url}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **extra_headers}
        data = json.dumps(payload).encode()
    else:
        target = ClientTarget(provider.url, provider.model, key, secret, provider.region)
        call = api.client_call(target, payload, stream, extra_headers)
        url, headers, data = call.url, call.headers, call.body
    try:
        response = await session.post(url, data=data, headers=headers, timeout=timeout)
    except TimeoutError:  # before ClientError: aiohttp's timeouts are both
        return Attempt(provider.name, None, "timeout")
    except aiohttp.ClientError:
        return Attempt(provider.name, None, "connection_error")
    relayed = {h: response.headers[h] for h in (*_RELAYED_HEADERS, *relay) if h in response.headers}
    ok = 200 <= response.status < 300
    if stream and ok:
        translator = api.client_stream(provider.model) if api is not None else None
        if translator is not None:
            relayed["Content-Type"] = "text/event-stream"
        return Attempt(provider.name, response.status, None, headers=relayed, response=response,
                       translator=translator)
    try:
        body = await response.read()
    except TimeoutError:
        return Attempt(provider.name, response.status, "timeout")
    except aiohttp.ClientError:
        return Attempt(provider.name, response.status, "connection_error")
    finally:
        response.release()
    if api is None:
        cause = None if ok else openai_cause(response.status, body)
        return Attempt(provider.name, response.status, cause, body, relayed)
    told = api.client_answer(response.status, dict(response.headers), body, provider.model)
    outcome = api.outcome(response.status, body)
    relayed = {h: v for h, v in relayed.items() if h != "Retry-After"}
    relayed["Content-Type"] = "application/json"
    if told.retry_after is not None:
        relayed["Retry-After"] = told.retry_after
    # A capacity error's cause is its status, as the checks read it (cause_of); its name goes beside it, so a
    # policy may list either. A refusal said as an answer has no error status: its cause is its name.
    cause = told.status if told.cause == "overloaded" else told.cause
    return Attempt(provider.name, told.status, cause, told.body, relayed,
                   named=outcome if outcome in ("content_policy", "overloaded") else None)


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
        translator = attempt.translator
        try:
            async for chunk in upstream.content.iter_any():
                if translator is None:
                    await out.write(chunk)
                    continue
                for event in translator.feed(chunk):
                    await out.write(event)
        except (TimeoutError, aiohttp.ClientError):
            _abort(request)
            return out
        if translator is not None and not translator.complete:
            _abort(request)  # the provider's stream ended before its end marker: pass the break on
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

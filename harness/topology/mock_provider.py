"""An OpenAI-compatible mock provider: the ground truth of every run.

Each call is recorded as one `upstream` event the moment its outcome is decided (before a
timeout hangs, before a reset), so even a run killed mid-request keeps what the provider saw:
which identity called (as a fingerprint mapped to a name, never the key), which tools were
offered, and for which request (the correlation token in the message content).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from harness.core import events as ev
from harness.core.correlation import Correlation, find
from harness.core.events import EventSink
from harness.core.identity import NO_CREDENTIAL, UNKNOWN_IDENTITY, bearer, fingerprint
from harness.topology.faults_table import ActiveFault, FaultSpecError, FaultTable

TOKEN_HEADER = "x-harness-token"
REQUEST_ID_HEADER = "x-harness-request-id"
FAULTS_KEY: web.AppKey[FaultTable] = web.AppKey("faults", FaultTable)
_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_STREAM_PIECES = 4
MAX_BODY = 16 * 1024 * 1024  # long conversations are legitimate traffic; aiohttp's 1 MiB default is not enough


@dataclass(frozen=True)
class ProviderSpec:
    model: str
    region: str
    identity: str
    tools: list[str] = field(default_factory=list)
    data_classes: list[str] = field(default_factory=list)
    latency_ms: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProviderSpec:
        return cls(
            model=str(data["model"]), region=str(data["region"]), identity=str(data["identity"]),
            tools=[str(t) for t in data.get("tools", [])],
            data_classes=[str(d) for d in data.get("data_classes", [])],
            latency_ms=float(data.get("latency_ms", 0.0)),
        )


@dataclass(frozen=True)
class _Call:
    """What the provider learned about one call before deciding its outcome."""

    ts: float
    corr: Correlation | None
    corr_id: str | None
    identity: str
    key_fp: str | None
    tools: list[str]
    model: str | None
    stream: bool


def _credential(request: web.Request) -> str | None:
    headers = request.headers
    return bearer(headers.get("Authorization")) or bearer(headers.get("api-key")) or bearer(headers.get("x-api-key"))


def _correlation(messages: Any) -> Correlation | None:
    if not isinstance(messages, list):
        return None
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts = [content]
        elif isinstance(content, list):
            texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        else:
            continue
        for text in texts:
            if "[[harness:" in text:  # cheap pre-test before the regex
                found = find(text)
                if found is not None:
                    return found
    return None


def _tool_names(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            fn = tool.get("function")
            name = fn.get("name") if isinstance(fn, dict) else tool.get("name") or tool.get("type")
            if isinstance(name, str) and name not in names:
                names.append(name)
    for fn in body.get("functions") or []:  # the legacy function-calling field
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


def _error(status: int, message: str, type_: str, code: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "code": code, "param": None}}
    return web.Response(status=status, text=json.dumps(body), content_type=_JSON, headers=headers)


def _reset(request: web.Request) -> None:
    """Drop the TCP connection with an RST and no response, as a crashed upstream does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:  # linger 0 turns close() into an RST, so the client sees a reset, not a clean EOF
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class MockProvider:
    def __init__(self, name: str, spec: ProviderSpec, sink: EventSink, control_token: str,
                 identities_by_fp: dict[str, str], seed: int) -> None:
        self.name = name
        self.spec = spec
        self.sink = sink
        self.token = control_token.encode()
        self.identities = dict(identities_by_fp)
        self.faults = FaultTable(seed)
        self.base_delay_s = spec.latency_ms / 1000.0

    # -- the model endpoint ------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        ts = time.time()
        key = _credential(request)
        # The key itself goes no further than this line: only its fingerprint is kept.
        key_fp = fingerprint(key) if key else None
        identity = (self.identities.get(key_fp, UNKNOWN_IDENTITY) if key_fp else NO_CREDENTIAL)
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            call = _Call(ts, None, request.headers.get(REQUEST_ID_HEADER), identity, key_fp, [], None, False)
            self._record(call, 400, "error", None)
            return _error(400, "the body is not a JSON object", "invalid_request_error", "invalid_json")
        corr = _correlation(body.get("messages"))
        corr_id = corr.id if corr is not None else request.headers.get(REQUEST_ID_HEADER)
        model = body.get("model")
        call = _Call(ts, corr, corr_id, identity, key_fp, _tool_names(body),
                     model if isinstance(model, str) else None, bool(body.get("stream")))
        fault = self.faults.select(corr, corr_id, ts)
        if fault is None:
            self._record(call, 200, "ok", None)
            return await self._answer(request, call, self.base_delay_s)
        return await self._apply(request, call, fault)

    async def _apply(self, request: web.Request, call: _Call, fault: ActiveFault) -> web.StreamResponse:
        effect = fault.effect
        if effect.kind == "latency":
            self._record(call, 200, "ok", fault.name)
            return await self._answer(request, call, self.base_delay_s + effect.ms / 1000.0)
        if effect.kind == "error":
            self._record(call, effect.status, "error", fault.name)
            await self._delay(self.base_delay_s)
            headers = None
            if effect.retry_after_s is not None:
                # Whole seconds, rounded up: never tell a client to come back early.
                headers = {"Retry-After": str(math.ceil(effect.retry_after_s))}
            type_ = "rate_limit_error" if effect.status == 429 else "server_error"
            return _error(effect.status, f"injected fault {fault.name}", type_, f"http_{effect.status}", headers)
        if effect.kind == "content_policy":
            self._record(call, effect.status, "content_policy", fault.name)
            await self._delay(self.base_delay_s)
            return _error(effect.status, "the request was rejected by the content policy",
                          "invalid_request_error", "content_policy_violation")
        if effect.kind == "timeout":
            self._record(call, 0, "timeout", fault.name)
            # Never hang past the deadline: the outage must end when the fault does.
            await self._delay(max(0.0, min(effect.hold_s, fault.deadline_ts - time.time())))
            return _error(504, f"injected timeout {fault.name}", "server_error", "timeout")
        # reset
        self._record(call, 0, "reset", fault.name)
        _reset(request)
        # Nothing can be written any more; a bare response lets aiohttp finish the handler quietly.
        return web.Response(status=500)

    async def _answer(self, request: web.Request, call: _Call, delay_s: float) -> web.StreamResponse:
        await self._delay(delay_s)
        text = f"reply to {call.corr_id or 'unknown'} from {self.name}"
        completion_id = f"chatcmpl-{self.name}-{call.corr_id or 'x'}"
        created = int(call.ts)
        if not call.stream:
            words = len(text.split())
            body = {
                "id": completion_id, "object": "chat.completion", "created": created, "model": self.spec.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": words, "total_tokens": 8 + words},
            }
            return web.Response(text=json.dumps(body), content_type=_JSON)
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": self.spec.model}
        for i, piece in enumerate(_pieces(text, _STREAM_PIECES)):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        final = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    async def _delay(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def _record(self, call: _Call, status: int, outcome: ev.UpstreamOutcome, fault: str | None) -> None:
        corr = call.corr
        event: ev.UpstreamEvent = {
            "type": ev.UPSTREAM, "ts": call.ts, "id": call.corr_id, "provider": self.name,
            "identity": call.identity, "key_fp": call.key_fp, "tools": call.tools, "model": call.model,
            "stream": call.stream, "status": status, "outcome": outcome, "fault": fault,
            "tenant": corr.tenant if corr else None, "request_class": corr.request_class if corr else None,
            "region": corr.region if corr else None, "data_class": corr.data_class if corr else None,
        }
        self.sink.append(dict(event))

    # -- the control surface -----------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get(TOKEN_HEADER, "").encode()
        return hmac.compare_digest(given, self.token)

    async def put_fault(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or wrong control token", "authentication_error")
        try:
            fault = self.faults.put(request.match_info["name"], await request.json())
        except (ValueError, FaultSpecError) as exc:
            return _error(400, str(exc), "invalid_request_error")
        return web.json_response({"fault": fault.public()})

    async def delete_fault(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or wrong control token", "authentication_error")
        # Deleting an absent (or already expired) fault is success: healing must be idempotent.
        return web.json_response({"name": request.match_info["name"],
                                  "removed": self.faults.delete(request.match_info["name"])})

    async def list_faults(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or wrong control token", "authentication_error")
        return web.json_response({"faults": [f.public() for f in self.faults.active()]})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "provider": self.name, "model": self.spec.model,
                                  "region": self.spec.region})


def _pieces(text: str, count: int) -> list[str]:
    """Split on word boundaries into about `count` pieces that concatenate back to `text`."""
    words = text.split(" ")
    size = max(1, -(-len(words) // count))
    groups = [words[i:i + size] for i in range(0, len(words), size)]
    return [(" " if i else "") + " ".join(g) for i, g in enumerate(groups)]


def build_provider_app(name: str, spec: ProviderSpec, sink: EventSink, control_token: str,
                       identities_by_fp: dict[str, str], seed: int) -> web.Application:
    provider = MockProvider(name, spec, sink, control_token, identities_by_fp, seed)
    app = web.Application(client_max_size=MAX_BODY)
    app[FAULTS_KEY] = provider.faults
    app.router.add_post("/v1/chat/completions", provider.chat)
    app.router.add_put("/_harness/faults/{name}", provider.put_fault)
    app.router.add_delete("/_harness/faults/{name}", provider.delete_fault)
    app.router.add_get("/_harness/faults", provider.list_faults)
    app.router.add_get("/_harness/health", provider.health)
    return app

"""OpenAI's API: chat completions (the harness's own dialect since the start), and the Responses API.

The chat-completions words here are the mock's and the model server's (model_server.py), byte for byte
what they always were: the recorded ledgers and every OpenAI-compatible gateway depend on them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_str  # json.dumps's own str encoder
from typing import Any

from aiohttp import web

from harness.core import events as ev
from harness.core.identity import bearer
from harness.topology.apis.base import (
    SSE_HEADERS,
    Answer,
    ClientAnswer,
    ClientCall,
    ClientTarget,
    Failure,
    Meta,
    ProviderApi,
    Route,
    StreamTranslator,
    json_response,
    retry_after,
)

STREAM_PIECES = 4
_CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter"})
_SSE_SEPARATOR = re.compile(rb"\r\n\r\n|\n\n|\r\r")
CONTEXT_LENGTH_CODE = "context_length_exceeded"


# -- the wire: a completion, a stream, an error ----------------------------------------------------
def completion(completion_id: str, created: int, model: str, text: str | None, finish_reason: str = "stop",
               tool_calls: tuple[dict[str, Any], ...] = (), system_fingerprint: str | None = None) -> dict[str, Any]:
    words = len(text.split()) if text else 0
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    body: dict[str, Any] = {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 8, "completion_tokens": words, "total_tokens": 8 + words},
    }
    if system_fingerprint is not None:
        body["system_fingerprint"] = system_fingerprint
    return body


def completion_json(completion_id: str, created: int, model: str, text: str) -> bytes:
    """`json.dumps(completion(...)).encode()`, byte for byte, without building the dict per call:
    the constant parts are literal, the strings go through json.dumps's own encoder."""
    words = len(text.split())
    return (f'{{"id": {_json_str(completion_id)}, "object": "chat.completion", "created": {created:d}, '
            f'"model": {_json_str(model)}, "choices": [{{"index": 0, "message": {{"role": "assistant", '
            f'"content": {_json_str(text)}}}, "finish_reason": "stop"}}], "usage": {{"prompt_tokens": 8, '
            f'"completion_tokens": {words}, "total_tokens": {8 + words}}}}}').encode()


def pieces(text: str, count: int) -> list[str]:
    """Split on word boundaries into about `count` pieces that concatenate back to `text`."""
    words = text.split(" ")
    size = max(1, -(-len(words) // max(1, count)))
    groups = [words[i:i + size] for i in range(0, len(words), size)]
    return [(" " if i else "") + " ".join(g) for i, g in enumerate(groups)]


def stream_events(completion_id: str, created: int, model: str, text: str | None, count: int,
                  usage: bool = False, finish_reason: str = "stop", tool_calls: tuple[dict[str, Any], ...] = (),
                  system_fingerprint: str | None = None) -> list[bytes]:
    """A whole SSE answer, one complete event per item (content chunks or one tool-call chunk, the finish
    chunk, usage if asked for, [DONE]): an item is one "chunk" for the cut effect, so a cut after N is
    well defined."""
    head: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                            "model": model}
    if system_fingerprint is not None:
        head["system_fingerprint"] = system_fingerprint
    payloads: list[dict[str, Any]] = []
    if tool_calls:
        calls = [{"index": i, **call} for i, call in enumerate(tool_calls)]
        delta: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": calls}
        payloads.append({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    for i, piece in enumerate(pieces(text, count) if text else []):
        delta = {"role": "assistant", "content": piece} if i == 0 and not tool_calls else {"content": piece}
        payloads.append({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    payloads.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
    if usage:  # what OpenAI sends for stream_options.include_usage: a last chunk with no choices
        payloads.append({**head, "choices": [], "usage": completion("", 0, model, text)["usage"]})
    return [b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads] + [b"data: [DONE]\n\n"]


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def json_error(status: int, message: str, type_: str, code: str | None = None,
               headers: dict[str, str] | None = None, param: str | None = None) -> web.Response:
    """An error in OpenAI's shape, which every client of a provider already parses."""
    return json_response(status, error_body(message, type_, code, param), headers)


def openai_failure(failure: Failure) -> tuple[str, str | None]:
    """OpenAI's error type and code for a failure."""
    kind = failure.kind
    if kind == "content_policy":
        return "invalid_request_error", failure.code or "content_policy_violation"
    if kind == "context_length":
        return "invalid_request_error", CONTEXT_LENGTH_CODE
    if kind == "invalid":
        return "invalid_request_error", failure.code
    if kind == "timeout":
        return "server_error", "timeout"
    if kind == "overloaded":
        return "server_error", failure.code or "overloaded"
    return ("rate_limit_error" if failure.status == 429 else "server_error"), failure.code or f"http_{failure.status}"


def split_sse(buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
    """Complete SSE events (each with its blank line) and the unfinished rest; at the end, the rest too."""
    events: list[bytes] = []
    start = 0
    for match in _SSE_SEPARATOR.finditer(buffer):
        events.append(buffer[start:match.end()])
        start = match.end()
    rest = buffer[start:]
    if final and rest:
        events.append(rest)
        rest = b""
    return events, rest


def error_of(body: bytes) -> dict[str, Any] | None:
    """The `error` object of an OpenAI-shaped error body, or None."""
    if not body:
        return None
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, dict) else None


def openai_outcome(status: int, body: bytes) -> ev.UpstreamOutcome:
    if 200 <= status < 300:
        return "ok"
    error = error_of(body) if 400 <= status < 600 else None
    if error is not None:
        if status < 500 and error.get("code") in _CONTENT_POLICY_CODES:
            return "content_policy"
        if status < 500 and error.get("code") == CONTEXT_LENGTH_CODE:
            return "context_length"  # the model refused a prompt over its context window: no outage
        if status >= 500 and (error.get("code") == "overloaded" or error.get("type") == "overloaded_error"):
            return "overloaded"
    return "error"


def openai_cause(status: int, body: bytes) -> int | str:
    """Why a call that answered non-2xx failed: its status, but a 400 `context_length_exceeded` is
    "context_length", so the policy can tell a prompt too long for this model from a broken request."""
    error = error_of(body) if status == 400 else None
    return "context_length" if error is not None and error.get("code") == CONTEXT_LENGTH_CODE else status


class PassThrough(StreamTranslator):
    """An OpenAI stream needs no translation: relayed as it comes, watched for its [DONE]."""

    def __init__(self) -> None:
        self._tail = b""
        self._done = False

    def feed(self, data: bytes) -> list[bytes]:
        seen = self._tail + data
        self._done = self._done or b"data: [DONE]" in seen or b"data:[DONE]" in seen
        self._tail = seen[-16:]
        return [data] if data else []

    @property
    def complete(self) -> bool:
        return self._done


@dataclass
class OpenAIApi(ProviderApi):
    name: str = "openai"
    routes: tuple[Route, ...] = field(default_factory=lambda: (Route("POST", "/v1/chat/completions"),))
    path: str = "/v1/chat/completions"      # where the reference gateway calls it

    def credential(self, request: web.Request, raw: bytes, secrets: Mapping[str, str]) -> str | None:
        headers = request.headers
        return bearer(headers.get("Authorization")) or bearer(headers.get("api-key")) or bearer(
            headers.get("x-api-key"))

    def canonical(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def respond(self, request: web.Request, answer: Answer, meta: Meta,
                headers: dict[str, str] | None = None) -> web.StreamResponse:
        body = completion(meta.response_id, meta.created, meta.model, answer.text, answer.finish_reason,
                          answer.tool_calls, answer.system_fingerprint)
        return web.json_response(body, headers=headers)

    def stream(self, request: web.Request, answer: Answer, meta: Meta) -> tuple[dict[str, str], list[bytes]]:
        return dict(SSE_HEADERS), stream_events(meta.response_id, meta.created, meta.model, answer.text,
                                                STREAM_PIECES, finish_reason=answer.finish_reason,
                                                tool_calls=answer.tool_calls,
                                                system_fingerprint=answer.system_fingerprint)

    def error(self, request: web.Request, failure: Failure) -> web.Response:
        type_, code = openai_failure(failure)
        return json_error(failure.status, failure.message, type_, code, retry_after(failure) or None,
                          param=failure.param)

    def outcome(self, status: int, body: bytes) -> ev.UpstreamOutcome:
        return openai_outcome(status, body)

    def split(self, buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
        return split_sse(buffer, final)

    def is_end(self, event: bytes) -> bool:
        return b"data: [DONE]" in event or b"data:[DONE]" in event

    def is_chunk(self, event: bytes) -> bool:
        return b"data:" in event  # a comment (keep-alive) is no chunk

    def client_call(self, target: ClientTarget, body: dict[str, Any], stream: bool,
                    extra_headers: dict[str, str]) -> ClientCall:
        headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json", **extra_headers}
        return ClientCall("POST", f"{target.url}{self.path}", headers, json.dumps(body).encode())

    def client_answer(self, status: int, headers: dict[str, str], body: bytes, model: str) -> ClientAnswer:
        ok = 200 <= status < 300
        return ClientAnswer(status, body, None if ok else openai_cause(status, body), headers.get("Retry-After"))

    def client_stream(self, model: str) -> StreamTranslator:
        return PassThrough()
API = OpenAIApi()

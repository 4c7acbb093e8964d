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


# -- the Responses API (POST /v1/responses): read as a chat-completions body, answered as a `response` --------
RESPONSES_PATH = "/v1/responses"
# The events that end a whole Responses stream: a cut never lets one through.
RESPONSES_END = frozenset((b"response.completed", b"response.incomplete", b"response.failed"))
# Why a response is incomplete, for an answer's (OpenAI chat) finish reason.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def is_responses(request: web.Request) -> bool:
    """A Responses API call: OpenAI's /v1/responses, Azure's /openai/responses and /openai/v1/responses."""
    return request.path.endswith("/responses")


def _chat_part(part: dict[str, Any]) -> dict[str, Any] | None:
    """An input content part in chat words (None for what the recorder does not read: files, audio)."""
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        return {"type": "image_url", "image_url": {"url": part.get("image_url") or part.get("file_id")}}
    return None


def _chat_content(content: Any) -> Any:
    if isinstance(content, list):
        return [p for p in (_chat_part(part) for part in content) if p is not None]
    return content


def _chat_messages(items: Any) -> list[dict[str, Any]]:
    """`input` (a string, or a list of items) as chat messages: every text it carries ends up in one."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for item in items:  # neither a string nor a list: TypeError, the call is junk
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role", "user"), "content": _chat_content(item["content"])})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments", "")}}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": _chat_content(item.get("output"))})
    return messages


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A Responses tool in chat words: function tools are flat there ({type, name, parameters})."""
    if tool.get("type") == "function":
        return {"type": "function", "function": {"name": tool["name"], "parameters": tool.get("parameters") or {}}}
    return {"type": tool.get("type")}  # a built-in tool (web_search, file_search, ...): recorded by its type


def _chat_tool_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return choice  # auto, required, none
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("type") == "allowed_tools":
        return choice.get("mode", "auto")
    return "required"  # a built-in tool forced: some tool must be called


def responses_canonical(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses body as a chat-completions body. `instructions` (the system prompt) becomes the first
    message, so the correlation token is found wherever the caller put it."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages += _chat_messages(body.get("input", []))
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages, "stream": bool(body.get("stream"))}
    if body.get("tools"):
        chat["tools"] = [_chat_tool(tool) for tool in body["tools"]]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema")}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    return chat


def _suffix(meta: Meta) -> str:
    return meta.response_id.removeprefix("chatcmpl-")


def response_output(answer: Answer, meta: Meta) -> list[dict[str, Any]]:
    """The `output` items of an answer: a message with its text, and a function_call item per tool call."""
    items: list[dict[str, Any]] = []
    if answer.text is not None:
        part = {"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}
        items.append({"type": "message", "id": f"msg_{_suffix(meta)}", "role": "assistant", "content": [part],
                      "status": "incomplete" if answer.finish_reason == "length" else "completed"})
    for call in answer.tool_calls:
        fn = call["function"]
        items.append({"type": "function_call", "id": f"fc_{call['id'].removeprefix('call_')}", "call_id": call["id"],
                      "name": fn["name"], "arguments": fn["arguments"], "status": "completed"})
    return items


def response_object(answer: Answer, meta: Meta, output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A whole `response`: completed, or incomplete with its reason (max_output_tokens, content_filter)."""
    words = len(answer.text.split()) if answer.text else 0
    reason = _INCOMPLETE.get(answer.finish_reason)
    return {
        "id": f"resp_{_suffix(meta)}", "object": "response", "created_at": meta.created,
        "status": "incomplete" if reason else "completed", "error": None,
        "incomplete_details": {"reason": reason} if reason else None, "instructions": None, "max_output_tokens": None,
        "model": meta.model, "output": response_output(answer, meta) if output is None else output,
        "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
        "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0, "truncation": "disabled", "user": None, "metadata": {},
        "usage": {"input_tokens": meta.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": words, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": meta.prompt_tokens + words},
    }


def response_events(answer: Answer, meta: Meta, count: int = STREAM_PIECES) -> list[bytes]:
    """A whole Responses stream, one typed SSE event per item, as OpenAI sends it: created, in_progress, each
    output item (added, its content or arguments, done), then response.completed (or .incomplete) last."""
    final = response_object(answer, meta)
    start = {**final, "status": "in_progress", "output": [], "incomplete_details": None, "usage": None}
    events: list[tuple[str, dict[str, Any]]] = [("response.created", {"response": start}),
                                                ("response.in_progress", {"response": start})]
    for index, item in enumerate(final["output"]):
        at = {"item_id": item["id"], "output_index": index}
        events.append(("response.output_item.added", {"output_index": index, "item": _started(item)}))
        if item["type"] == "message":
            part = item["content"][0]
            events.append(("response.content_part.added",
                           {**at, "content_index": 0, "part": {**part, "text": ""}}))
            events += [("response.output_text.delta", {**at, "content_index": 0, "delta": piece, "logprobs": []})
                       for piece in pieces(part["text"], count) if piece]
            events.append(("response.output_text.done",
                           {**at, "content_index": 0, "text": part["text"], "logprobs": []}))
            events.append(("response.content_part.done", {**at, "content_index": 0, "part": part}))
        else:
            events.append(("response.function_call_arguments.delta", {**at, "delta": item["arguments"]}))
            events.append(("response.function_call_arguments.done",
                           {**at, "name": item["name"], "arguments": item["arguments"]}))
        events.append(("response.output_item.done", {"output_index": index, "item": item}))
    last = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    events.append((last, {"response": final}))
    return [f"event: {name}\ndata: ".encode() + json.dumps({"type": name, "sequence_number": n, **data}).encode()
            + b"\n\n" for n, (name, data) in enumerate(events)]


def _started(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as its `added` event shows it: in progress, nothing in it yet."""
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    return {**item, "status": "in_progress", "arguments": ""}


def responses_refusal(body: bytes) -> bool:
    """A 200 `response` left incomplete by the content filter (a refusal that is an answer)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict) or data.get("object") != "response":
        return False
    details = data.get("incomplete_details")
    return isinstance(details, dict) and details.get("reason") == "content_filter"


def responses_stream_refusal(tail: bytes) -> bool:
    """A Responses stream whose last event (in `tail`, its last bytes) says the content filter ended it."""
    return b"response.incomplete" in tail and (b'"reason": "content_filter"' in tail
                                               or b'"reason":"content_filter"' in tail)


def sse_event_name(event: bytes) -> bytes | None:
    """The `event:` field of one SSE event, or None."""
    for line in event.splitlines():
        if line.startswith(b"event:"):
            return line[6:].strip()
    return None


@dataclass
class OpenAIApi(ProviderApi):
    name: str = "openai"
    routes: tuple[Route, ...] = field(default_factory=lambda: (Route("POST", "/v1/chat/completions"),
                                                               Route("POST", RESPONSES_PATH)))
    path: str = "/v1/chat/completions"      # where the reference gateway calls it

    def credential(self, request: web.Request, raw: bytes, secrets: Mapping[str, str]) -> str | None:
        headers = request.headers
        return bearer(headers.get("Authorization")) or bearer(headers.get("api-key")) or bearer(
            headers.get("x-api-key"))

    def canonical(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return responses_canonical(body) if is_responses(request) else body

    def respond(self, request: web.Request, answer: Answer, meta: Meta,
                headers: dict[str, str] | None = None) -> web.StreamResponse:
        if is_responses(request):
            return web.json_response(response_object(answer, meta), headers=headers)
        body = completion(meta.response_id, meta.created, meta.model, answer.text, answer.finish_reason,
                          answer.tool_calls, answer.system_fingerprint)
        return web.json_response(body, headers=headers)

    def stream(self, request: web.Request, answer: Answer, meta: Meta) -> tuple[dict[str, str], list[bytes]]:
        if is_responses(request):
            return dict(SSE_HEADERS), response_events(answer, meta)
        return dict(SSE_HEADERS), stream_events(meta.response_id, meta.created, meta.model, answer.text,
                                                STREAM_PIECES, finish_reason=answer.finish_reason,
                                                tool_calls=answer.tool_calls,
                                                system_fingerprint=answer.system_fingerprint)

    def error(self, request: web.Request, failure: Failure) -> web.Response:
        type_, code = openai_failure(failure)
        param = failure.param
        if param == "messages" and is_responses(request):
            param = "input"  # the Responses API names the prompt's field so
        return json_error(failure.status, failure.message, type_, code, retry_after(failure) or None, param=param)

    def outcome(self, status: int, body: bytes) -> ev.UpstreamOutcome:
        # A response the content filter left incomplete is a refusal; the quoted name is a cheap pre-test
        # (a chat completion's finish_reason content_filter stays "ok", as it always was).
        if 200 <= status < 300 and b'"content_filter"' in body and responses_refusal(body):
            return "content_policy"
        return openai_outcome(status, body)

    def stream_outcome(self, status: int, tail: bytes) -> ev.UpstreamOutcome:
        # Likewise for a Responses stream: its response.incomplete event names the content filter.
        return "content_policy" if responses_stream_refusal(tail) else self.outcome(status, b"")

    def split(self, buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
        return split_sse(buffer, final)

    def is_end(self, event: bytes) -> bool:
        return b"data: [DONE]" in event or b"data:[DONE]" in event or sse_event_name(event) in RESPONSES_END

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

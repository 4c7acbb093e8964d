"""Anthropic's Messages API: `POST /v1/messages`, as the anthropic SDK, LiteLLM and Portkey call it.

What differs from OpenAI's chat completions, and why it matters to a chaos run:
- the system prompt is a field of its own, content is a list of blocks, tools carry `input_schema`;
- `anthropic-version` and `max_tokens` are required (the real API answers 400 without them);
- a refusal is an answer (HTTP 200, `stop_reason: "refusal"`), not an error;
- the capacity error is its own status, 529 `overloaded_error`; a prompt over the window is a 400
  `invalid_request_error` whose message says "prompt is too long" (what clients match on);
- a stream is SSE with named events, ending with `message_stop` (no `[DONE]`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from harness.core import events as ev
from harness.core.identity import bearer
from harness.core.provider_apis import ERROR_CODES
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
from harness.topology.apis.openai import STREAM_PIECES, completion, error_body, pieces, split_sse

PATH = "/v1/messages"
VERSION = "2023-06-01"          # what the SDK sends (anthropic._client: `anthropic-version`)
DEFAULT_MAX_TOKENS = 1024       # the reference gateway's budget when its client asks none (the API requires one)
OVERLOADED = "overloaded_error"
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                   "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
# The error type the real API answers with for each status (its errors page; `timeout_error` per the SDK's
# ErrorType). Another 4xx is an invalid_request_error, another 5xx an api_error.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 504: "timeout_error", 529: OVERLOADED}
# The mock's context error (mock_provider.context_error), read back for Anthropic's own numbers.
_OPENAI_CONTEXT = re.compile(r"maximum context length is (\d+) tokens\. However, you requested \d+ tokens "
                             r"\((\d+) in the messages, (\d+) in the completion\)")
# Both wordings the API uses for a prompt over the window; LiteLLM matches these very substrings.
_CONTEXT_WORDS = ("prompt is too long", "exceed context limit")
_CONTENT_FILTER_WORDS = "content filtering policy"   # "Output blocked by content filtering policy" (a 400)
# A refusal in a Message body or in a stream's message_delta; escaped quotes inside answer text never match.
_REFUSAL = re.compile(rb'"stop_reason"\s*:\s*"refusal"')
_END = re.compile(rb'^event:\s*message_stop\s*$|"type"\s*:\s*"message_stop"', re.MULTILINE)


def request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


# -- reading a call: Anthropic's words -> a chat-completions body ---------------------------------
def _parts(blocks: list[Any]) -> list[dict[str, Any]]:
    """Content blocks as OpenAI content parts. Every text a block carries is kept (the correlation token
    may sit in any of them, a tool result included)."""
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block["type"]
        if kind == "image":
            source = block["source"]
            url = (f"data:{source['media_type']};base64,{source['data']}" if source["type"] == "base64"
                   else source.get("url", ""))
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif kind == "tool_use":
            parts.append({"type": "text", "text": f"[tool_use {block['name']}] {json.dumps(block.get('input'))}"})
        elif kind == "tool_result":
            content = block.get("content")
            parts.extend(_parts(content) if isinstance(content, list)
                         else [{"type": "text", "text": str(content or "")}])
        elif kind == "document" and isinstance(block.get("source"), dict) and block["source"].get("type") == "text":
            parts.append({"type": "text", "text": str(block["source"].get("data", ""))})
        elif isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
    return parts


def _tool_choice(choice: Any) -> Any:
    """Anthropic's tool_choice in OpenAI's words (None: not asked, the API's default auto)."""
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice["name"]}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(kind)


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """Structured outputs: `output_config.format` (GA, what SDK 2.16 sends), or the beta's `output_format`."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    fmt = fmt if isinstance(fmt, dict) else body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    return None


# -- answering: an Answer in Anthropic's words ------------------------------------------------------
def _message_id(meta: Meta) -> str:
    return "msg_" + meta.response_id.removeprefix("chatcmpl-")


def _tool_uses(answer: Answer) -> list[dict[str, Any]]:
    uses = []
    for call in answer.tool_calls:
        fn = call["function"]
        arguments = json.loads(fn.get("arguments") or "{}")
        uses.append({"type": "tool_use", "id": "toolu_" + str(call["id"]).removeprefix("call_"),
                     "name": fn["name"], "input": arguments})
    return uses


def message(answer: Answer, meta: Meta) -> dict[str, Any]:
    """The Message object of a non-streamed answer."""
    content: list[dict[str, Any]] = [{"type": "text", "text": answer.text}] if answer.text else []
    return {"id": _message_id(meta), "type": "message", "role": "assistant", "model": meta.model,
            "content": content + _tool_uses(answer), "stop_reason": _STOP_REASONS[answer.finish_reason],
            "stop_sequence": None,
            "usage": {"input_tokens": meta.prompt_tokens, "output_tokens": len((answer.text or "").split())}}


def sse(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def stream_events(answer: Answer, meta: Meta) -> list[bytes]:
    """The whole stream, one event per item, in the API's order: message_start, each content block
    (start, deltas, stop; one ping after the first start), message_delta with the stop reason, message_stop."""
    start = {**message(answer, meta), "content": [], "stop_reason": None,
             "usage": {"input_tokens": meta.prompt_tokens, "output_tokens": 1}}
    events = [sse("message_start", {"type": "message_start", "message": start})]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if answer.text:
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces(answer.text, STREAM_PIECES)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for use in _tool_uses(answer):
        blocks.append(({**use, "input": {}}, [{"type": "input_json_delta", "partial_json": json.dumps(use["input"])}]))
    for index, (block, deltas) in enumerate(blocks):
        events.append(sse("content_block_start", {"type": "content_block_start", "index": index,
                                                  "content_block": block}))
        if index == 0:
            events.append(sse("ping", {"type": "ping"}))
        events += [sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                   for d in deltas]
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    if not blocks:
        events.append(sse("ping", {"type": "ping"}))
    delta = {"stop_reason": _STOP_REASONS[answer.finish_reason], "stop_sequence": None}
    events.append(sse("message_delta", {"type": "message_delta", "delta": delta,
                                        "usage": {"output_tokens": len((answer.text or "").split())}}))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def error_message(failure: Failure) -> str:
    """The message in the API's words where clients read them: the context-window refusal."""
    if failure.kind == "context_length":
        found = _OPENAI_CONTEXT.search(failure.message)
        if found is None:
            return f"prompt is too long: {failure.message}"
        limit, prompt, budget = (int(n) for n in found.groups())
        if prompt > limit:
            return f"prompt is too long: {prompt} tokens > {limit} maximum"
        return (f"input length and `max_tokens` exceed context limit: {prompt} + {budget} > {limit}, "
                "decrease input length or `max_tokens` and try again")
    if failure.kind == "content_policy":
        return "Output blocked by content filtering policy"
    if failure.param and not failure.message.startswith(failure.param):
        return f"{failure.param}: {failure.message}"
    return failure.message


def error_of(body: bytes) -> dict[str, Any]:
    """The `error` object of an Anthropic error body (empty when the body is none)."""
    try:
        error = json.loads(body).get("error") if body else None
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def is_context_error(error: Mapping[str, Any]) -> bool:
    text = str(error.get("message", ""))
    return error.get("type") == "invalid_request_error" and any(words in text for words in _CONTEXT_WORDS)


# -- the reference gateway: an OpenAI body in Anthropic's words, and back ---------------------------
def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
            head, _, data = url.partition(";base64,")
            source = ({"type": "base64", "media_type": head.removeprefix("data:"), "data": data}
                      if url.startswith("data:") else {"type": "url", "url": url})
            blocks.append({"type": "image", "source": source})
    return blocks


def messages_body(model: str, body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """An OpenAI chat-completions body as a Messages body: system prompts out of the turns, tool calls and
    tool results as blocks, consecutive turns of one role merged (the API wants them alternating)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for msg in body.get("messages") or []:
        role, content = msg.get("role"), msg.get("content")
        if role in ("system", "developer"):
            system += [b["text"] for b in _blocks(content) if b["type"] == "text"]
            continue
        if role == "tool":
            text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in _blocks(content))
            blocks = [{"type": "tool_result", "tool_use_id": msg.get("tool_call_id", ""), "content": text}]
        else:
            blocks = _blocks(content)
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                               "input": json.loads(fn.get("arguments") or "{}")})
        role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        elif blocks:
            turns.append({"role": role, "content": blocks})
    budget = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": model, "max_tokens": budget, "messages": turns}
    if system:
        out["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [t["function"] for t in body.get("tools") or [] if isinstance(t.get("function"), dict)]
    if tools:
        out["tools"] = [{"name": fn["name"], "description": fn.get("description", ""),
                         "input_schema": fn.get("parameters") or {"type": "object"}} for fn in tools]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        out["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    elif choice in ("auto", "required", "none"):
        out["tool_choice"] = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        out["output_config"] = {"format": {"type": "json_schema", "schema": fmt["json_schema"]["schema"]}}
    if stream:
        out["stream"] = True
    return out


def _openai_error(status: int, message: str, type_: str, code: str | None, cause: int | str,
                  retry: str | None = None) -> ClientAnswer:
    return ClientAnswer(status, json.dumps(error_body(message, type_, code)).encode(), cause, retry)


def _chunk(head: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class ToChunks(StreamTranslator):
    """A Messages stream told as OpenAI chunks: text deltas as content, tool_use blocks as tool calls, the
    stop reason as the finish chunk, `[DONE]` only at message_stop. An `error` event (overloaded mid-stream)
    is passed on as nothing: the stream then never completes, and the gateway breaks its own."""

    def __init__(self, model: str) -> None:
        self.head: dict[str, Any] = {"id": "", "object": "chat.completion.chunk", "created": int(time.time()),
                                     "model": model}
        self.pending = b""
        self.tools: dict[int, int] = {}   # content block index -> OpenAI tool call index
        self.finished = False
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        events, self.pending = split_sse(self.pending + data, final=False)
        out: list[bytes] = []
        for event in events:
            payload = next((line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")), b"")
            try:
                data = json.loads(payload) if payload and not self.done else None
            except ValueError:  # not an event of this API: the stream goes on, and may never complete
                continue
            if isinstance(data, dict):
                out += self._translate(data)
        return out

    def _translate(self, event: dict[str, Any]) -> list[bytes]:
        kind = event.get("type")
        if kind == "message_start":
            msg = event["message"]
            self.head["id"] = msg.get("id", "")
            self.head["model"] = msg.get("model") or self.head["model"]
            return [_chunk(self.head, {"role": "assistant", "content": ""})]
        if kind == "content_block_start" and event["content_block"].get("type") == "tool_use":
            block = event["content_block"]
            self.tools[event["index"]] = index = len(self.tools)
            call = {"index": index, "id": block["id"], "type": "function",
                    "function": {"name": block["name"], "arguments": ""}}
            return [_chunk(self.head, {"tool_calls": [call]})]
        if kind == "content_block_delta":
            delta = event["delta"]
            if delta.get("type") == "text_delta":
                return [_chunk(self.head, {"content": delta["text"]})]
            if delta.get("type") == "input_json_delta":
                call = {"index": self.tools.get(event["index"], 0), "function": {"arguments": delta["partial_json"]}}
                return [_chunk(self.head, {"tool_calls": [call]})]
        if kind == "message_delta" and event["delta"].get("stop_reason"):
            self.finished = True
            return [_chunk(self.head, {}, _FINISH_REASONS.get(event["delta"]["stop_reason"], "stop"))]
        if kind == "message_stop":
            self.done = True
            return ([] if self.finished else [_chunk(self.head, {}, "stop")]) + [b"data: [DONE]\n\n"]
        return []

    @property
    def complete(self) -> bool:
        return self.done


@dataclass
class AnthropicApi(ProviderApi):
    name: str = "anthropic"
    # Only the real API's path: LiteLLM appends `v1/messages` to any api_base, Portkey `/messages` to a
    # custom_host ending in /v1; a call elsewhere is a misconfiguration the real API answers 404 too.
    routes: tuple[Route, ...] = field(default_factory=lambda: (Route("POST", PATH),))
    refuses_in_band: bool = True
    overloaded_status: int = 529
    # The scenario layer's list (what a fault's `code` may name): one source, so the two never disagree.
    error_codes: dict[str, int] = field(default_factory=lambda: dict(ERROR_CODES["anthropic"]))

    def credential(self, request: web.Request, raw: bytes, secrets: Mapping[str, str]) -> str | None:
        # An API key in x-api-key; an OAuth token (the SDK's auth_token) as a bearer.
        return bearer(request.headers.get("x-api-key")) or bearer(request.headers.get("Authorization"))

    def canonical(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        if not request.headers.get("anthropic-version"):
            raise ValueError("anthropic-version: header is required")
        for required in ("model", "messages", "max_tokens"):
            if required not in body:
                raise KeyError(f"{required}: Field required")
        messages: list[dict[str, Any]] = []
        system = body.get("system")
        if system:
            messages.append({"role": "system", "content": system if isinstance(system, str) else _parts(system)})
        for msg in body["messages"]:
            content = msg["content"]
            messages.append({"role": str(msg["role"]),
                             "content": content if isinstance(content, str) else _parts(content)})
        out: dict[str, Any] = {"model": body["model"], "messages": messages, "stream": bool(body.get("stream")),
                               "max_tokens": body["max_tokens"]}
        tools = [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                   "parameters": t.get("input_schema") or {"type": "object"}}}
                 for t in body.get("tools") or []]
        if tools:
            out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
        schema = _output_schema(body)
        if schema is not None:
            out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        return out

    def respond(self, request: web.Request, answer: Answer, meta: Meta,
                headers: dict[str, str] | None = None) -> web.StreamResponse:
        return json_response(200, message(answer, meta), {**(headers or {}), "request-id": request_id()})

    def stream(self, request: web.Request, answer: Answer, meta: Meta) -> tuple[dict[str, str], list[bytes]]:
        return {**SSE_HEADERS, "request-id": request_id()}, stream_events(answer, meta)

    def error(self, request: web.Request, failure: Failure) -> web.Response:
        status = failure.status
        type_ = failure.code or (OVERLOADED if failure.kind == "overloaded" else ERROR_TYPES.get(status)) or (
            "api_error" if status >= 500 else "invalid_request_error")
        rid = request_id()
        headers = {"request-id": rid, **retry_after(failure)}
        if status == 429:  # the rate-limit state the real API reports beside every 429
            reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + (failure.retry_after_s or 0)))
            headers.update({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
                            "anthropic-ratelimit-requests-reset": reset})
        body = {"type": "error", "error": {"type": type_, "message": error_message(failure)}, "request_id": rid}
        return json_response(status, body, headers)

    def outcome(self, status: int, body: bytes) -> ev.UpstreamOutcome:
        if 200 <= status < 300:
            return "content_policy" if _REFUSAL.search(body) else "ok"   # a Message whose stop_reason is refusal
        error = error_of(body)
        if status == 529 or error.get("type") == OVERLOADED:
            return "overloaded"
        if 400 <= status < 500 and is_context_error(error):
            return "context_length"
        if 400 <= status < 500 and _CONTENT_FILTER_WORDS in str(error.get("message", "")):
            return "content_policy"
        return "error"

    def stream_outcome(self, status: int, tail: bytes) -> ev.UpstreamOutcome:
        # The stop reason comes in the stream's last message_delta, well inside the tail the proxy keeps.
        if 200 <= status < 300:
            return "content_policy" if _REFUSAL.search(tail) else "ok"
        return self.outcome(status, b"")

    def split(self, buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
        return split_sse(buffer, final)

    def is_end(self, event: bytes) -> bool:
        return _END.search(event) is not None

    def is_chunk(self, event: bytes) -> bool:
        # Every event counts, ping included: the mock counts its items so, and a cut through the proxy must
        # stop where the same cut on the mock does.
        return b"data:" in event

    def client_call(self, target: ClientTarget, body: dict[str, Any], stream: bool,
                    extra_headers: dict[str, str]) -> ClientCall:
        headers = {"x-api-key": target.key, "anthropic-version": VERSION, "Content-Type": "application/json",
                   **extra_headers}
        payload = messages_body(target.model, body, stream)
        return ClientCall("POST", f"{target.url}{PATH}", headers, json.dumps(payload).encode())

    def client_answer(self, status: int, headers: dict[str, str], body: bytes, model: str) -> ClientAnswer:
        retry = next((value for key, value in headers.items() if key.lower() == "retry-after"), None)
        if not 200 <= status < 300:
            error = error_of(body)
            text = str(error.get("message") or body[:200].decode(errors="replace") or f"HTTP {status}")
            type_ = str(error.get("type") or ("api_error" if status >= 500 else "invalid_request_error"))
            if is_context_error(error):
                return _openai_error(status, text, "invalid_request_error", "context_length_exceeded",
                                     "context_length", retry)
            if status < 500 and _CONTENT_FILTER_WORDS in text:
                return _openai_error(status, text, "invalid_request_error", "content_policy_violation",
                                     "content_policy", retry)
            code = "overloaded" if type_ == OVERLOADED else type_
            return _openai_error(status, text, type_, code, status, retry)
        try:
            msg = json.loads(body)
            blocks = msg["content"]
        except (ValueError, KeyError, TypeError):
            return _openai_error(502, "the provider's answer is not a Message", "api_error", "bad_response", 502)
        stop_reason = msg.get("stop_reason")
        if stop_reason == "refusal":  # an answer on the wire, a refusal to the gateway's client
            return _openai_error(400, "The model declined to answer (stop_reason refusal).", "invalid_request_error",
                                 "content_policy_violation", "content_policy")
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        calls = tuple({"id": b["id"], "type": "function",
                       "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})}}
                      for b in blocks if b.get("type") == "tool_use")
        out = completion(str(msg.get("id", "")), int(time.time()), str(msg.get("model") or model),
                         text or None, _FINISH_REASONS.get(str(stop_reason), "stop"), calls)
        usage = msg.get("usage") or {}
        prompt, answer = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        out["usage"] = {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}
        return ClientAnswer(status, json.dumps(out).encode())

    def client_stream(self, model: str) -> StreamTranslator:
        return ToChunks(model)


API = AnthropicApi()

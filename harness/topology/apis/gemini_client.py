"""The client side of the Gemini dialect: the reference gateway's call in Gemini's words (an OpenAI
chat-completions body as a generateContent body), and Gemini's answers read back in OpenAI's (a chat
completion, an OpenAI error, OpenAI chunks). Reading an answer is shared with the fault proxy's judge
(`refused`, `error_of`), so it lives here too.
"""

from __future__ import annotations

import json
import math
import re
import time
from functools import cache
from typing import Any

from harness.topology.apis.base import ClientAnswer, StreamTranslator
from harness.topology.apis.openai import CONTEXT_LENGTH_CODE, completion, error_body, split_sse

# Finish reasons that are a refusal by Google's policies, not an answer cut short.
REFUSALS = frozenset({"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY"})
_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
TYPE = "@type"


@cache
def snake(camel: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", camel).lower()


def field_of(obj: Any, camel: str) -> Any:
    """A field by its JSON name or its proto name: Google's parser takes both, and clients send both
    (google-genai `inlineData`, LiteLLM `inline_data`, `system_instruction`, `allowed_function_names`)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(camel)
    return value if value is not None else obj.get(snake(camel))


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if isinstance(value, dict) else []


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def error_of(body: bytes) -> dict[str, Any] | None:
    """The `error` object of a Gemini error body (a JSON array of one on a non-SSE stream), or None."""
    data = load_json(body)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None


def refused(response: Any) -> bool:
    """A GenerateContentResponse that is a refusal: a blocked prompt, or a candidate stopped by policy."""
    if not isinstance(response, dict):
        return False
    if field_of(field_of(response, "promptFeedback"), "blockReason"):
        return True
    return any(field_of(c, "finishReason") in REFUSALS for c in listed(response.get("candidates")))


def _parts(content: Any) -> list[dict[str, Any]]:
    """A chat message's content (a string, or text and image_url parts) as Gemini parts."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            head, _, data = url.partition(";base64,")
            parts.append({"inlineData": {"mimeType": head.removeprefix("data:"), "data": data}} if data else
                         {"fileData": {"mimeType": "image/jpeg", "fileUri": url}})
    return parts


def _object(value: Any) -> dict[str, Any]:
    """A function's arguments or result as the JSON object Gemini wants (a bare value is wrapped)."""
    text = value if isinstance(value, str) else "".join(p.get("text", "") for p in _parts(value))
    data = load_json(text.encode())
    return data if isinstance(data, dict) else {"content": data if data is not None else text}


def gemini_request(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat-completions body as a generateContent body."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}   # tool_call_id -> function name: a function result names its function
    for message in body.get("messages") or []:
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            system.extend(p["text"] for p in _parts(content) if "text" in p)
        elif role == "tool":
            name = names.get(message.get("tool_call_id"), message.get("name") or "tool")
            contents.append({"role": "user", "parts": [{"functionResponse": {"name": name,
                                                                              "response": _object(content)}}]})
        else:
            parts = _parts(content)
            for call in (message.get("tool_calls") or []) if role == "assistant" else []:
                fn = call.get("function") or {}
                names[call.get("id")] = fn.get("name")
                parts.append({"functionCall": {"name": fn.get("name"), "args": _object(fn.get("arguments"))}})
            if parts:
                contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n".join(system)}]}
    decls = [{k: v for k, v in (("name", fn.get("name")), ("description", fn.get("description")),
                                ("parametersJsonSchema", fn.get("parameters"))) if v is not None}
             for fn in (t.get("function") for t in body.get("tools") or [] if isinstance(t, dict))
             if isinstance(fn, dict)]
    if decls:
        out["tools"] = [{"functionDeclarations": decls}]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        out["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    elif choice in _MODES:
        out["toolConfig"] = {"functionCallingConfig": {"mode": _MODES[choice]}}
    config: dict[str, Any] = {}
    for source, target in (("max_completion_tokens", "maxOutputTokens"), ("max_tokens", "maxOutputTokens"),
                           ("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                           ("n", "candidateCount"), ("presence_penalty", "presencePenalty"),
                           ("frequency_penalty", "frequencyPenalty")):
        if body.get(source) is not None and target not in config:
            config[target] = body[source]
    if body.get("stop") is not None:
        config["stopSequences"] = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    if config:
        out["generationConfig"] = config
    return out


def openai_error(status: int, message: str, type_: str, code: str, cause: int | str,
                 retry_after: str | None = None) -> ClientAnswer:
    return ClientAnswer(status, json.dumps(error_body(message, type_, code)).encode(), cause, retry_after)


def answer_in_openai_words(status: int, headers: dict[str, str], body: bytes, model: str,
                           outcome: str) -> ClientAnswer:
    """A buffered Gemini answer as the gateway's client gets it; `outcome`: the dialect's judgement of it."""
    if 200 <= status < 300:
        data = load_json(body)
        if not isinstance(data, dict):
            return openai_error(502, "the provider's answer is not a GenerateContentResponse", "server_error",
                                "bad_response", 502)
        if refused(data):
            return openai_error(400, "The response was blocked by the provider's safety filters.",
                                "invalid_request_error", "content_policy_violation", "content_policy")
        return ClientAnswer(status, json.dumps(_completion(data, model)).encode())
    error = error_of(body) or {}
    message = str(error.get("message") or body[:200].decode("utf-8", "replace"))
    retry_after = headers.get("Retry-After") or _retry_delay(error)
    if outcome == "context_length":
        return openai_error(status, message, "invalid_request_error", CONTEXT_LENGTH_CODE, "context_length")
    if outcome == "overloaded":
        return openai_error(status, message, "server_error", "overloaded", "overloaded", retry_after)
    type_ = "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    return openai_error(status, message, type_, str(error.get("status") or f"http_{status}"), status,
                        retry_after)


def _retry_delay(error: dict[str, Any]) -> str | None:
    """RetryInfo's retryDelay ("36s", "45.837906927s") as a Retry-After value: whole seconds, rounded up."""
    for detail in listed(error.get("details")):
        delay = detail.get("retryDelay") if str(detail.get(TYPE, "")).endswith("RetryInfo") else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return str(math.ceil(float(delay[:-1])))
            except ValueError:
                return None
    return None


def _candidate(response: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The first candidate and its parts (a blocked one has none)."""
    candidate = next((c for c in listed(response.get("candidates")) if isinstance(c, dict)), {})
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return candidate, [p for p in listed(parts) if isinstance(p, dict)]


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought"))


def _calls(parts: list[Any], response_id: str, first: int = 0) -> tuple[dict[str, Any], ...]:
    """The function calls among the parts as OpenAI tool calls; `first`: how many came before (a stream)."""
    fns = [field_of(p, "functionCall") for p in parts]
    return tuple({"id": fn.get("id") or f"call_{response_id}_{i}", "type": "function",
                  "function": {"name": fn.get("name"), "arguments": json.dumps(fn.get("args") or {})}}
                 for i, fn in enumerate((f for f in fns if isinstance(f, dict)), start=first))


def _finish(reason: Any, calls: bool) -> str:
    if reason in REFUSALS:
        return "content_filter"
    return "tool_calls" if calls else "length" if reason == "MAX_TOKENS" else "stop"


def _completion(data: dict[str, Any], model: str) -> dict[str, Any]:
    candidate, parts = _candidate(data)
    response_id = str(field_of(data, "responseId") or int(time.time() * 1000))
    text = _text(parts) or None
    calls = _calls(parts, response_id)
    body = completion(f"chatcmpl-{response_id}", int(time.time()), str(field_of(data, "modelVersion") or model), text,
                      _finish(field_of(candidate, "finishReason"), bool(calls)), calls)
    usage = field_of(data, "usageMetadata")
    if isinstance(usage, dict):
        prompt, answer = usage.get("promptTokenCount", 0), usage.get("candidatesTokenCount", 0)
        if isinstance(prompt, int) and isinstance(answer, int):
            body["usage"] = {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}
    return body


class GeminiStream(StreamTranslator):
    """A Gemini SSE stream (`alt=sse`) as OpenAI chunks; complete once the event with finishReason came."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.created = int(time.time())
        self._rest = b""
        self._done = False
        self._started = False
        self._calls = 0

    def feed(self, data: bytes) -> list[bytes]:
        events, self._rest = split_sse(self._rest + data, final=False)
        out: list[bytes] = []
        for event in events:
            lines = [line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")]
            response = load_json(b"\n".join(lines))
            if not self._done and isinstance(response, dict) and "error" not in response:
                out.extend(self._chunks(response))
        return out

    def _chunks(self, response: dict[str, Any]) -> list[bytes]:
        candidate, parts = _candidate(response)
        response_id = str(field_of(response, "responseId") or self.created)
        head = {"id": f"chatcmpl-{response_id}", "object": "chat.completion.chunk", "created": self.created,
                "model": str(field_of(response, "modelVersion") or self.model)}
        deltas: list[dict[str, Any]] = []
        text = _text(parts)
        calls = [{"index": self._calls + i, **call} for i, call in enumerate(_calls(parts, response_id, self._calls))]
        self._calls += len(calls)
        if text or calls:
            delta: dict[str, Any] = {"role": "assistant"} if not self._started else {}
            delta["content"] = text or None
            if calls:
                delta["tool_calls"] = calls
            deltas.append({"index": 0, "delta": delta, "finish_reason": None})
            self._started = True
        reason = field_of(candidate, "finishReason")
        blocked = field_of(field_of(response, "promptFeedback"), "blockReason")
        if reason or blocked:
            self._done = True
            finish = "content_filter" if blocked else _finish(reason, self._calls > 0)
            deltas.append({"index": 0, "delta": {}, "finish_reason": finish})
        out = [b"data: " + json.dumps({**head, "choices": [d]}).encode() + b"\n\n" for d in deltas]
        return out + [b"data: [DONE]\n\n"] if self._done else out

    @property
    def complete(self) -> bool:
        return self._done

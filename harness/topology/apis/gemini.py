"""Google's Gemini API (generativelanguage.googleapis.com, the API-key flavour; not Vertex AI).

Calls: `POST /{version}/models/{model}:generateContent` and `:streamGenerateContent` (v1 is google-genai's
default, v1beta LiteLLM's and Portkey's, v1alpha LiteLLM's for Gemini 3), and the same without a version,
which is where LiteLLM's `gemini/` provider calls an `api_base` that has none. The key comes in the
`x-goog-api-key` header (google-genai, LiteLLM) or the `key` query parameter (Portkey).

A stream is SSE with `?alt=sse` (google-genai, LiteLLM): one `data: {GenerateContentResponse}` event per
piece, the last carrying finishReason and usageMetadata. Without it the REST API streams one JSON array,
element by element (Portkey reads it split at CRLF): both are served.

A content-policy refusal is an answer (HTTP 200, finishReason SAFETY, no content); errors are
`{"error": {code, message, status, details}}` with google.rpc status names, and a 429 says when to come
back only in its RetryInfo detail (Gemini sends no Retry-After header).

The reference gateway's side (calling a Gemini provider, reading its answers back) is gemini_client.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from harness.core import events as ev
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
)
from harness.topology.apis.gemini_client import (
    REFUSALS,
    GeminiStream,
    answer_in_openai_words,
    error_of,
    field_of,
    gemini_request,
    listed,
    load_json,
    refused,
    snake,
)
from harness.topology.apis.openai import STREAM_PIECES, pieces, split_sse

_MODEL = "{model:[^/:]+}"
_VERSIONS = ("/{version:v1|v1beta|v1alpha}", "")
STREAM_ACTION = ":streamGenerateContent"
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_CHOICES = {"AUTO": "auto", "VALIDATED": "auto", "ANY": "required", "NONE": "none"}
# google.rpc.Code names by HTTP status, each with the message Gemini sends with it.
_STATUSES: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, "
          "login cookie or other valid authentication credential."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details. For "
          "more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    501: ("UNIMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
_MESSAGES = {name: message for name, message in _STATUSES.values()} | {
    "FAILED_PRECONDITION": "User location is not supported for the API use."}
OVERLOADED_MESSAGE = "The model is overloaded. Please try again later."
# Google's front end answers a 502 with its own HTML page, not the API's JSON.
_BAD_GATEWAY = ("<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 502 (Server Error)!!1</title>"
                "<p><b>502.</b> <ins>That\u2019s an error.</ins><p>The server encountered a temporary error and "
                "could not complete your request.<p>Please try again in 30 seconds. <ins>That\u2019s all we "
                "know.</ins>\n")
_CONTEXT = re.compile(r"input token count.*exceeds the maximum number of tokens", re.IGNORECASE | re.DOTALL)
# The mock's context refusal (mock_provider.context_error) carries its numbers in OpenAI's words only.
_MOCK_CONTEXT = re.compile(r"maximum context length is (\d+) tokens\. However, you requested (\d+)")
# The model and the action, from the path: the fault proxy reads calls on a catch-all route.
_PATH = re.compile(r"(?:/(v1|v1beta|v1alpha))?/models/([^/:]+):(generateContent|streamGenerateContent)$")
# A stream's stop reasons, SSE or JSON array alike (the same words inside a JSON string are escaped: no match).
_STOPS = re.compile(rb'"(finishReason|blockReason)"\s*:\s*"([A-Z_]+)"')
_FIELDS = {"messages": "contents", "tool_choice": "tool_config.function_calling_config"}
_TYPE = "@type"
_RPC = "type.googleapis.com/google.rpc."


def _lower_types(schema: Any) -> Any:
    """A responseSchema (OpenAPI subset: types OBJECT, STRING ...) in JSON Schema's lower-case words."""
    if isinstance(schema, list):
        return [_lower_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: v.lower() if k == "type" and isinstance(v, str) else _lower_types(v) for k, v in schema.items()}


def _duration(seconds: float) -> str:
    """A protobuf Duration in JSON (RetryInfo.retryDelay): "36s", "0.500s"."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis / 1000:.3f}s"


# -- reading a call --------------------------------------------------------------------------------
def _message_parts(role: str, parts: list[Any]) -> list[dict[str, Any]]:
    """One Gemini turn as chat messages: its text and images, its function calls, its function results."""
    content: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            raise ValueError(f"Invalid value at 'contents[].parts[]' (type.googleapis.com/google.ai."
                             f"generativelanguage.v1beta.Part), {json.dumps(part)[:100]}")
        blob = field_of(part, "inlineData") or field_of(part, "fileData")
        call, result = field_of(part, "functionCall"), field_of(part, "functionResponse")
        if isinstance(part.get("text"), str):
            content.append({"type": "text", "text": part["text"]})
        elif isinstance(blob, dict):
            mime = str(field_of(blob, "mimeType") or "")
            url = field_of(blob, "fileUri") or f"data:{mime};base64,{blob.get('data', '')}"
            content.append({"type": "image_url", "image_url": {"url": url}} if mime.startswith("image/") else
                           {"type": "file", "file": {"mime_type": mime}})
        elif isinstance(call, dict):
            calls.append({"id": call.get("id") or call["name"], "type": "function",
                          "function": {"name": call["name"], "arguments": json.dumps(call.get("args") or {})}})
        elif isinstance(result, dict):
            results.append({"role": "tool", "tool_call_id": result.get("id") or result["name"],
                            "content": json.dumps(result.get("response") or {})})
    messages: list[dict[str, Any]] = list(results)
    if role == "model":
        if content or calls:
            messages.append({"role": "assistant", "content": content or None, **({"tool_calls": calls} if calls
                                                                                  else {})})
    elif content:
        messages.append({"role": "user", "content": content})
    return messages


def _tool_choice(config: Any) -> Any:
    calling = field_of(config, "functionCallingConfig")
    mode = str(field_of(calling, "mode") or "AUTO").upper()
    allowed = field_of(calling, "allowedFunctionNames") or []
    if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1:
        return {"type": "function", "function": {"name": str(allowed[0])}}
    return _CHOICES.get(mode, "auto")


def _generation(config: Any, out: dict[str, Any]) -> None:
    """What generationConfig asks of the model, in chat-completions words."""
    if not isinstance(config, dict):
        return
    if field_of(config, "maxOutputTokens") is not None:
        out["max_tokens"] = field_of(config, "maxOutputTokens")
    if field_of(config, "seed") is not None:
        out["seed"] = field_of(config, "seed")
    if field_of(config, "responseMimeType") == "application/json":
        schema = field_of(config, "responseJsonSchema")
        schema = schema if schema is not None else _lower_types(field_of(config, "responseSchema"))
        out["response_format"] = ({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
                                  if isinstance(schema, dict) else {"type": "json_object"})


# -- answering -------------------------------------------------------------------------------------
def _parts_of(answer: Answer) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": answer.text}] if answer.text else []
    for call in answer.tool_calls:
        fn = call.get("function") or {}
        args = load_json(str(fn.get("arguments") or "{}").encode())
        parts.append({"functionCall": {"name": fn.get("name"), "args": args if isinstance(args, dict) else {}}})
    return parts


def _response(meta: Meta, parts: list[dict[str, Any]], finish: str | None, words: int) -> dict[str, Any]:
    """One GenerateContentResponse: a whole answer, or a piece of a stream (finish None: not the last)."""
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    body: dict[str, Any] = {"candidates": [candidate]}
    if finish == "SAFETY":  # what a blocked candidate looks like: no content, the category that blocked it
        candidate.pop("content")
        candidate["safetyRatings"] = [
            {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
            {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"}]
    if finish is not None:
        candidate["finishReason"] = finish
        body["usageMetadata"] = {"promptTokenCount": meta.prompt_tokens, "candidatesTokenCount": words,
                                 "totalTokenCount": meta.prompt_tokens + words,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": meta.prompt_tokens}]}
    body["modelVersion"] = meta.model
    body["responseId"] = meta.response_id.removeprefix("chatcmpl-")
    return body


def _sse(request: web.Request) -> bool:
    return request.query.get("alt") == "sse"


# -- splitting a JSON-array stream -----------------------------------------------------------------
def _split_array(buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
    """Complete elements of a JSON-array stream (each with the separator before it), and the rest."""
    events: list[bytes] = []
    start, depth, in_string, escaped = 0, 0, False, False
    for i, byte in enumerate(buffer):
        if in_string:  # after a backslash the next byte is taken as is; a bare quote ends the string
            escaped, in_string = (False, True) if escaped else (byte == 0x5C, byte != 0x22)
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                events.append(buffer[start:i + 1])
                start = i + 1
    rest = buffer[start:]
    if final and rest:
        return [*events, rest], b""
    return events, rest


@dataclass
class GeminiApi(ProviderApi):
    name: str = "gemini"
    routes: tuple[Route, ...] = field(default_factory=lambda: tuple(
        Route("POST", f"{version}/models/{_MODEL}:{action}") for version in _VERSIONS
        for action in ("generateContent", "streamGenerateContent")))
    refuses_in_band: bool = True
    overloaded_status: int = 503
    error_codes: dict[str, int] = field(default_factory=lambda: dict(ERROR_CODES["gemini"]))

    def credential(self, request: web.Request, raw: bytes, secrets: Mapping[str, str]) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key") or None

    def canonical(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        system = field_of(body, "systemInstruction")
        if isinstance(system, str):  # the REST API takes a bare string here too
            messages.append({"role": "system", "content": system})
        elif system is not None:
            texts = [p["text"] for p in system["parts"] if isinstance(p.get("text"), str)]
            messages.append({"role": "system", "content": "\n".join(texts)})
        # What cannot be read is refused in Google's words (the mock's 400 INVALID_ARGUMENT says them).
        contents = body.get("contents")
        if not contents:
            raise ValueError("* GenerateContentRequest.contents: contents is not specified")
        if not isinstance(contents, list) or not all(isinstance(t, dict) for t in contents):
            raise ValueError(f"Invalid value at 'contents' (type.googleapis.com/google.ai.generativelanguage."
                             f"v1beta.Content), {json.dumps(contents)[:100]}")
        for turn in contents:
            role = turn.get("role") or "user"
            if not isinstance(turn.get("parts"), list):
                raise ValueError("* GenerateContentRequest.contents.parts: contents.parts must not be empty.")
            messages.extend(_message_parts("model" if role == "model" else "user", turn["parts"]))
        found = _PATH.search(request.path)
        out: dict[str, Any] = {"model": found.group(2) if found else None, "messages": messages,
                               "stream": request.path.endswith(STREAM_ACTION)}
        tools: list[dict[str, Any]] = []
        for tool in listed(body.get("tools")):
            if not isinstance(tool, dict):
                raise ValueError(f"Invalid value at 'tools[]' (type.googleapis.com/google.ai.generativelanguage."
                                 f"v1beta.Tool), {json.dumps(tool)[:100]}")
            for decl in field_of(tool, "functionDeclarations") or []:
                tools.append({"type": "function", "function": {"name": decl["name"]}})
            # Google's own tools (googleSearch, codeExecution, ...) are offered tools too: recorded by name.
            tools.extend({"type": snake(key)} for key in tool if snake(key) != "function_declarations")
        if tools:
            out["tools"] = tools
        if field_of(body, "toolConfig") is not None:
            out["tool_choice"] = _tool_choice(field_of(body, "toolConfig"))
        _generation(field_of(body, "generationConfig"), out)
        return out

    def respond(self, request: web.Request, answer: Answer, meta: Meta,
                headers: dict[str, str] | None = None) -> web.StreamResponse:
        words = len(answer.text.split()) if answer.text else 0
        body = _response(meta, _parts_of(answer), _FINISH[answer.finish_reason], words)
        return json_response(200, body, headers)

    def stream(self, request: web.Request, answer: Answer, meta: Meta) -> tuple[dict[str, str], list[bytes]]:
        finish = _FINISH[answer.finish_reason]
        words = len(answer.text.split()) if answer.text else 0
        texts = pieces(answer.text, STREAM_PIECES) if answer.text and not answer.tool_calls else []
        if len(texts) > 1:
            bodies = [_response(meta, [{"text": t}], None, 0) for t in texts[:-1]]
            bodies.append(_response(meta, [{"text": texts[-1]}], finish, words))
        else:  # a function call (Gemini sends it whole), a refusal, a one-piece answer: one event
            bodies = [_response(meta, _parts_of(answer), finish, words)]
        encoded = [json.dumps(b).encode() for b in bodies]
        if _sse(request):
            return dict(SSE_HEADERS), [b"data: " + e + b"\r\n\r\n" for e in encoded]
        # Google's framing of the array stream: "[" element "\n,\r\n" element ... "\n]".
        items = [(b"[" if i == 0 else b"\n,\r\n") + e for i, e in enumerate(encoded)]
        items[-1] += b"\n]"
        return {"Content-Type": "application/json; charset=UTF-8"}, items

    def error(self, request: web.Request, failure: Failure) -> web.Response:
        status = failure.status
        if status == 502 and failure.code is None:
            return web.Response(status=502, text=_BAD_GATEWAY, content_type="text/html")
        name = failure.code or _STATUSES.get(status, ("UNKNOWN", ""))[0]
        message = _MESSAGES.get(name, "Unknown error.")
        details: list[dict[str, Any]] = []
        # UNAVAILABLE asked for by name is the 503 Gemini sends most: its capacity error. A bare 503 outage
        # says "currently unavailable" instead, so the two stay apart (see outcome).
        if failure.kind == "overloaded" or failure.code == "UNAVAILABLE":
            message = OVERLOADED_MESSAGE
        elif failure.kind == "context_length":
            found = _MOCK_CONTEXT.search(failure.message)
            message = (f"The input token count ({found.group(2)}) exceeds the maximum number of tokens allowed "
                       f"({found.group(1)})." if found else failure.message)
        elif failure.kind == "invalid":
            message = failure.message
            if failure.param:
                details.append({_TYPE: f"{_RPC}BadRequest", "fieldViolations": [
                    {"field": _FIELDS.get(failure.param, failure.param), "description": failure.message}]})
        elif status == 404 and failure.code is None:
            found = _PATH.search(request.path)
            model, version = (found.group(2), found.group(1) or "v1beta") if found else ("", "v1beta")
            message = (f"models/{model} is not found for API version {version}, or is not supported for "
                       "generateContent. Call ListModels to see the list of available models and their "
                       "supported methods.")
        if status == 429:
            details.append({_TYPE: f"{_RPC}QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
                "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute"}]})
            details.append({_TYPE: f"{_RPC}Help", "links": [{"description": "Learn more about Gemini API quotas",
                                                             "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]})
        if failure.retry_after_s is not None:  # Google's only way to say when to come back
            details.append({_TYPE: f"{_RPC}RetryInfo", "retryDelay": _duration(failure.retry_after_s)})
        error: dict[str, Any] = {"code": status, "message": message, "status": name}
        if details:
            error["details"] = details
        # A stream without alt=sse fails as it answers: a JSON array (of one error).
        body: Any = [{"error": error}] if request.path.endswith(STREAM_ACTION) and not _sse(request) else {
            "error": error}
        return json_response(status, body)

    def outcome(self, status: int, body: bytes) -> ev.UpstreamOutcome:
        if 200 <= status < 300:
            data = load_json(body)
            return "content_policy" if any(refused(r) for r in listed(data)) else "ok"
        error = error_of(body)
        message = str(error.get("message") or "") if error is not None else ""
        if status == 400 and _CONTEXT.search(message):
            return "context_length"
        # 503 UNAVAILABLE is both Gemini's capacity error and its outage; only the message tells them apart.
        if status == 503 and "overloaded" in message.lower():
            return "overloaded"
        return "error"

    def stream_outcome(self, status: int, tail: bytes) -> ev.UpstreamOutcome:
        # The finish reason (or a blocked prompt's blockReason) comes in the stream's last event, inside the tail.
        if 200 <= status < 300:
            stops = _STOPS.findall(tail)
            return "content_policy" if any(k == b"blockReason" or v.decode() in REFUSALS for k, v in stops) else "ok"
        return self.outcome(status, b"")

    def split(self, buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
        head = buffer.lstrip()
        return _split_array(buffer, final) if head[:1] in (b"[", b",", b"{") else split_sse(buffer, final)

    def is_end(self, event: bytes) -> bool:
        # A quote right after the name: the same words inside a JSON string are escaped (\") and never match.
        return b'"finishReason"' in event or b'"blockReason"' in event

    def is_chunk(self, event: bytes) -> bool:
        return b"data:" in event or b"{" in event  # an SSE comment or the closing "]" is no chunk

    # -- the reference gateway ------------------------------------------------------------------
    def client_call(self, target: ClientTarget, body: dict[str, Any], stream: bool,
                    extra_headers: dict[str, str]) -> ClientCall:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        headers = {"x-goog-api-key": target.key, "Content-Type": "application/json", **extra_headers}
        return ClientCall("POST", f"{target.url}/v1beta/models/{target.model}:{action}", headers,
                          json.dumps(gemini_request(body)).encode())

    def client_answer(self, status: int, headers: dict[str, str], body: bytes, model: str) -> ClientAnswer:
        return answer_in_openai_words(status, headers, body, model, self.outcome(status, body))

    def client_stream(self, model: str) -> StreamTranslator:
        return GeminiStream(model)


API = GeminiApi()

"""Azure OpenAI: OpenAI's chat completions and Responses API on Azure's routes, with Azure's identity, content
filter annotations and errors.

Routes, as Azure serves them and the openai SDK's AzureOpenAI client calls them:
- `/openai/deployments/{deployment}/chat/completions?api-version=...`: the deployment in the path is the model;
- `/openai/v1/chat/completions`: the v1 API, the model (a deployment name) in the body, no api-version;
- `/openai/responses?api-version=...` (AzureOpenAI's `responses.create`, with or without azure_deployment) and
  `/openai/v1/responses`.
The identity is the `api-key` header, or `Authorization: Bearer` (a Microsoft Entra ID token, or on the v1
API the key itself). Answers are OpenAI's plus Azure's content filter annotations; errors are in Azure's
words (the 429 of Azure's rate limiter, the 400 content_filter of its content filter).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

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
)
from harness.topology.apis.openai import (
    CONTEXT_LENGTH_CODE,
    RESPONSES_END,
    STREAM_PIECES,
    completion,
    error_body,
    error_of,
    is_responses,
    response_events,
    response_object,
    responses_canonical,
    responses_refusal,
    responses_stream_refusal,
    split_sse,
    sse_event_name,
    stream_events,
)

API_VERSION = "2024-10-21"  # the GA data-plane version the reference gateway calls
_DEPLOYMENT_PATH = "/openai/deployments/{deployment}/chat/completions"
_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_SAFE = {category: {"filtered": False, "severity": "safe"} for category in _CATEGORIES}
# What Azure's filter says of a refused prompt or a filtered completion (one category over the threshold).
_FILTERED = {**_SAFE, "violence": {"filtered": True, "severity": "medium"}}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0,
                          "content_filter_results": {**_SAFE, "jailbreak": {"filtered": False, "detected": False}}}]
CONTENT_FILTER_MESSAGE = ("The response was filtered due to the prompt triggering Azure OpenAI's content management "
                          "policy. Please modify your prompt and retry. To learn more about our content filtering "
                          "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")
SERVER_ERROR_MESSAGE = ("The server had an error while processing your request. Sorry about that! You can retry your "
                        "request, or contact us through an Azure support request at: "
                        "https://go.microsoft.com/fwlink/?linkid=2213926 if the error persists.")
OVERLOADED_MESSAGE = ("That model is currently overloaded with other requests. You can retry your request, or contact "
                      "us through an Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 if the "
                      "error persists.")
_QUOTA = ("Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate "
          "limit.")


def _azure_error(code: str, message: str) -> dict[str, Any]:
    """Azure's own errors (its gateway's, not the model's): a string code and a message, nothing else."""
    return {"error": {"code": code, "message": message}}


def content_filter_error() -> dict[str, Any]:
    """The 400 of a prompt Azure's content filter refused, with the filter's verdict per category."""
    return {"error": {"message": CONTENT_FILTER_MESSAGE, "type": None, "param": "prompt", "code": "content_filter",
                      "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation",
                                                    "content_filter_result": _FILTERED}}}


def _retry_headers(failure: Failure) -> dict[str, str]:
    """Azure says when to come back twice: whole seconds (rounded up) and milliseconds (which the openai SDK
    prefers)."""
    if failure.retry_after_s is None:
        return {}
    return {"retry-after": str(math.ceil(failure.retry_after_s)),
            "retry-after-ms": str(math.ceil(failure.retry_after_s * 1000))}


def _rate_limit_message(request: web.Request, failure: Failure) -> str:
    wait = "" if failure.retry_after_s is None else (
        f" Please retry after {math.ceil(failure.retry_after_s)} second"
        f"{'' if math.ceil(failure.retry_after_s) == 1 else 's'}.")
    if is_responses(request):
        return f"Rate limit is exceeded.{wait or ' Try again later.'}"
    version = request.query.get("api-version", "v1")
    return (f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {version} have exceeded "
            f"token rate limit of your current OpenAI S0 pricing tier.{wait} {_QUOTA}")


def _unversioned(request: web.Request) -> bool:
    """A call to a versioned route (all but the v1 API's) without the api-version Azure requires there."""
    return "/openai/v1/" not in request.path and not request.query.get("api-version")


def filtered(body: bytes) -> bool:
    """A 200 answer the content filter cut: a choice with finish_reason content_filter, or a response left
    incomplete by it. The quoted name is a cheap pre-test (`content_filter_results` does not match it)."""
    if b'"content_filter"' not in body:
        return False
    if responses_refusal(body):
        return True
    try:
        choices = json.loads(body).get("choices")
    except (ValueError, AttributeError):
        return False
    return isinstance(choices, list) and any(
        isinstance(c, dict) and c.get("finish_reason") == "content_filter" for c in choices)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name whatever its case (Azure sends them lower case, a dict of them keeps that case)."""
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _prompt_filter_only(event: bytes) -> bool:
    """Azure's first stream chunk: no choices, only the prompt's filter verdict (some OpenAI clients read
    choices[0] of every chunk and break on it)."""
    if b"prompt_filter_results" not in event:
        return False
    try:
        data = json.loads(event.split(b"data:", 1)[1])
    except (IndexError, ValueError):
        return False
    return isinstance(data, dict) and data.get("choices") == [] and not data.get("usage")


class AzureStream(StreamTranslator):
    """Azure's chat stream is OpenAI's: relayed event by event, less Azure's prompt-filter chunk."""

    def __init__(self) -> None:
        self._rest = b""
        self._done = False

    def feed(self, data: bytes) -> list[bytes]:
        events, self._rest = split_sse(self._rest + data, final=False)
        if self._rest.strip() in (b"data: [DONE]", b"data:[DONE]"):  # a last event with no blank line after it
            events.append(self._rest + b"\n\n")
            self._rest = b""
        out = []
        for event in events:
            self._done = self._done or b"data: [DONE]" in event or b"data:[DONE]" in event
            if event.strip() and not _prompt_filter_only(event):  # (blank: the rest of a [DONE] passed early)
                out.append(event)
        return out

    @property
    def complete(self) -> bool:
        return self._done


@dataclass
class AzureOpenAIApi(ProviderApi):
    name: str = "azure-openai"
    routes: tuple[Route, ...] = field(default_factory=lambda: (
        Route("POST", _DEPLOYMENT_PATH), Route("POST", "/openai/v1/chat/completions"),
        Route("POST", "/openai/responses"), Route("POST", "/openai/v1/responses")))
    overloaded_status: int = 503

    # -- reading a call -------------------------------------------------------------------------------
    def credential(self, request: web.Request, raw: bytes, secrets: Mapping[str, str]) -> str | None:
        headers = request.headers
        return bearer(headers.get("api-key")) or bearer(headers.get("Authorization"))

    def canonical(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        if _unversioned(request):
            raise ValueError("the api-version query parameter is required")  # error() answers it as Azure does
        chat = responses_canonical(body) if is_responses(request) else dict(body)
        deployment = request.match_info.get("deployment")
        if deployment is not None:
            chat["model"] = deployment  # the path names the model; a body's model is ignored there
        chat["stream"] = bool(chat.get("stream"))
        return chat

    # -- answering ------------------------------------------------------------------------------------
    def respond(self, request: web.Request, answer: Answer, meta: Meta,
                headers: dict[str, str] | None = None) -> web.StreamResponse:
        if is_responses(request):
            return web.json_response(response_object(answer, meta), headers=headers)
        body = completion(meta.response_id, meta.created, meta.model, answer.text, answer.finish_reason,
                          answer.tool_calls, answer.system_fingerprint)
        body["prompt_filter_results"] = PROMPT_FILTER_RESULTS
        body["choices"][0]["content_filter_results"] = _FILTERED if answer.finish_reason == "content_filter" else _SAFE
        return web.json_response(body, headers=headers)

    def stream(self, request: web.Request, answer: Answer, meta: Meta) -> tuple[dict[str, str], list[bytes]]:
        if is_responses(request):
            return dict(SSE_HEADERS), response_events(answer, meta)
        events = stream_events(meta.response_id, meta.created, meta.model, answer.text, STREAM_PIECES,
                               finish_reason=answer.finish_reason, tool_calls=answer.tool_calls,
                               system_fingerprint=answer.system_fingerprint)
        # Azure's first chunk carries the prompt's filter verdict and no choice; each choice after it carries
        # the completion's verdict so far (empty on the finish chunk).
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": PROMPT_FILTER_RESULTS}
        out = [b"data: " + json.dumps(first).encode() + b"\n\n"]
        for event in events[:-1]:
            chunk = json.loads(event[len(b"data: "):])
            for choice in chunk["choices"]:
                ends_filtered = choice["finish_reason"] == "content_filter"
                choice["content_filter_results"] = _FILTERED if ends_filtered else (
                    {} if choice["finish_reason"] else _SAFE)
            out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        return dict(SSE_HEADERS), out + [events[-1]]

    def error(self, request: web.Request, failure: Failure) -> web.Response:
        kind, status = failure.kind, failure.status
        headers = _retry_headers(failure)
        if kind == "invalid" and _unversioned(request):
            # Azure does not route a versioned path without its api-version: no such resource.
            return json_response(404, _azure_error("404", "Resource not found"))
        if kind == "content_policy":
            body = content_filter_error()
        elif kind == "context_length":
            body = error_body(failure.message, "invalid_request_error", CONTEXT_LENGTH_CODE,
                              "input" if is_responses(request) else failure.param)
        elif kind == "invalid":
            body = error_body(failure.message, "invalid_request_error", failure.code, failure.param)
        elif kind == "rate_limit":
            body = _azure_error("429", _rate_limit_message(request, failure))
            headers.update({"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0"})
        elif kind == "overloaded":
            body = error_body(OVERLOADED_MESSAGE, "server_error")
        elif kind == "timeout":
            body = _azure_error("Timeout", "The operation was timeout.")
        elif status == 500:
            body = error_body(SERVER_ERROR_MESSAGE, "server_error")
        elif status == 503:
            body = _azure_error("ServiceUnavailable", "The service is temporarily unable to process your request. "
                                "Please try again later.")
        else:
            body = _azure_error(str(status), _reason(status))
        return json_response(status, body, headers or None)

    # -- the fault proxy ------------------------------------------------------------------------------
    def outcome(self, status: int, body: bytes) -> ev.UpstreamOutcome:
        if 200 <= status < 300:
            return "content_policy" if filtered(body) else "ok"
        error = error_of(body) if 400 <= status < 600 else None
        if error is None:
            return "error"
        inner = error.get("innererror")
        if status < 500 and (error.get("code") == "content_filter" or (
                isinstance(inner, dict) and inner.get("code") == "ResponsibleAIPolicyViolation")):
            return "content_policy"
        if status < 500 and error.get("code") == CONTEXT_LENGTH_CODE:
            return "context_length"
        if status >= 500 and (error.get("code") == "overloaded" or error.get("type") == "overloaded_error"
                              or "overloaded" in str(error.get("message", "")).lower()):
            return "overloaded"
        return "error"

    def stream_outcome(self, status: int, tail: bytes) -> ev.UpstreamOutcome:
        # The finish chunk (or a Responses stream's last event) says whether the filter ended the answer.
        cut_by_filter = b'"finish_reason": "content_filter"' in tail or b'"finish_reason":"content_filter"' in tail
        if cut_by_filter or responses_stream_refusal(tail):
            return "content_policy"
        return self.outcome(status, b"")

    def split(self, buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
        return split_sse(buffer, final)

    def is_end(self, event: bytes) -> bool:
        return b"data: [DONE]" in event or b"data:[DONE]" in event or sse_event_name(event) in RESPONSES_END

    def is_chunk(self, event: bytes) -> bool:
        return b"data:" in event

    # -- the reference gateway ------------------------------------------------------------------------
    def client_call(self, target: ClientTarget, body: dict[str, Any], stream: bool,
                    extra_headers: dict[str, str]) -> ClientCall:
        path = _DEPLOYMENT_PATH.format(deployment=quote(target.model, safe=""))
        payload = body if bool(body.get("stream")) == stream else {**body, "stream": stream}
        headers = {"api-key": target.key, "Content-Type": "application/json", **extra_headers}
        return ClientCall("POST", f"{target.url}{path}?api-version={API_VERSION}", headers,
                          json.dumps(payload).encode())

    def client_answer(self, status: int, headers: dict[str, str], body: bytes, model: str) -> ClientAnswer:
        retry = _header(headers, "retry-after")
        if 200 <= status < 300:
            if filtered(body):  # a completion the filter cut is a refusal, told as OpenAI tells one
                refusal = error_body(CONTENT_FILTER_MESSAGE.replace("prompt", "completion", 1), "invalid_request_error",
                                     "content_policy_violation")
                return ClientAnswer(400, json.dumps(refusal).encode(), "content_policy", retry)
            return ClientAnswer(status, body, None, retry)
        outcome = self.outcome(status, body)
        cause: int | str = outcome if outcome in ("content_policy", "context_length", "overloaded") else status
        return ClientAnswer(status, _openai_error(status, body), cause, retry)

    def client_stream(self, model: str) -> StreamTranslator:
        return AzureStream()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _openai_error(status: int, body: bytes) -> bytes:
    """Azure's error in OpenAI's shape (message, type, param, code): its gateway's errors have no type."""
    error = error_of(body)
    if error is None or not isinstance(error.get("message"), str):
        text = body.decode("utf-8", "replace")[:500] or _reason(status)
        error = {"message": text, "code": str(status)}
    default = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    shaped = {**error, "type": error.get("type") or default, "param": error.get("param"), "code": error.get("code")}
    return json.dumps({"error": shaped}).encode()


API = AzureOpenAIApi()

"""The client side of the Bedrock dialect: the reference gateway's call in Bedrock's words (an OpenAI
chat-completions body as a signed Converse call), and Bedrock's answers read back in OpenAI's (a chat
completion, an OpenAI error with its cause, OpenAI chunks from a ConverseStream). How an answer is judged
(`judge`, `code_of`) is shared with the mock's fault-proxy side, so it lives here too.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, ParserError
from yarl import URL

from harness.core import events as ev
from harness.topology.apis.base import ClientAnswer, ClientCall, ClientTarget, StreamTranslator
from harness.topology.apis.openai import completion, error_body

SERVICE = "bedrock"   # the SigV4 signing name of bedrock-runtime (its service model says so)
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "guardrail_intervened": "content_filter", "content_filtered": "content_filter", "refusal": "content_filter"}
REFUSALS = frozenset({"guardrail_intervened", "content_filtered", "refusal"})   # stop reasons that are a refusal
# Bedrock's capacity errors: the service is short of capacity, or the model is not loaded yet.
OVERLOADED = frozenset({"ServiceUnavailableException", "ModelNotReadyException"})


def code_of(headers: Mapping[str, str], body: dict[str, Any]) -> str:
    """An error's code as botocore's rest-json parser reads it: the x-amzn-ErrorType header, else the body."""
    lower = {k.lower(): v for k, v in headers.items()}
    code = lower.get("x-amzn-errortype") or body.get("code") or body.get("Code") or body.get("__type") or ""
    return str(code).split(":", 1)[0].rsplit("#", 1)[-1]


def judge(status: int, code: str, message: str) -> ev.UpstreamOutcome:
    """What a Bedrock error was: its capacity error (ServiceUnavailable, ModelNotReady: also by status and words,
    for a body without the header), the prompt over the context window (a ValidationException "too long"), or
    another error."""
    if code in OVERLOADED or status == 503 or (status == 429 and "not ready" in message.lower()):
        return "overloaded"
    return "context_length" if status == 400 and "too long" in message.lower() else "error"


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments or {})}}


def signed_call(target: ClientTarget, body: dict[str, Any], stream: bool,
                extra_headers: dict[str, str]) -> ClientCall:
    """A Converse call, SigV4-signed with botocore's signer. Signed as aiohttp will send it: yarl turns the
    %3A botocore would send back into ':', and the signature covers the path as sent."""
    operation = "converse-stream" if stream else "converse"
    url = str(URL(f"{target.url}/model/{quote(target.model, safe='')}/{operation}"))
    data = json.dumps(converse_body(body)).encode()
    aws = AWSRequest(method="POST", url=url, data=data, headers={"Content-Type": "application/json",
                                                                 **extra_headers})
    SigV4Auth(Credentials(target.key, target.secret or ""), SERVICE, target.region).add_auth(aws)
    return ClientCall("POST", url, dict(aws.headers.items()), data)


def told(status: int, headers: dict[str, str], body: bytes, model: str) -> ClientAnswer:
    """A Converse answer or a Bedrock error in OpenAI's words, with the cause the gateway's policy names."""
    data = json_object(body)
    lower = {k.lower(): v for k, v in headers.items()}
    retry_after = lower.get("retry-after")
    if retry_after is None and lower.get("x-amz-retry-after", "").isdigit():
        retry_after = str(math.ceil(int(lower["x-amz-retry-after"]) / 1000))
    if not 200 <= status < 300:
        code, message = code_of(headers, data), str(data.get("message", ""))
        judged = judge(status, code, message)
        if judged == "context_length":
            return _openai_error(400, message, "invalid_request_error", "context_length_exceeded",
                                 "context_length", retry_after)
        kind = "rate_limit_error" if code == "ThrottlingException" else (
            "server_error" if status >= 500 or judged == "overloaded" else "invalid_request_error")
        cause: int | str = "overloaded" if judged == "overloaded" else status
        return _openai_error(status, message, kind, code or None, cause, retry_after)
    if data.get("stopReason") in REFUSALS:
        return _openai_error(400, "the request was refused by the provider's guardrail",
                             "invalid_request_error", "content_policy_violation", "content_policy", retry_after)
    content = ((data.get("output") or {}).get("message") or {}).get("content") or []
    text = "".join(b["text"] for b in content if "text" in b) or None
    calls = tuple(tool_call(b["toolUse"]["toolUseId"], b["toolUse"]["name"], b["toolUse"].get("input"))
                  for b in content if "toolUse" in b)
    reply = completion(f"chatcmpl-{lower.get('x-amzn-requestid') or uuid.uuid4()}", int(time.time()), model,
                       text, FINISH.get(data.get("stopReason", ""), "stop"), calls)
    return ClientAnswer(status, json.dumps(reply).encode(), None, retry_after)


def _openai_error(status: int, message: str, kind: str, code: str | None, cause: int | str,
                  retry_after: str | None) -> ClientAnswer:
    return ClientAnswer(status, json.dumps(error_body(message, kind, code)).encode(), cause, retry_after)


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content as Converse content blocks (an image only as inline data: Converse takes no URL)."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content or []:
        if part.get("type") == "text":
            out.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            match = re.fullmatch(r"data:image/(\w+);base64,(.*)", part["image_url"]["url"], re.S)
            if match:
                out.append({"image": {"format": match[1], "source": {"bytes": match[2]}}})
    return out


def converse_body(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat-completions body as a Converse body (the model goes in the path)."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system += _blocks(message.get("content"))
            continue
        if role == "tool":
            role, blocks = "user", [{"toolResult": {"toolUseId": message.get("tool_call_id", ""), "content": [
                {"text": message.get("content") if isinstance(message.get("content"), str) else json.dumps(
                    message.get("content"))}]}}]
        else:
            blocks = _blocks(message.get("content")) + [
                {"toolUse": {"toolUseId": c["id"], "name": c["function"]["name"],
                             "input": json.loads(c["function"].get("arguments") or "{}")}}
                for c in message.get("tool_calls") or []]
        if messages and messages[-1]["role"] == role:   # Converse alternates roles: consecutive ones merge
            messages[-1]["content"] += blocks
        else:
            messages.append({"role": role, "content": blocks})
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference = {k: body[o] for k, o in (("maxTokens", "max_tokens"), ("maxTokens", "max_completion_tokens"),
                                         ("temperature", "temperature"), ("topP", "top_p")) if body.get(o) is not None}
    if inference:
        out["inferenceConfig"] = inference
    tools = [{"toolSpec": {"name": t["function"]["name"], "inputSchema": {
        "json": t["function"].get("parameters") or {"type": "object"}}}} for t in body.get("tools") or []
        if t.get("type") == "function"]
    if tools:
        out["toolConfig"] = {"tools": tools}
        choice = body.get("tool_choice")
        if choice in ("auto", "required"):
            out["toolConfig"]["toolChoice"] = {"auto": {}} if choice == "auto" else {"any": {}}
        elif isinstance(choice, dict):
            out["toolConfig"]["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        spec = fmt["json_schema"]
        out["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
            "name": spec.get("name", "response"), "schema": json.dumps(spec.get("schema") or {})}}}}
    return out


class ConverseTranslator(StreamTranslator):
    """A ConverseStream (binary event stream) told as OpenAI chunks: the finish chunk at messageStop, [DONE] at
    metadata, the stream's last event; an exception message ends it unfinished."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.buffer = EventStreamBuffer()
        self.head = {"id": f"chatcmpl-{uuid.uuid4()}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model}
        self.calls = 0
        self.done = False
        self.broken = False   # an exception message or a corrupt one: nothing after it is told

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**self.head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def feed(self, data: bytes) -> list[bytes]:
        if self.broken:
            return []
        self.buffer.add_data(data)
        out: list[bytes] = []
        try:
            messages = list(self.buffer)
        except ParserError:   # a CRC that does not match: the stream is corrupt, never a whole answer
            self.broken = True
            return out
        for message in messages:
            headers, payload = message.headers, json_object(message.payload)
            if headers.get(":message-type") == "exception":
                self.broken = True
                out.append(b"data: " + json.dumps(error_body(str(payload.get("message", "")), "server_error",
                                                             str(headers.get(":exception-type")))).encode() + b"\n\n")
                break
            kind = headers.get(":event-type")
            delta = payload.get("delta") or {}
            start = (payload.get("start") or {}).get("toolUse")
            if kind == "messageStart":
                out.append(self._chunk({"role": "assistant", "content": ""}))
            elif kind == "contentBlockStart" and start:
                call = {"index": self.calls, "id": start["toolUseId"], "type": "function",
                        "function": {"name": start["name"], "arguments": ""}}
                self.calls += 1
                out.append(self._chunk({"tool_calls": [call]}))
            elif kind == "contentBlockDelta" and "text" in delta:
                out.append(self._chunk({"content": delta["text"]}))
            elif kind == "contentBlockDelta" and "toolUse" in delta:
                call = {"index": self.calls - 1, "function": {"arguments": delta["toolUse"].get("input", "")}}
                out.append(self._chunk({"tool_calls": [call]}))
            elif kind == "messageStop":
                out.append(self._chunk({}, FINISH.get(payload.get("stopReason", ""), "stop")))
            elif kind == "metadata":
                self.done = True
                out.append(b"data: [DONE]\n\n")
        return out

    @property
    def complete(self) -> bool:
        return self.done

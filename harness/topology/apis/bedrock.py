"""Amazon Bedrock runtime: Converse and ConverseStream, and InvokeModel / InvokeModelWithResponseStream in
Anthropic Claude's Messages format (the one native model format read here; Titan, Llama, Mistral, Cohere
and Nova bodies are refused as unreadable).

Identity is SigV4: a call is an identity's only when its signature verifies against that identity's secret
access key, recomputed with botocore's own signer. Errors are rest-json: `{"message"}` with the code in
`x-amzn-ErrorType`, as botocore reads it. Streams are AWS event streams (`application/vnd.amazon.eventstream`):
binary messages, each framed by a prelude and two CRC32s.

The reference gateway's side (a signed Converse call, its answers read back in OpenAI's words) is
bedrock_client.py.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import re
import struct
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from harness.core import events as ev
from harness.core.identity import bearer
from harness.core.provider_apis import ERROR_CODES
from harness.topology.apis.base import (
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
from harness.topology.apis.bedrock_client import (
    REFUSALS,
    SERVICE,
    ConverseTranslator,
    code_of,
    json_object,
    judge,
    signed_call,
    told,
    tool_call,
)
from harness.topology.apis.openai import STREAM_PIECES, pieces

EVENT_STREAM = "application/vnd.amazon.eventstream"
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
                   r"SignedHeaders=([a-z0-9;._-]+),\s*Signature=([0-9a-f]{64})")
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "guardrail_intervened"}
_CLAUDE_STOP = {**_STOP, "content_filter": "refusal"}
GUARDRAIL_TEXT = "Sorry, the model cannot answer this question."   # what a guardrail says in the model's place
TOO_LONG = "Input is too long for requested model."
_WORDS = {  # Bedrock's own messages, which clients (and `outcome`) read
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ModelNotReadyException": "The model is not ready to serve inference requests. The AWS SDK will automatically "
                              "retry the operation.",
    "InternalServerException": "The server encountered an internal error while processing the request.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
}
_BY_STATUS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
              408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
              500: "InternalServerException", 503: "ServiceUnavailableException"}


# -- identity: SigV4, verified ---------------------------------------------------------------------
class _Verifier(SigV4Auth):
    """botocore's SigV4 (canonical request, string to sign, key derivation), over exactly the headers the
    caller says it signed: botocore's own choice would drop some (user-agent) another signer may include."""

    def __init__(self, credentials: Credentials, region: str, signed: HTTPHeaders) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed


def verify_sigv4(request: web.Request, raw: bytes, akid: str, secret: str, day: str, region: str, names: str,
                 signature: str) -> bool:
    """Whether `signature` is the one `secret` gives this request as sent: its path (still percent-encoded)
    and query, its signed headers (the Host the caller talked to included), its X-Amz-Date, its body."""
    stamp = request.headers.get("X-Amz-Date", "")
    claimed = request.headers.get("X-Amz-Content-SHA256")
    if len(stamp) != 16 or not stamp.startswith(day) or (
            claimed not in (None, "UNSIGNED-PAYLOAD") and claimed != sha256(raw).hexdigest()):
        return False
    signed = HTTPHeaders()
    for name in names.split(";"):
        values = request.headers.getall(name, [])
        if not values:
            return False
        for value in values:
            signed[name] = value
    # The URL's host is not read (the Host header is); its path and query are, as the caller sent them.
    aws = AWSRequest(method=request.method, url=f"http://host{request.raw_path}", data=raw, headers=signed)
    aws.context["timestamp"] = stamp
    signer = _Verifier(Credentials(akid, secret), region, signed)
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    return hmac.compare_digest(expected, signature)


# -- reading a call: Converse and Claude's Messages, as chat completions ----------------------------
def _image(fmt: str, data: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:image/{fmt};base64,{data}"}}


def _converse_block(block: dict[str, Any]) -> tuple[str, Any] | None:
    """One Converse content block: ("part", an OpenAI content part), ("call", a tool call), ("result", (id, text))."""
    if "text" in block:
        return "part", {"type": "text", "text": str(block["text"])}
    if "image" in block:
        return "part", _image(block["image"]["format"], block["image"]["source"].get("bytes", ""))
    if "guardContent" in block:  # text a guardrail is asked to judge: still the prompt's text
        return "part", {"type": "text", "text": str(block["guardContent"]["text"]["text"])}
    if "toolUse" in block:
        use = block["toolUse"]
        return "call", tool_call(use["toolUseId"], use["name"], use.get("input"))
    if "toolResult" in block:
        result = block["toolResult"]
        return "result", (result["toolUseId"], "\n".join(
            b["text"] if "text" in b else json.dumps(b["json"]) for b in result.get("content") or []
            if "text" in b or "json" in b))
    return None


def _claude_block(block: dict[str, Any]) -> tuple[str, Any] | None:
    """One block of Claude's Messages format, read as `_converse_block` reads Converse's."""
    kind = block["type"]
    if kind == "text":
        return "part", {"type": "text", "text": str(block["text"])}
    if kind == "image":
        source = block["source"]
        return "part", _image(source.get("media_type", "image/png").split("/")[-1], source.get("data", ""))
    if kind == "tool_use":
        return "call", tool_call(block["id"], block["name"], block.get("input"))
    if kind == "tool_result":
        inner = block.get("content") or ""
        return "result", (block["tool_use_id"], inner if isinstance(inner, str) else "\n".join(
            b["text"] for b in inner if b.get("type") == "text"))
    return None


def read_messages(system: list[str], messages: list[dict[str, Any]],
                  read: Callable[[dict[str, Any]], tuple[str, Any] | None]) -> list[dict[str, Any]]:
    """Bedrock messages as chat messages: the system text first, then each message's tool results (each a
    `tool` message) and the rest of it."""
    out: list[dict[str, Any]] = [{"role": "system", "content": "\n".join(system)}] if system else []
    for message in messages:
        role, content = message["role"], message["content"]
        if role not in ("user", "assistant"):
            raise ValueError(f"role {role!r}")
        found: dict[str, list[Any]] = {"part": [], "call": [], "result": []}
        for block in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            item = read(block)
            if item is not None:
                found[item[0]].append(item[1])
        out += [{"role": "tool", "tool_call_id": i, "content": text} for i, text in found["result"]]
        if found["part"] or found["call"]:
            calls = {"tool_calls": found["call"]} if found["call"] else {}
            out.append({"role": role, "content": found["part"], **calls})
    return out


def _tool_choice(choice: Any) -> Any:
    """Converse's {auto|any|tool: {name}} or Claude's {type: auto|any|tool|none, name} in OpenAI's words."""
    kind = choice.get("type") or next(iter(choice), None)
    name = choice.get("name") or (choice.get("tool") or {}).get("name")
    if kind == "tool":
        return {"type": "function", "function": {"name": name}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(kind)


def _function(name: str, schema: Any, description: Any = None) -> dict[str, Any]:
    fn = {"name": name, "parameters": schema or {"type": "object"}}
    return {"type": "function", "function": {**fn, "description": description} if description else fn}


_PATH = re.compile(r"/model/(.+)/(converse|converse-stream|invoke|invoke-with-response-stream)")


def _operation(request: web.Request) -> str:
    return request.path.rsplit("/", 1)[-1]   # converse | converse-stream | invoke | invoke-with-response-stream


def model_id(request: web.Request) -> str:
    """The model id as sent (percent-encoded where an ARN), decoded: read from the path itself, since the fault
    proxy serves every path on one catch-all route."""
    match = _PATH.fullmatch(request.rel_url.raw_path)
    if match is None:
        raise ValueError(f"not a Bedrock runtime path: {request.path}")
    return unquote(match[1])


# -- the wire: event-stream messages ---------------------------------------------------------------
def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message. No maintained Python library encodes these (botocore and awscrt only decode;
    smithy's encoder is not on PyPI here), so this is the format by hand: a prelude (total length, headers
    length, their CRC32), string headers (type 7), the payload, a CRC32 of all before it. The tests let
    botocore's decoder (boto3's converse_stream) judge it."""
    head = b"".join(struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
                    for n, v in ((k.encode(), val.encode()) for k, val in headers.items()))
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    return encode_message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                          json.dumps(payload).encode())


def exception(exception_type: str, message: str) -> bytes:
    """An error inside a stream (the stream's members name them in camelCase: throttlingException, ...)."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps({"message": message}).encode())


def decode(data: bytes) -> list[EventStreamMessage]:
    """The whole messages in `data` (botocore's decoder: CRCs checked); a broken one ends the list."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    out: list[EventStreamMessage] = []
    try:
        out.extend(buffer)
    except ParserError:
        pass
    return out


def aligned(tail: bytes) -> bytes:
    """A stream's last bytes from their first whole message on (they may start mid-message): the first offset
    whose 12 bytes are a prelude, its CRC matching, with a message that fits."""
    for start in range(len(tail) - 15):
        total, head = struct.unpack_from(">II", tail, start)
        if 16 + head <= total <= len(tail) - start and zlib.crc32(tail[start:start + 8]) == struct.unpack_from(
                ">I", tail, start + 8)[0]:
            return tail[start:]
    return b""


def claude_event(message: EventStreamMessage) -> dict[str, Any]:
    """The Claude stream event an InvokeModelWithResponseStream `chunk` carries (base64 in `bytes`)."""
    data: dict[str, Any] = json.loads(base64.b64decode(json.loads(message.payload)["bytes"]))
    return data


def _stop_of(message: EventStreamMessage) -> str | None:
    """The stop reason a stream message says, if any (messageStop, or a Claude message_delta)."""
    try:
        kind = message.headers.get(":event-type")
        if kind == "messageStop":
            return str(json.loads(message.payload)["stopReason"])
        if kind == "chunk":
            return claude_event(message).get("delta", {}).get("stop_reason")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


@dataclass
class BedrockApi(ProviderApi):
    name: str = "bedrock"
    # Model ids carry ':' and '.', and ARNs arrive percent-encoded (their '/' too): a regex, unquoted on reading.
    routes: tuple[Route, ...] = field(default_factory=lambda: tuple(
        Route("POST", f"/model/{{modelId:.+}}/{op}")
        for op in ("converse", "converse-stream", "invoke", "invoke-with-response-stream")))
    refuses_in_band: bool = True           # a guardrail's refusal is an answer: stopReason guardrail_intervened
    overloaded_status: int = 503           # ServiceUnavailableException
    error_codes: dict[str, int] = field(default_factory=lambda: dict(ERROR_CODES["bedrock"]))
    stream_content_types: tuple[str, ...] = ("application/vnd.amazon.eventstream",)

    def credential(self, request: web.Request, raw: bytes, secrets: Mapping[str, str]) -> str | None:
        auth = request.headers.get("Authorization")
        if not auth:
            return None
        if auth[:7].lower() == "bearer ":  # a Bedrock API key (botocore's AWS_BEARER_TOKEN_BEDROCK)
            return bearer(auth)
        match = _AUTH.fullmatch(auth.strip())
        if match is None:
            return "(a malformed SigV4 authorization)"
        akid, day, region, service, names, signature = match.groups()
        secret = secrets.get(akid)
        if secret is None or service != SERVICE or not verify_sigv4(request, raw, akid, secret, day, region, names,
                                                                     signature):
            return f"{akid} (signature does not verify)"   # no identity's fingerprint: recorded as 'unknown'
        return akid

    def forward_headers(self, method: str, url: str, headers: dict[str, str], body: bytes,
                        secrets: Mapping[str, str]) -> dict[str, str]:
        # The gateway signed for the proxy's host: the upstream would refuse that signature. Only a call whose
        # signature verified here is signed again (same identity, same region, same body), for the upstream.
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        match = _AUTH.fullmatch(auth.strip())
        if match is None or match.group(1) not in secrets:
            return headers
        akid, _day, region = match.group(1), match.group(2), match.group(3)
        dropped = {"authorization", "x-amz-date", "host"}
        aws = AWSRequest(method=method, url=url, data=body,
                         headers={k: v for k, v in headers.items() if k.lower() not in dropped})
        SigV4Auth(Credentials(akid, secrets[akid]), SERVICE, region).add_auth(aws)
        return dict(aws.headers.items())

    def canonical(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        operation = _operation(request)
        out: dict[str, Any] = {"model": model_id(request),
                               "stream": operation.endswith("stream")}
        if operation.startswith("converse"):
            system = [block["text"] for block in body.get("system") or [] if "text" in block]
            out["messages"] = read_messages(system, body["messages"], _converse_block)
            config = body.get("toolConfig") or {}
            tools = [t["toolSpec"] for t in config.get("tools") or [] if "toolSpec" in t]
            choice = config.get("toolChoice")
            max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
            text_format = (body.get("outputConfig") or {}).get("textFormat")
            if text_format and text_format.get("type") == "json_schema":  # structured output: the schema is a string
                spec = text_format["structure"]["jsonSchema"]
                out["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": spec.get("name", "response"), "schema": json.loads(spec["schema"])}}
            out["tools"] = [_function(t["name"], (t.get("inputSchema") or {}).get("json"), t.get("description"))
                            for t in tools]
        else:
            if not isinstance(body.get("messages"), list):
                raise ValueError("InvokeModel: only Anthropic Claude's Messages format is read")
            system = body.get("system") or []
            texts = [system] if isinstance(system, str) else [b["text"] for b in system if b.get("type") == "text"]
            out["messages"] = read_messages(texts, body["messages"], _claude_block)
            choice, max_tokens = body.get("tool_choice"), body.get("max_tokens")
            out["tools"] = [_function(t["name"], t.get("input_schema"), t.get("description"))
                            for t in body.get("tools") or [] if "name" in t]
        if choice:
            out["tool_choice"] = _tool_choice(choice)
        if max_tokens is not None:
            out["max_tokens"] = max_tokens
        return out

    # -- answering ------------------------------------------------------------------------------------
    def respond(self, request: web.Request, answer: Answer, meta: Meta,
                headers: dict[str, str] | None = None) -> web.StreamResponse:
        words = len(answer.text.split()) if answer.text else 0
        own = {"x-amzn-RequestId": str(uuid.uuid4())}
        if _operation(request) == "invoke":
            return json_response(200, self._claude_message(answer, meta, words), {**own, **(headers or {})})
        content = [{"text": answer.text or GUARDRAIL_TEXT}] if not answer.tool_calls else [
            {"toolUse": {"toolUseId": c["id"], "name": c["function"]["name"],
                         "input": json.loads(c["function"]["arguments"] or "{}")}} for c in answer.tool_calls]
        body = {"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": _STOP[answer.finish_reason], "usage": self._usage(meta, words),
                "metrics": {"latencyMs": 1}}
        return json_response(200, body, {**own, **(headers or {})})

    @staticmethod
    def _usage(meta: Meta, words: int) -> dict[str, int]:
        return {"inputTokens": meta.prompt_tokens, "outputTokens": words, "totalTokens": meta.prompt_tokens + words}

    @staticmethod
    def _claude_message(answer: Answer, meta: Meta, words: int) -> dict[str, Any]:
        content = [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                    "input": json.loads(c["function"]["arguments"] or "{}")} for c in answer.tool_calls]
        if answer.text:
            content.insert(0, {"type": "text", "text": answer.text})
        return {"id": f"msg_bdrk_{meta.response_id}", "type": "message", "role": "assistant", "model": meta.model,
                "content": content, "stop_reason": _CLAUDE_STOP[answer.finish_reason], "stop_sequence": None,
                "usage": {"input_tokens": meta.prompt_tokens, "output_tokens": words}}

    def stream(self, request: web.Request, answer: Answer, meta: Meta) -> tuple[dict[str, str], list[bytes]]:
        headers = {"Content-Type": EVENT_STREAM, "x-amzn-RequestId": str(uuid.uuid4())}
        if _operation(request) == "invoke-with-response-stream":
            headers["X-Amzn-Bedrock-Content-Type"] = "application/json"
            return headers, self._claude_stream(answer, meta)
        text = answer.text or ("" if answer.tool_calls else GUARDRAIL_TEXT)
        words = len(text.split())
        events = [event("messageStart", {"role": "assistant"})]
        for i, call in enumerate(answer.tool_calls):
            fn = call["function"]
            events += [event("contentBlockStart", {"start": {"toolUse": {"toolUseId": call["id"], "name": fn["name"]}},
                                                   "contentBlockIndex": i}),
                       event("contentBlockDelta", {"delta": {"toolUse": {"input": fn["arguments"] or "{}"}},
                                                   "contentBlockIndex": i}),
                       event("contentBlockStop", {"contentBlockIndex": i})]
        if text:
            events += [event("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0})
                       for piece in pieces(text, STREAM_PIECES)] + [event("contentBlockStop", {"contentBlockIndex": 0})]
        events.append(event("messageStop", {"stopReason": _STOP[answer.finish_reason]}))
        # metadata is the last event of a whole answer: the end marker a cut never lets through.
        events.append(event("metadata", {"usage": self._usage(meta, words), "metrics": {"latencyMs": 1}}))
        return headers, events

    def _claude_stream(self, answer: Answer, meta: Meta) -> list[bytes]:
        words = len(answer.text.split()) if answer.text else 0
        start = {**self._claude_message(Answer(None), meta, 0), "content": [], "stop_reason": None}
        claude: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
        for i, call in enumerate(answer.tool_calls):
            fn = call["function"]
            claude += [{"type": "content_block_start", "index": i,
                        "content_block": {"type": "tool_use", "id": call["id"], "name": fn["name"], "input": {}}},
                       {"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": fn["arguments"] or "{}"}},
                       {"type": "content_block_stop", "index": i}]
        if answer.text:
            claude.append({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            claude += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                       for piece in pieces(answer.text, STREAM_PIECES)]
            claude.append({"type": "content_block_stop", "index": 0})
        claude += [{"type": "message_delta", "delta": {"stop_reason": _CLAUDE_STOP[answer.finish_reason],
                                                       "stop_sequence": None}, "usage": {"output_tokens": words}},
                   {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
                       "inputTokenCount": meta.prompt_tokens, "outputTokenCount": words, "invocationLatency": 1,
                       "firstByteLatency": 1}}]
        return [event("chunk", {"bytes": base64.b64encode(json.dumps(e).encode()).decode()}) for e in claude]

    def error(self, request: web.Request, failure: Failure) -> web.Response:
        status, code, message = failure.status, failure.code, failure.message
        if code is None and failure.kind == "context_length":
            code = "ValidationException"
            message = TOO_LONG if _operation(request).startswith("invoke") else (
                f"The model returned the following errors: {TOO_LONG}")
        elif code is None and failure.kind == "timeout":
            code, status = "ModelTimeoutException", 408   # Bedrock's own timeout is a 408, not a 504
        elif code is None:
            code = "ServiceUnavailableException" if failure.kind == "overloaded" else _BY_STATUS.get(status) or (
                "InternalServerException" if status >= 500 else "ValidationException")
        if code in _WORDS and failure.kind != "context_length":
            message = f"{_WORDS[code]} ({message})"   # Bedrock's words, and the harness's note on why
        headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                   "x-amzn-RequestId": str(uuid.uuid4())}
        if failure.retry_after_s is not None:  # Bedrock sends none itself: only when the scenario asks for one
            headers["Retry-After"] = str(math.ceil(failure.retry_after_s))
            headers["x-amz-retry-after"] = str(math.ceil(failure.retry_after_s * 1000))  # botocore's, in ms
        return json_response(status, {"message": message}, headers)

    # -- judging an upstream's answer -----------------------------------------------------------------
    def outcome(self, status: int, body: bytes) -> ev.UpstreamOutcome:
        if not 200 <= status < 300:
            data = json_object(body)
            return judge(status, code_of({}, data), str(data.get("message", "")))
        if body[:1] == b"{":
            data = json_object(body)
            refused = data.get("stopReason") in REFUSALS or data.get("stop_reason") in REFUSALS or data.get(
                "amazon-bedrock-guardrailAction") == "INTERVENED"
            return "content_policy" if refused else "ok"
        return self._judge_stream(decode(body))   # a whole event stream, buffered

    def stream_outcome(self, status: int, tail: bytes) -> ev.UpstreamOutcome:
        return self._judge_stream(decode(aligned(tail))) if 200 <= status < 300 else self.outcome(status, b"")

    def _judge_stream(self, messages: list[EventStreamMessage]) -> ev.UpstreamOutcome:
        """A stream's outcome from its messages: an exception in it as that error, a refusal's stop reason."""
        for message in messages:
            if message.headers.get(":message-type") == "exception":
                kind = str(message.headers.get(":exception-type", ""))
                code = kind[:1].upper() + kind[1:]   # the stream's member name, camelCase, is the error's code
                message_text = str(json_object(message.payload).get("message", ""))
                return judge(self.error_codes.get(code, 500), code, message_text)
            if _stop_of(message) in REFUSALS:
                return "content_policy"
        return "ok"

    def split(self, buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
        """Whole messages by their prelude's total length; a message not yet whole stays in the rest."""
        events: list[bytes] = []
        start = 0
        while len(buffer) - start >= 12:
            total = struct.unpack_from(">I", buffer, start)[0]
            if total < 16 or len(buffer) - start < total:
                break
            events.append(buffer[start:start + total])
            start += total
        rest = buffer[start:]
        if final and rest:
            events.append(rest)
            rest = b""
        return events, rest

    def is_end(self, event: bytes) -> bool:
        for message in decode(event):
            kind = message.headers.get(":event-type")
            if kind == "metadata":
                return True
            if kind == "chunk":
                try:
                    return claude_event(message).get("type") == "message_stop"
                except (ValueError, KeyError, TypeError):
                    return False
        return False

    # -- calling Bedrock as a client ------------------------------------------------------------------
    def client_call(self, target: ClientTarget, body: dict[str, Any], stream: bool,
                    extra_headers: dict[str, str]) -> ClientCall:
        return signed_call(target, body, stream, extra_headers)

    def client_answer(self, status: int, headers: dict[str, str], body: bytes, model: str) -> ClientAnswer:
        return told(status, headers, body, model)

    def client_stream(self, model: str) -> StreamTranslator:
        return ConverseTranslator(model)


API = BedrockApi()

"""What one client request looks like, and how its response is read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.core.capabilities import Needs, needs_of_entry, pad_to_tokens, request_kind, tool_choice_payload
from harness.core.correlation import Correlation
from harness.core.model import JsonSchemaFormat, MixEntry, ServedTarget, TrafficHeaders
from harness.traffic.answers import AnswerParts, answer_record

# The smallest valid PNG: an image part that costs nothing to send.
TINY_IMAGE = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
              "60e6kgAAAABJRU5ErkJggg==")


@dataclass(frozen=True)
class Requirements:
    """A mix entry's requirements, worked out once per entry: its kind, its needs, its body fields."""

    kind: str | None
    needs: Needs | None
    fields: dict[str, Any]
    input_tokens: int | None
    images: bool


_REQUIREMENTS: dict[int, tuple[MixEntry, Requirements]] = {}


def requirements(entry: MixEntry) -> Requirements:
    cached = _REQUIREMENTS.get(id(entry))
    if cached is not None and cached[0] is entry:
        return cached[1]
    kind = request_kind(entry)
    fields: dict[str, Any] = {}
    if entry.max_tokens is not None:
        fields["max_tokens"] = entry.max_tokens
    fmt = entry.response_format
    if isinstance(fmt, JsonSchemaFormat):
        fields["response_format"] = {"type": "json_schema", "json_schema": {
            "name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict}}
    elif fmt is not None:
        fields["response_format"] = {"type": fmt.type}
    if entry.tool_choice is not None:
        fields["tool_choice"] = tool_choice_payload(entry.tool_choice)
    if entry.seed is not None:
        fields["seed"] = entry.seed
    made = Requirements(kind, needs_of_entry(entry) if kind else None, fields, entry.input_tokens,
                        "image" in entry.modalities)
    _REQUIREMENTS[id(entry)] = (entry, made)
    return made

# Placeholders a header template may use, filled per request from its mix entry.
PER_REQUEST_FIELDS = ("request_id", "route", "tenant", "region", "request_class", "data_class")


@dataclass(frozen=True)
class PlannedRequest:
    id: str
    offset_s: float          # when to send it, after traffic starts
    entry: MixEntry

    def correlation(self) -> Correlation:
        e = self.entry
        return Correlation(self.id, e.tenant, e.request_class, e.region, e.data_class)

    def headers(self, names: TrafficHeaders, client_key: str | None) -> dict[str, str]:
        e = self.entry
        headers = {
            names.request_id: self.id,
            names.tenant: e.tenant,
            names.request_class: e.request_class,
            names.region: e.region,
            names.data_class: e.data_class,
            "content-type": "application/json",
        }
        if client_key:
            headers["authorization"] = f"Bearer {client_key}"
        return headers

    def fill(self, template: str) -> str:
        """A header template with this request's attributes: `{"tenant":"{tenant}"}` -> `{"tenant":"acme"}`."""
        if "{" not in template:
            return template
        e = self.entry
        values = {"request_id": self.id, "route": e.route, "tenant": e.tenant, "region": e.region,
                  "request_class": e.request_class, "data_class": e.data_class}
        for name in PER_REQUEST_FIELDS:
            template = template.replace("{" + name + "}", values[name])
        return template

    def body(self) -> dict[str, Any]:
        e = self.entry
        need = requirements(e)
        # The token goes into the content too: gateways strip headers and metadata.
        text = f"{self.correlation().token()} Say hello."
        if need.input_tokens is not None:
            text = pad_to_tokens(text, need.input_tokens)
        content: Any = text
        if need.images:
            content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": TINY_IMAGE}}]
        body: dict[str, Any] = {"model": e.route, "messages": [{"role": "user", "content": content}],
                                "stream": e.stream}
        if e.tools:
            body["tools"] = [
                {"type": "function", "function": {"name": t, "parameters": {"type": "object", "properties": {}}}}
                for t in e.tools
            ]
        if need.fields:
            body.update(need.fields)
        return body

    def answer(self, parts: AnswerParts | None, headers: Any) -> dict[str, Any] | None:
        """The request event's `answer` for what came back (None: no readable answer)."""
        if parts is None:
            return None
        return answer_record(parts, headers, requirements(self.entry).needs)


def dotted(data: Any, path: str) -> Any:
    """Follow `a.b.0.c` through dicts and lists; None where it leads nowhere."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def claimed_target(mapping: ServedTarget, headers: Any, body: Any) -> tuple[str | None, str | None]:
    """(provider name, the gateway's own name) the gateway claims served the response."""
    raw: Any = None
    if mapping.header:
        raw = headers.get(mapping.header)
    if raw is None and mapping.body_field and body is not None:
        raw = dotted(body, mapping.body_field)
    if raw is None:
        return None, None
    raw = str(raw)
    return mapping.values.get(raw, raw), raw


def valid_completion(body: Any) -> bool:
    """A well-formed chat completion: a choice with a message that has content or tool calls, or a refusal
    (finish_reason content_filter, content null: how a refusal said as an answer reaches an OpenAI client)."""
    try:
        choice = body["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        return False
    if not isinstance(message, dict):
        return False
    return (isinstance(message.get("content"), str) or bool(message.get("tool_calls"))
            or choice.get("finish_reason") == "content_filter")


class StreamReader:
    """Follows an SSE chat stream: complete means a finish_reason was seen, then [DONE]."""

    def __init__(self) -> None:
        self.finished = False
        self.done = False
        self.chunks = 0
        self.first_body: Any = None
        self.parts = AnswerParts()
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            return
        self.chunks += 1
        if self.first_body is None:
            self.first_body = chunk
        if not isinstance(chunk, dict):
            return
        self.parts.delta(chunk)
        choices = chunk.get("choices")
        if choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"):
            self.finished = True

    @property
    def complete(self) -> bool:
        return self.finished and self.done


def request_event(planned: PlannedRequest, sent_ts: float, end_ts: float, record: dict[str, Any]) -> dict[str, Any]:
    """The `request` ledger event (harness.core.events.RequestEvent) for one request and what came back.

    `record` holds status, outcome and, where known, claimed, claimed_raw, body_valid,
    stream_complete, error and answer. One builder for the driver and the locust users alike.
    """
    e = planned.entry
    event = {
        "type": "request", "ts": sent_ts, "ts_end": end_ts, "id": planned.id, "route": e.route,
        "tenant": e.tenant, "region": e.region, "request_class": e.request_class, "data_class": e.data_class,
        "stream": e.stream, "tools": list(e.tools), "status": record.get("status"), "outcome": record["outcome"],
        "latency_ms": round((end_ts - sent_ts) * 1000, 2), "claimed_target": record.get("claimed"),
        "claimed_raw": record.get("claimed_raw"), "body_valid": record.get("body_valid"),
        "stream_complete": record.get("stream_complete") if e.stream else None, "error": record.get("error"),
    }
    # Only where there is something to say: a plain request's event stays as it always was but for `answer`.
    kind = requirements(e).kind
    if kind is not None:
        event["kind"] = kind
    if record.get("answer") is not None:
        event["answer"] = record["answer"]
    return event


def error_text(body: Any, raw: bytes) -> str:
    """What an error response says, briefly: the OpenAI-style message, else the raw start."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or body["error"].get("code") or body["error"])[:300]
    return raw[:300].decode(errors="replace")

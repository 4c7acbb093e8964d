"""What every provider API (a wire dialect) supplies: the mock serves it, the fault proxy records it,
the reference gateway calls it as a client.

A dialect translates, and nothing else: the mock decides *what* a model answers (an `Answer`, or a
`Failure`) in one vocabulary, and the dialect says it in its provider's own words, on the routes that
provider serves. Going the other way, it reads a call into the one shape the recorder already knows
(an OpenAI chat-completions body: `messages`, `tools`, `model`, `stream`, and what the request asks of
the model), so identity, correlation, tools and needs are read once, the same for every API.

Finish reasons and failure kinds are the OpenAI names; each dialect maps them to its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from harness.core import events as ev

# What a model's answer ended with, in OpenAI's words: stop, length, tool_calls, content_filter.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]

# Why a call fails, whatever the API. outage: the provider is down (status says how: 500, 502, 503,
# 504); rate_limit: 429; overloaded: the provider's own capacity error (Anthropic's 529 and its peers);
# timeout: the provider gave up (504); content_policy: refused by its content policy; context_length:
# the prompt is over the context window; invalid: any other bad request (param names the field).
FailureKind = Literal["outage", "rate_limit", "overloaded", "timeout", "content_policy", "context_length",
                      "invalid"]

_JSON = "application/json"
STREAM_TAIL = 4096  # how much of a stream's end the fault proxy keeps to judge it (stream_outcome)
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


@dataclass(frozen=True)
class Answer:
    """What a model answers, whatever the wire format (a body or a stream)."""

    text: str | None
    finish_reason: FinishReason = "stop"
    tool_calls: tuple[dict[str, Any], ...] = ()   # OpenAI tool calls: {"id", "type", "function": {name, arguments}}
    system_fingerprint: str | None = None


@dataclass(frozen=True)
class Meta:
    """Who answers, as the wire names it."""

    response_id: str        # unique per call (the provider's own id format is the dialect's business)
    created: int            # epoch seconds
    model: str              # the model name the answer reports
    prompt_tokens: int = 8


@dataclass(frozen=True)
class Failure:
    """A call that fails, before its words: the dialect renders it."""

    kind: FailureKind
    status: int                          # the HTTP status, as the scenario or the mock chose it
    message: str
    retry_after_s: float | None = None   # tell the client when to come back (Retry-After, whole seconds up)
    param: str | None = None             # invalid: which field
    code: str | None = None              # a named error of this API (an ErrorEffect's `code`), or None


@dataclass(frozen=True)
class ClientTarget:
    """A provider as the reference gateway calls it."""

    url: str                 # base URL, no trailing slash
    model: str               # the model / deployment / model id the provider serves
    key: str                 # the credential (for bedrock: the access key id)
    secret: str | None = None  # bedrock: the secret access key it signs with
    region: str = "us-east-1"


@dataclass(frozen=True)
class ClientCall:
    """One HTTP request to a provider, ready to send."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class ClientAnswer:
    """A provider's buffered answer, turned into OpenAI's chat-completions words for the gateway's client.

    cause: None for a success; otherwise what failed in the vocabulary of `policy.fallback_on`: the status,
    or "context_length" for a prompt over the context window (a refusal, not an outage)."""

    status: int
    body: bytes                      # an OpenAI chat completion, or an OpenAI error body
    cause: int | str | None = None
    retry_after: str | None = None


class StreamTranslator:
    """Turns a provider's stream into OpenAI chat-completion chunks, piece by piece as bytes arrive."""

    def feed(self, data: bytes) -> list[bytes]:
        """OpenAI SSE events (`data: {...}\\n\\n`, and `data: [DONE]\\n\\n` at the end) for these bytes."""
        raise NotImplementedError

    @property
    def complete(self) -> bool:
        """The provider's stream ended as a whole answer ends (its final event seen)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Route:
    method: str
    path: str                # an aiohttp route pattern


@dataclass
class ProviderApi:
    """One provider API. Subclasses override what differs from OpenAI's chat completions."""

    name: str = "openai"
    routes: Sequence[Route] = field(default_factory=tuple)
    # A content-policy refusal is an answer (HTTP 200, finish reason content_filter) on this API, not an error.
    refuses_in_band: bool = False
    # The status of this API's own capacity error (the `overloaded` effect).
    overloaded_status: int = 503
    # Named errors of this API a scenario may ask for (ErrorEffect.code), with the status each comes with.
    error_codes: dict[str, int] = field(default_factory=dict)
    # The content types of this API's streams: the fault proxy relays them event by event (and can cut them).
    stream_content_types: tuple[str, ...] = ("text/event-stream",)

    # -- the mock and the fault proxy: reading a call -----------------------------------------------
    def credential(self, request: web.Request, raw: bytes, secrets: Mapping[str, str]) -> str | None:
        """The credential the call carries, as the string whose fingerprint names the identity.
        `secrets`: signing secrets by access key id (bedrock: a call is an identity's only when its SigV4
        signature verifies against that identity's secret; otherwise the dialect returns a string no
        identity's fingerprint matches)."""
        raise NotImplementedError

    def canonical(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        """The call as an OpenAI chat-completions body: `model`, `messages` (role + text content or
        content parts with `text` / `image_url`), `tools` (function tools), `stream` (from the path where
        the API says it there), `max_tokens`, `response_format`, `tool_choice`, `seed` where it asks them."""
        raise NotImplementedError

    # -- the mock: answering ------------------------------------------------------------------------
    def respond(self, request: web.Request, answer: Answer, meta: Meta,
                headers: dict[str, str] | None = None) -> web.StreamResponse:
        raise NotImplementedError

    def stream(self, request: web.Request, answer: Answer, meta: Meta) -> tuple[dict[str, str], list[bytes]]:
        """The headers and the whole streamed answer, one complete event per item: an item is one chunk for
        the cut effect, and the last item is the end marker a cut never lets through."""
        raise NotImplementedError

    def error(self, request: web.Request, failure: Failure) -> web.Response:
        raise NotImplementedError

    # -- the fault proxy: judging an upstream's answer ------------------------------------------------
    def outcome(self, status: int, body: bytes) -> ev.UpstreamOutcome:
        """The outcome of a buffered answer: ok, error, content_policy, context_length, overloaded."""
        raise NotImplementedError

    def stream_outcome(self, status: int, tail: bytes) -> ev.UpstreamOutcome:
        """The outcome of a whole streamed answer, from its last bytes (`tail`, up to STREAM_TAIL): where an
        API says a refusal in its stream's last events (a stop reason), it is content_policy, else ok."""
        return self.outcome(status, b"")

    def forward_headers(self, method: str, url: str, headers: dict[str, str], body: bytes,
                        secrets: Mapping[str, str]) -> dict[str, str]:
        """The headers the fault proxy sends its upstream for a call whose credential verified. A signed API
        (bedrock) re-signs for the upstream's own host, as the gateway would had it called the upstream
        directly; every other API forwards them as they came."""
        return headers

    def split(self, buffer: bytes, final: bool) -> tuple[list[bytes], bytes]:
        """Complete stream events and the unfinished rest (at the end, the rest too)."""
        raise NotImplementedError

    def is_end(self, event: bytes) -> bool:
        """The event that ends a whole streamed answer."""
        raise NotImplementedError

    def is_chunk(self, event: bytes) -> bool:
        """An event that counts as a chunk for the cut effect (not a comment or keep-alive)."""
        return True

    # -- the reference gateway: calling a provider of this API ---------------------------------------
    def client_call(self, target: ClientTarget, body: dict[str, Any], stream: bool,
                    extra_headers: dict[str, str]) -> ClientCall:
        """The request for an OpenAI chat-completions `body`, in this API's words."""
        raise NotImplementedError

    def client_answer(self, status: int, headers: dict[str, str], body: bytes, model: str) -> ClientAnswer:
        raise NotImplementedError

    def client_stream(self, model: str) -> StreamTranslator:
        raise NotImplementedError


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type=_JSON, headers=headers)


def retry_after(failure: Failure) -> dict[str, str]:
    """Retry-After in whole seconds, rounded up: never tell a client to come back early."""
    if failure.retry_after_s is None:
        return {}
    return {"Retry-After": str(math.ceil(failure.retry_after_s))}

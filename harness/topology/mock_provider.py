"""An OpenAI-compatible mock provider: the ground truth of every run.

Each call is recorded as one `upstream` event the moment its outcome is decided (before a
timeout hangs, before a reset), so even a run killed mid-request keeps what the provider saw:
which identity called (as a fingerprint mapped to a name, never the key), which tools were
offered, and for which request (the correlation token in the message content).

`ProviderEndpoint` is what the mock and the fault proxy (`fault_proxy.py`) share: parsing a call,
choosing its fault, applying the effects that need no upstream, recording, and mounting the
control endpoint (`faults_table.FaultControl`). They differ only in `serve`: how a call that no
fault stops is answered.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from aiohttp import web

from harness.core import events as ev
from harness.core.capabilities import Needs, context_needed, example_of, needs_of_body, pad_to_tokens, text_tokens
from harness.core.correlation import Correlation, find
from harness.core.events import EventSink
from harness.core.identity import NO_CREDENTIAL, NOT_AN_IDENTITY, UNKNOWN_IDENTITY, fingerprint
from harness.core.model import Capabilities
from harness.topology.apis import api_named
from harness.topology.apis.base import Answer, Failure, Meta, ProviderApi
from harness.topology.apis.openai import completion_json, json_error, stream_events
from harness.topology.faults_table import ActiveFault, FaultControl, FaultTable

REQUEST_ID_HEADER = "x-harness-request-id"
FAULTS_KEY: web.AppKey[FaultTable] = web.AppKey("faults", FaultTable)
_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_STREAM_PIECES = 4
OPENAI = "openai"
CHAT_PATH = "/chat/completions"  # an OpenAI call read and answered on the fast paths it always had
MAX_BODY = 16 * 1024 * 1024  # long conversations are legitimate traffic; aiohttp's 1 MiB default is not enough

try:  # an accelerator where installed (it is not a dependency): ~4x faster on request bodies
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - depends on the machine
    _fast_loads = None


def load_body(raw: bytes) -> Any:
    """`json.loads(raw)` as far as a call's record goes. orjson parses what it accepts (strict RFC 8259
    UTF-8); anything else (UTF-16, a BOM, NaN, lone surrogates, invalid JSON) goes to json.loads, which
    decides as it always has. The one difference, an integer beyond 64 bits read as a float, touches
    nothing parse() reads: it takes only strings from the body, and `stream`'s truth value."""
    if _fast_loads is not None:
        try:
            return _fast_loads(raw)
        except ValueError:
            pass
    return json.loads(raw)


@dataclass(frozen=True)
class Persona:
    """Who a model answers as, and what it can serve: a provider's own, or, under a vendor fallback,
    another provider's."""

    name: str
    model: str                                  # the model name its answers report
    region: str
    capabilities: Capabilities = field(default_factory=Capabilities)
    system_fingerprint: str | None = None
    region_header: str | None = None

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Persona:
        profile = data.get("profile") or {}
        return cls(name=name, model=str(profile.get("model") or data["model"]), region=str(data["region"]),
                   capabilities=Capabilities.model_validate(data.get("capabilities") or {}),
                   system_fingerprint=profile.get("system_fingerprint"), region_header=profile.get("region_header"))

    @property
    def plain(self) -> bool:
        """Answers exactly as the mock always has: no capability limit, no profile beyond its model name."""
        return not self.capabilities.limited and self.system_fingerprint is None and self.region_header is None


@dataclass(frozen=True)
class ProviderSpec:
    model: str
    region: str
    identity: str
    tools: list[str] = field(default_factory=list)
    data_classes: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    persona: Persona | None = None               # how it answers (None: as `model`, unlimited)
    vendor: Persona | None = None                # vendor_fallback: who it answers as under a fault
    api: str = OPENAI                            # the wire dialect it speaks (harness.topology.apis)

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "", others: dict[str, Any] | None = None) -> ProviderSpec:
        """`others`: every provider of the run, where a vendor_fallback's `to` is looked up."""
        vendor = None
        reroute = data.get("vendor_fallback")
        if reroute and others and reroute.get("to") in others:
            vendor = Persona.from_dict(str(reroute["to"]), others[reroute["to"]])
        return cls(
            model=str(data["model"]), region=str(data["region"]), identity=str(data["identity"]),
            tools=[str(t) for t in data.get("tools", [])],
            data_classes=[str(d) for d in data.get("data_classes", [])],
            latency_ms=float(data.get("latency_ms", 0.0)),
            persona=Persona.from_dict(name, data), vendor=vendor, api=str(data.get("api") or OPENAI),
        )

    def own_persona(self, name: str) -> Persona:
        return self.persona or Persona(name, self.model, self.region)


class Call(NamedTuple):
    """What the provider learned about one call before deciding its outcome.

    A NamedTuple rather than a frozen dataclass: just as immutable, and built once per call on
    the hot path at a fraction of the cost (a frozen dataclass sets each field through
    object.__setattr__).
    """

    ts: float
    corr: Correlation | None
    corr_id: str | None
    identity: str
    key_fp: str | None
    tools: list[str]
    model: str | None
    stream: bool
    valid: bool = True              # the body is a JSON object
    needs: Needs | None = None      # what the request asks of the model (None: a plain chat answer)
    problem: str | None = None      # why the call is not valid, in its API's words (what it lacks)


def _correlation(messages: Any) -> Correlation | None:
    if not isinstance(messages, list):
        return None
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts = [content]
        elif isinstance(content, list):
            texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        else:
            continue
        for text in texts:
            if "[[harness:" in text:  # cheap pre-test before the regex
                found = find(text)
                if found is not None:
                    return found
    return None


def _tool_names(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            fn = tool.get("function")
            name = fn.get("name") if isinstance(fn, dict) else tool.get("name") or tool.get("type")
            if isinstance(name, str) and name not in names:
                names.append(name)
    for fn in body.get("functions") or []:  # the legacy function-calling field
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


# Body keys that ask something of the model: a body without any of them gets the plain answer unparsed.
_NEED_KEYS = frozenset(("response_format", "tool_choice", "seed", "max_tokens", "max_completion_tokens"))


def context_error(limit: int, needs: Needs) -> Failure:
    """A prompt over the context window (OpenAI's words: a 400 `context_length_exceeded`)."""
    total = context_needed(needs)
    return Failure("context_length", 400, f"This model's maximum context length is {limit} tokens. However, you "
                   f"requested {total} tokens ({needs.prompt_tokens} in the messages, {needs.max_tokens or 0} in "
                   f"the completion). Please reduce the length of the messages or completion.", param="messages")


def refusal(needs: Needs, caps: Capabilities) -> tuple[str, Failure] | None:
    """A request this model refuses outright, as the real API does: (upstream outcome, the 400), or None."""
    if caps.context_tokens is not None and context_needed(needs) > caps.context_tokens:
        return "context_length", context_error(caps.context_tokens, needs)
    if needs.images and not caps.vision:
        return "error", Failure("invalid", 400, "Invalid content type. image_url is only supported by certain "
                                "models.", param="messages")
    if caps.tools and needs.tool_choice not in (None, "auto", "required", "none") and (
            needs.tool_choice not in needs.tools):
        return "error", Failure("invalid", 400, f"Invalid value for 'tool_choice': no function named "
                                f"'{needs.tool_choice}' was specified in the 'tools' parameter.", param="tool_choice")
    return None


def answer_for(needs: Needs | None, persona: Persona, plain_text: str, nonce: str) -> Answer:
    """What a model with `persona`'s capabilities answers to a request needing `needs`, as real models do:
    JSON for a schema only with structured output (else it ignores response_format), a tool call only
    with tool calling (else prose), a seeded answer that repeats only with a deterministic seed, and an
    answer cut at its output limit with finish_reason length. An answer is half the budget asked for."""
    caps = persona.capabilities
    fp = persona.system_fingerprint
    if needs is None:
        return _clamped(plain_text, None, caps, fp)
    if needs.uses_tools and caps.tools:
        name = needs.tool_choice if needs.tool_choice in needs.tools else needs.tools[0]
        call = {"id": f"call_{nonce}", "type": "function", "function": {"name": name, "arguments": "{}"}}
        return Answer(None, "tool_calls", (call,), fp)
    text = plain_text
    if needs.seed is not None:
        # The answer depends on the seed and the model only (not on the request id in the prompt), so two
        # requests with one seed can be compared; without a deterministic seed it varies per call.
        text = f"seeded answer {needs.seed} from {persona.model}"
        if not caps.deterministic_seed:
            text += f" ({nonce})"
    if needs.response_format is not None and caps.structured_output:
        schema = needs.schema_dict()
        text = json.dumps(example_of(schema) if schema is not None else {"answer": text})
    elif needs.max_tokens is not None:
        text = pad_to_tokens(text, -(-needs.max_tokens // 2) + 4)
    return _clamped(text, needs.max_tokens, caps, fp)


def _clamped(text: str, max_tokens: int | None, caps: Capabilities, fp: str | None) -> Answer:
    limits = [n for n in (max_tokens, caps.max_output_tokens) if n is not None]
    if limits and text_tokens(text) > min(limits):
        return Answer(text[:min(limits) * 4], "length", (), fp)
    return Answer(text, "stop", (), fp)


def reset_connection(request: web.Request, hard: bool = True) -> None:
    """Drop the TCP connection with no (further) response, as a crashed upstream does.

    hard: with an RST. A cut passes hard=False: an RST can overtake the chunks already written and
    make the client's kernel discard them, so the line is closed without finishing the body instead.
    """
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket") if hard else None
    if sock is not None:
        try:  # linger 0 turns close() into an RST, so the client sees a reset, not a clean EOF
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def cut_after(fault: ActiveFault | None) -> int | None:
    """How many chunks a cut fault lets through, None when the answer is not to be cut."""
    return fault.effect.after_chunks if fault is not None and fault.effect.kind == "cut" else None


class ProviderEndpoint:
    # The mock refuses a body that is not a JSON object; the proxy leaves that to its upstream.
    refuses_invalid_body = True
    # Read what every body asks of the model (a model with limits refuses or degrades on it).
    reads_needs = False

    def __init__(self, name: str, spec: ProviderSpec, sink: EventSink, control_token: str,
                 identities_by_fp: dict[str, str], seed: int, secrets: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.spec = spec
        self.sink = sink
        self.token = control_token
        self.identities = dict(identities_by_fp)
        self.faults = FaultTable(seed)
        self.base_delay_s = spec.latency_ms / 1000.0
        self.api: ProviderApi = api_named(spec.api)
        # OpenAI's chat completions is read and answered on the fast paths it always had.
        self.openai = spec.api == OPENAI
        self.secrets: Mapping[str, str] = dict(secrets or {})  # signing secrets by access key id (bedrock)

    # -- the model endpoint ------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        ts = time.time()
        raw = await request.read()
        call = self.parse(request, raw, ts)
        if not call.valid and self.refuses_invalid_body:
            if self.openai and call.problem is None:
                refused = json_error(400, "the body is not a JSON object", "invalid_request_error", "invalid_json")
            else:  # in its API's words (Azure answers a call without api-version 404): recorded as answered
                refused = self.api.error(request, Failure("invalid", 400, call.problem or "the body is not a JSON "
                                                          "object"))
            self.record(call, refused.status, "error", None)
            return refused
        fault = self.faults.select(call.corr, call.corr_id, ts)
        if fault is None:
            return await self.serve(request, call, raw, self.base_delay_s, None)
        if self.reroutes(fault):
            return await self.serve(request, call, raw, self.base_delay_s, fault)
        return await self._apply(request, call, raw, fault)

    def reroutes(self, fault: ActiveFault) -> bool:
        """Whether this fault is answered by the vendor's own fallback instead of failing (mock only)."""
        return False

    def parse(self, request: web.Request, raw: bytes, ts: float) -> Call:
        key = self.api.credential(request, raw, self.secrets)
        # The key itself goes no further than this line: only its fingerprint is kept.
        key_fp = fingerprint(key) if key else None
        identity = (self.identities.get(key_fp, UNKNOWN_IDENTITY) if key_fp else NO_CREDENTIAL)
        problem: str | None = None
        try:
            body = load_body(raw)
            if (not self.openai or not request.path.endswith(CHAT_PATH)) and isinstance(body, dict):
                body = self.api.canonical(request, body)  # read as a chat-completions body from here on
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            body, problem = None, str(exc) or None
        if not isinstance(body, dict):
            # A call its API refuses (a missing field) still belongs to its request: the token is in the text.
            corr = find(raw.decode("utf-8", "replace")) if problem is not None and b"[[harness:" in raw else None
            corr_id = corr.id if corr is not None else request.headers.get(REQUEST_ID_HEADER)
            return Call(ts, corr, corr_id, identity, key_fp, [], None, False, False, problem=problem)
        corr = _correlation(body.get("messages"))
        corr_id = corr.id if corr is not None else request.headers.get(REQUEST_ID_HEADER)
        model = body.get("model")
        # The whole body is read for what it asks only where that can change the answer: most calls skip it.
        needs = needs_of_body(body) if self.reads_needs or not _NEED_KEYS.isdisjoint(body) else None
        return Call(ts, corr, corr_id, identity, key_fp, _tool_names(body), model if isinstance(model, str) else None,
                    bool(body.get("stream")), True, needs)

    async def serve(self, request: web.Request, call: Call, raw: bytes, delay_s: float,
                    fault: ActiveFault | None) -> web.StreamResponse:
        """Answer a call no fault stopped: unfaulted, slowed by a latency fault, or a stream to cut."""
        raise NotImplementedError

    async def _apply(self, request: web.Request, call: Call, raw: bytes, fault: ActiveFault) -> web.StreamResponse:
        effect = fault.effect
        if effect.kind == "latency":
            return await self.serve(request, call, raw, self.base_delay_s + effect.ms / 1000.0, fault)
        if effect.kind == "cut" and call.stream:
            return await self.serve(request, call, raw, self.base_delay_s, fault)
        if effect.kind == "error":
            kind = "rate_limit" if effect.status == 429 else "outage"
            response = self.api.error(request, Failure(kind, effect.status, f"injected fault {fault.name}",
                                                       effect.retry_after_s, code=effect.code))
            # Recorded as the provider's words say it (a named error may be its capacity error: overloaded),
            # so the mock and the fault proxy in front of a real provider record one answer alike.
            outcome: ev.UpstreamOutcome = "error" if self.openai else self.api.outcome(
                response.status, cast(bytes, response.body))
            self.record(call, effect.status, outcome, fault.name)
            await self.delay(self.base_delay_s)
            return response
        if effect.kind == "overloaded":
            status = self.api.overloaded_status
            self.record(call, status, "overloaded", fault.name)
            await self.delay(self.base_delay_s)
            return self.api.error(request, Failure("overloaded", status, f"injected fault {fault.name}: "
                                                   "the model is overloaded", effect.retry_after_s))
        if effect.kind == "content_policy":
            if self.api.refuses_in_band:  # a refusal that is an answer: handed to serve, which says it
                return await self.serve(request, call, raw, self.base_delay_s, fault)
            self.record(call, effect.status, "content_policy", fault.name)
            await self.delay(self.base_delay_s)
            return self.api.error(request, Failure("content_policy", effect.status,
                                                   "the request was rejected by the content policy"))
        if effect.kind == "timeout":
            self.record(call, 0, "timeout", fault.name)
            # Never hang past the deadline: the outage must end when the fault does.
            await self.delay(max(0.0, min(effect.hold_s, fault.deadline_ts - time.time())))
            return self.api.error(request, Failure("timeout", 504, f"injected timeout {fault.name}"))
        # reset, and a cut of an answer that is no stream (there is nothing to cut part-way)
        note = "a cut of a request that is no stream acts as a reset" if effect.kind == "cut" else None
        self.record(call, 0, "reset", fault.name, note)
        reset_connection(request)
        # Nothing can be written any more; a bare response lets aiohttp finish the handler quietly.
        return web.Response(status=500)

    @staticmethod
    async def delay(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def record(self, call: Call, status: int, outcome: ev.UpstreamOutcome, fault: str | None,
               note: str | None = None, vendor_reroute: str | None = None,
               extra: dict[str, Any] | None = None) -> None:
        # A call no identity of the run made (an unknown credential, or none) is recorded, but as nobody's:
        # anybody on this machine can reach a provider and copy a correlation token into a prompt, so the
        # token alone proves nothing. It keeps the id it claims in `claimed_id`, and no tenant, region or
        # class (they came with that claim); `id` stays None and no check joins it to that request.
        known = call.identity not in NOT_AN_IDENTITY
        corr = call.corr if known else None
        event: ev.UpstreamEvent = {
            "type": ev.UPSTREAM, "ts": call.ts, "id": call.corr_id if known else None, "provider": self.name,
            "identity": call.identity, "key_fp": call.key_fp, "tools": call.tools, "model": call.model,
            "stream": call.stream, "status": status, "outcome": outcome, "fault": fault,
            "tenant": corr.tenant if corr else None, "request_class": corr.request_class if corr else None,
            "region": corr.region if corr else None, "data_class": corr.data_class if corr else None,
        }
        # A note (why a cut or a proxy failure ended as it did) is for people reading the ledger;
        # no check reads it, so the event contract in core stays as it is. The event is a fresh
        # dict of this call's own: handed over as it is, no copy.
        if vendor_reroute is not None:  # only then: every other event stays as it always was
            event["vendor_reroute"] = vendor_reroute
        if not self.openai:  # likewise: an OpenAI provider's events are what they always were
            event["api"] = self.api.name  # type: ignore[typeddict-unknown-key]
        if not known:
            event.update({"caller": ev.UNKNOWN_CALLER, "claimed_id": call.corr_id})  # type: ignore[typeddict-item]
        if extra:
            event.update(extra)  # type: ignore[typeddict-item]
        self.sink.append({**event, "note": note} if note else cast(dict[str, Any], event))

    async def unserved(self, request: web.Request) -> web.Response:
        """Any path the provider's API does not serve: answered 404 in the API's words, and recorded when it
        names a request (with the path, the served path it comes closest to, and that request) so that a
        gateway posting the run's traffic to the wrong path is seen from the provider's side, not guessed
        from the client's 404s."""
        ts = time.time()
        raw = await request.read()
        try:
            call = self.parse(request, raw, ts)
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeError):
            call = Call(ts, None, request.headers.get(REQUEST_ID_HEADER), NO_CREDENTIAL, None, [], None, False, False)
        failure = Failure("invalid", 404, f"no route for {request.method} {request.path}", code="not_found")
        if call.corr_id is None:
            # It names no request (a gateway's own GET /v1/models at start-up, a port scan): no request's
            # evidence, and no traffic of the run on the wrong path. Answered, not recorded, as before.
            return self.api.error(request, failure)
        serves = closest_route(request.path, [route.path for route in self.api.routes])
        self.record(call, 404, "error", None, f"{request.method} {request.path} is not served by this API",
                    extra={"not_served": True, "path": request.path, "serves": serves})
        return self.api.error(request, failure)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "provider": self.name, "model": self.spec.model,
                                  "region": self.spec.region})

    def mount_control(self, app: web.Application) -> None:
        """The control endpoint: added before any catch-all route, so it is never forwarded."""
        app[FAULTS_KEY] = self.faults
        FaultControl(self.faults, self.token).mount(app)
        app.router.add_get("/_harness/health", self.health)


class MockProvider(ProviderEndpoint):
    def __init__(self, name: str, spec: ProviderSpec, sink: EventSink, control_token: str,
                 identities_by_fp: dict[str, str], seed: int, secrets: Mapping[str, str] | None = None) -> None:
        super().__init__(name, spec, sink, control_token, identities_by_fp, seed, secrets)
        self.persona = spec.own_persona(name)
        self.plain = self.persona.plain
        self.reads_needs = not self.plain or spec.vendor is not None
        self._calls = 0

    def reroutes(self, fault: ActiveFault) -> bool:
        # A slowed answer or a cut stream is still this provider's own; any outage is the vendor's to hide.
        return self.spec.vendor is not None and fault.effect.kind not in ("latency", "cut")

    async def serve(self, request: web.Request, call: Call, raw: bytes, delay_s: float,
                    fault: ActiveFault | None) -> web.StreamResponse:
        persona = self.persona
        vendor: str | None = None
        if fault is not None and self.reroutes(fault):
            assert self.spec.vendor is not None
            persona, vendor = self.spec.vendor, self.spec.vendor.name
        needs = call.needs
        if needs is not None:
            refused = refusal(needs, persona.capabilities)
            if refused is not None:
                outcome, failure = refused
                self.record(call, 400, cast(ev.UpstreamOutcome, outcome), fault.name if fault else None,
                            vendor_reroute=vendor)
                await self.delay(delay_s)
                return self.api.error(request, failure)
        # An API whose content-policy refusal is an answer (Anthropic, Gemini, Bedrock) says it with HTTP 200.
        refuses = fault is not None and fault.effect.kind == "content_policy"
        cut = cut_after(fault)
        if refuses:
            self.record(call, 200, "content_policy", fault.name if fault else None)
        elif cut is None:
            self.record(call, 200, "ok", fault.name if fault else None, vendor_reroute=vendor)
        else:
            # Decided now: the stream will break. "reset" is the outcome a dropped connection has.
            self.record(call, 0, "reset", fault.name if fault else None, f"stream cut after {cut} chunks")
        if delay_s > 0:  # no coroutine at all on the common, undelayed path
            await self.delay(delay_s)
        text = f"reply to {call.corr_id or 'unknown'} from {self.name}"
        completion_id = f"chatcmpl-{self.name}-{call.corr_id or 'x'}"
        headers = _SSE_HEADERS if call.stream else None
        if self.openai and persona is self.persona and self.plain and needs is None and request.path.endswith(
                CHAT_PATH):
            if not call.stream:
                return web.Response(body=completion_json(completion_id, int(call.ts), persona.model, text),
                                    content_type=_JSON, charset="utf-8")
            events = stream_events(completion_id, int(call.ts), persona.model, text, _STREAM_PIECES)
        else:
            self._calls += 1
            if refuses:
                answer = Answer(None, "content_filter")
            else:
                answer = answer_for(needs, persona, text, f"{self.name}-{self._calls}")
            where = {persona.region_header: persona.region} if persona.region_header else {}
            meta = Meta(completion_id, int(call.ts), persona.model)
            if not call.stream:
                return self.api.respond(request, answer, meta, where or None)
            stream_headers, events = self.api.stream(request, answer, meta)  # its own content type (SSE or not)
            headers = {**stream_headers, **where}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        # A cut never lets the final event through, however large after_chunks is: it always breaks.
        for event in events if cut is None else events[:min(cut, len(events) - 1)]:
            await response.write(event)
        if cut is not None:
            reset_connection(request, hard=False)
            return response
        await response.write_eof()
        return response


def closest_route(path: str, served: list[str]) -> str | None:
    """The served route path ending most like `path` (segment by segment, a {pattern} segment matching
    any): `/chat/completions` -> `/v1/chat/completions`."""
    def tail(route: str) -> int:
        mine, theirs = path.strip("/").split("/"), route.strip("/").split("/")
        n = 0
        while n < min(len(mine), len(theirs)):
            segment = theirs[-1 - n]
            if segment != mine[-1 - n] and not (segment.startswith("{") and segment.endswith("}")):
                break
            n += 1
        return n
    best = max(served, key=tail, default=None)
    return best if best is not None and tail(best) else (served[0] if served else None)


def build_provider_app(name: str, spec: ProviderSpec, sink: EventSink, control_token: str,
                       identities_by_fp: dict[str, str], seed: int,
                       secrets: Mapping[str, str] | None = None) -> web.Application:
    """A mock provider on the routes of its API. `secrets`: signing secrets by access key id (bedrock)."""
    provider = MockProvider(name, spec, sink, control_token, identities_by_fp, seed, secrets)
    app = web.Application(client_max_size=MAX_BODY)
    provider.mount_control(app)
    for route in provider.api.routes:
        app.router.add_route(route.method, route.path, provider.chat)
    app.router.add_route("*", "/{tail:.*}", provider.unserved)  # last: only what no route above serves
    return app

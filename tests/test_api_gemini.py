"""The Gemini dialect, judged by Google's own SDK (google-genai): a mock provider speaking the Gemini API,
the fault proxy in front of one, and the reference gateway's client side calling one.

SDK calls are sync: they run in a thread (asyncio.to_thread) while the servers run on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import httpx2
import pytest
from aiohttp.test_utils import make_mocked_request
from conftest_topology import ListSink
from google import genai
from google.genai import errors, types

from harness.core.correlation import Correlation
from harness.core.identity import NO_CREDENTIAL, UNKNOWN_IDENTITY, fingerprint
from harness.topology.apis import api_named
from harness.topology.apis.base import Answer, ClientTarget, Meta, StreamTranslator
from harness.topology.apis.gemini import API, gemini_request
from harness.topology.fault_proxy import build_proxy_app
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.serving import start_app

TOKEN = "control-secret"
KEY = "AIzaSy-test-eu-0123456789"
IDENTITIES = {fingerprint(KEY): "svc-gemini"}
MODEL = "gemini-2.0-flash"
NAME = "gem-eu"
T = TypeVar("T")


def spec(**extra: Any) -> ProviderSpec:
    return ProviderSpec.from_dict({"model": MODEL, "region": "eu", "identity": "svc-gemini", "api": "gemini",
                                   "tools": ["search"], **extra}, NAME)


def token(rid: str) -> str:
    return Correlation(rid, "acme", "chat", "eu", "internal").token()


@asynccontextmanager
async def mock(provider: ProviderSpec | None = None,
               sink: ListSink | None = None) -> AsyncIterator[tuple[str, ListSink, aiohttp.ClientSession]]:
    sink = sink if sink is not None else ListSink()
    runner, url = await start_app(build_provider_app(NAME, provider or spec(), sink, TOKEN, IDENTITIES, 7))
    try:
        async with aiohttp.ClientSession() as session:
            yield url, sink, session
    finally:
        await runner.cleanup()


async def put_fault(session: aiohttp.ClientSession, url: str, effect: dict[str, Any], name: str = "f1") -> None:
    body = {"effect": effect, "match": None, "probability": 1.0, "deadline_ts": time.time() + 30}
    async with session.put(f"{url}/_harness/faults/{name}", json=body, headers={"x-harness-token": TOKEN}) as resp:
        assert resp.status == 200, await resp.text()


def client(url: str, attempts: int | None = None, api_version: str | None = None) -> genai.Client:
    """The SDK as shipped, pointed at 127.0.0.1; with `attempts`, its own retries without backoff."""
    retry = (types.HttpRetryOptions(attempts=attempts, initial_delay=0.0, max_delay=0.0, jitter=0.0)
             if attempts else None)
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=url, api_version=api_version, retry_options=retry, client_args={"trust_env": False}))


async def call(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def generate(c: genai.Client, rid: str, config: types.GenerateContentConfig | None = None,
             prompt: str = "hello") -> Callable[[], types.GenerateContentResponse]:
    return lambda: c.models.generate_content(model=MODEL, contents=f"{prompt} {token(rid)}", config=config)


def stream(c: genai.Client, rid: str,
           config: types.GenerateContentConfig | None = None) -> Callable[[], list[types.GenerateContentResponse]]:
    return lambda: list(c.models.generate_content_stream(model=MODEL, contents=f"hello {token(rid)}", config=config))


def only(sink: ListSink) -> dict[str, Any]:
    [event] = sink.upstream()
    return event


SEARCH = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="search", description="web search",
    parameters_json_schema={"type": "object", "properties": {"q": {"type": "string"}}})])
FORCE_SEARCH = types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
    mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["search"]))


# -- the mock, through the SDK -------------------------------------------------------------------------
@pytest.mark.parametrize("api_version", [None, "v1beta"])  # None: the SDK's default (v1)
def test_generate_content(api_version: str | None) -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, _):
            response = await call(generate(client(url, api_version=api_version), "r1"))
            assert response.text == f"reply to r1 from {NAME}"
            assert response.model_version == MODEL and response.response_id
            assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
            assert response.usage_metadata and response.usage_metadata.total_token_count == 8 + 5
            event = only(sink)
            assert (event["api"], event["identity"], event["key_fp"]) == ("gemini", "svc-gemini", fingerprint(KEY))
            assert (event["id"], event["tenant"], event["model"], event["stream"]) == ("r1", "acme", MODEL, False)
            assert (event["status"], event["outcome"], event["tools"]) == (200, "ok", [])
            assert KEY not in json.dumps(sink.events)

    asyncio.run(scenario())


def test_correlation_in_the_system_instruction_only() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, _):
            config = types.GenerateContentConfig(system_instruction=f"be brief {token('r-sys')}")
            c = client(url)
            response = await call(lambda: c.models.generate_content(model=MODEL, contents="hi", config=config))
            assert response.text == f"reply to r-sys from {NAME}"
            assert only(sink)["id"] == "r-sys"

    asyncio.run(scenario())


def test_stream() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            chunks = await call(stream(client(url), "r2"))
            assert len(chunks) > 1
            assert "".join(c.text or "" for c in chunks) == f"reply to r2 from {NAME}"
            assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
            assert all(not c.candidates or c.candidates[0].finish_reason is None for c in chunks[:-1])
            assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.candidates_token_count == 5
            assert (only(sink)["stream"], only(sink)["outcome"], only(sink)["api"]) == (True, "ok", "gemini")
            # The wire as Gemini writes it: SSE events ending in CRLF CRLF.
            async with session.post(f"{url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
                                    json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
                                    headers={"x-goog-api-key": KEY}) as resp:
                assert resp.content_type == "text/event-stream"
                raw = await resp.read()
            events = [e for e in raw.split(b"\r\n\r\n") if e]
            assert all(e.startswith(b"data: {") for e in events) and raw.endswith(b"\r\n\r\n")
            assert b"finishReason" in events[-1] and not any(b"finishReason" in e for e in events[:-1])

    asyncio.run(scenario())


@pytest.mark.parametrize("streamed", [False, True])
def test_function_call(streamed: bool) -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, _):
            config = types.GenerateContentConfig(tools=[SEARCH], tool_config=FORCE_SEARCH)
            c = client(url)
            if streamed:
                [response] = await call(stream(c, "r3", config))  # Gemini sends a function call whole
            else:
                response = await call(generate(c, "r3", config))
            assert response.function_calls and response.function_calls[0].name == "search"
            assert response.function_calls[0].args == {}
            assert response.text is None
            assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
            assert (only(sink)["tools"], only(sink)["outcome"]) == (["search"], "ok")

    asyncio.run(scenario())


def test_json_mode_with_a_schema() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, _):
            schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}
            for config in (types.GenerateContentConfig(response_mime_type="application/json", response_schema=schema),
                           types.GenerateContentConfig(response_mime_type="application/json",
                                                       response_json_schema=schema)):
                response = await call(generate(client(url), "r4", config))
                assert response.text is not None
                assert json.loads(response.text) == {"city": "x", "n": 1}
            assert [e["outcome"] for e in sink.upstream()] == ["ok", "ok"]

    asyncio.run(scenario())


def test_output_limit_is_max_tokens() -> None:
    async def scenario() -> None:
        async with mock(spec(capabilities={"max_output_tokens": 3})) as (url, _, _):
            config = types.GenerateContentConfig(max_output_tokens=200)
            response = await call(generate(client(url), "r5", config))
            assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
            assert response.text and len(response.text) <= 12

    asyncio.run(scenario())


# Each error effect: the SDK's own exception, its code and status, and how many calls its retry made.
ERRORS = [
    ({"kind": "error", "status": 429, "retry_after_s": 2}, errors.ClientError, 429, "RESOURCE_EXHAUSTED", 3, "error"),
    ({"kind": "error", "status": 500}, errors.ServerError, 500, "INTERNAL", 3, "error"),
    ({"kind": "error", "status": 503}, errors.ServerError, 503, "UNAVAILABLE", 3, "error"),
    ({"kind": "error", "status": 502}, errors.ServerError, 502, "Bad Gateway", 3, "error"),  # Google's HTML page
    ({"kind": "error", "status": 403, "code": "PERMISSION_DENIED"}, errors.ClientError, 403, "PERMISSION_DENIED", 1,
     "error"),
    ({"kind": "error", "status": 429, "code": "RESOURCE_EXHAUSTED"}, errors.ClientError, 429, "RESOURCE_EXHAUSTED", 3,
     "error"),
    # UNAVAILABLE by name is Gemini's usual 503, "The model is overloaded": recorded as the proxy would judge it
    ({"kind": "error", "status": 503, "code": "UNAVAILABLE"}, errors.ServerError, 503, "UNAVAILABLE", 3, "overloaded"),
    ({"kind": "overloaded"}, errors.ServerError, 503, "UNAVAILABLE", 3, "overloaded"),
    ({"kind": "timeout", "hold_s": 0.05}, errors.ServerError, 504, "DEADLINE_EXCEEDED", 3, "timeout"),
]


@pytest.mark.parametrize(("effect", "exc_type", "code", "status", "calls", "outcome"), ERRORS,
                         ids=[f"{e[0]['kind']}-{e[2]}-{e[0].get('code')}" for e in ERRORS])
def test_errors_as_the_sdk_sees_them(effect: dict[str, Any], exc_type: type[errors.APIError], code: int,
                                     status: str, calls: int, outcome: str) -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            await put_fault(session, url, effect)
            with pytest.raises(exc_type) as caught:
                await call(generate(client(url, attempts=3), "r6"))
            assert (caught.value.code, caught.value.status) == (code, status)
            assert [e["outcome"] for e in sink.upstream("r6")] == [outcome] * calls
            assert all(e["api"] == "gemini" and e["identity"] == "svc-gemini" for e in sink.upstream())
            if outcome == "overloaded":
                assert caught.value.message == "The model is overloaded. Please try again later."
            if effect.get("retry_after_s"):  # Gemini says it in the body only: RetryInfo, no Retry-After header
                details = caught.value.details["error"]["details"]
                assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"} in details
                assert caught.value.response.headers.get("Retry-After") is None

    asyncio.run(scenario())


def test_errors_not_retried_without_retry_options() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            await put_fault(session, url, {"kind": "overloaded"})
            with pytest.raises(errors.ServerError):
                await call(generate(client(url), "r7"))
            assert len(sink.upstream("r7")) == 1

    asyncio.run(scenario())


def test_context_length() -> None:
    async def scenario() -> None:
        async with mock(spec(capabilities={"context_tokens": 50})) as (url, sink, _):
            with pytest.raises(errors.ClientError) as caught:
                await call(generate(client(url, attempts=3), "r8", prompt="word " * 200))
            assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
            assert caught.value.message is not None
            assert caught.value.message.startswith("The input token count (")
            assert caught.value.message.endswith("exceeds the maximum number of tokens allowed (50).")
            assert [(e["status"], e["outcome"]) for e in sink.upstream("r8")] == [(400, "context_length")]
            # the same body through the fault proxy's judge
            assert API.outcome(400, json.dumps({"error": {"code": 400, "message": caught.value.message,
                                                          "status": "INVALID_ARGUMENT"}}).encode()) == "context_length"

    asyncio.run(scenario())


@pytest.mark.parametrize("streamed", [False, True])
def test_safety_refusal_is_an_answer(streamed: bool) -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            await put_fault(session, url, {"kind": "content_policy"})
            c = client(url, attempts=3)
            response = (await call(stream(c, "r9")))[-1] if streamed else await call(generate(c, "r9"))
            assert response.text is None
            assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.SAFETY
            assert response.candidates[0].content is None  # a blocked candidate carries no content at all
            ratings = response.candidates[0].safety_ratings or []
            assert any(r.blocked and r.probability == types.HarmProbability.HIGH for r in ratings)
            assert [(e["status"], e["outcome"]) for e in sink.upstream("r9")] == [(200, "content_policy")]

    asyncio.run(scenario())


def test_cut_stream_breaks_in_the_sdk() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            await put_fault(session, url, {"kind": "cut", "after_chunks": 1})
            seen: list[str] = []

            c = client(url)  # held: a client nobody holds closes its connections

            def read() -> None:
                for chunk in c.models.generate_content_stream(model=MODEL, contents=f"hi {token('r10')}"):
                    seen.append(chunk.text or "")

            with pytest.raises(httpx2.TransportError):
                await call(read)
            assert seen == ["reply to"]  # the first event came through, the end never did
            assert (only(sink)["outcome"], only(sink)["stream"]) == ("reset", True)

    asyncio.run(scenario())


def test_reset_is_not_retried_by_the_sdk() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            await put_fault(session, url, {"kind": "reset"})
            with pytest.raises(httpx2.TransportError) as caught:
                await call(generate(client(url, attempts=3), "r11"))
            # google-genai retries only connect errors and timeouts: a dropped answer is not retried
            assert not isinstance(caught.value, httpx2.ConnectError | httpx2.TimeoutException)
            assert [e["outcome"] for e in sink.upstream("r11")] == ["reset"]

    asyncio.run(scenario())


# -- the wire without the SDK: key by query, the JSON-array stream, LiteLLM's paths and words ------------
def test_key_by_query_and_identities() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            body = {"contents": [{"role": "user", "parts": [{"text": f"hi {token('q1')}"}]}]}
            for query, headers in ((f"?key={KEY}", {}), ("", {}), ("?key=AIza-someone-else", {}),
                                   ("", {"Authorization": f"Bearer {KEY}"})):
                async with session.post(f"{url}/v1beta/models/{MODEL}:generateContent{query}", json=body,
                                        headers=headers) as resp:
                    assert resp.status == 200
            # a key as a Bearer token is no Gemini credential (Google would ask for an OAuth token)
            assert [e["identity"] for e in sink.claiming("q1")] == [
                "svc-gemini", NO_CREDENTIAL, UNKNOWN_IDENTITY, NO_CREDENTIAL]

    asyncio.run(scenario())


def test_unreadable_calls_are_refused_in_googles_words() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            path = f"{url}/v1beta/models/{MODEL}:generateContent"
            for data, message in ((json.dumps({"contents": "hi"}), "Invalid value at 'contents'"),
                                  (json.dumps({"generationConfig": {}}), "* GenerateContentRequest.contents"),
                                  ("not json", "")):
                async with session.post(path, data=data, headers={"x-goog-api-key": KEY}) as resp:
                    assert resp.status == 400
                    error = (await resp.json())["error"]
                assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
                assert error["message"].startswith(message)
            assert [(e["status"], e["outcome"], e["identity"]) for e in sink.upstream()] == [
                (400, "error", "svc-gemini")] * 3

    asyncio.run(scenario())


def portkey_chunks(raw: bytes) -> list[dict[str, Any]]:
    """Portkey's reading of Gemini's array stream (its google provider calls without alt=sse): split at
    CRLF, then strip '[', a trailing ',' and a trailing '\\n]' from each piece."""
    out = []
    for piece in raw.decode().split("\r\n"):
        text = piece.strip()
        text = text[1:] if text.startswith("[") else text
        text = text[:-1] if text.endswith(",") else text
        text = text[:-2] if text.endswith("]") else text
        out.append(json.loads(text.strip()))
    return out


def test_json_array_stream_without_alt_sse() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            body = {"contents": [{"role": "user", "parts": [{"text": f"hi {token('a1')}"}]}]}
            path = f"{url}/v1beta/models/{MODEL}:streamGenerateContent?key={KEY}"
            async with session.post(path, json=body) as resp:
                raw = await resp.read()
            # (the dialect says application/json; the mock's own SSE header currently wins on the wire)
            request = make_mocked_request("POST", f"/v1beta/models/{MODEL}:streamGenerateContent")
            headers, items = API.stream(request, Answer("a b c d e f g h", "stop"), Meta("chatcmpl-x", 0, MODEL))
            assert headers["Content-Type"] == "application/json; charset=UTF-8"
            assert len(json.loads(b"".join(items))) == 4
            whole = json.loads(raw)
            assert isinstance(whole, list) and len(whole) == 3
            assert whole[-1]["candidates"][0]["finishReason"] == "STOP"
            chunks = portkey_chunks(raw)
            assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == (
                f"reply to a1 from {NAME}")
            events, rest = API.split(raw, final=True)
            assert b"".join(events) == raw and rest == b""
            assert [API.is_chunk(e) for e in events] == [True, True, True, False]  # the closing "\n]" is none
            assert [API.is_end(e) for e in events[:3]] == [False, False, True]
            # an error on this stream is a JSON array of one error, as Google sends it
            await put_fault(session, url, {"kind": "error", "status": 500})
            async with session.post(path, json=body) as resp:
                assert resp.status == 500
                assert (await resp.json())[0]["error"]["status"] == "INTERNAL"
            assert [e["identity"] for e in sink.upstream("a1")] == ["svc-gemini", "svc-gemini"]

    asyncio.run(scenario())


def test_litellm_words_on_a_versionless_path() -> None:
    """LiteLLM's gemini/ provider with an api_base calls {api_base}/models/{model}:generateContent, and
    writes parts and configs in proto names (inline_data, function_call, system_instruction, ...)."""
    body = {
        "system_instruction": {"parts": [{"text": f"sys {token('l1')}"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "look"},
                                       {"inline_data": {"mime_type": "image/png", "data": "iVBOR"}}]},
            {"role": "model", "parts": [{"function_call": {"name": "search", "args": {"q": "x"}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "search", "response": {"hits": 1}}}]},
        ],
        "tools": [{"function_declarations": [{"name": "search", "parameters": {"type": "OBJECT"}}]},
                  {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowed_function_names": ["search"]}},
        "generationConfig": {"max_output_tokens": 64, "seed": 3, "response_mime_type": "application/json",
                             "response_schema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}},
    }
    request = make_mocked_request("POST", f"/models/{MODEL}:streamGenerateContent?alt=sse")
    canonical = API.canonical(request, body)
    assert canonical["model"] == MODEL and canonical["stream"] is True
    assert canonical["messages"] == [
        {"role": "system", "content": f"sys {token('l1')}"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "search", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}]},
        {"role": "tool", "tool_call_id": "search", "content": '{"hits": 1}'},
    ]
    assert canonical["tools"] == [{"type": "function", "function": {"name": "search"}}, {"type": "google_search"}]
    assert canonical["tool_choice"] == {"type": "function", "function": {"name": "search"}}
    assert (canonical["max_tokens"], canonical["seed"]) == (64, 3)
    assert canonical["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "response", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    for junk in ({"contents": "hi"}, {}, {"contents": [{"parts": ["x"]}]}):
        with pytest.raises((ValueError, KeyError, TypeError)):
            API.canonical(request, junk)
    assert api_named("gemini") is API


def test_routes_served() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            body = {"contents": [{"parts": [{"text": f"hi {token('p1')}"}]}]}
            for path in (f"/v1/models/{MODEL}:generateContent", f"/v1beta/models/{MODEL}:generateContent",
                         f"/v1alpha/models/{MODEL}:generateContent", f"/models/{MODEL}:generateContent",
                         f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"):
                async with session.post(url + path, json=body, headers={"x-goog-api-key": KEY}) as resp:
                    assert resp.status == 200, path
            for path in (f"/v2/models/{MODEL}:generateContent", f"/v1beta/models/{MODEL}:countTokens",
                         "/v1beta/models/a/b:generateContent"):
                async with session.post(url + path, json=body, headers={"x-goog-api-key": KEY}) as resp:
                    assert resp.status == 404, path
            # The three paths it does not serve are recorded too, as such (the baseline's diagnosis reads them).
            calls = sink.upstream("p1")
            assert [c.get("not_served", False) for c in calls] == [False] * 5 + [True] * 3

    asyncio.run(scenario())


# -- the fault proxy in front of a Gemini upstream -------------------------------------------------------
@asynccontextmanager
async def proxied() -> AsyncIterator[tuple[str, str, ListSink, ListSink, aiohttp.ClientSession]]:
    """A mock Gemini provider as the real upstream, the fault proxy in front: (proxy, upstream, sinks, session)."""
    async with mock() as (upstream, upstream_sink, session):
        sink = ListSink()
        runner, url = await start_app(build_proxy_app(NAME, spec(), upstream, sink, TOKEN, IDENTITIES, 7))
        try:
            yield url, upstream, sink, upstream_sink, session
        finally:
            await runner.cleanup()


def test_fault_proxy_records_and_judges_gemini() -> None:
    async def scenario() -> None:
        async with proxied() as (url, upstream, sink, _, session):
            response = await call(generate(client(url), "x1"))
            assert response.text == f"reply to x1 from {NAME}"
            event = only(sink)
            assert (event["api"], event["identity"], event["id"], event["tenant"]) == (
                "gemini", "svc-gemini", "x1", "acme")
            assert (event["model"], event["outcome"]) == (MODEL, "ok")
            # the upstream's own failures, judged by the dialect: overloaded, an outage, a refusal (a streamed
            # one too: judged by the stream's last bytes)
            await put_fault(session, upstream, {"kind": "content_policy"})
            chunks = await call(stream(client(url), "x8"))
            assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.SAFETY
            assert [(e["outcome"], e["stream"]) for e in sink.upstream("x8")] == [("content_policy", True)]
            for rid, effect, outcome in (("x2", {"kind": "overloaded"}, "overloaded"),
                                         ("x3", {"kind": "error", "status": 503}, "error"),
                                         ("x4", {"kind": "error", "status": 429}, "error"),
                                         ("x5", {"kind": "content_policy"}, "content_policy")):
                await put_fault(session, upstream, effect)
                try:
                    await call(generate(client(url), rid))
                except errors.APIError:
                    pass
                assert [(e["outcome"], e["identity"]) for e in sink.upstream(rid)] == [(outcome, "svc-gemini")], rid

    asyncio.run(scenario())


def test_fault_proxy_cuts_a_gemini_stream() -> None:
    async def scenario() -> None:
        async with proxied() as (url, _, sink, upstream_sink, session):
            await put_fault(session, url, {"kind": "cut", "after_chunks": 2})
            seen: list[str] = []

            c = client(url)

            def read() -> None:
                for chunk in c.models.generate_content_stream(model=MODEL, contents=f"hi {token('x6')}"):
                    seen.append(chunk.text or "")

            with pytest.raises(httpx2.TransportError):
                await call(read)
            assert seen == ["reply to", " x6 from"]
            assert (only(sink)["outcome"], only(sink)["note"]) == ("reset", "stream cut after 2 chunks")
            assert only(upstream_sink)["outcome"] == "ok"  # the upstream answered whole; the proxy broke it
            # and, the fault healed, a stream the proxy lets through ends as a whole one
            async with session.delete(f"{url}/_harness/faults/f1", headers={"x-harness-token": TOKEN}) as resp:
                assert resp.status == 200
            chunks = await call(stream(client(url), "x7"))
            assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP

    asyncio.run(scenario())


def test_split_and_end() -> None:
    sse = b'data: {"candidates": [{"index": 0}]}\r\n\r\n: keep-alive\r\n\r\ndata: {"candidates": [{"finishR'
    events, rest = API.split(sse, final=False)
    assert [API.is_chunk(e) for e in events] == [True, False] and rest.startswith(b"data:")
    assert API.is_end(b'data: {"candidates": [{"finishReason": "STOP"}]}\r\n\r\n')
    assert API.is_end(b'data: {"promptFeedback": {"blockReason": "SAFETY"}}\r\n\r\n')
    assert not API.is_end(b'data: {"candidates": [{"content": {"parts": [{"text": "say \\"finishReason\\""}]}}]}')
    array = b'[{"a": "}{"}\n,\r\n{"b": {"c": 1}}\n,\r\n{"d'
    events, rest = API.split(array, final=False)
    assert events == [b'[{"a": "}{"}', b'\n,\r\n{"b": {"c": 1}}'] and rest == b'\n,\r\n{"d'


def test_outcome_of_upstream_answers() -> None:
    def body(data: Any) -> bytes:
        return json.dumps(data).encode()

    assert API.outcome(200, body({"candidates": [{"finishReason": "STOP"}]})) == "ok"
    assert API.outcome(200, body({"candidates": [{"finishReason": "PROHIBITED_CONTENT"}]})) == "content_policy"
    assert API.outcome(200, body({"promptFeedback": {"blockReason": "SAFETY"}})) == "content_policy"
    assert API.outcome(200, body([{"candidates": [{}]}, {"candidates": [{"finishReason": "SAFETY"}]}])) == (
        "content_policy")
    unavailable = {"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}
    assert API.outcome(503, body(unavailable)) == "error"
    assert API.outcome(503, body([{"error": {"code": 503, "message": "The model is overloaded. Please try again "
                                             "later.", "status": "UNAVAILABLE"}}])) == "overloaded"
    assert API.outcome(400, body({"error": {"code": 400, "message": "API key not valid.",
                                            "status": "INVALID_ARGUMENT"}})) == "error"
    assert API.outcome(502, b"<html>502</html>") == "error"
    tail = (b'{"text": "x"}]}, "index": 0}]}\r\n\r\n'  # a tail starts mid-event
            b'data: {"candidates": [{"finishReason": "SAFETY", "index": 0}]}\r\n\r\n')
    assert API.stream_outcome(200, tail) == "content_policy"
    assert API.stream_outcome(200, tail.replace(b"SAFETY", b"STOP")) == "ok"
    assert API.stream_outcome(200, b'\n,\r\n{"promptFeedback": {"blockReason": "OTHER"}}\n]') == "content_policy"
    assert API.stream_outcome(200, b'{"text": "say \\"finishReason\\": \\"SAFETY\\""}') == "ok"


# -- the reference gateway's client side -----------------------------------------------------------------
def openai_body(rid: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": f"hello {token(rid)}"}], **extra}


async def send(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
               stream_: bool = False) -> tuple[int, dict[str, str], bytes]:
    request = API.client_call(ClientTarget(url, MODEL, KEY), body, stream_, {"x-harness-request-id": "hdr"})
    async with session.request(request.method, request.url, data=request.body, headers=request.headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def test_client_side_answers() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink, session):
            told = API.client_answer(*await send(session, url, openai_body("c1")), MODEL)
            answer = json.loads(told.body)
            assert (told.status, told.cause) == (200, None)
            assert answer["object"] == "chat.completion" and answer["model"] == MODEL
            assert answer["choices"][0]["message"]["content"] == f"reply to c1 from {NAME}"
            assert answer["choices"][0]["finish_reason"] == "stop" and answer["usage"]["total_tokens"] == 13
            tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
            told = API.client_answer(*await send(session, url, openai_body("c2", tools=tools,
                                                                          tool_choice="required")), MODEL)
            choice = json.loads(told.body)["choices"][0]
            assert choice["finish_reason"] == "tool_calls"
            assert choice["message"]["tool_calls"][0]["function"] == {"name": "search", "arguments": "{}"}
            assert [(e["identity"], e["tools"], e["api"]) for e in sink.upstream("c2")] == [
                ("svc-gemini", ["search"], "gemini")]

            await put_fault(session, url, {"kind": "content_policy"})
            told = API.client_answer(*await send(session, url, openai_body("c3")), MODEL)
            assert (told.status, told.cause) == (400, "content_policy")
            assert json.loads(told.body)["error"]["code"] == "content_policy_violation"

            await put_fault(session, url, {"kind": "overloaded", "retry_after_s": 1.5})
            told = API.client_answer(*await send(session, url, openai_body("c4")), MODEL)
            assert (told.status, told.cause, told.retry_after) == (503, "overloaded", "2")
            assert json.loads(told.body)["error"]["code"] == "overloaded"

            await put_fault(session, url, {"kind": "error", "status": 429, "retry_after_s": 3})
            told = API.client_answer(*await send(session, url, openai_body("c5")), MODEL)
            assert (told.status, told.cause, told.retry_after) == (429, 429, "3")
            assert json.loads(told.body)["error"]["type"] == "rate_limit_error"

    asyncio.run(scenario())


def test_client_side_context_length() -> None:
    async def scenario() -> None:
        async with mock(spec(capabilities={"context_tokens": 50})) as (url, _, session):
            body = openai_body("c6")
            body["messages"][1]["content"] += " word" * 200
            told = API.client_answer(*await send(session, url, body), MODEL)
            assert (told.status, told.cause) == (400, "context_length")
            assert json.loads(told.body)["error"]["code"] == "context_length_exceeded"

    asyncio.run(scenario())


def chunks_of(events: list[bytes]) -> list[dict[str, Any]]:
    payloads = [e[len(b"data: "):].strip() for e in events]
    return [json.loads(p) for p in payloads if p != b"[DONE]"]


async def translated(session: aiohttp.ClientSession, url: str,
                     body: dict[str, Any]) -> tuple[StreamTranslator, list[bytes]]:
    """A stream through client_stream as the gateway reads it: bytes as they arrive, until the end or a break."""
    request = API.client_call(ClientTarget(url, MODEL, KEY), body, True, {})
    translator = API.client_stream(MODEL)
    events: list[bytes] = []
    async with session.post(request.url, data=request.body, headers=request.headers) as resp:
        try:
            async for data in resp.content.iter_any():
                events.extend(translator.feed(data))
        except aiohttp.ClientPayloadError:
            pass  # the break itself: what came before it is what counts
    return translator, events


def test_client_side_stream() -> None:
    async def scenario() -> None:
        async with mock() as (url, _, session):
            status, headers, raw = await send(session, url, openai_body("c7"), stream_=True)
            assert status == 200 and headers["Content-Type"] == "text/event-stream"
            translator = API.client_stream(MODEL)
            events = [e for i in range(0, len(raw), 7) for e in translator.feed(raw[i:i + 7])]  # bytes as they come
            chunks = chunks_of(events)
            assert translator.complete and events[-1] == b"data: [DONE]\n\n"
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == f"reply to c7 from {NAME}"
            assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["model"] == MODEL
            assert all(c["object"] == "chat.completion.chunk" for c in chunks)

            tools = [{"type": "function", "function": {"name": "search"}}]
            _, _, raw = await send(session, url, openai_body("c8", tools=tools, tool_choice="required"), True)
            translator = API.client_stream(MODEL)
            chunks = chunks_of(translator.feed(raw))
            assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "search"
            assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls" and translator.complete

            await put_fault(session, url, {"kind": "cut", "after_chunks": 2})
            translator, events = await translated(session, url, openai_body("c9"))
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks_of(events)) == (
                "reply to c9 from")  # what came before the break is relayed, the end never
            assert not translator.complete and b"data: [DONE]\n\n" not in events

            await put_fault(session, url, {"kind": "content_policy"})
            _, _, raw = await send(session, url, openai_body("c10"), True)
            translator = API.client_stream(MODEL)
            chunks = chunks_of(translator.feed(raw))
            assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter" and translator.complete

    asyncio.run(scenario())


def test_gemini_request_from_an_openai_body() -> None:
    body = {
        "model": "chat", "max_tokens": 100, "temperature": 0.2, "stop": "END", "seed": 9,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "see"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "search"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
    }
    out = gemini_request(body)
    assert out["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "see"}, {"inlineData": {"mimeType": "image/png", "data": "AAA"}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "search", "args": {"q": "x"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "search", "response": {"content": "sunny"}}}]},
    ]
    assert out["tools"] == [{"functionDeclarations": [{"name": "search", "parametersJsonSchema": {"type": "object"}}]}]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["search"]}}
    assert out["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.2, "seed": 9,
                                       "stopSequences": ["END"], "responseMimeType": "application/json",
                                       "responseJsonSchema": {"type": "object"}}
    # and the mock reads it back as what was asked
    request = make_mocked_request("POST", f"/v1beta/models/{MODEL}:generateContent")
    canonical = API.canonical(request, out)
    assert canonical["tool_choice"] == body["tool_choice"] and canonical["max_tokens"] == 100
    assert canonical["response_format"]["json_schema"]["schema"] == {"type": "object"}

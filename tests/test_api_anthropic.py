"""Anthropic's Messages API on the mock provider, judged by the official anthropic SDK (unchanged but for its
base URL, keys and retry count): answers, streams, tool use, every error effect with the SDK's own exception
class and retry decision, the in-band refusal, a cut stream; then the fault proxy in front of an Anthropic
upstream, and the reference gateway's client side (`client_call` / `client_answer` / `client_stream`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import anthropic
import httpx2
import openai
import pytest
from aiohttp.test_utils import make_mocked_request
from conftest_topology import ListSink

from harness.core.correlation import Correlation
from harness.core.identity import fingerprint
from harness.topology.apis import api_named
from harness.topology.apis.anthropic import API, VERSION
from harness.topology.apis.base import Answer, ClientTarget, Failure, Meta
from harness.topology.fault_proxy import build_proxy_app
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.serving import start_app

TOKEN = "control-secret"
KEY = "sk-ant-api03-test-0123456789"
OAUTH = "sk-ant-oat01-test-9876543210"
IDENTITIES = {fingerprint(KEY): "svc-anthropic", fingerprint(OAUTH): "svc-oauth"}
MODEL = "claude-sonnet-4-5"
NAME = "claude-eu"
SPEC = {"model": MODEL, "region": "eu", "identity": "svc-anthropic", "api": "anthropic", "tools": ["search"]}
SEARCH = {"name": "search", "description": "look it up", "input_schema": {"type": "object", "properties": {}}}
T = TypeVar("T")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's own retry decisions, minus its half-second backoff (a Retry-After it still honours)."""
    monkeypatch.setattr(anthropic._base_client, "INITIAL_RETRY_DELAY", 0.001)


@asynccontextmanager
async def mock(spec: dict[str, Any] | None = None) -> AsyncIterator[tuple[str, ListSink]]:
    sink = ListSink()
    app = build_provider_app(NAME, ProviderSpec.from_dict(spec or SPEC, NAME), sink, TOKEN, IDENTITIES, 1)
    runner, url = await start_app(app)
    try:
        yield url, sink
    finally:
        await runner.cleanup()


async def fault(url: str, name: str, effect: dict[str, Any]) -> None:
    body = {"effect": effect, "probability": 1.0, "deadline_ts": time.time() + 30}
    async with aiohttp.ClientSession() as session, session.put(
            f"{url}/_harness/faults/{name}", json=body, headers={"x-harness-token": TOKEN}) as resp:
        assert resp.status == 200, await resp.text()


async def heal(url: str, name: str) -> None:
    async with aiohttp.ClientSession() as session, session.delete(
            f"{url}/_harness/faults/{name}", headers={"x-harness-token": TOKEN}) as resp:
        assert resp.status == 200


def sdk(url: str, retries: int = 0, **kwargs: Any) -> anthropic.Anthropic:
    auth: dict[str, Any] = kwargs or {"api_key": KEY}
    return anthropic.Anthropic(base_url=url, max_retries=retries, timeout=10, **auth)


def turn(rid: str, text: str = "hello") -> list[dict[str, Any]]:
    token = Correlation(rid, "acme", "chat", "eu", "internal").token()
    return [{"role": "user", "content": f"{text} {token}"}]


async def run(call: Callable[[], T]) -> T:
    """A sync SDK call, off the loop the servers run on."""
    return await asyncio.to_thread(call)


async def failing(call: Callable[[], Any]) -> BaseException:
    try:
        await run(call)
    except Exception as exc:  # noqa: BLE001 - the exception is what the test inspects
        return exc
    raise AssertionError("the SDK raised nothing")


def broken_body(exc: BaseException) -> bool:
    """The SDK saw the body break, whichever way its version reports it: older releases let
    httpx's TransportError escape the stream, newer ones wrap it in APIConnectionError. A timeout
    or a clean end that the SDK then failed to parse is neither."""
    if isinstance(exc, anthropic.APITimeoutError):
        return False
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    transport = [e for e in chain if isinstance(e, httpx2.TransportError)]
    return bool(transport) and isinstance(exc, (httpx2.TransportError, anthropic.APIConnectionError))


def only(sink: ListSink, rid: str | None = None) -> dict[str, Any]:
    [event] = sink.upstream(rid)
    return event


# -- answers ---------------------------------------------------------------------------------------
def test_message_answer_and_ledger() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink):
            msg = await run(lambda: sdk(url).messages.create(model="claude-x", max_tokens=16, system="be brief",
                                                               messages=turn("r1")))
            assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
            assert msg.id.startswith("msg_") and msg._request_id and msg._request_id.startswith("req_")
            assert msg.content[0].type == "text" and msg.content[0].text.startswith(f"reply to r1 from {NAME}")
            assert msg.stop_reason == "end_turn" and msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
            event = only(sink)
            assert (event["api"], event["id"], event["identity"], event["key_fp"]) == (
                "anthropic", "r1", "svc-anthropic", fingerprint(KEY))
            assert (event["model"], event["stream"], event["status"], event["outcome"], event["tools"]) == (
                "claude-x", False, 200, "ok", [])
            assert (event["tenant"], event["request_class"], event["region"], event["data_class"]) == (
                "acme", "chat", "eu", "internal")
            assert KEY not in json.dumps(sink.events)

    asyncio.run(scenario())


def test_oauth_bearer_and_token_in_system_blocks() -> None:
    """An OAuth token travels as a bearer; the correlation token is found in a system block list."""
    async def scenario() -> None:
        async with mock() as (url, sink):
            token = Correlation("r2", "acme", "chat", "eu", "internal").token()
            await run(lambda: sdk(url, auth_token=OAUTH).messages.create(
                model=MODEL, max_tokens=16, system=[{"type": "text", "text": f"rules {token}"}],
                messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]))
            event = only(sink)
            assert (event["id"], event["identity"], event["tenant"]) == ("r2", "svc-oauth", "acme")

    asyncio.run(scenario())


def test_streams_as_the_sdk_reads_them() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink):
            def helper() -> tuple[str, anthropic.types.Message]:
                with sdk(url).messages.stream(model=MODEL, max_tokens=16, messages=turn("r3")) as stream:
                    return "".join(stream.text_stream), stream.get_final_message()
            text, final = await run(helper)
            assert text.startswith(f"reply to r3 from {NAME}") and final.content[0].text == text
            assert final.stop_reason == "end_turn" and final.model == MODEL

            def raw() -> list[str]:
                return [e.type for e in sdk(url).messages.create(model=MODEL, max_tokens=16, messages=turn("r4"),
                                                                  stream=True)]
            kinds = await run(raw)
            assert kinds[:2] == ["message_start", "content_block_start"] and "content_block_delta" in kinds
            assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
            assert [(e["id"], e["stream"], e["outcome"]) for e in sink.upstream()] == [
                ("r3", True, "ok"), ("r4", True, "ok")]

    asyncio.run(scenario())


def test_tool_use_answer_and_stream() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink):
            msg = await run(lambda: sdk(url).messages.create(
                model=MODEL, max_tokens=64, messages=turn("r5"), tools=[SEARCH],
                tool_choice={"type": "tool", "name": "search"}))
            [use] = msg.content
            assert use.type == "tool_use" and use.name == "search" and use.input == {}
            assert use.id.startswith("toolu_") and msg.stop_reason == "tool_use"

            def streamed() -> anthropic.types.Message:
                with sdk(url).messages.stream(model=MODEL, max_tokens=64, messages=turn("r6"), tools=[SEARCH],
                                              tool_choice={"type": "any"}) as stream:
                    return stream.get_final_message()
            final = await run(streamed)
            assert [(b.type, b.name, b.input) for b in final.content] == [("tool_use", "search", {})]
            assert final.stop_reason == "tool_use"
            assert [e["tools"] for e in sink.upstream()] == [["search"], ["search"]]

    asyncio.run(scenario())


def test_structured_output_is_read_from_output_config() -> None:
    async def scenario() -> None:
        schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                  "additionalProperties": False}
        async with mock() as (url, _):
            msg = await run(lambda: sdk(url).messages.create(
                model=MODEL, max_tokens=64, messages=turn("r7"),
                output_config={"format": {"type": "json_schema", "schema": schema}}))
            assert isinstance(json.loads(msg.content[0].text)["city"], str)

    asyncio.run(scenario())


# -- failures: the SDK's own exception and retry decision ------------------------------------------
ERRORS = [
    # effect, the SDK's exception class, status, error type, calls made with max_retries=2, ledger outcome
    ({"kind": "error", "status": 429, "retry_after_s": 0}, anthropic.RateLimitError, 429, "rate_limit_error", 3,
     "error"),
    ({"kind": "error", "status": 500}, anthropic.InternalServerError, 500, "api_error", 3, "error"),
    ({"kind": "error", "status": 502}, anthropic.InternalServerError, 502, "api_error", 3, "error"),
    ({"kind": "error", "status": 503}, anthropic.ServiceUnavailableError, 503, "api_error", 3, "error"),
    ({"kind": "overloaded"}, anthropic.OverloadedError, 529, "overloaded_error", 3, "overloaded"),
    # A named capacity error is recorded as what it says, the same as the proxy records it from a real one.
    ({"kind": "error", "status": 529, "code": "overloaded_error"}, anthropic.OverloadedError, 529,
     "overloaded_error", 3, "overloaded"),
    ({"kind": "timeout", "hold_s": 0.05}, anthropic.GatewayTimeoutError, 504, "timeout_error", 3, "timeout"),
    ({"kind": "error", "status": 400}, anthropic.BadRequestError, 400, "invalid_request_error", 1, "error"),
    ({"kind": "error", "status": 401, "code": "authentication_error"}, anthropic.AuthenticationError, 401,
     "authentication_error", 1, "error"),
]


@pytest.mark.parametrize(("effect", "error_class", "status", "error_type", "calls", "outcome"), ERRORS,
                         ids=[f"{e[0]['kind']}-{e[2]}" for e in ERRORS])
def test_errors_raise_the_sdks_own_exception(effect: dict[str, Any], error_class: type[anthropic.APIStatusError],
                                             status: int, error_type: str, calls: int, outcome: str) -> None:
    async def scenario() -> None:
        async with mock() as (url, sink):
            await fault(url, "f", effect)
            exc = await failing(lambda: sdk(url, retries=2).messages.create(model=MODEL, max_tokens=16,
                                                                           messages=turn("r8")))
            assert type(exc) is error_class, repr(exc)
            assert isinstance(exc, anthropic.APIStatusError)
            assert exc.status_code == status and exc.type == error_type
            assert exc.request_id and exc.request_id.startswith("req_") and exc.body["request_id"] == exc.request_id
            events = sink.upstream("r8")
            assert len(events) == calls  # the SDK retried, or not, as it decides
            assert {(e["outcome"], e["fault"], e["identity"], e["api"]) for e in events} == {
                (outcome, "f", "svc-anthropic", "anthropic")}

    asyncio.run(scenario())


def test_rate_limit_retry_after_is_honoured() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink):
            await fault(url, "limit", {"kind": "error", "status": 429, "retry_after_s": 0.4})
            started = time.monotonic()
            exc = await failing(lambda: sdk(url, retries=1).messages.create(model=MODEL, max_tokens=16,
                                                                           messages=turn("r9")))
            assert time.monotonic() - started >= 1.0  # Retry-After: 1 (whole seconds, rounded up), waited out
            assert isinstance(exc, anthropic.RateLimitError)
            headers = exc.response.headers
            assert headers["retry-after"] == "1" and headers["anthropic-ratelimit-requests-remaining"] == "0"
            assert len(sink.upstream("r9")) == 2

    asyncio.run(scenario())


def test_content_policy_is_a_refusal_answer() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink):
            await fault(url, "policy", {"kind": "content_policy"})
            msg = await run(lambda: sdk(url, retries=2).messages.create(model=MODEL, max_tokens=16,
                                                                       messages=turn("r10")))
            assert msg.stop_reason == "refusal" and msg.content == []

            def streamed() -> anthropic.types.Message:
                with sdk(url).messages.stream(model=MODEL, max_tokens=16, messages=turn("r11")) as stream:
                    return stream.get_final_message()
            assert (await run(streamed)).stop_reason == "refusal"
            assert [(e["id"], e["status"], e["outcome"]) for e in sink.upstream()] == [
                ("r10", 200, "content_policy"), ("r11", 200, "content_policy")]

    asyncio.run(scenario())


def test_context_length_in_the_apis_words() -> None:
    async def scenario() -> None:
        async with mock({**SPEC, "capabilities": {"context_tokens": 50}}) as (url, sink):
            long = turn("r12", "word " * 100)
            exc = await failing(lambda: sdk(url, retries=2).messages.create(model=MODEL, max_tokens=16,
                                                                           messages=long))
            assert isinstance(exc, anthropic.BadRequestError) and exc.type == "invalid_request_error"
            assert exc.api_message is not None and exc.api_message.startswith("prompt is too long: ")
            assert exc.api_message.endswith(" tokens > 50 maximum")
            # A prompt that fits, with a budget that does not: the API's other wording.
            exc = await failing(lambda: sdk(url).messages.create(model=MODEL, max_tokens=40, messages=turn("r13")))
            assert isinstance(exc, anthropic.BadRequestError) and exc.api_message is not None
            assert "exceed context limit" in exc.api_message and "+ 40 > 50" in exc.api_message
            assert [(e["id"], e["outcome"]) for e in sink.upstream()] == [
                ("r12", "context_length"), ("r13", "context_length")]

    asyncio.run(scenario())


@pytest.mark.parametrize("helper", [False, True], ids=["create", "stream-helper"])
def test_cut_stream_breaks_in_the_sdk(helper: bool) -> None:
    async def scenario() -> None:
        async with mock() as (url, sink):
            await fault(url, "cut", {"kind": "cut", "after_chunks": 4})

            def read() -> None:
                if helper:
                    with sdk(url).messages.stream(model=MODEL, max_tokens=16, messages=turn("r14")) as stream:
                        stream.get_final_message()
                else:
                    list(sdk(url).messages.create(model=MODEL, max_tokens=16, messages=turn("r14"), stream=True))
            exc = await failing(read)
            assert broken_body(exc), repr(exc)  # a broken body, never a clean end
            assert (only(sink)["outcome"], only(sink)["status"]) == ("reset", 0)

    asyncio.run(scenario())


def test_a_call_the_real_api_refuses_is_recorded_invalid() -> None:
    async def scenario() -> None:
        async with mock() as (url, sink), aiohttp.ClientSession() as session:
            body = {"model": MODEL, "max_tokens": 16, "messages": turn("r15")}
            async with session.post(f"{url}/v1/messages", json=body, headers={"x-api-key": KEY}) as resp:
                assert resp.status == 400  # no anthropic-version
            no_budget = {"model": MODEL, "messages": turn("r16")}
            async with session.post(f"{url}/v1/messages", json=no_budget,
                                    headers={"x-api-key": KEY, "anthropic-version": VERSION}) as resp:
                assert resp.status == 400  # no max_tokens
            async with session.post(f"{url}/v1/chat/completions", json=body, headers={"x-api-key": KEY}) as resp:
                assert resp.status == 404  # not a route of this API
            assert [(e["identity"], e["status"], e["outcome"]) for e in sink.upstream()] == [
                ("svc-anthropic", 400, "error")] * 2 + [("svc-anthropic", 404, "error")]
            # Refused, yet still its request's call: a fallback refused this way is not lost to the checks.
            assert [(e["id"], e["tenant"]) for e in sink.upstream()] == [("r15", "acme"), ("r16", "acme"),
                                                                           ("r15", "acme")]
            # A path the API does not serve is recorded as such, with the path it does serve (the baseline's diagnosis).
            stray = sink.upstream()[-1]
            assert (stray["not_served"], stray["path"], stray["serves"]) == (True, "/v1/chat/completions",
                                                                              "/v1/messages")

    asyncio.run(scenario())


# -- the dialect on its own ------------------------------------------------------------------------
def test_canonical_reads_every_block_and_option() -> None:
    request = make_mocked_request("POST", "/v1/messages", headers={"anthropic-version": VERSION})
    body = {
        "model": MODEL, "max_tokens": 100, "stream": True,
        "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "search",
                                               "input": {"q": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": "found [[harness:id=r1]]"}]}]},
        ],
        "tools": [SEARCH], "tool_choice": {"type": "any"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    }
    out = API.canonical(request, body)
    assert out["messages"][0] == {"role": "system", "content": [{"type": "text", "text": "sys"}]}
    assert out["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert out["messages"][2]["content"][0]["text"].startswith("[tool_use search]")
    assert out["messages"][3]["content"] == [{"type": "text", "text": "found [[harness:id=r1]]"}]
    assert out["tools"][0]["function"]["name"] == "search" and out["tool_choice"] == "required"
    assert out["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert (out["stream"], out["max_tokens"], out["model"]) == (True, 100, MODEL)
    assert API.canonical(request, {**body, "tool_choice": {"type": "tool", "name": "search"}})["tool_choice"] == {
        "type": "function", "function": {"name": "search"}}
    with pytest.raises(ValueError, match="anthropic-version"):
        API.canonical(make_mocked_request("POST", "/v1/messages"), body)
    with pytest.raises(TypeError):
        API.canonical(request, {**body, "messages": "junk"})
    assert api_named("anthropic") is api_named("anthropic") and api_named("anthropic").name == "anthropic"


def test_outcome_split_and_end() -> None:
    meta = Meta("chatcmpl-x", 1, MODEL)
    refusal = API.stream(make_mocked_request("POST", "/"), Answer(None, "content_filter"), meta)[1]
    assert API.stream_outcome(200, b"".join(refusal[-2:])[12:]) == "content_policy"  # a tail from mid-event
    text = API.stream(make_mocked_request("POST", "/"), Answer('say "stop_reason": "refusal"'), meta)[1]
    assert API.stream_outcome(200, b"".join(text)) == "ok"  # the words inside an answer are no refusal
    assert API.outcome(200, API.respond(make_mocked_request("POST", "/"), Answer(None, "content_filter"),
                                        meta).body) == "content_policy"
    assert API.outcome(200, API.respond(make_mocked_request("POST", "/"), Answer('"stop_reason": "refusal"'),
                                        meta).body) == "ok"
    assert API.outcome(529, b"") == "overloaded"
    assert API.outcome(500, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}') == (
        "overloaded")
    assert API.outcome(400, b'{"type":"error","error":{"type":"invalid_request_error",'
                            b'"message":"prompt is too long: 208656 tokens > 200000 maximum"}}') == "context_length"
    assert API.outcome(400, b'{"type":"error","error":{"type":"invalid_request_error",'
                            b'"message":"Output blocked by content filtering policy"}}') == "content_policy"
    assert API.outcome(500, b"<html>bad gateway</html>") == "error"
    events, rest = API.split(b"".join(text) + b"event: ping\ndata: {", final=False)
    assert events == text and rest == b"event: ping\ndata: {"
    assert [API.is_end(e) for e in events] == [False] * (len(events) - 1) + [True]
    assert all(API.is_chunk(e) for e in events) and not API.is_chunk(b": keep-alive\n\n")
    failure = Failure("invalid", 400, "bad value", param="messages")
    body = json.loads(API.error(make_mocked_request("POST", "/"), failure).text or "")
    assert body["error"] == {"type": "invalid_request_error", "message": "messages: bad value"}


# -- the fault proxy in front of an Anthropic upstream ---------------------------------------------
def test_fault_proxy_records_and_judges_anthropic() -> None:
    async def scenario() -> None:
        spec = ProviderSpec.from_dict({**SPEC, "capabilities": {"context_tokens": 80}}, NAME)
        async with mock({**SPEC, "capabilities": {"context_tokens": 80}}) as (upstream, upstream_sink):
            sink = ListSink()
            runner, url = await start_app(build_proxy_app(NAME, spec, upstream, sink, TOKEN, IDENTITIES, 1))
            try:
                msg = await run(lambda: sdk(url).messages.create(model=MODEL, max_tokens=16, messages=turn("p1")))
                assert msg.content[0].text.startswith(f"reply to p1 from {NAME}")
                event = only(sink, "p1")
                assert (event["api"], event["identity"], event["tenant"], event["outcome"], event["status"]) == (
                    "anthropic", "svc-anthropic", "acme", "ok", 200)

                await fault(upstream, "busy", {"kind": "overloaded"})
                exc = await failing(lambda: sdk(url).messages.create(model=MODEL, max_tokens=16,
                                                                    messages=turn("p2")))
                assert isinstance(exc, anthropic.OverloadedError)
                assert (only(sink, "p2")["outcome"], only(sink, "p2")["status"]) == ("overloaded", 529)
                await fault(upstream, "busy", {"kind": "content_policy"})  # replaces the overload
                msg = await run(lambda: sdk(url).messages.create(model=MODEL, max_tokens=16, messages=turn("p3")))
                assert msg.stop_reason == "refusal" and only(sink, "p3")["outcome"] == "content_policy"

                def refused_stream() -> anthropic.types.Message:
                    with sdk(url).messages.stream(model=MODEL, max_tokens=16, messages=turn("p3s")) as stream:
                        return stream.get_final_message()
                assert (await run(refused_stream)).stop_reason == "refusal"
                assert (only(sink, "p3s")["outcome"], only(sink, "p3s")["stream"]) == ("content_policy", True)
                await heal(upstream, "busy")

                exc = await failing(lambda: sdk(url).messages.create(model=MODEL, max_tokens=16,
                                                                    messages=turn("p4", "word " * 100)))
                assert isinstance(exc, anthropic.BadRequestError) and only(sink, "p4")["outcome"] == "context_length"

                await fault(url, "cut", {"kind": "cut", "after_chunks": 3})

                def read() -> None:
                    with sdk(url).messages.stream(model=MODEL, max_tokens=16, messages=turn("p5")) as stream:
                        stream.get_final_message()
                assert broken_body(await failing(read))
                event = only(sink, "p5")
                assert (event["outcome"], event["fault"]) == ("reset", "cut")
                assert event["note"] == "stream cut after 3 chunks"
                assert only(upstream_sink, "p5")["outcome"] == "ok"  # the upstream answered whole
            finally:
                await runner.cleanup()

    asyncio.run(scenario())


# -- the reference gateway's client side -----------------------------------------------------------
async def client_exchange(url: str, body: dict[str, Any], stream: bool = False) -> tuple[Any, list[bytes], bool]:
    """One call as the reference gateway makes it: (ClientAnswer or None, OpenAI stream events, complete)."""
    call = API.client_call(ClientTarget(url, MODEL, KEY), body, stream, {"x-harness-request-id": "c0"})
    assert call.url == f"{url}/v1/messages" and call.headers["anthropic-version"] == VERSION
    async with aiohttp.ClientSession() as session, session.post(call.url, data=call.body,
                                                                 headers=call.headers) as resp:
        if stream and resp.status == 200:
            translator = API.client_stream(MODEL)
            events: list[bytes] = []
            try:
                async for data in resp.content.iter_any():
                    events += translator.feed(data)
            except aiohttp.ClientError:
                pass
            return None, events, translator.complete
        return API.client_answer(resp.status, dict(resp.headers), await resp.read(), MODEL), [], True


def openai_body(rid: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    token = Correlation(rid, "acme", "chat", "eu", "internal").token()
    return {"model": "chat", "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": f"{text} {token}"}], **extra}


def test_client_side_answers_in_openais_words() -> None:
    async def scenario() -> None:
        async with mock({**SPEC, "capabilities": {"context_tokens": 2000}}) as (url, sink):
            told, _, _ = await client_exchange(url, openai_body("c1", max_tokens=16))
            completion = openai.types.chat.ChatCompletion.model_validate_json(told.body)
            assert (told.status, told.cause) == (200, None) and completion.model == MODEL
            assert completion.choices[0].message.content.startswith(f"reply to c1 from {NAME}")
            assert completion.choices[0].finish_reason == "stop"
            tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
            told, _, _ = await client_exchange(url, openai_body("c2", tools=tools, tool_choice="required"))
            [call] = openai.types.chat.ChatCompletion.model_validate_json(told.body).choices[0].message.tool_calls
            assert call.function.name == "search" and json.loads(call.function.arguments) == {}
            event = only(sink, "c2")
            assert (event["tools"], event["identity"], event["api"]) == (["search"], "svc-anthropic", "anthropic")

            await fault(url, "policy", {"kind": "content_policy"})
            told, _, _ = await client_exchange(url, openai_body("c3"))
            assert (told.status, told.cause) == (400, "content_policy")
            assert json.loads(told.body)["error"]["code"] == "content_policy_violation"
            await fault(url, "policy", {"kind": "overloaded", "retry_after_s": 2})
            told, _, _ = await client_exchange(url, openai_body("c4"))
            assert (told.status, told.cause, told.retry_after) == (529, 529, "2")
            assert json.loads(told.body)["error"]["code"] == "overloaded"
            await heal(url, "policy")
            told, _, _ = await client_exchange(url, openai_body("c5", "word " * 2000))
            assert (told.status, told.cause) == (400, "context_length")
            assert json.loads(told.body)["error"]["code"] == "context_length_exceeded"

    asyncio.run(scenario())


def test_client_side_streams_as_openai_chunks() -> None:
    async def scenario() -> None:
        async with mock() as (url, _):
            _, events, complete = await client_exchange(url, openai_body("c6", max_tokens=16), stream=True)
            assert complete and events[-1] == b"data: [DONE]\n\n"
            chunks = [openai.types.chat.ChatCompletionChunk.model_validate_json(e[6:]) for e in events[:-1]]
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
            assert text.startswith(f"reply to c6 from {NAME}") and chunks[-1].choices[0].finish_reason == "stop"
            assert {c.model for c in chunks} == {MODEL}

            tools = [{"type": "function", "function": {"name": "search"}}]
            _, events, complete = await client_exchange(
                url, openai_body("c7", tools=tools, tool_choice={"type": "function", "function": {"name": "search"}}),
                stream=True)
            chunks = [openai.types.chat.ChatCompletionChunk.model_validate_json(e[6:]) for e in events[:-1]]
            calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
            assert calls[0].function.name == "search" and "".join(t.function.arguments or "" for t in calls) == "{}"
            assert complete and chunks[-1].choices[0].finish_reason == "tool_calls"

            await fault(url, "cut", {"kind": "cut", "after_chunks": 4})
            _, events, complete = await client_exchange(url, openai_body("c8"), stream=True)
            assert not complete and events and b"[DONE]" not in b"".join(events)

    asyncio.run(scenario())


def test_client_call_body_in_the_messages_words() -> None:
    body = {"model": "chat", "max_completion_tokens": 300, "stop": "END", "temperature": 0.2,
            "messages": [{"role": "system", "content": "a"}, {"role": "developer", "content": "b"},
                         {"role": "user", "content": [{"type": "text", "text": "look"},
                                                      {"type": "image_url",
                                                       "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "call_1", "type": "function", "function": {"name": "search",
                                                                               "arguments": '{"q": "x"}'}}]},
                         {"role": "tool", "tool_call_id": "call_1", "content": "found"},
                         {"role": "user", "content": "thanks"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}}}
    sent = json.loads(API.client_call(ClientTarget("http://x", MODEL, KEY), body, True, {}).body)
    assert (sent["model"], sent["max_tokens"], sent["system"], sent["stop_sequences"], sent["stream"]) == (
        MODEL, 300, "a\n\nb", ["END"], True)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][0]["content"][1] == {"type": "image", "source": {"type": "base64",
                                                                             "media_type": "image/png", "data": "AAAA"}}
    assert sent["messages"][1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "search",
                                               "input": {"q": "x"}}]
    assert sent["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "found"},
                                              {"type": "text", "text": "thanks"}]
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    plain = json.loads(API.client_call(ClientTarget("http://x", MODEL, KEY), {"messages": []}, False, {}).body)
    assert plain["max_tokens"] == 1024 and "stream" not in plain

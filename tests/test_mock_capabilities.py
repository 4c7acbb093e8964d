"""The mock provider serves as real models do, over real HTTP, as a body and as a stream: a context window
it refuses past, response_format and tools it honours only when it can, seeds, output limits, the profile
its answers carry, and the vendor's own fallback that answers as another provider under a fault."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from conftest_topology import ListSink, chat_body, parse_sse
from jsonschema import Draft202012Validator
from test_mock_provider import AUTH, IDENTITIES, TOKEN, put_fault

from harness.core.capabilities import pad_to_tokens, text_tokens
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.serving import start_app

BOTH = pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
TOOLS = ["lookup_order", "issue_refund"]
INVOICE = {"type": "object", "properties": {"vendor": {"type": "string"}, "total": {"type": "number"},
                                           "lines": {"type": "array", "items": {"type": "string"}}},
           "required": ["vendor", "total", "lines"], "additionalProperties": False}


def raw(**data: Any) -> dict[str, Any]:
    """A provider as the engine hands it to the mock (the scenario's provider, dumped to JSON)."""
    return {"model": "gpt-4o", "region": "eu", "identity": "svc-eu", "data_classes": ["internal"], **data}


@asynccontextmanager
async def mock(providers: dict[str, dict[str, Any]], name: str = "gpt-eu",
               ) -> AsyncIterator[tuple[str, ListSink, aiohttp.ClientSession]]:
    """One mock provider `name` of `providers`, built as `harness serve providers` builds it."""
    sink = ListSink()
    spec = ProviderSpec.from_dict(providers[name], name, providers)
    runner, url = await start_app(build_provider_app(name, spec, sink, TOKEN, IDENTITIES, 7))
    try:
        async with aiohttp.ClientSession() as session:
            yield url, sink, session
    finally:
        await runner.cleanup()


@dataclass
class Reply:
    """A chat answer read off the wire, whether it came as one body or as stream chunks."""

    status: int
    headers: dict[str, str]
    error: dict[str, Any] | None = None
    model: str | None = None
    fingerprints: set[str | None] = field(default_factory=set)
    content: str | None = None
    tool_calls: list[str] = field(default_factory=list)
    finish_reason: str | None = None


async def ask(session: aiohttp.ClientSession, url: str, body: dict[str, Any], stream: bool) -> Reply:
    body = {**body, "stream": stream}
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=AUTH) as resp:
        reply = Reply(resp.status, dict(resp.headers))
        text = await resp.text()
    if reply.status != 200:
        reply.error = json.loads(text)["error"]
        return reply
    if not stream:
        data = json.loads(text)
        choice = data["choices"][0]
        reply.model, reply.fingerprints = data["model"], {data.get("system_fingerprint")}
        reply.content, reply.finish_reason = choice["message"]["content"], choice["finish_reason"]
        reply.tool_calls = [c["function"]["name"] for c in choice["message"].get("tool_calls") or []]
        return reply
    payloads = parse_sse(text)
    assert payloads[-1] == "[DONE]", "a stream that is not cut ends with [DONE]"
    for chunk in map(json.loads, payloads[:-1]):
        reply.model = chunk["model"]
        reply.fingerprints.add(chunk.get("system_fingerprint"))
        choice = chunk["choices"][0]
        piece = choice["delta"].get("content")
        if piece is not None:
            reply.content = (reply.content or "") + piece
        reply.tool_calls += [c["function"]["name"] for c in choice["delta"].get("tool_calls") or []]
        reply.finish_reason = choice["finish_reason"] or reply.finish_reason
    return reply


def body(rid: str = "r1", *, prompt_tokens: int | None = None, tools: list[str] | None = None,
         **fields: Any) -> dict[str, Any]:
    """A chat body as the traffic driver builds it: the correlation token, padded to `prompt_tokens`."""
    out = chat_body(rid, tools=tools)
    if prompt_tokens is not None:
        out["messages"] = [{"role": "user", "content": pad_to_tokens(out["messages"][1]["content"], prompt_tokens)}]
    return {**out, **fields}


# -- context window ---------------------------------------------------------------------------------------------

@BOTH
def test_over_the_context_window_is_a_400_context_length_exceeded(stream: bool) -> None:
    async def scenario() -> None:
        async with mock({"gpt-eu": raw(capabilities={"context_tokens": 1000})}) as (url, sink, session):
            fits = await ask(session, url, body("r1", prompt_tokens=600, max_tokens=300), stream)
            assert fits.status == 200 and fits.finish_reason == "stop"
            # The prompt alone fits; with the answer it asks room for, it does not (OpenAI counts both).
            over = await ask(session, url, body("r2", prompt_tokens=800, max_tokens=300), stream)
            assert over.status == 400 and over.error is not None
            assert over.error["code"] == "context_length_exceeded" and over.error["type"] == "invalid_request_error"
            assert "maximum context length is 1000 tokens" in over.error["message"]
            assert "1100 tokens" in over.error["message"]
            [event] = sink.upstream("r2")
            assert (event["status"], event["outcome"], event["fault"]) == (400, "context_length", None)
            assert "vendor_reroute" not in event
            assert sink.upstream("r1")[0]["outcome"] == "ok"

    asyncio.run(scenario())


# -- modalities -------------------------------------------------------------------------------------------------

@BOTH
def test_an_image_is_refused_without_vision_and_served_with_it(stream: bool) -> None:
    def with_image(rid: str) -> dict[str, Any]:
        out = body(rid)
        text = out["messages"][1]["content"]
        out["messages"][1]["content"] = [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]
        return out

    async def scenario() -> None:
        providers = {"blind": raw(capabilities={"vision": False}), "seeing": raw()}
        async with mock(providers, "blind") as (url, sink, session):
            refused = await ask(session, url, with_image("r1"), stream)
            assert refused.status == 400 and refused.error is not None and "image_url" in refused.error["message"]
            assert [(e["status"], e["outcome"]) for e in sink.upstream("r1")] == [(400, "error")]
            # Text alone it serves.
            assert (await ask(session, url, body("r2"), stream)).status == 200
        async with mock(providers, "seeing") as (url, sink, session):
            assert (await ask(session, url, with_image("r1"), stream)).status == 200
            assert sink.upstream("r1")[0]["outcome"] == "ok"

    asyncio.run(scenario())


# -- structured output ------------------------------------------------------------------------------------------

@BOTH
def test_structured_output_is_json_only_where_the_model_supports_it(stream: bool) -> None:
    schema_format = {"type": "json_schema", "json_schema": {"name": "invoice", "schema": INVOICE, "strict": True}}

    async def scenario() -> None:
        providers = {"gpt-eu": raw(), "small-eu": raw(model="llama-3-8b", capabilities={"structured_output": False})}
        async with mock(providers, "gpt-eu") as (url, _, session):
            answer = await ask(session, url, body(response_format=schema_format), stream)
            assert answer.status == 200 and answer.finish_reason == "stop" and answer.content is not None
            Draft202012Validator(INVOICE).validate(json.loads(answer.content))
            loose = await ask(session, url, body("r2", response_format={"type": "json_object"}), stream)
            assert loose.content is not None and isinstance(json.loads(loose.content), dict)
        async with mock(providers, "small-eu") as (url, sink, session):
            # Without JSON mode the model ignores response_format: a 200 with text, as real models answer.
            answer = await ask(session, url, body(response_format=schema_format), stream)
            assert answer.status == 200 and answer.finish_reason == "stop"
            assert answer.content == "reply to r1 from small-eu"
            assert answer.model == "llama-3-8b"
            assert sink.upstream("r1")[0]["outcome"] == "ok"

    asyncio.run(scenario())


# -- tools ------------------------------------------------------------------------------------------------------

@BOTH
@pytest.mark.parametrize(("choice", "called"), [("auto", "lookup_order"), ("required", "lookup_order"),
                                                ("issue_refund", "issue_refund")])
def test_a_tool_call_with_tool_calling(stream: bool, choice: str, called: str) -> None:
    async def scenario() -> None:
        async with mock({"gpt-eu": raw(tools=TOOLS)}) as (url, sink, session):
            named = {"type": "function", "function": {"name": choice}} if choice in TOOLS else choice
            answer = await ask(session, url, body(tools=TOOLS, tool_choice=named), stream)
            assert answer.status == 200
            assert (answer.finish_reason, answer.tool_calls, answer.content) == ("tool_calls", [called], None)
            assert sink.upstream("r1")[0]["tools"] == TOOLS

    asyncio.run(scenario())


@BOTH
def test_prose_without_tool_calling_or_with_tool_choice_none(stream: bool) -> None:
    async def scenario() -> None:
        providers = {"gpt-eu": raw(tools=TOOLS), "small-eu": raw(tools=TOOLS, capabilities={"tools": False})}
        async with mock(providers, "small-eu") as (url, _, session):
            answer = await ask(session, url, body(tools=TOOLS, tool_choice="required"), stream)
            assert answer.status == 200 and answer.tool_calls == [] and answer.finish_reason == "stop"
            assert answer.content == "reply to r1 from small-eu"
        async with mock(providers, "gpt-eu") as (url, _, session):
            answer = await ask(session, url, body(tools=TOOLS, tool_choice="none"), stream)
            assert answer.tool_calls == [] and answer.content == "reply to r1 from gpt-eu"
            # Naming a tool that was not offered is the client's mistake: a 400, as the real API answers.
            bad = await ask(session, url, body("r2", tools=TOOLS, tool_choice={
                "type": "function", "function": {"name": "delete_account"}}), stream)
            assert bad.status == 400 and bad.error is not None and bad.error["param"] == "tool_choice"

    asyncio.run(scenario())


# -- seeds ------------------------------------------------------------------------------------------------------

@BOTH
def test_a_seed_repeats_only_with_a_deterministic_seed(stream: bool) -> None:
    async def scenario() -> None:
        providers = {"gpt-eu": raw(), "flaky": raw(model="m-flaky", capabilities={"deterministic_seed": False})}
        async with mock(providers, "gpt-eu") as (url, _, session):
            # Different request ids, one seed: the answer depends on the seed and the model only.
            first = await ask(session, url, body("r1", seed=42), stream)
            second = await ask(session, url, body("r2", seed=42), stream)
            assert first.content == second.content == "seeded answer 42 from gpt-4o"
            other = await ask(session, url, body("r3", seed=43), stream)
            assert other.content == "seeded answer 43 from gpt-4o"
        async with mock(providers, "flaky") as (url, _, session):
            first = await ask(session, url, body("r1", seed=42), stream)
            second = await ask(session, url, body("r2", seed=42), stream)
            assert first.content is not None and second.content is not None
            assert first.content.startswith("seeded answer 42 from m-flaky")
            assert second.content.startswith("seeded answer 42 from m-flaky")
            assert first.content != second.content

    asyncio.run(scenario())


# -- output budget ----------------------------------------------------------------------------------------------

@BOTH
def test_an_answer_is_half_the_budget_and_cut_at_the_output_limit(stream: bool) -> None:
    async def scenario() -> None:
        providers = {"gpt-eu": raw(), "short": raw(capabilities={"max_output_tokens": 50})}
        async with mock(providers, "gpt-eu") as (url, _, session):
            answer = await ask(session, url, body(max_tokens=200), stream)
            assert answer.finish_reason == "stop" and answer.content is not None
            assert 95 <= text_tokens(answer.content) <= 105
            assert answer.content.startswith("reply to r1 from gpt-eu")
        async with mock(providers, "short") as (url, _, session):
            answer = await ask(session, url, body(max_tokens=200), stream)
            assert answer.finish_reason == "length" and answer.content is not None
            assert text_tokens(answer.content) == 50
            # Within its limit it finishes as any model does.
            small = await ask(session, url, body("r2", max_tokens=60), stream)
            assert small.finish_reason == "stop"

    asyncio.run(scenario())


# -- profile ----------------------------------------------------------------------------------------------------

@BOTH
def test_the_profile_names_the_model_fingerprint_and_region(stream: bool) -> None:
    async def scenario() -> None:
        profile = {"model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_se_2f8e", "region_header": "x-ms-region"}
        async with mock({"gpt-eu": raw(profile=profile)}) as (url, sink, session):
            answer = await ask(session, url, body(), stream)
            assert answer.status == 200
            assert answer.model == "gpt-4o-2024-08-06" and answer.fingerprints == {"fp_se_2f8e"}
            assert answer.headers["x-ms-region"] == "eu"
            # The ground truth keeps what the client asked for, not what the answer claims.
            assert sink.upstream("r1")[0]["model"] == "chat"

    asyncio.run(scenario())


# -- the vendor's own fallback ----------------------------------------------------------------------------------

def _vendor_pair(**sibling: Any) -> dict[str, dict[str, Any]]:
    return {
        "gpt-eu": raw(profile={"model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_se",
                               "region_header": "x-ms-region"}, vendor_fallback={"to": "gpt-eu-2", "on": "fault"}),
        "gpt-eu-2": raw(region="eu-fr", profile={"model": "gpt-4o-2024-05-13", "system_fingerprint": "fp_fr",
                                                 "region_header": "x-ms-region"}, **sibling),
    }


@BOTH
@pytest.mark.parametrize("effect", [{"kind": "error", "status": 429}, {"kind": "error", "status": 503},
                                    {"kind": "timeout", "hold_s": 5}, {"kind": "reset"}],
                         ids=["429", "503", "timeout", "reset"])
def test_under_a_fault_the_vendor_answers_as_its_fallback(stream: bool, effect: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with mock(_vendor_pair()) as (url, sink, session):
            before = await ask(session, url, body("r1"), stream)
            assert before.model == "gpt-4o-2024-08-06" and before.headers["x-ms-region"] == "eu"
            assert await put_fault(session, url, "eu-capacity", effect) == 200
            hidden = await ask(session, url, body("r2"), stream)
            # A 200, and nothing but the answer itself tells who served it.
            assert hidden.status == 200 and hidden.finish_reason == "stop"
            assert hidden.model == "gpt-4o-2024-05-13" and hidden.fingerprints == {"fp_fr"}
            assert hidden.headers["x-ms-region"] == "eu-fr"
            [event] = sink.upstream("r2")
            assert (event["provider"], event["status"], event["outcome"]) == ("gpt-eu", 200, "ok")
            assert (event["fault"], event["vendor_reroute"]) == ("eu-capacity", "gpt-eu-2")
            # The key is there only on rerouted calls.
            assert "vendor_reroute" not in sink.upstream("r1")[0]

    asyncio.run(scenario())


@BOTH
def test_a_rerouted_call_gets_the_fallbacks_capabilities(stream: bool) -> None:
    async def scenario() -> None:
        async with mock(_vendor_pair(capabilities={"context_tokens": 1000, "structured_output": False})) as (
                url, sink, session):
            assert await put_fault(session, url, "eu-capacity", {"kind": "error", "status": 503}) == 200
            text = await ask(session, url, body("r1", response_format={"type": "json_object"}), stream)
            assert text.status == 200 and text.content == "reply to r1 from gpt-eu"
            refused = await ask(session, url, body("r2", prompt_tokens=2000), stream)
            assert refused.status == 400 and refused.error is not None
            assert refused.error["code"] == "context_length_exceeded"
            [event] = sink.upstream("r2")
            assert (event["outcome"], event["vendor_reroute"], event["fault"]) == (
                "context_length", "gpt-eu-2", "eu-capacity")

    asyncio.run(scenario())


@BOTH
def test_a_slow_answer_stays_the_providers_own(stream: bool) -> None:
    async def scenario() -> None:
        async with mock(_vendor_pair()) as (url, sink, session):
            assert await put_fault(session, url, "eu-slow", {"kind": "latency", "ms": 50}) == 200
            slow = await ask(session, url, body("r1"), stream)
            assert slow.status == 200 and slow.model == "gpt-4o-2024-08-06" and slow.fingerprints == {"fp_se"}
            [event] = sink.upstream("r1")
            assert event["fault"] == "eu-slow" and "vendor_reroute" not in event

    asyncio.run(scenario())


def test_a_cut_stream_stays_the_providers_own() -> None:
    async def scenario() -> None:
        async with mock(_vendor_pair()) as (url, sink, session):
            assert await put_fault(session, url, "eu-cut", {"kind": "cut", "after_chunks": 1}) == 200
            async with session.post(f"{url}/v1/chat/completions", json={**body("r1"), "stream": True},
                                    headers=AUTH) as resp:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
            [event] = sink.upstream("r1")
            assert (event["outcome"], event["fault"]) == ("reset", "eu-cut") and "vendor_reroute" not in event

    asyncio.run(scenario())

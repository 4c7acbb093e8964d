"""The mock provider over real HTTP: answers, ground-truth records, faults and their effects."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from conftest_topology import ListSink, chat_body, parse_sse

from harness.core.identity import fingerprint
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.serving import start_app

TOKEN = "control-secret"
KEY = "sk-test-eu-0123456789"
IDENTITIES = {fingerprint(KEY): "svc-eu"}
SPEC = ProviderSpec(model="gpt-4o", region="eu", identity="svc-eu", tools=["search"], data_classes=["internal"])
AUTH = {"Authorization": f"Bearer {KEY}"}
CONTROL = {"x-harness-token": TOKEN}


@asynccontextmanager
async def provider(name: str = "gpt-eu", seed: int = 7, spec: ProviderSpec = SPEC,
                   sink: ListSink | None = None) -> AsyncIterator[tuple[str, ListSink, aiohttp.ClientSession]]:
    sink = sink if sink is not None else ListSink()
    runner, url = await start_app(build_provider_app(name, spec, sink, TOKEN, IDENTITIES, seed))
    try:
        async with aiohttp.ClientSession() as session:
            yield url, sink, session
    finally:
        await runner.cleanup()


async def put_fault(session: aiohttp.ClientSession, url: str, name: str, effect: dict[str, Any],
                    match: dict[str, Any] | None = None, probability: float = 1.0, ttl_s: float = 30) -> int:
    body = {"effect": effect, "match": match, "probability": probability, "deadline_ts": time.time() + ttl_s}
    async with session.put(f"{url}/_harness/faults/{name}", json=body, headers=CONTROL) as resp:
        return resp.status


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers or AUTH) as resp:
        return resp.status, dict(resp.headers), await resp.text()


def test_normal_answer_and_upstream_record() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            body = chat_body("r000042", tools=["search"])
            body["functions"] = [{"name": "legacy_fn"}]
            status, _, text = await post(session, url, body)
            assert status == 200
            answer = json.loads(text)
            assert answer["model"] == "gpt-4o" and answer["object"] == "chat.completion"
            assert answer["choices"][0]["message"]["content"] == "reply to r000042 from gpt-eu"
            assert answer["choices"][0]["finish_reason"] == "stop" and answer["usage"]["total_tokens"] > 0
            [event] = sink.upstream()
            assert event["id"] == "r000042" and event["provider"] == "gpt-eu"
            assert event["identity"] == "svc-eu" and event["key_fp"] == fingerprint(KEY)
            assert KEY not in json.dumps(sink.events)
            assert event["tools"] == ["search", "legacy_fn"]
            assert (event["model"], event["stream"], event["status"], event["outcome"]) == ("chat", False, 200, "ok")
            assert (event["tenant"], event["request_class"], event["region"], event["data_class"]) == (
                "acme", "chat", "eu", "internal")
            assert event["fault"] is None

    asyncio.run(scenario())


def test_streaming_format() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            status, headers, text = await post(session, url, chat_body("r1", stream=True))
            assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
            payloads = parse_sse(text)
            assert payloads[-1] == "[DONE]"
            chunks = [json.loads(p) for p in payloads[:-1]]
            assert len(chunks) >= 4
            assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4o" for c in chunks)
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
            assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "reply to r1 from gpt-eu"
            assert sink.upstream("r1")[0]["stream"] is True

    asyncio.run(scenario())


def test_credentials_unknown_none_and_header_id_fallback() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await post(session, url, chat_body("r1"), {"Authorization": "Bearer sk-somebody-else"})
            await post(session, url, chat_body("r2"), {"x-api-key": KEY})
            await post(session, url, chat_body(None), {"Content-Type": "application/json",
                                                       "x-harness-request-id": "r3"})
            # A call of no known identity is nobody's: its id only claimed (`claimed_id`), joined to no request.
            identities = {e["id"] or e["claimed_id"]: (e["identity"], e["key_fp"], e["id"], e.get("caller"))
                          for e in sink.upstream()}
            assert identities["r1"] == ("unknown", fingerprint("sk-somebody-else"), None, "unknown")
            assert identities["r2"] == ("svc-eu", fingerprint(KEY), "r2", None)
            assert identities["r3"] == ("none", None, None, "unknown")
            assert [e["tenant"] for e in sink.claiming("r1")] == [None]  # the token's attributes are claims too

    asyncio.run(scenario())


def test_control_endpoint_requires_token() -> None:
    async def scenario() -> None:
        async with provider() as (url, _, session):
            body = {"effect": {"kind": "reset"}, "deadline_ts": time.time() + 5}
            async with session.put(f"{url}/_harness/faults/f", json=body) as resp:
                assert resp.status == 401
            async with session.put(f"{url}/_harness/faults/f", json=body, headers={"x-harness-token": "x"}) as resp:
                assert resp.status == 401
            async with session.get(f"{url}/_harness/faults") as resp:
                assert resp.status == 401
            async with session.get(f"{url}/_harness/health") as resp:
                assert resp.status == 200
            assert await put_fault(session, url, "f", {"kind": "error", "status": 503}) == 200
            assert await put_fault(session, url, "bad", {"kind": "melt"}) == 400
            async with session.get(f"{url}/_harness/faults", headers=CONTROL) as resp:
                assert [f["name"] for f in (await resp.json())["faults"]] == ["f"]
            async with session.delete(f"{url}/_harness/faults/f", headers=CONTROL) as resp:
                assert resp.status == 200 and (await resp.json())["removed"] is True
            async with session.delete(f"{url}/_harness/faults/f", headers=CONTROL) as resp:
                assert resp.status == 200 and (await resp.json())["removed"] is False
            assert (await post(session, url, chat_body("r1")))[0] == 200

    asyncio.run(scenario())


def test_match_by_tenant_hits_only_matching_requests() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "acme-down", {"kind": "error", "status": 503}, match={"tenant": ["acme"]})
            assert (await post(session, url, chat_body("r1", tenant="acme")))[0] == 503
            assert (await post(session, url, chat_body("r2", tenant="beta")))[0] == 200
            no_token = {**AUTH, "x-harness-request-id": "r3"}
            assert (await post(session, url, chat_body(None), no_token))[0] == 200
            faults = {e["id"]: e["fault"] for e in sink.upstream()}
            assert faults == {"r1": "acme-down", "r2": None, "r3": None}

    asyncio.run(scenario())


def test_probability_is_deterministic_per_seed() -> None:
    async def hits(seed: int) -> set[str]:
        async with provider(seed=seed) as (url, sink, session):
            await put_fault(session, url, "flaky", {"kind": "error", "status": 500}, probability=0.5)
            for i in range(40):
                await post(session, url, chat_body(f"r{i:06d}"))
            return {e["id"] for e in sink.upstream() if e["outcome"] == "error"}

    async def scenario() -> None:
        first, second, other = await hits(11), await hits(11), await hits(12)
        assert first == second
        assert 5 < len(first) < 35
        assert other != first

    asyncio.run(scenario())


def test_deadline_expiry_drops_the_fault_by_itself() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "brief", {"kind": "error", "status": 503}, ttl_s=0.3)
            assert (await post(session, url, chat_body("r1")))[0] == 503
            await asyncio.sleep(0.35)
            assert (await post(session, url, chat_body("r2")))[0] == 200
            async with session.get(f"{url}/_harness/faults", headers=CONTROL) as resp:
                assert (await resp.json())["faults"] == []

    asyncio.run(scenario())


def test_error_effect_with_retry_after() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "limited", {"kind": "error", "status": 429, "retry_after_s": 2})
            status, headers, text = await post(session, url, chat_body("r1"))
            assert status == 429 and headers["Retry-After"] == "2"
            assert json.loads(text)["error"]["type"] == "rate_limit_error"
            [event] = sink.upstream()
            assert (event["status"], event["outcome"], event["fault"]) == (429, "error", "limited")

    asyncio.run(scenario())


def test_timeout_is_recorded_before_hanging_and_ends_at_the_deadline() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "hang", {"kind": "timeout", "hold_s": 30}, ttl_s=0.6)
            started = time.monotonic()
            call = asyncio.create_task(post(session, url, chat_body("r1")))
            await asyncio.sleep(0.2)
            assert not call.done()
            [event] = sink.upstream()
            assert (event["status"], event["outcome"], event["fault"]) == (0, "timeout", "hang")
            status, _, _ = await call
            assert status == 504 and time.monotonic() - started < 2

    asyncio.run(scenario())


def test_latency_effect_answers_normally_later() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "slow", {"kind": "latency", "ms": 250})
            started = time.monotonic()
            status, _, _ = await post(session, url, chat_body("r1"))
            assert status == 200 and time.monotonic() - started >= 0.25
            [event] = sink.upstream()
            assert (event["outcome"], event["fault"]) == ("ok", "slow")

    asyncio.run(scenario())


def test_reset_is_a_disconnect_for_the_client() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "cut", {"kind": "reset"})
            with pytest.raises(aiohttp.ClientConnectionError):
                await post(session, url, chat_body("r1"))
            [event] = sink.upstream()
            assert (event["status"], event["outcome"], event["fault"]) == (0, "reset", "cut")

    asyncio.run(scenario())


def test_content_policy_effect() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "refuse", {"kind": "content_policy"})
            status, _, text = await post(session, url, chat_body("r1"))
            error = json.loads(text)["error"]
            assert status == 400 and error["code"] == "content_policy_violation"
            assert error["type"] == "invalid_request_error"
            assert sink.upstream()[0]["outcome"] == "content_policy"

    asyncio.run(scenario())


def test_base_latency_applies() -> None:
    async def scenario() -> None:
        slow = ProviderSpec(model="m", region="eu", identity="svc-eu", latency_ms=150)
        async with provider(spec=slow) as (url, _, session):
            started = time.monotonic()
            assert (await post(session, url, chat_body("r1")))[0] == 200
            assert time.monotonic() - started >= 0.15

    asyncio.run(scenario())


async def _read_stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[bytes, bool]:
    """What the client received of a stream, and whether it ended cleanly."""
    received = b""
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=AUTH) as resp:
        assert resp.status == 200
        try:
            async for data in resp.content.iter_any():
                received += data
        except aiohttp.ClientPayloadError:
            return received, False
    return received, True


def test_cut_breaks_a_stream_after_n_chunks() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            assert await put_fault(session, url, "half", {"kind": "cut", "after_chunks": 2}) == 200
            received, clean = await _read_stream(session, url, chat_body("r1", stream=True))
            payloads = parse_sse(received.decode())
            assert not clean and len(payloads) == 2 and "[DONE]" not in payloads
            assert "".join(json.loads(p)["choices"][0]["delta"]["content"] for p in payloads) == "reply to r1 from"
            [event] = sink.upstream()
            # No new outcome in the ledger's contract: a cut stream is a dropped connection, "reset".
            assert (event["status"], event["outcome"], event["fault"], event["stream"]) == (0, "reset", "half", True)
            assert event["note"] == "stream cut after 2 chunks"

    asyncio.run(scenario())


def test_cut_never_lets_the_end_through_and_resets_a_non_stream() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "late", {"kind": "cut", "after_chunks": 99})
            received, clean = await _read_stream(session, url, chat_body("r1", stream=True))
            assert not clean and "[DONE]" not in parse_sse(received.decode())
            with pytest.raises(aiohttp.ClientConnectionError):
                await post(session, url, chat_body("r2"))
            assert [(e["id"], e["status"], e["outcome"], e["fault"]) for e in sink.upstream()] == [
                ("r1", 0, "reset", "late"), ("r2", 0, "reset", "late")]

    asyncio.run(scenario())


def test_cut_of_zero_chunks_and_container_effects_are_refused() -> None:
    async def scenario() -> None:
        async with provider() as (url, sink, session):
            await put_fault(session, url, "none", {"kind": "cut", "after_chunks": 0})
            try:
                received, clean = await _read_stream(session, url, chat_body("r1", stream=True))
            except aiohttp.ClientError:  # the line may drop before the status line even left
                received, clean = b"", False
            assert not clean and received == b""  # nothing comes through, not even a clean end
            assert sink.upstream()[0]["outcome"] == "reset"
            # The mock's control endpoint takes HTTP effects only; a container effect would be a silent no-op.
            assert await put_fault(session, url, "paused", {"kind": "pause"}) == 400

    asyncio.run(scenario())

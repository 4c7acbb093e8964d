"""The fault proxy over real HTTP, in front of a real model server process, all on 127.0.0.1.

Forwarding (non-stream and stream, relayed as it arrives), the ground truth it records, every
effect, selection by tenant and by seeded draw, expiry by itself, the control token, an upstream
that is down; then `harness run` end to end on a proxied scenario, the refusal of a remote
upstream, and faults that expire by themselves while the harness is frozen (mock and proxy).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest_topology import ListSink, breaking_upstream, chat_body, parse_sse
from yarl import URL

from harness.core.errors import HarnessError
from harness.core.identity import fingerprint
from harness.engine.topology import check_upstreams, free_port
from harness.scenario import load_scenario
from harness.serve import _event_loop_runner
from harness.topology.fault_proxy import FaultProxy, _Once, build_proxy_app
from harness.topology.mock_provider import ProviderSpec
from harness.topology.serving import start_app
from tests.conftest import ROOT, SCENARIOS, harness_cmd, shipped_text

TOKEN = "control-secret"
KEY = "sk-test-eu-0123456789"
IDENTITIES = {fingerprint(KEY): "svc-eu"}
SPEC = ProviderSpec(model="gpt-4o", region="eu", identity="svc-eu", tools=["search"], data_classes=["internal"])
AUTH = {"Authorization": f"Bearer {KEY}"}
CONTROL = {"x-harness-token": TOKEN}
FIXTURE = ROOT / "fixtures" / "scenarios" / "proxy-outage.yaml"


# -- real model server processes -----------------------------------------------------------------
@contextmanager
def model_server(*args: str, api_key: str | None = None) -> Iterator[str]:
    """`python -m harness.topology.model_server` on a free port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "MODEL_SERVER_API_KEY": api_key or ""}
    proc = subprocess.Popen([sys.executable, "-m", "harness.topology.model_server", "--port", str(port), *args],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while _served(url) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"model server did not start: {proc.communicate()[1]}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _served(url: str) -> int | None:
    """How many chat calls the model server answered (None: not up)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
            return int(json.loads(resp.read())["served"])
    except (urllib.error.URLError, OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    # It wants the identity's key, so every forwarded call proves the credential went through as is.
    with model_server("--model", "gpt-4o-upstream", api_key=KEY) as url:
        yield url


@asynccontextmanager
async def proxy(upstream_url: str, seed: int = 7, sink: ListSink | None = None,
                **kwargs: Any) -> AsyncIterator[tuple[str, ListSink, aiohttp.ClientSession]]:
    sink = sink if sink is not None else ListSink()
    app = build_proxy_app("gpt-eu", SPEC, upstream_url, sink, TOKEN, IDENTITIES, seed, **kwargs)
    runner, url = await start_app(app)
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


def only(sink: ListSink) -> dict[str, Any]:
    [event] = sink.upstream()
    return event


# -- forwarding and ground truth -------------------------------------------------------------------
def test_forwards_a_call_and_records_the_ground_truth(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, sink, session):
            status, _, text = await post(session, url, chat_body("r000042", tools=["search"]))
            assert status == 200, text
            answer = json.loads(text)
            assert answer["model"] == "gpt-4o-upstream" and answer["choices"][0]["finish_reason"] == "stop"
            event = only(sink)
            assert (event["id"], event["provider"], event["identity"], event["key_fp"]) == (
                "r000042", "gpt-eu", "svc-eu", fingerprint(KEY))
            assert (event["tools"], event["stream"], event["status"], event["outcome"], event["fault"]) == (
                ["search"], False, 200, "ok", None)
            assert (event["tenant"], event["request_class"], event["region"], event["data_class"]) == (
                "acme", "chat", "eu", "internal")
            assert KEY not in json.dumps(sink.events)
            # Another key goes through as it is too: the upstream refuses it, and that is what is recorded.
            status, _, _ = await post(session, url, chat_body("r2"), {"Authorization": "Bearer sk-other"})
            assert status == 401
            # ... as an unknown caller's call: it claims r2, but is joined to no request.
            assert [(e["identity"], e["status"], e["outcome"], e["id"], e["caller"]) for e in sink.claiming("r2")] == [
                ("unknown", 401, "error", None, "unknown")]

    asyncio.run(scenario())


def test_forwards_method_path_query_headers_and_body_verbatim() -> None:
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path_qs": request.raw_path, "headers": dict(request.headers),
                     "body": (await request.read()).decode()})
        if request.path.endswith("/refuse"):
            return web.json_response({"error": {"code": "content_policy_violation", "type": "x"}}, status=400)
        return web.json_response({"ok": True}, headers={"X-Upstream": "yes", "Keep-Alive": "timeout=5"})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", echo)
        runner, upstream_url = await start_app(app)
        try:
            async with proxy(upstream_url + "/base") as (url, sink, session):
                raw = json.dumps(chat_body("r1")).encode()
                headers = {**AUTH, "Content-Type": "application/json", "X-Custom": "kept", "api-version": "7",
                           "Connection": "keep-alive, X-Drop-Me", "X-Drop-Me": "hop", "TE": "trailers",
                           "Proxy-Authorization": "Basic c2VjcmV0", "x-harness-token": TOKEN}
                # Sent verbatim (encoded=True): the proxy must not re-encode or decode any of it either.
                target = URL(f"{url}/openai/deployments/a%2Fb/chat/completions?api-version=2024-10-01&x=%2F",
                             encoded=True)
                async with session.post(target, data=raw, headers=headers) as resp:
                    assert resp.status == 200 and resp.headers["X-Upstream"] == "yes"
                    assert "Keep-Alive" not in resp.headers
                [forwarded] = seen
                assert forwarded["method"] == "POST"
                assert forwarded["path_qs"] == (
                    "/base/openai/deployments/a%2Fb/chat/completions?api-version=2024-10-01&x=%2F")
                assert forwarded["body"] == raw.decode()
                got = {k.lower(): v for k, v in forwarded["headers"].items()}
                assert got["authorization"] == f"Bearer {KEY}" and got["x-custom"] == "kept"
                assert got["api-version"] == "7"
                for dropped in ("x-drop-me", "te", "proxy-authorization", "x-harness-token"):
                    assert dropped not in got, dropped
                assert only(sink)["outcome"] == "ok"
                # Not a model call: forwarded, not recorded.
                async with session.get(f"{url}/v1/models?limit=1") as resp:
                    assert resp.status == 200
                assert seen[-1]["method"] == "GET" and seen[-1]["path_qs"] == "/base/v1/models?limit=1"
                assert len(sink.upstream()) == 1
                # The control namespace is never forwarded, whatever the method.
                async with session.post(f"{url}/_harness/faults/x", json={}, headers=CONTROL) as resp:
                    assert resp.status == 404
                assert len(seen) == 2
                # An upstream's content-policy refusal is recorded as such, and relayed.
                async with session.post(f"{url}/v1/refuse", json=chat_body("r2"), headers=AUTH) as resp:
                    assert resp.status == 400
                assert [(e["status"], e["outcome"]) for e in sink.upstream("r2")] == [(400, "content_policy")]
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


@pytest.mark.slow
def test_stream_is_relayed_chunk_by_chunk_not_buffered() -> None:
    async def scenario() -> None:
        with model_server("--chunk-delay-ms", "300", "--chunks", "4") as slow:
            async with proxy(slow) as (url, sink, session):
                started = time.monotonic()
                first: float | None = None
                received = b""
                async with session.post(f"{url}/v1/chat/completions", json=chat_body("r1", stream=True),
                                        headers=AUTH) as resp:
                    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
                    async for data in resp.content.iter_any():
                        first = first if first is not None else time.monotonic() - started
                        received += data
                total = time.monotonic() - started
        # Six events, 0.3 s apart: the first is here long before the upstream has finished.
        assert first is not None and total >= 1.7 and first < total - 1.0, (first, total)
        payloads = parse_sse(received.decode())
        assert payloads[-1] == "[DONE]" and json.loads(payloads[-2])["choices"][0]["finish_reason"] == "stop"
        event = only(sink)
        assert (event["stream"], event["status"], event["outcome"]) == (True, 200, "ok")

    asyncio.run(scenario())


@pytest.mark.parametrize("role", ["gateway", "providers"])  # asyncio's loop, and the providers' own (uvloop)
def test_an_answer_is_recorded_ok_only_while_its_caller_is_still_there(role: str) -> None:
    """The decision the proxy takes as an answer's end goes out, on a real server's transports: one whose
    caller is still connected is `ok`; one the caller has closed (its own deadline fell while the answer
    was being relayed) is a timeout, as the gateway saw it. Under load, the close of a gateway that gave
    up can arrive just before that decision, with the proxy's handler not cancelled yet."""
    async def scenario() -> None:
        recorded: list[tuple[int, str, str | None]] = []

        async def answered(request: web.Request) -> web.Response:
            if request.query.get("close"):
                assert request.transport is not None
                request.transport.close()  # the caller's end gone, the handler still running
            FaultProxy._handed_over(request, _Once(lambda *record: recorded.append(record)), 200, "ok")
            return web.Response(text="done")

        app = web.Application()
        app.router.add_post("/answer", answered)  # a POST: the client never sends it twice
        runner, url = await start_app(app)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{url}/answer") as resp:
                    assert resp.status == 200
                with pytest.raises(aiohttp.ClientError):
                    async with session.post(f"{url}/answer?close=1") as resp:
                        await resp.read()
        finally:
            await runner.cleanup()
        assert [(status, outcome) for status, outcome, _ in recorded] == [(200, "ok"), (0, "timeout")]
        assert recorded[1][2] == "the caller went away as the answer ended"

    _event_loop_runner(role)(scenario())


def test_upstream_down_is_a_recorded_502(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(f"http://127.0.0.1:{free_port()}") as (url, sink, session):
            status, _, text = await post(session, url, chat_body("r1"))
            assert status == 502 and json.loads(text)["error"]["code"] == "upstream_unreachable"
            event = only(sink)
            assert (event["status"], event["outcome"], event["identity"]) == (502, "error", "svc-eu")
            assert "unreachable" in event["note"]

    asyncio.run(scenario())


def test_upstream_stream_that_breaks_is_passed_on_and_recorded() -> None:
    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", breaking_upstream)
        runner, upstream_url = await start_app(app)
        try:
            async with proxy(upstream_url) as (url, sink, session):
                with pytest.raises(aiohttp.ClientPayloadError):
                    await post(session, url, chat_body("r1", stream=True))
                event = only(sink)
                assert (event["status"], event["outcome"]) == (0, "reset") and "broke" in event["note"]
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


# -- effects ------------------------------------------------------------------------------------------
def test_error_effect_with_retry_after_never_reaches_the_upstream(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, sink, session):
            before = _served(upstream)
            effect = {"kind": "error", "status": 429, "retry_after_s": 1.5}
            assert await put_fault(session, url, "limited", effect) == 200
            status, headers, text = await post(session, url, chat_body("r1"))
            assert status == 429 and headers["Retry-After"] == "2"
            assert json.loads(text)["error"]["type"] == "rate_limit_error"
            event = only(sink)
            assert (event["status"], event["outcome"], event["fault"], event["identity"]) == (
                429, "error", "limited", "svc-eu")
            assert _served(upstream) == before

    asyncio.run(scenario())


def test_timeout_is_recorded_before_hanging_and_ends_at_the_deadline(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, sink, session):
            await put_fault(session, url, "hang", {"kind": "timeout", "hold_s": 30}, ttl_s=0.6)
            started = time.monotonic()
            call = asyncio.create_task(post(session, url, chat_body("r1")))
            await asyncio.sleep(0.2)
            assert not call.done()
            assert (only(sink)["status"], only(sink)["outcome"], only(sink)["fault"]) == (0, "timeout", "hang")
            status, _, _ = await call
            assert status == 504 and time.monotonic() - started < 2

    asyncio.run(scenario())


def test_latency_effect_forwards_later(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, sink, session):
            await put_fault(session, url, "slow", {"kind": "latency", "ms": 300})
            started = time.monotonic()
            status, _, text = await post(session, url, chat_body("r1"))
            assert status == 200 and time.monotonic() - started >= 0.3
            assert json.loads(text)["model"] == "gpt-4o-upstream"  # the upstream really answered
            assert (only(sink)["outcome"], only(sink)["fault"]) == ("ok", "slow")

    asyncio.run(scenario())


def test_reset_is_a_disconnect_for_the_client(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, sink, session):
            await put_fault(session, url, "drop", {"kind": "reset"})
            with pytest.raises(aiohttp.ClientConnectionError):
                await post(session, url, chat_body("r1"))
            assert (only(sink)["status"], only(sink)["outcome"], only(sink)["fault"]) == (0, "reset", "drop")

    asyncio.run(scenario())


def test_cut_breaks_a_stream_after_n_chunks(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, sink, session):
            await put_fault(session, url, "half", {"kind": "cut", "after_chunks": 2})
            received = b""
            async with session.post(f"{url}/v1/chat/completions", json=chat_body("r1", stream=True),
                                    headers=AUTH) as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):  # a broken stream, not a clean end
                    async for data in resp.content.iter_any():
                        received += data
            payloads = parse_sse(received.decode())
            assert len(payloads) == 2 and "[DONE]" not in payloads
            assert all(json.loads(p)["model"] == "gpt-4o-upstream" for p in payloads)
            event = only(sink)
            assert (event["status"], event["outcome"], event["fault"]) == (0, "reset", "half")
            assert event["note"] == "stream cut after 2 chunks"
            # However many chunks it allows, a cut never lets the end through.
            await put_fault(session, url, "half", {"kind": "cut", "after_chunks": 50})
            with pytest.raises(aiohttp.ClientPayloadError):
                await post(session, url, chat_body("r2", stream=True))
            # A request that is no stream has nothing to cut: it is reset.
            with pytest.raises(aiohttp.ClientConnectionError):
                await post(session, url, chat_body("r3"))
            assert [(e["id"], e["outcome"]) for e in sink.upstream()[1:]] == [("r2", "reset"), ("r3", "reset")]

    asyncio.run(scenario())


# -- selection, expiry, control ------------------------------------------------------------------------
def test_match_by_tenant_hits_only_matching_requests(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, sink, session):
            await put_fault(session, url, "acme-down", {"kind": "error", "status": 503}, match={"tenant": ["acme"]})
            assert (await post(session, url, chat_body("r1", tenant="acme")))[0] == 503
            assert (await post(session, url, chat_body("r2", tenant="beta")))[0] == 200
            assert {e["id"]: e["fault"] for e in sink.upstream()} == {"r1": "acme-down", "r2": None}

    asyncio.run(scenario())


def test_probability_is_deterministic_per_seed(upstream: str) -> None:
    async def hits(seed: int) -> set[str]:
        async with proxy(upstream, seed=seed) as (url, sink, session):
            await put_fault(session, url, "flaky", {"kind": "error", "status": 500}, probability=0.5)
            for i in range(30):
                await post(session, url, chat_body(f"r{i:06d}"))
            return {e["id"] for e in sink.upstream() if e["outcome"] == "error"}

    async def scenario() -> None:
        first, second, other = await hits(11), await hits(11), await hits(12)
        assert first == second and 4 < len(first) < 26 and other != first

    asyncio.run(scenario())


def test_deadline_expiry_drops_the_fault_by_itself(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, _sink, session):
            await put_fault(session, url, "brief", {"kind": "error", "status": 503}, ttl_s=0.3)
            assert (await post(session, url, chat_body("r1")))[0] == 503
            await asyncio.sleep(0.35)
            assert (await post(session, url, chat_body("r2")))[0] == 200
            async with session.get(f"{url}/_harness/faults", headers=CONTROL) as resp:
                assert (await resp.json())["faults"] == []

    asyncio.run(scenario())


def test_control_endpoint_requires_the_token_and_http_effects(upstream: str) -> None:
    async def scenario() -> None:
        async with proxy(upstream) as (url, _sink, session):
            body = {"effect": {"kind": "reset"}, "deadline_ts": time.time() + 5}
            for headers in ({}, {"x-harness-token": "wrong"}):
                async with session.put(f"{url}/_harness/faults/f", json=body, headers=headers) as resp:
                    assert resp.status == 401
                async with session.get(f"{url}/_harness/faults", headers=headers) as resp:
                    assert resp.status == 401
                async with session.delete(f"{url}/_harness/faults/f", headers=headers) as resp:
                    assert resp.status == 401
            async with session.get(f"{url}/_harness/health") as resp:
                assert resp.status == 200 and (await resp.json())["provider"] == "gpt-eu"
            assert await put_fault(session, url, "paused", {"kind": "pause"}) == 400  # a container effect
            assert (await post(session, url, chat_body("r1")))[0] == 200

    asyncio.run(scenario())


# -- the harness end to end ---------------------------------------------------------------------------
def _scenario_text(primary: str, fallback: str, **replace: str) -> str:
    text = FIXTURE.read_text().replace("http://127.0.0.1:18401", primary).replace("http://127.0.0.1:18402", fallback)
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def _events(ledger: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


def _env(tmp_path: Path) -> dict[str, str]:
    # A journal of our own: a run killed here must not leave entries in the user's.
    return {"HARNESS_STATE_DIR": str(tmp_path / "state")}


@pytest.mark.slow
def test_harness_run_through_fault_proxies_passes_every_check(tmp_path: Path) -> None:
    with model_server("--model", "gpt-4o") as primary, model_server("--model", "claude-sonnet") as fallback:
        scenario = tmp_path / "proxy-outage.yaml"
        scenario.write_text(_scenario_text(primary, fallback))
        result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "reports"), env=_env(tmp_path))
        served_primary, served_fallback = _served(primary), _served(fallback)
    assert result.returncode == 0, result.stdout + result.stderr
    [run_dir] = list((tmp_path / "reports").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {c["check"]: c["verdict"] for c in summary["checks"]} == {c["check"]: "pass" for c in summary["checks"]}
    assert len(summary["checks"]) == 10
    events = _events(run_dir / "ledger.jsonl")
    calls = [e for e in events if e["type"] == "upstream"]
    assert {e["identity"] for e in calls} == {"svc-eu"}
    # Every ok call was really answered by an upstream, and the fault was injected by the proxy.
    ok = [e for e in calls if e["outcome"] == "ok"]
    assert served_primary is not None and served_fallback is not None
    assert len(ok) == served_primary + served_fallback
    assert {e["provider"] for e in ok} == {"gpt-eu", "claude-eu"}
    faulted = [e for e in calls if e["fault"] == "eu-primary-down"]
    assert faulted and all(e["provider"] == "gpt-eu" and e["status"] == 503 for e in faulted)
    assert next(e for e in events if e["type"] == "fault_start")["backend"] == "proxy"
    for path in run_dir.iterdir():
        assert "sk-test-svc-eu" not in path.read_text(errors="replace"), path


def test_check_upstreams_refuses_a_remote_upstream_without_allow_remote(tmp_path: Path) -> None:
    def scenario(primary: str) -> Any:
        path = tmp_path / "s.yaml"
        path.write_text(_scenario_text(primary, "http://127.0.0.1:9"))
        return load_scenario(path).scenario

    for url in ("http://127.0.0.1:9", "http://127.8.9.10:9/v1", "http://localhost:9", "http://[::1]:9",
                "https://LOCALHOST/"):
        check_upstreams(scenario(url), allow_remote=False)
    for url in ("http://10.1.2.3:9", "https://api.example.com/v1", "http://[::ffff:10.0.0.1]:9"):
        with pytest.raises(HarnessError) as refused:
            check_upstreams(scenario(url), allow_remote=False)
        assert "providers.gpt-eu.upstream" in str(refused.value) and "--allow-remote" in str(refused.value)
        check_upstreams(scenario(url), allow_remote=True)
    for url in ("ftp://10.1.2.3/", "http://127.0.0.1:9?x=1", "http://:9", "http://127.0.0.1:port"):
        with pytest.raises(HarnessError, match="http\\(s\\) base URL"):
            check_upstreams(scenario(url), allow_remote=True)
    with pytest.raises(HarnessError) as refused:  # credentials in the URL are never echoed
        check_upstreams(scenario("http://user:s3cret@10.1.2.3:9"), allow_remote=False)
    assert "s3cret" not in str(refused.value)


def test_harness_run_refuses_a_remote_upstream_before_anything_starts(tmp_path: Path) -> None:
    scenario = tmp_path / "remote.yaml"
    scenario.write_text(_scenario_text("http://10.1.2.3:9", "http://127.0.0.1:9"))
    started = time.monotonic()
    result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "reports"), env=_env(tmp_path),
                         timeout=60)
    assert result.returncode in (2, 3), result.stdout + result.stderr
    assert "--allow-remote" in result.stdout + result.stderr
    assert time.monotonic() - started < 30
    # Nothing reached an upstream: the providers process never started, nothing was recorded or sent.
    for run_dir in (tmp_path / "reports").iterdir() if (tmp_path / "reports").exists() else []:
        assert not (run_dir / "providers.log").exists()
        kinds = {e["type"] for e in _events(run_dir / "ledger.jsonl")}
        assert not kinds & {"upstream", "request", "fault_start"}, kinds


# -- faults expire by themselves while the harness cannot heal them ----------------------------------
def _wait_for_fault(report_dir: Path, timeout: float = 30) -> tuple[Path, list[dict[str, Any]]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ledger in report_dir.glob("*/ledger.jsonl") if report_dir.exists() else []:
            events = _events(ledger) if '"fault_start"' in ledger.read_text() else []
            if events:
                return ledger.parent, events
        time.sleep(0.05)
    pytest.fail("the fault never started")


def _probe(url: str, rid: str, headers: dict[str, str] | None = None) -> int:
    body = json.dumps(chat_body(rid)).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _frozen_harness_fault_expires(scenario: Path, tmp_path: Path, provider: str, backend: str,
                                  headers: dict[str, str] | None = None) -> None:
    report_dir = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(scenario), "--report-dir",
                             str(report_dir)], cwd=ROOT, env={**os.environ, **_env(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_dir, events = _wait_for_fault(report_dir)
        # Frozen, the harness can heal nothing; its children (providers, gateway) keep serving.
        os.kill(proc.pid, signal.SIGSTOP)
        start = next(e for e in events if e["type"] == "fault_start")
        assert start["backend"] == backend
        url = next(e for e in events if e["type"] == "topology")["providers"][provider]
        assert _probe(url, "probe-0", headers) == 503  # the outage is on
        while (status := _probe(url, "probe-1", headers)) == 503 and time.time() < start["deadline_ts"] + 3:
            time.sleep(0.1)
        assert status == 200, "the fault outlived its deadline"
        assert time.time() >= start["deadline_ts"] - 0.5  # it was the deadline, not a heal
        assert not [e for e in _events(run_dir / "ledger.jsonl") if e["type"] == "fault_end"]
    finally:
        proc.kill()  # SIGKILL works on a stopped process; the children die with it
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _probe_alive(url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _probe_alive(url), "the providers outlived the killed harness"


def _probe_alive(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/_harness/health", timeout=1)
    except (urllib.error.URLError, OSError):
        return False
    return True


@pytest.mark.slow
def test_proxy_fault_expires_by_itself_while_the_harness_is_frozen(tmp_path: Path) -> None:
    with model_server() as primary, model_server() as fallback:
        scenario = tmp_path / "proxy-frozen.yaml"
        scenario.write_text(_scenario_text(primary, fallback, **{
            "duration_s: 12": "duration_s: 30", "at_s: 2\n    duration_s: 4": "at_s: 1\n    duration_s: 2"}))
        _frozen_harness_fault_expires(scenario, tmp_path, "gpt-eu", "proxy", {"Authorization": "Bearer sk-test-svc-eu"})


@pytest.mark.slow
def test_mock_fault_expires_by_itself_while_the_harness_is_frozen(tmp_path: Path) -> None:
    scenario = tmp_path / "mock-frozen.yaml"
    text = shipped_text(SCENARIOS / "regional-outage.yaml")
    shorter = (("duration_s: 16", "duration_s: 30"), ("at_s: 3\n    duration_s: 6", "at_s: 1\n    duration_s: 2"))
    for old, new in shorter:
        assert old in text
        text = text.replace(old, new)
    scenario.write_text(text)
    _frozen_harness_fault_expires(scenario, tmp_path, "gpt-eu", "mock")

"""The Bedrock runtime dialect, judged by boto3's own bedrock-runtime client against a real mock on 127.0.0.1:
Converse, ConverseStream, InvokeModel and InvokeModelWithResponseStream (Claude's Messages format), tool use,
structured output, each error as botocore's ClientError with its code and botocore's own retry decision,
the guardrail refusal, a cut stream, SigV4 identity (a wrong secret is 'unknown'), the fault proxy in front
of a mock Bedrock, and the reference gateway's client side (client_call / client_answer / client_stream).

The servers run in a loop of their own thread, so the SDK is called as its users call it: synchronously.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from typing import Any

import aiohttp
import boto3
import botocore.exceptions
import pytest
import urllib3
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError
from botocore.retries.standard import ExponentialBackoff
from conftest_topology import ListSink

from harness.core.correlation import Correlation
from harness.core.identity import fingerprint
from harness.topology.apis.base import Answer, ClientCall, ClientTarget, Meta
from harness.topology.apis.bedrock import API, encode_message, event, exception
from harness.topology.fault_proxy import build_proxy_app
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.serving import start_app

AKID = "AKIDBEDROCKTEST00001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0"
CONTROL = "control-secret"
API_KEY = "ABSKQmVkcm9ja0FQSUtleS10ZXN0"  # a Bedrock API key (bearer), another identity
IDENTITIES = {fingerprint(AKID): "svc-bedrock", fingerprint(API_KEY): "svc-api-key"}
TOOLS = {"tools": [{"toolSpec": {"name": "search", "inputSchema": {"json": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}}]}
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy from the env
CUT = (urllib3.exceptions.ProtocolError, botocore.exceptions.ConnectionClosedError,
       botocore.exceptions.EndpointConnectionError, botocore.exceptions.ResponseStreamingError)


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS profile, credential, endpoint, retry setting or proxy of this machine reaches the SDK."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    # botocore's backoff scale (1 s for throttling) made tiny: whether it retries stays botocore's decision.
    monkeypatch.setitem(ExponentialBackoff._DEFAULT_BACKOFF_CONFIG, "throttling_base_scale", 0.001)
    monkeypatch.setitem(ExponentialBackoff._DEFAULT_BACKOFF_CONFIG, "non_throttling_base_scale", 0.001)


class Servers:
    """aiohttp apps on 127.0.0.1, served by a loop in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=20)

    def start(self, app: web.Application) -> str:
        runner, url = self.run(start_app(app))
        self.runners.append(runner)
        return str(url)

    def mock(self, name: str = "claude-bedrock", **extra: Any) -> tuple[str, ListSink]:
        sink = ListSink()
        spec = ProviderSpec.from_dict({"model": MODEL, "region": "us-east-1", "identity": "svc-bedrock",
                                       "api": "bedrock", "tools": ["search"], **extra}, name)
        return self.start(build_provider_app(name, spec, sink, CONTROL, IDENTITIES, 7, secrets={AKID: SECRET})), sink

    def close(self) -> None:
        for runner in reversed(self.runners):
            self.run(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    try:
        yield s
    finally:
        s.close()


def put_fault(url: str, name: str, effect: dict[str, Any]) -> None:
    body = json.dumps({"effect": effect, "match": None, "probability": 1.0, "deadline_ts": time.time() + 30})
    request = urllib.request.Request(f"{url}/_harness/faults/{name}", data=body.encode(), method="PUT",
                                     headers={"x-harness-token": CONTROL, "Content-Type": "application/json"})
    with LOCAL.open(request) as resp:
        assert resp.status == 200


def bedrock(url: str, attempts: int = 1, secret: str = SECRET, region: str = "us-east-1") -> Any:
    return boto3.client("bedrock-runtime", region_name=region, endpoint_url=url, aws_access_key_id=AKID,
                        aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}, read_timeout=10))


def token(rid: str) -> str:
    return Correlation(rid, "acme", "chat", "eu", "internal").token()


def user(rid: str, text: str = "hello") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": f"{text} {token(rid)}"}]}]


def claude_body(rid: str, **extra: Any) -> str:
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "system": "be brief",
                       "messages": [{"role": "user", "content": f"hello {token(rid)}"}], **extra})


# -- success: the SDK parses what the mock says -------------------------------------------------------------
def test_converse_and_its_ground_truth(servers: Servers) -> None:
    url, sink = servers.mock()
    reply = bedrock(url).converse(modelId=MODEL, messages=user("r1"), system=[{"text": "be brief"}])
    assert reply["output"]["message"] == {"role": "assistant", "content": [{"text": "reply to r1 from claude-bedrock"}]}
    assert reply["stopReason"] == "end_turn" and reply["usage"]["totalTokens"] > 0
    assert reply["metrics"]["latencyMs"] >= 0 and reply["ResponseMetadata"]["RequestId"]
    [record] = sink.upstream()
    assert (record["id"], record["identity"], record["key_fp"], record["api"]) == (
        "r1", "svc-bedrock", fingerprint(AKID), "bedrock")
    assert (record["tenant"], record["model"], record["stream"], record["status"], record["outcome"]) == (
        "acme", MODEL, False, 200, "ok")
    assert SECRET not in json.dumps(sink.events)


def test_converse_stream_through_botocore_decoder_and_an_arn_model(servers: Servers) -> None:
    url, sink = servers.mock()
    response = bedrock(url, region="eu-west-1").converse_stream(modelId=ARN, messages=user("r2"))
    events = list(response["stream"])
    assert [next(iter(e)) for e in (events[0], events[-2], events[-1])] == ["messageStart", "messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "reply to r2 from claude-bedrock" and events[-2]["messageStop"]["stopReason"] == "end_turn"
    [record] = sink.upstream()
    # The region is the credential scope's: a call signed for eu-west-1 verifies just as well.
    assert (record["model"], record["stream"], record["identity"], record["outcome"]) == (
        ARN, True, "svc-bedrock", "ok")


def test_tool_use_converse_and_stream(servers: Servers) -> None:
    url, sink = servers.mock()
    client = bedrock(url)
    config = {**TOOLS, "toolChoice": {"tool": {"name": "search"}}}
    reply = client.converse(modelId=MODEL, messages=user("r3"), toolConfig=config)
    assert reply["stopReason"] == "tool_use"
    [block] = reply["output"]["message"]["content"]
    assert block["toolUse"]["name"] == "search" and block["toolUse"]["input"] == {} and block["toolUse"]["toolUseId"]
    events = list(client.converse_stream(modelId=MODEL, messages=user("r4"), toolConfig=config)["stream"])
    [start] = [e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e]
    assert start["name"] == "search"
    assert [e["messageStop"]["stopReason"] for e in events if "messageStop" in e] == ["tool_use"]
    assert [r["tools"] for r in sink.upstream()] == [["search"], ["search"]]


def test_structured_output_is_read_from_output_config(servers: Servers) -> None:
    url, _ = servers.mock()
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    reply = bedrock(url).converse(modelId=MODEL, messages=user("r5"), outputConfig={"textFormat": {
        "type": "json_schema", "structure": {"jsonSchema": {"name": "place", "schema": json.dumps(schema)}}}})
    assert set(json.loads(reply["output"]["message"]["content"][0]["text"])) == {"city"}


def test_invoke_model_claude_messages_format(servers: Servers) -> None:
    url, sink = servers.mock()
    client = bedrock(url)
    reply = json.loads(client.invoke_model(modelId=MODEL, body=claude_body("r6"))["body"].read())
    assert reply["type"] == "message" and reply["model"] == MODEL and reply["stop_reason"] == "end_turn"
    assert reply["content"][0]["text"].startswith("reply to r6 from claude-bedrock")
    tools = [{"name": "search", "input_schema": {"type": "object"}}]
    reply = json.loads(client.invoke_model(modelId=MODEL, body=claude_body(
        "r7", tools=tools, tool_choice={"type": "any"}))["body"].read())
    assert reply["stop_reason"] == "tool_use" and reply["content"][0]["name"] == "search"
    stream = client.invoke_model_with_response_stream(modelId=MODEL, body=claude_body("r8"))
    claude = [json.loads(e["chunk"]["bytes"]) for e in stream["body"]]
    assert claude[0]["type"] == "message_start" and claude[-1]["type"] == "message_stop"
    text = "".join(e["delta"]["text"] for e in claude if e["type"] == "content_block_delta")
    assert text.startswith("reply to r8 from claude-bedrock")
    assert [(r["id"], r["stream"], r["tools"], r["identity"]) for r in sink.upstream()] == [
        ("r6", False, [], "svc-bedrock"), ("r7", False, ["search"], "svc-bedrock"), ("r8", True, [], "svc-bedrock")]


# -- errors: botocore's ClientError with the code, and botocore's own retry decision --------------------------
@pytest.mark.parametrize(("effect", "code", "status", "calls", "outcome"), [
    ({"kind": "error", "status": 429}, "ThrottlingException", 429, 3, "error"),
    ({"kind": "error", "status": 429, "code": "ModelNotReadyException"}, "ModelNotReadyException", 429, 3,
     "overloaded"),
    ({"kind": "error", "status": 500}, "InternalServerException", 500, 3, "error"),
    ({"kind": "error", "status": 503}, "ServiceUnavailableException", 503, 3, "overloaded"),
    ({"kind": "overloaded"}, "ServiceUnavailableException", 503, 3, "overloaded"),
    ({"kind": "error", "status": 400, "code": "ValidationException"}, "ValidationException", 400, 1, "error"),
    ({"kind": "error", "status": 424, "code": "ModelErrorException"}, "ModelErrorException", 424, 1, "error"),
    ({"kind": "timeout", "hold_s": 0.05}, "ModelTimeoutException", 408, 1, "timeout"),
])
def test_errors_as_botocore_sees_them(servers: Servers, effect: dict[str, Any], code: str, status: int, calls: int,
                                      outcome: str) -> None:
    url, sink = servers.mock()
    put_fault(url, "f", effect)
    with pytest.raises(ClientError) as caught:
        bedrock(url, attempts=3).converse(modelId=MODEL, messages=user("e1"))
    error = caught.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    assert [(r["outcome"], r["identity"]) for r in sink.upstream("e1")] == [(outcome, "svc-bedrock")] * calls


def test_retry_after_is_honoured_by_botocore(servers: Servers) -> None:
    url, sink = servers.mock()
    put_fault(url, "slow-down", {"kind": "error", "status": 429, "retry_after_s": 0.3})
    started = time.monotonic()
    with pytest.raises(ClientError) as caught:
        bedrock(url, attempts=2).converse(modelId=MODEL, messages=user("e2"))
    assert time.monotonic() - started >= 0.3   # botocore waited for x-amz-retry-after (ms)
    headers = caught.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert (headers["retry-after"], headers["x-amz-retry-after"]) == ("1", "300")
    assert len(sink.upstream("e2")) == 2


def test_context_length_is_a_validation_exception(servers: Servers) -> None:
    url, sink = servers.mock(capabilities={"context_tokens": 50})
    with pytest.raises(ClientError) as caught:
        bedrock(url, attempts=3).converse(modelId=MODEL, messages=user("e3", "long " * 200))
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "Input is too long for requested model." in caught.value.response["Error"]["Message"]
    assert [(r["status"], r["outcome"]) for r in sink.upstream("e3")] == [(400, "context_length")]


def test_guardrail_refusal_is_an_answer(servers: Servers) -> None:
    url, sink = servers.mock()
    put_fault(url, "guard", {"kind": "content_policy"})
    client = bedrock(url)
    reply = client.converse(modelId=MODEL, messages=user("g1"))
    assert reply["stopReason"] == "guardrail_intervened" and reply["output"]["message"]["content"][0]["text"]
    events = list(client.converse_stream(modelId=MODEL, messages=user("g2"))["stream"])
    assert [e["messageStop"]["stopReason"] for e in events if "messageStop" in e] == ["guardrail_intervened"]
    assert [(r["status"], r["outcome"]) for r in sink.upstream()] == [(200, "content_policy")] * 2


@pytest.mark.parametrize("after", [0, 2, 100])
def test_a_cut_stream_breaks_in_the_sdk(servers: Servers, after: int) -> None:
    url, sink = servers.mock()
    put_fault(url, "cut", {"kind": "cut", "after_chunks": after})
    client = bedrock(url)
    seen: list[dict[str, Any]] = []
    with pytest.raises(CUT):
        seen.extend(client.converse_stream(modelId=MODEL, messages=user("c1"))["stream"])
    assert "metadata" not in [next(iter(e)) for e in seen]
    with pytest.raises(CUT):
        list(client.invoke_model_with_response_stream(modelId=MODEL, body=claude_body("c2"))["body"])
    assert [r["outcome"] for r in sink.upstream()] == ["reset", "reset"]


# -- identity: SigV4 verified against the identity's secret -----------------------------------------------
def test_a_signature_that_does_not_verify_is_unknown(servers: Servers) -> None:
    url, sink = servers.mock()
    bedrock(url, secret="not-the-secret").converse(modelId=MODEL, messages=user("i1"))
    [record] = sink.claiming("i1")  # an unknown caller's: recorded, attributed to no request
    assert record["id"] is None and record["caller"] == "unknown"
    assert record["identity"] == "unknown" and record["key_fp"] == fingerprint(f"{AKID} (signature does not verify)")
    # A body changed after signing does not verify either; no Authorization at all is 'none'.
    call = API.client_call(ClientTarget(url, MODEL, AKID, SECRET), {"messages": [
        {"role": "user", "content": f"hi {token('i2')}"}]}, False, {})
    status, _, _ = servers.run(send(ClientCall(call.method, call.url, call.headers, call.body.replace(b"hi", b"ho"))))
    assert status == 200 and sink.claiming("i2")[0]["identity"] == "unknown"
    status, _, _ = servers.run(send(ClientCall("POST", call.url, {"Content-Type": "application/json"}, call.body)))
    assert sink.claiming("i2")[1]["identity"] == "none"


def test_a_bedrock_api_key_is_a_bearer_identity(servers: Servers) -> None:
    """A Bedrock API key travels as a bearer token (botocore sends one only over HTTPS: raw HTTP here)."""
    url, sink = servers.mock()
    body = json.dumps({"messages": user("i3")}).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    status, _, _ = servers.run(send(ClientCall("POST", f"{url}/model/{MODEL}/converse", headers, body)))
    assert status == 200
    assert [(r["identity"], r["key_fp"]) for r in sink.upstream("i3")] == [("svc-api-key", fingerprint(API_KEY))]


# -- the fault proxy in front of a mock Bedrock --------------------------------------------------------------
def test_fault_proxy_records_and_judges_bedrock(servers: Servers) -> None:
    upstream, upstream_sink = servers.mock("real-bedrock")
    small, _ = servers.mock("small-bedrock", capabilities={"context_tokens": 50})
    spec = ProviderSpec.from_dict({"model": MODEL, "region": "us-east-1", "identity": "svc-bedrock",
                                   "api": "bedrock"}, "proxied")
    sink, small_sink = ListSink(), ListSink()
    proxy = servers.start(build_proxy_app("proxied", spec, upstream, sink, CONTROL, IDENTITIES, 7,
                                          secrets={AKID: SECRET}))
    small_proxy = servers.start(build_proxy_app("proxied-small", spec, small, small_sink, CONTROL, IDENTITIES, 7,
                                                secrets={AKID: SECRET}))
    client = bedrock(proxy)
    assert client.converse(modelId=MODEL, messages=user("p1"))["stopReason"] == "end_turn"
    events = list(client.converse_stream(modelId=ARN, messages=user("p2"))["stream"])
    assert "metadata" in events[-1]
    put_fault(upstream, "guard", {"kind": "content_policy"})
    assert client.converse(modelId=MODEL, messages=user("p3"))["stopReason"] == "guardrail_intervened"
    events = list(client.converse_stream(modelId=MODEL, messages=user("p3s"))["stream"])
    assert events[-2]["messageStop"]["stopReason"] == "guardrail_intervened"
    put_fault(upstream, "guard", {"kind": "error", "status": 429, "code": "ModelNotReadyException"})
    with pytest.raises(ClientError, match="ModelNotReadyException"):
        client.converse(modelId=MODEL, messages=user("p4"))
    put_fault(upstream, "guard", {"kind": "error", "status": 429})
    with pytest.raises(ClientError, match="ThrottlingException"):
        client.converse(modelId=MODEL, messages=user("p5"))
    with pytest.raises(ClientError, match="ValidationException"):
        bedrock(small_proxy).converse(modelId=MODEL, messages=user("p6", "long " * 200))
    put_fault(proxy, "cut", {"kind": "cut", "after_chunks": 2})
    with pytest.raises(CUT):
        list(client.converse_stream(modelId=MODEL, messages=user("p7"))["stream"])
    records = sink.upstream() + small_sink.upstream()
    assert [(r["id"], r["status"], r["outcome"]) for r in records] == [
        ("p1", 200, "ok"), ("p2", 200, "ok"), ("p3", 200, "content_policy"), ("p3s", 200, "content_policy"),
        ("p4", 429, "overloaded"),
        ("p5", 429, "error"), ("p7", 0, "reset"), ("p6", 400, "context_length")]
    # The proxy verifies the signature as its caller made it (for its own Host): the identity holds.
    assert {(r["identity"], r["api"], r["tenant"]) for r in records} == {("svc-bedrock", "bedrock", "acme")}
    assert [r["model"] for r in records[:2]] == [MODEL, ARN]
    # The proxy signed each verified call again for its upstream's host: the upstream verifies it too, as a
    # real Bedrock behind the proxy would.
    behind = upstream_sink.upstream()
    assert behind and {r["identity"] for r in behind} == {"svc-bedrock"}


# -- the reference gateway's client side ---------------------------------------------------------------------
async def send(call: ClientCall) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.request(call.method, call.url, data=call.body,
                                                                   headers=call.headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def send_stream(call: ClientCall) -> tuple[list[bytes], bool]:
    translator = API.client_stream(MODEL)
    out: list[bytes] = []
    async with aiohttp.ClientSession() as session, session.request(call.method, call.url, data=call.body,
                                                                   headers=call.headers) as resp:
        try:
            async for data in resp.content.iter_any():
                out += translator.feed(data)
        except aiohttp.ClientPayloadError:
            pass
    return out, translator.complete


def openai_body(rid: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": f"hello {token(rid)}"}], **extra}


def answer_of(servers: Servers, url: str, body: dict[str, Any]) -> Any:
    target = ClientTarget(url, MODEL, AKID, SECRET, "us-east-1")
    call = API.client_call(target, body, False, {"x-harness-request-id": "x"})  # an extra header, signed too
    status, headers, raw = servers.run(send(call))
    return API.client_answer(status, headers, raw, MODEL)


def test_client_side_answers_in_openai_words(servers: Servers) -> None:
    url, sink = servers.mock()
    small, _ = servers.mock("small", capabilities={"context_tokens": 50})
    told = answer_of(servers, url, openai_body("k1"))
    reply = json.loads(told.body)
    assert (told.status, told.cause, reply["object"], reply["model"]) == (200, None, "chat.completion", MODEL)
    assert reply["choices"][0]["message"]["content"] == "reply to k1 from claude-bedrock"
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    reply = json.loads(answer_of(servers, url, openai_body("k2", tools=tools, tool_choice="required")).body)
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    assert reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "search"
    told = answer_of(servers, small, openai_body("k3", max_tokens=10) | {"messages": [
        {"role": "user", "content": "long " * 200 + token("k3")}]})
    assert (told.status, told.cause, json.loads(told.body)["error"]["code"]) == (
        400, "context_length", "context_length_exceeded")
    put_fault(url, "guard", {"kind": "content_policy"})
    told = answer_of(servers, url, openai_body("k4"))
    assert (told.status, told.cause, json.loads(told.body)["error"]["code"]) == (
        400, "content_policy", "content_policy_violation")
    put_fault(url, "guard", {"kind": "overloaded"})
    assert answer_of(servers, url, openai_body("k5")).cause == "overloaded"
    put_fault(url, "guard", {"kind": "error", "status": 429, "retry_after_s": 2})
    told = answer_of(servers, url, openai_body("k6"))
    assert (told.status, told.cause, told.retry_after, json.loads(told.body)["error"]["type"]) == (
        429, 429, "2", "rate_limit_error")
    assert {r["identity"] for r in sink.upstream()} == {"svc-bedrock"}
    assert [r["tools"] for r in sink.upstream("k2")] == [["search"]]


def test_client_side_stream_in_openai_chunks(servers: Servers) -> None:
    url, sink = servers.mock()
    call = API.client_call(ClientTarget(url, ARN, AKID, SECRET), openai_body("s1"), True, {})
    # Signed as aiohttp sends it: ':' as is (yarl would undo %3A), the ARN's '/' still encoded.
    assert call.url == f"{url}/model/{ARN.replace('/', '%2F')}/converse-stream"
    chunks, complete = servers.run(send_stream(call))
    assert complete and chunks[-1] == b"data: [DONE]\n\n"
    payloads = [json.loads(c[len(b"data: "):]) for c in chunks[:-1]]
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads) == "reply to s1 from claude-bedrock"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert [(r["model"], r["identity"], r["stream"]) for r in sink.upstream("s1")] == [(ARN, "svc-bedrock", True)]
    put_fault(url, "cut", {"kind": "cut", "after_chunks": 3})
    chunks, complete = servers.run(send_stream(API.client_call(ClientTarget(url, MODEL, AKID, SECRET),
                                                               openai_body("s2"), True, {})))
    assert not complete and b"data: [DONE]\n\n" not in chunks


# -- the wire format, and reading a call ------------------------------------------------------------------------
def stream_of(path: str, answer: Answer) -> list[bytes]:
    return API.stream(make_mocked_request("POST", path), answer, Meta("id1", 0, MODEL))[1]


def test_event_stream_messages_split_and_end() -> None:
    items = stream_of("/model/m/converse-stream", Answer("one two three four five"))
    whole = b"".join(items)
    assert [API.is_end(e) for e in items] == [False] * (len(items) - 1) + [True]
    events, rest = API.split(whole[:-5], final=False)
    assert events == items[:-1] and rest == items[-1][:-5]
    assert API.split(rest, final=True) == ([rest], b"")
    claude = stream_of("/model/m/invoke-with-response-stream", Answer("hi"))
    assert [API.is_end(e) for e in claude] == [False] * (len(claude) - 1) + [True]
    buffer = EventStreamBuffer()
    buffer.add_data(encode_message({":event-type": "x"}, b"payload"))
    [message] = list(buffer)
    assert (message.headers, message.payload) == ({":event-type": "x"}, b"payload")
    broken = bytearray(encode_message({":event-type": "x"}, b"payload"))
    broken[-6] ^= 1
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(broken))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_outcome_judges_bodies_and_buffered_streams() -> None:
    assert API.outcome(200, json.dumps({"stopReason": "end_turn"}).encode()) == "ok"
    assert API.outcome(200, json.dumps({"stopReason": "guardrail_intervened"}).encode()) == "content_policy"
    assert API.outcome(200, json.dumps({"stop_reason": "refusal"}).encode()) == "content_policy"
    assert API.outcome(200, b"".join(stream_of("/model/m/converse-stream", Answer(None, "content_filter")))) == (
        "content_policy")
    assert API.outcome(200, b"".join(stream_of("/model/m/invoke-with-response-stream",
                                               Answer(None, "content_filter")))) == "content_policy"
    assert API.outcome(200, b"".join(stream_of("/model/m/converse-stream", Answer("fine")))) == "ok"
    start = event("messageStart", {"role": "assistant"})
    assert API.outcome(200, start + exception("serviceUnavailableException", "busy")) == "overloaded"
    assert API.outcome(200, start + exception("throttlingException", "slow down")) == "error"
    assert API.outcome(200, b"") == "ok"
    # The fault proxy keeps a relayed stream's last bytes only: they may begin anywhere in a message.
    refused = b"".join(stream_of("/model/m/converse-stream", Answer(" ".join(["word"] * 3000), "content_filter")))
    for cut in (4096, 4000, 3333):
        assert API.stream_outcome(200, refused[-cut:]) == "content_policy"
    assert API.stream_outcome(200, b"".join(stream_of("/model/m/converse-stream", Answer("fine")))[-4096:]) == "ok"
    assert API.stream_outcome(200, b"".join(stream_of("/model/m/invoke-with-response-stream",
                                                      Answer(None, "content_filter")))[-4096:]) == "content_policy"
    assert API.outcome(503, b'{"message": "Bedrock is unable to process your request."}') == "overloaded"
    assert API.outcome(400, b'{"message": "Input is too long for requested model."}') == "context_length"
    assert API.outcome(400, b'{"message": "Malformed input request"}') == "error"


def test_canonical_reads_converse_and_claude() -> None:
    encoded = ARN.replace(":", "%3A").replace("/", "%2F")
    request = make_mocked_request("POST", f"/model/{encoded}/converse-stream")
    body = {"system": [{"text": f"rules {token('t1')}"}], "messages": [
        {"role": "user", "content": [{"text": "look"}, {"image": {"format": "png", "source": {"bytes": "aGk="}}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tu1", "name": "search", "input": {"q": "x"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tu1", "content": [{"json": {"hits": 1}}]}}]}],
        "toolConfig": {**TOOLS, "toolChoice": {"any": {}}}, "inferenceConfig": {"maxTokens": 64}}
    chat = API.canonical(request, body)
    assert (chat["model"], chat["stream"], chat["max_tokens"], chat["tool_choice"]) == (ARN, True, 64, "required")
    assert chat["tools"][0]["function"]["name"] == "search"
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]
    assert token("t1") in chat["messages"][0]["content"]
    assert chat["messages"][1]["content"][1]["image_url"]["url"] == "data:image/png;base64,aGk="
    assert json.loads(chat["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {"q": "x"}
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "tu1", "content": '{"hits": 1}'}
    claude = API.canonical(make_mocked_request("POST", "/model/m/invoke"), json.loads(claude_body(
        "t2", tools=[{"name": "search", "input_schema": {}}], tool_choice={"type": "tool", "name": "search"})))
    assert claude["tool_choice"] == {"type": "function", "function": {"name": "search"}} and not claude["stream"]
    assert claude["messages"][0] == {"role": "system", "content": "be brief"}
    with pytest.raises(ValueError):
        API.canonical(make_mocked_request("POST", "/model/amazon.titan/invoke"), {"inputText": "hi"})

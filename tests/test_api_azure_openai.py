"""The azure-openai dialect, judged by the official openai SDK's AzureOpenAI client (and its plain client on
Azure's v1 API): a mock provider of it is called as Azure is, and fails as Azure fails."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web
from conftest_topology import ListSink
from openai_sdk_rig import (
    IDENTITIES,
    KEY,
    OTHER_KEY,
    TOKEN,
    Loop,
    Rig,
    close_clients,
    http_client,
    opened,
    recorded,
    rig_loop,
    token,
)

from harness.topology.apis import api_named
from harness.topology.apis.azure_openai import _DEPLOYMENT_PATH, API, API_VERSION, PROMPT_FILTER_RESULTS
from harness.topology.apis.base import ClientTarget
from harness.topology.fault_proxy import build_proxy_app
from harness.topology.mock_provider import ProviderSpec

DEPLOYMENT = "dep-eu"
TOOL = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(autouse=True)
def sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The SDK's own retry decisions, with its exponential backoff shrunk (a server-given wait still wins).
    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.001)
    monkeypatch.setattr(openai._base_client, "MAX_RETRY_DELAY", 0.002)
    yield
    close_clients()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    with rig_loop() as running:
        yield running


def azure(rig: Rig, max_retries: int = 2, **kwargs: Any) -> openai.AzureOpenAI:
    auth = kwargs if kwargs else {"api_key": KEY}
    return opened(openai.AzureOpenAI(azure_endpoint=rig.url, api_version=API_VERSION, max_retries=max_retries,
                                     http_client=http_client(), **auth))


def messages(rid: str, prompt: str = "hello") -> list[dict[str, Any]]:
    return [{"role": "system", "content": f"be brief {token(rid)}"}, {"role": "user", "content": prompt}]


def only_call(rig: Rig, rid: str) -> dict[str, Any]:
    calls = rig.calls(rid)
    assert len(calls) == 1, calls
    return calls[0]


# -- answers ----------------------------------------------------------------------------------------------
def test_deployment_route_answers_as_azure_and_records_the_deployment(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai", tools=["search"])
    completion = azure(rig).chat.completions.create(model=DEPLOYMENT, messages=messages("az-1"))
    assert completion.choices[0].message.content == "reply to az-1 from prov"
    assert completion.model == "gpt-4o"  # Azure reports the model behind the deployment
    extra = completion.model_extra or {}
    assert extra["prompt_filter_results"][0]["content_filter_results"]["hate"] == {"filtered": False,
                                                                                  "severity": "safe"}
    assert (completion.choices[0].model_extra or {})["content_filter_results"]["violence"]["filtered"] is False
    call = only_call(rig, "az-1")
    assert (call["api"], call["identity"], call["model"], call["tenant"]) == ("azure-openai", "svc-eu", DEPLOYMENT,
                                                                              "acme")
    assert (call["stream"], call["status"], call["outcome"], call["tools"]) == (False, 200, "ok", [])


def test_azure_deployment_client_pins_the_deployment_in_the_path(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai")
    client = opened(openai.AzureOpenAI(azure_endpoint=rig.url, azure_deployment="dep-pinned",
                                       api_version=API_VERSION, api_key=KEY, http_client=http_client(), max_retries=0))
    completion = client.chat.completions.create(model="ignored-by-azure", messages=messages("az-2"))
    assert completion.choices[0].message.content == "reply to az-2 from prov"
    assert only_call(rig, "az-2")["model"] == "dep-pinned"


@pytest.mark.parametrize(("auth", "identity"), [
    ({"azure_ad_token": KEY}, "svc-eu"),          # Entra ID: Authorization: Bearer
    ({"api_key": OTHER_KEY}, "svc-us"),
    ({"api_key": "a-key-nobody-holds"}, "unknown"),
])
def test_identity_is_the_api_key_or_the_bearer_token(loop: Loop, auth: dict[str, str], identity: str) -> None:
    rig = Rig(loop, "azure-openai")
    azure(rig, **auth).chat.completions.create(model=DEPLOYMENT, messages=messages("az-3"))
    assert only_call(rig, "az-3")["identity"] == identity


def test_v1_route_takes_the_model_from_the_body(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai")
    client = opened(openai.OpenAI(base_url=f"{rig.url}/openai/v1/", api_key=KEY, http_client=http_client(),
                                  max_retries=0))
    completion = client.chat.completions.create(model="dep-v1", messages=messages("az-4"))
    assert completion.choices[0].message.content == "reply to az-4 from prov"
    call = only_call(rig, "az-4")
    assert (call["model"], call["identity"]) == ("dep-v1", "svc-eu")


def test_stream_opens_with_the_prompt_filter_chunk(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai")
    chunks = list(azure(rig).chat.completions.create(model=DEPLOYMENT, messages=messages("az-5"), stream=True))
    assert chunks[0].choices == [] and (chunks[0].model_extra or {})["prompt_filter_results"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks[1:])
    assert text == "reply to az-5 from prov"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert only_call(rig, "az-5")["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call(loop: Loop, stream: bool) -> None:
    rig = Rig(loop, "azure-openai", tools=["search"])
    client = azure(rig)
    rid = f"az-6-{stream}"
    if stream:
        chunks = list(client.chat.completions.create(model=DEPLOYMENT, messages=messages(rid), tools=[TOOL],
                                                     tool_choice="auto", stream=True))
        calls = [c.choices[0].delta.tool_calls for c in chunks[1:] if c.choices[0].delta.tool_calls]
        name = calls[0][0].function.name
        finish = chunks[-1].choices[0].finish_reason
    else:
        completion = client.chat.completions.create(model=DEPLOYMENT, messages=messages(rid), tools=[TOOL],
                                                    tool_choice="auto")
        name = completion.choices[0].message.tool_calls[0].function.name
        finish = completion.choices[0].finish_reason
    assert (name, finish) == ("search", "tool_calls")
    assert only_call(rig, rid)["tools"] == ["search"]


# -- errors: the SDK's own exception, and its own retry decision (max_retries=2: 3 calls when it retries) ----
@pytest.mark.parametrize(("effect", "exception", "status", "code", "calls", "outcome"), [
    ({"kind": "error", "status": 429, "retry_after_s": 0.05}, openai.RateLimitError, 429, "429", 3, "error"),
    ({"kind": "error", "status": 500}, openai.InternalServerError, 500, None, 3, "error"),
    ({"kind": "error", "status": 503}, openai.InternalServerError, 503, "ServiceUnavailable", 3, "error"),
    ({"kind": "overloaded"}, openai.InternalServerError, 503, None, 3, "overloaded"),
    ({"kind": "timeout", "hold_s": 0.05}, openai.InternalServerError, 504, "Timeout", 3, "timeout"),
    ({"kind": "content_policy"}, openai.BadRequestError, 400, "content_filter", 1, "content_policy"),
])
def test_errors_in_azure_words(loop: Loop, effect: dict[str, Any], exception: type[openai.APIStatusError],
                               status: int, code: str | None, calls: int, outcome: str) -> None:
    rig = Rig(loop, "azure-openai")
    rig.fault("f", effect)
    rid = f"az-err-{effect['kind']}-{effect.get('status')}"
    started = time.monotonic()
    with pytest.raises(exception) as raised:
        azure(rig).chat.completions.create(model=DEPLOYMENT, messages=messages(rid))
    elapsed = time.monotonic() - started
    assert (raised.value.status_code, raised.value.code) == (status, code)
    recorded = rig.calls(rid)
    assert len(recorded) == calls and {c["outcome"] for c in recorded} == {outcome}
    if status == 429:
        headers = raised.value.response.headers
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("1", "50")
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert "ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21" in raised.value.message
        assert elapsed < 1.5  # it waited retry-after-ms (2 x 50 ms), not retry-after (2 x 1 s)
    if outcome == "content_policy":
        inner = raised.value.body["innererror"]  # type: ignore[index]
        assert inner["code"] == "ResponsibleAIPolicyViolation"
        assert inner["content_filter_result"]["violence"]["filtered"] is True


def test_context_length(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai", capabilities={"context_tokens": 50})
    with pytest.raises(openai.BadRequestError) as raised:
        azure(rig).chat.completions.create(model=DEPLOYMENT, messages=messages("az-ctx", "word " * 400))
    assert raised.value.code == "context_length_exceeded"
    assert [c["outcome"] for c in rig.calls("az-ctx")] == ["context_length"]  # a 400: never retried


def test_cut_stream_breaks_in_the_sdk(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai")
    rig.fault("cut", {"kind": "cut", "after_chunks": 2})
    seen: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in azure(rig).chat.completions.create(model=DEPLOYMENT, messages=messages("az-cut"), stream=True):
            seen.append(chunk)
    assert len(seen) == 2 and seen[-1].choices[0].finish_reason is None
    assert [c["outcome"] for c in rig.calls("az-cut")] == ["reset"]


def test_a_versioned_route_without_api_version_is_not_found(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai")
    body = {"messages": messages("az-nov")}
    headers = {"api-key": KEY, "x-harness-request-id": "az-nov"}  # junk calls are told apart by this header
    status, _, answer = rig.post(f"/openai/deployments/{DEPLOYMENT}/chat/completions", body, headers)
    assert (status, json.loads(answer)) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    assert [(c["outcome"], c["status"]) for c in rig.calls("az-nov")] == [("error", 404)]  # recorded as answered
    status, _, _ = rig.post("/openai/v1/chat/completions", {"model": DEPLOYMENT, **body}, headers)
    assert status == 200  # the v1 API has no api-version


# -- the Responses API on Azure -------------------------------------------------------------------------
def test_responses_through_the_azure_client(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai", tools=["search"])
    client = azure(rig)
    response = client.responses.create(model=DEPLOYMENT, instructions=f"be brief {token('az-r1')}", input="hi")
    assert (response.status, response.output_text) == ("completed", "reply to az-r1 from prov")
    events = list(client.responses.create(model=DEPLOYMENT, input=f"hi {token('az-r2')}", stream=True))
    assert [events[0].type, events[-1].type] == ["response.created", "response.completed"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "reply to az-r2 from prov"
    tool = {"type": "function", "name": "search", "parameters": {"type": "object", "properties": {}}}
    called = client.responses.create(model=DEPLOYMENT, input=f"hi {token('az-r3')}", tools=[tool],  # type: ignore[list-item]
                                     tool_choice="required")
    assert [(item.type, getattr(item, "name", None)) for item in called.output] == [("function_call", "search")]
    recorded = [(c["id"], c["model"], c["stream"], c["tools"]) for c in rig.calls() if c["id"].startswith("az-r")]
    assert recorded == [("az-r1", DEPLOYMENT, False, []), ("az-r2", DEPLOYMENT, True, []),
                        ("az-r3", DEPLOYMENT, False, ["search"])]


def test_responses_errors_and_cut(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai")
    client = azure(rig)
    rig.fault("f", {"kind": "error", "status": 429, "retry_after_s": 0.01})
    with pytest.raises(openai.RateLimitError) as raised:
        client.responses.create(model=DEPLOYMENT, input=f"hi {token('az-r4')}")
    assert "Rate limit is exceeded. Please retry after 1 second." in raised.value.message
    assert len(rig.calls("az-r4")) == 3
    rig.fault("f", {"kind": "cut", "after_chunks": 3})
    with pytest.raises(openai.APIConnectionError), client.responses.stream(
            model=DEPLOYMENT, input=f"hi {token('az-r5')}") as stream:
        stream.get_final_response()
    assert [c["outcome"] for c in rig.calls("az-r5")] == ["reset"]


# -- the fault proxy in front of an Azure upstream ------------------------------------------------------
@pytest.mark.parametrize(("effect", "exception", "outcome"), [
    (None, None, "ok"),
    ({"kind": "content_policy"}, openai.BadRequestError, "content_policy"),
    ({"kind": "overloaded"}, openai.InternalServerError, "overloaded"),
    ({"kind": "error", "status": 429, "retry_after_s": 0.01}, openai.RateLimitError, "error"),
])
def test_fault_proxy_judges_azure_answers(loop: Loop, effect: dict[str, Any] | None,
                                          exception: type[Exception] | None, outcome: str) -> None:
    rig = Rig(loop, "azure-openai", proxy=True)
    if effect is not None:
        rig.fault("f", effect, upstream=True)  # the upstream answers so: the proxy only judges it
    rid = f"az-px-{outcome}"
    client = azure(rig, max_retries=0)
    if exception is None:
        completion = client.chat.completions.create(model=DEPLOYMENT, messages=messages(rid))
        assert completion.choices[0].message.content == f"reply to {rid} from prov"
    else:
        with pytest.raises(exception):
            client.chat.completions.create(model=DEPLOYMENT, messages=messages(rid))
    call = only_call(rig, rid)
    assert (call["outcome"], call["identity"], call["tenant"], call["model"], call["api"]) == (
        outcome, "svc-eu", "acme", DEPLOYMENT, "azure-openai")


def test_fault_proxy_cuts_an_azure_stream(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai", proxy=True)
    rig.fault("cut", {"kind": "cut", "after_chunks": 100})  # more than there are: the end never passes
    seen: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in azure(rig).chat.completions.create(model=DEPLOYMENT, messages=messages("az-pxc"), stream=True):
            seen.append(chunk)
    assert seen[-1].choices[0].finish_reason == "stop"  # everything but [DONE] came through
    assert [c["outcome"] for c in rig.calls("az-pxc")] == ["reset"]


FILTERED_COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                       "prompt_filter_results": PROMPT_FILTER_RESULTS,
                       "choices": [{"index": 0, "finish_reason": "content_filter", "logprobs": None,
                                    "message": {"role": "assistant", "content": None},
                                    "content_filter_results": {"violence": {"filtered": True, "severity": "high"}}}]}


async def filtering_upstream(request: web.Request) -> web.StreamResponse:
    """A real Azure deployment's 200 whose completion the filter cut, buffered or streamed."""
    if not (await request.json()).get("stream"):
        return web.json_response(FILTERED_COMPLETION)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = {**FILTERED_COMPLETION, "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]}
    for payload in ({"choices": [], "prompt_filter_results": PROMPT_FILTER_RESULTS}, chunk):
        await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


@pytest.mark.parametrize("stream", [False, True])
def test_fault_proxy_judges_a_filtered_200_as_a_refusal(loop: Loop, stream: bool) -> None:
    upstream = web.Application()
    upstream.router.add_post(_DEPLOYMENT_PATH, filtering_upstream)
    sink = ListSink()
    spec = ProviderSpec.from_dict({"model": "gpt-4o", "region": "eu", "identity": "svc-eu", "api": "azure-openai"})
    url = loop.serve(build_proxy_app("prov", spec, loop.serve(upstream), sink, TOKEN, IDENTITIES, 3))
    client = opened(openai.AzureOpenAI(azure_endpoint=url, api_version=API_VERSION, api_key=KEY,
                                       http_client=http_client()))
    rid = f"az-px-filtered-{stream}"
    if stream:
        chunks = list(client.chat.completions.create(model=DEPLOYMENT, messages=messages(rid), stream=True))
        assert chunks[-1].choices[0].finish_reason == "content_filter"
    else:
        completion = client.chat.completions.create(model=DEPLOYMENT, messages=messages(rid))
        assert completion.choices[0].finish_reason == "content_filter"
    assert [(c["status"], c["outcome"]) for c in recorded(sink, rid)] == [(200, "content_policy")]


def test_outcome_of_a_completion_the_filter_cut() -> None:
    answer = {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "content_filter",
                                                        "message": {"role": "assistant", "content": None},
                                                        "content_filter_results": {"violence": {"filtered": True}}}]}
    assert API.outcome(200, json.dumps(answer).encode()) == "content_policy"
    assert API.outcome(200, json.dumps({**answer, "choices": [{"finish_reason": "stop"}]}).encode()) == "ok"
    assert API.stream_outcome(200, b'data: {"choices":[{"delta":{},"finish_reason":"content_filter"}]}\n\n'
                              b"data: [DONE]\n\n") == "content_policy"
    assert API.stream_outcome(200, b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n') == "ok"
    incomplete = (b'event: response.incomplete\ndata: {"type":"response.incomplete","response":{"status":"incomplete",'
                  b'"incomplete_details":{"reason":"content_filter"}}}\n\n')
    assert API.stream_outcome(200, incomplete) == "content_policy"


# -- the client side: the reference gateway calling an Azure deployment -----------------------------------
def client_call(rig: Rig, rid: str, stream: bool = False, **body: Any) -> tuple[int, dict[str, str], bytes]:
    target = ClientTarget(rig.url, DEPLOYMENT, KEY)
    call = API.client_call(target, {"model": "chat", "messages": messages(rid), **body}, stream, {})
    assert call.url == f"{rig.url}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
    assert call.headers["api-key"] == KEY
    return rig.post(call.url.removeprefix(rig.url), call.body, call.headers)


@pytest.mark.parametrize(("effect", "cause", "status"), [
    (None, None, 200),
    ({"kind": "content_policy"}, "content_policy", 400),
    ({"kind": "overloaded"}, "overloaded", 503),
    ({"kind": "error", "status": 429, "retry_after_s": 2}, 429, 429),
])
def test_client_answer(loop: Loop, effect: dict[str, Any] | None, cause: int | str | None, status: int) -> None:
    rig = Rig(loop, "azure-openai")
    if effect is not None:
        rig.fault("f", effect)
    told = API.client_answer(*client_call(rig, f"az-cl-{status}"), "gpt-4o")
    body = json.loads(told.body)
    assert (told.status, told.cause) == (status, cause)
    if cause is None:
        assert body["choices"][0]["message"]["content"] == f"reply to az-cl-{status} from prov"
    else:
        assert set(body["error"]) >= {"message", "type", "code", "param"}  # OpenAI's error shape
    assert told.retry_after == ("2" if status == 429 else None)
    assert api_named("azure-openai") is API


def test_client_answer_tool_call_and_context_length(loop: Loop) -> None:
    rig = Rig(loop, "azure-openai", capabilities={"context_tokens": 50})
    told = API.client_answer(*client_call(rig, "az-cl-tool", tools=[TOOL], tool_choice="required"), "gpt-4o")
    assert json.loads(told.body)["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "search"
    long = [{"role": "user", "content": f"{token('az-cl-ctx')} " + "word " * 400}]
    call = API.client_call(ClientTarget(rig.url, DEPLOYMENT, KEY), {"messages": long}, False, {})
    told = API.client_answer(*rig.post(call.url.removeprefix(rig.url), call.body, call.headers), "gpt-4o")
    assert (told.status, told.cause, json.loads(told.body)["error"]["code"]) == (400, "context_length",
                                                                                 "context_length_exceeded")


def test_client_answer_turns_a_filtered_completion_into_a_refusal() -> None:
    body = {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "content_filter",
                                                      "message": {"role": "assistant", "content": None}}]}
    told = API.client_answer(200, {"apim-request-id": "x"}, json.dumps(body).encode(), "gpt-4o")
    assert (told.status, told.cause) == (400, "content_policy")
    assert json.loads(told.body)["error"]["code"] == "content_policy_violation"


@pytest.mark.parametrize("cut", [False, True])
def test_client_stream_is_openai_chunks(loop: Loop, cut: bool) -> None:
    rig = Rig(loop, "azure-openai")
    if cut:
        rig.fault("cut", {"kind": "cut", "after_chunks": 3})
    _, _, raw = client_call(rig, f"az-cs-{cut}", stream=True)
    translator = API.client_stream("gpt-4o")
    out = [event for i in range(0, len(raw), 7) for event in translator.feed(raw[i:i + 7])]  # any piece size
    payloads = [e.removeprefix(b"data: ").strip() for e in out]
    assert translator.complete is not cut
    if cut:  # the prompt-filter chunk and two content chunks came: the content is passed on, no end
        assert [json.loads(p)["choices"][0]["delta"]["content"] for p in payloads] == ["reply to", " az-cs-True from"]
        return
    assert payloads[-1] == b"[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(chunk["choices"] for chunk in chunks)  # Azure's prompt-filter chunk is not passed on
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "reply to az-cs-False from prov"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

"""OpenAI's Responses API, judged by the official openai SDK (`client.responses.create`, its streaming, and
`client.responses.stream`): on an openai provider's POST /v1/responses, and on Azure's v1 API
(/openai/v1/responses), which answers in the same words."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import make_mocked_request
from openai_sdk_rig import KEY, Loop, Rig, close_clients, http_client, opened, rig_loop, token

from harness.topology.apis.base import Answer, Meta
from harness.topology.apis.openai import API, response_events, responses_canonical

# The openai provider reads a Responses call only once the mock hands every call that is not a chat
# completion to its dialect (canonical) and keeps its chat-completions fast path for /v1/chat/completions:
# until then a Responses call there loses its correlation token and is answered as a chat completion.
TARGETS = ["openai", "azure-openai"]
TOOL = {"type": "function", "name": "search", "parameters": {"type": "object", "properties": {}}}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"], "additionalProperties": False}


@pytest.fixture(autouse=True)
def sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.001)
    monkeypatch.setattr(openai._base_client, "MAX_RETRY_DELAY", 0.002)
    yield
    close_clients()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    with rig_loop() as running:
        yield running


def client(rig: Rig, api: str, max_retries: int = 2) -> openai.OpenAI:
    base = f"{rig.url}/v1" if api == "openai" else f"{rig.url}/openai/v1"
    return opened(openai.OpenAI(base_url=base, api_key=KEY, max_retries=max_retries, http_client=http_client()))


def only_call(rig: Rig, rid: str) -> dict[str, Any]:
    calls = rig.calls(rid)
    assert len(calls) == 1, calls
    return calls[0]


@pytest.mark.parametrize("api", TARGETS)
def test_create_with_instructions(loop: Loop, api: str) -> None:
    rig = Rig(loop, api, tools=["search"])
    response = client(rig, api).responses.create(model="gpt-4o", instructions=f"be brief {token('rs-1')}",
                                                 input="hello")
    assert (response.status, response.output_text, response.model) == ("completed", "reply to rs-1 from prov",
                                                                       "gpt-4o")
    assert response.id.startswith("resp_") and response.usage is not None and response.usage.output_tokens == 5
    call = only_call(rig, "rs-1")
    assert (call["identity"], call["model"], call["tenant"], call["stream"], call["outcome"]) == (
        "svc-eu", "gpt-4o", "acme", False, "ok")
    assert call.get("api", "openai") == api


@pytest.mark.parametrize("api", TARGETS)
def test_input_items_with_content_parts(loop: Loop, api: str) -> None:
    rig = Rig(loop, api)
    items = [{"role": "developer", "content": "answer in one line"},
             {"role": "user", "content": [{"type": "input_text", "text": f"what is this? {token('rs-2')}"},
                                          {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]
    response = client(rig, api).responses.create(model="gpt-4o", input=items)  # type: ignore[arg-type]
    assert response.output_text == "reply to rs-2 from prov"
    assert only_call(rig, "rs-2")["model"] == "gpt-4o"


@pytest.mark.parametrize("api", TARGETS)
def test_function_tool_call(loop: Loop, api: str) -> None:
    rig = Rig(loop, api, tools=["search"])
    response = client(rig, api).responses.create(model="gpt-4o", input=f"find it {token('rs-3')}",
                                                 tools=[TOOL], tool_choice={"type": "function", "name": "search"})  # type: ignore[list-item]
    (item,) = response.output
    assert (item.type, item.name, item.arguments, item.call_id.startswith("call_")) == (  # type: ignore[union-attr]
        "function_call", "search", "{}", True)
    assert only_call(rig, "rs-3")["tools"] == ["search"]


@pytest.mark.parametrize("api", TARGETS)
def test_json_schema_format(loop: Loop, api: str) -> None:
    rig = Rig(loop, api)
    fmt = {"type": "json_schema", "name": "trip", "schema": SCHEMA, "strict": True}
    response = client(rig, api).responses.create(model="gpt-4o", input=f"plan {token('rs-4')}",
                                                 text={"format": fmt})  # type: ignore[typeddict-item]
    assert set(json.loads(response.output_text)) == {"city", "days"}


@pytest.mark.parametrize("api", TARGETS)
def test_max_output_tokens_leaves_it_incomplete(loop: Loop, api: str) -> None:
    rig = Rig(loop, api, capabilities={"max_output_tokens": 16})
    response = client(rig, api).responses.create(model="gpt-4o", input=f"tell all {token('rs-5')}",
                                                 max_output_tokens=64)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text


@pytest.mark.parametrize("api", TARGETS)
def test_stream_events(loop: Loop, api: str) -> None:
    rig = Rig(loop, api)
    events = list(client(rig, api).responses.create(model="gpt-4o", input=f"hi {token('rs-6')}", stream=True))
    assert [e.type for e in events[:4]] == ["response.created", "response.in_progress", "response.output_item.added",
                                            "response.content_part.added"]
    assert [e.type for e in events[-4:]] == ["response.output_text.done", "response.content_part.done",
                                             "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "reply to rs-6 from prov"
    assert only_call(rig, "rs-6")["stream"] is True


@pytest.mark.parametrize("api", TARGETS)
def test_stream_helper_accumulates_text_and_tool_calls(loop: Loop, api: str) -> None:
    rig = Rig(loop, api, tools=["search"])
    sdk = client(rig, api)
    with sdk.responses.stream(model="gpt-4o", input=f"hi {token('rs-7')}") as stream:
        assert stream.get_final_response().output_text == "reply to rs-7 from prov"
    with sdk.responses.stream(model="gpt-4o", input=f"find {token('rs-8')}", tools=[TOOL],  # type: ignore[list-item]
                              tool_choice="required") as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert deltas == ["{}"] and [(i.type, getattr(i, "name", None)) for i in final.output] == [
        ("function_call", "search")]
    assert [only_call(rig, rid)["stream"] for rid in ("rs-7", "rs-8")] == [True, True]


# -- errors: the SDK's exception and retry decision (max_retries=2: 3 calls when it retries) ---------------
@pytest.mark.parametrize("api", TARGETS)
@pytest.mark.parametrize(("effect", "exception", "status", "calls", "outcome"), [
    ({"kind": "error", "status": 429, "retry_after_s": 0.01}, openai.RateLimitError, 429, 3, "error"),
    ({"kind": "error", "status": 500}, openai.InternalServerError, 500, 3, "error"),
    ({"kind": "overloaded"}, openai.InternalServerError, 503, 3, "overloaded"),
    ({"kind": "timeout", "hold_s": 0.05}, openai.InternalServerError, 504, 3, "timeout"),
    ({"kind": "content_policy"}, openai.BadRequestError, 400, 1, "content_policy"),
])
def test_errors(loop: Loop, api: str, effect: dict[str, Any], exception: type[openai.APIStatusError], status: int,
                calls: int, outcome: str) -> None:
    rig = Rig(loop, api)
    rig.fault("f", effect)
    rid = f"rs-err-{effect['kind']}-{effect.get('status')}"
    with pytest.raises(exception) as raised:
        client(rig, api).responses.create(model="gpt-4o", input=f"hi {token(rid)}")
    assert raised.value.status_code == status
    recorded = rig.calls(rid)
    assert len(recorded) == calls and {c["outcome"] for c in recorded} == {outcome}


@pytest.mark.parametrize("api", TARGETS)
def test_context_length(loop: Loop, api: str) -> None:
    rig = Rig(loop, api, capabilities={"context_tokens": 50})
    with pytest.raises(openai.BadRequestError) as raised:
        client(rig, api).responses.create(model="gpt-4o", input=f"{token('rs-ctx')} " + "word " * 400)
    assert (raised.value.code, raised.value.param) == ("context_length_exceeded", "input")
    assert [c["outcome"] for c in rig.calls("rs-ctx")] == ["context_length"]


@pytest.mark.parametrize("api", TARGETS)
def test_cut_stream_raises(loop: Loop, api: str) -> None:
    rig = Rig(loop, api)
    rig.fault("cut", {"kind": "cut", "after_chunks": 4})
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for event in client(rig, api).responses.create(model="gpt-4o", input=f"hi {token('rs-cut')}", stream=True):
            seen.append(event.type)
    assert seen == ["response.created", "response.in_progress", "response.output_item.added",
                    "response.content_part.added"]
    assert [c["outcome"] for c in rig.calls("rs-cut")] == ["reset"]


# -- the fault proxy in front of a Responses upstream ------------------------------------------------------
@pytest.mark.parametrize("api", TARGETS)
def test_fault_proxy_records_and_cuts_responses(loop: Loop, api: str) -> None:
    rig = Rig(loop, api, proxy=True)
    sdk = client(rig, api, max_retries=0)
    answer = sdk.responses.create(model="gpt-4o", input=f"hi {token('rs-px1')}")
    assert answer.output_text == "reply to rs-px1 from prov"
    rig.fault("f", {"kind": "content_policy"}, upstream=True)
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="gpt-4o", input=f"hi {token('rs-px2')}")
    rig.fault("f", {"kind": "cut", "after_chunks": 100})  # on the proxy: everything but the end passes
    with pytest.raises(openai.APIConnectionError), sdk.responses.stream(
            model="gpt-4o", input=f"hi {token('rs-px3')}") as stream:
        stream.get_final_response()
    assert [(only_call(rig, rid)["outcome"], only_call(rig, rid)["identity"]) for rid in ("rs-px1", "rs-px2",
                                                                                          "rs-px3")] == [
        ("ok", "svc-eu"), ("content_policy", "svc-eu"), ("reset", "svc-eu")]


# -- the dialect itself: reading a Responses body, judging answers ------------------------------------------
def test_canonical_reads_every_text_and_what_the_call_asks() -> None:
    body = {"model": "gpt-4o", "instructions": "system words", "max_output_tokens": 99, "stream": True,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "question"}]},
                      {"type": "function_call", "call_id": "call_1", "name": "search", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "call_1", "output": "found"},
                      {"type": "reasoning", "id": "rs_1", "summary": []}],
            "tools": [TOOL, {"type": "web_search"}], "tool_choice": {"type": "function", "name": "search"},
            "text": {"format": {"type": "json_schema", "name": "trip", "schema": SCHEMA}}}
    chat = responses_canonical(body)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]
    assert chat["messages"][0]["content"] == "system words"
    assert chat["messages"][1]["content"] == [{"type": "text", "text": "question"}]
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "found"}
    assert chat["tools"][0]["function"]["name"] == "search" and chat["tools"][1] == {"type": "web_search"}
    assert (chat["max_tokens"], chat["stream"], chat["tool_choice"]) == (99, True, {"type": "function",
                                                                                    "function": {"name": "search"}})
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA}}
    assert set(responses_canonical({"model": "m", "input": "hi"})) == {"model", "messages", "stream"}
    with pytest.raises((TypeError, AttributeError)):
        responses_canonical({"model": "m", "input": 5})
    chat_body = {"model": "m", "messages": []}
    assert API.canonical(make_mocked_request("POST", "/v1/chat/completions"), chat_body) is chat_body


def test_outcome_and_end_of_a_responses_stream() -> None:
    meta = Meta("chatcmpl-p-r1", 1, "gpt-4o")
    refused = response_events(Answer(None, "content_filter"), meta)
    assert [e.split(b"\n")[0] for e in refused] == [b"event: response.created", b"event: response.in_progress",
                                                    b"event: response.incomplete"]
    assert [API.is_end(e) for e in refused] == [False, False, True]
    body = json.loads(refused[-1].split(b"data: ", 1)[1])["response"]
    assert API.outcome(200, json.dumps(body).encode()) == "content_policy"
    assert API.outcome(200, json.dumps({**body, "status": "completed", "incomplete_details": None}).encode()) == "ok"
    assert API.stream_outcome(200, b"".join(refused[-2:])) == "content_policy"
    assert API.stream_outcome(200, b"".join(response_events(Answer("fine"), meta)[-2:])) == "ok"
    # A chat completion's own finish_reason content_filter is judged as it always was.
    chat = {"object": "chat.completion", "choices": [{"finish_reason": "content_filter"}]}
    assert API.outcome(200, json.dumps(chat).encode()) == "ok"
    text = response_events(Answer("a delta that says response.completed"), meta)
    assert [API.is_end(e) for e in text].count(True) == 1 and API.is_end(text[-1])

"""How the driver builds each request: correlation in header and content, per-request header templates."""

from harness.core.correlation import find
from harness.core.model import MixEntry, TrafficHeaders
from harness.traffic.driver import plan
from harness.traffic.requests import PlannedRequest

ENTRY = MixEntry(route="chat", tenant="acme", region="eu", request_class="regulated", data_class="internal",
                 tools=["search"])


def test_correlation_travels_in_headers_and_content():
    request = PlannedRequest("r000007", 0.35, ENTRY)
    headers = request.headers(TrafficHeaders(tenant="x-tenant"), client_key="k")
    assert headers["x-harness-request-id"] == "r000007" and headers["x-tenant"] == "acme"
    assert headers["authorization"] == "Bearer k"
    body = request.body()
    token = find(body["messages"][0]["content"])
    assert token is not None and (token.id, token.tenant, token.request_class) == ("r000007", "acme", "regulated")
    assert body["tools"][0]["function"]["name"] == "search" and body["model"] == "chat"


def test_header_templates_take_the_request_attributes():
    request = PlannedRequest("r000001", 0.0, ENTRY)
    template = '{"tenant":"{tenant}","request_class":"{request_class}","id":"{request_id}"}'
    assert request.fill(template) == '{"tenant":"acme","request_class":"regulated","id":"r000001"}'
    assert request.fill("static") == "static"


def test_plan_is_seeded_and_open_loop():
    from harness.core.model import Traffic

    traffic = Traffic(rate_per_s=10, duration_s=3, mix=[ENTRY, ENTRY.model_copy(update={"tenant": "globex"})])
    first, again = plan(traffic, seed=4), plan(traffic, seed=4)
    assert [p.entry.tenant for p in first] == [p.entry.tenant for p in again]
    assert len(first) == 30 and first[10].offset_s == 1.0
    assert {p.entry.tenant for p in first} == {"acme", "globex"}


def test_a_refusal_said_as_an_answer_is_a_valid_completion():
    from harness.traffic.requests import valid_completion

    refusal = {"choices": [{"index": 0, "message": {"role": "assistant", "content": None},
                            "finish_reason": "content_filter"}]}
    assert valid_completion(refusal)
    assert not valid_completion({"choices": [{"index": 0, "message": {"role": "assistant", "content": None},
                                              "finish_reason": "stop"}]})

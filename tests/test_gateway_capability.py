"""Capability findings on the real gateways: LiteLLM proxy 1.110.2 and Portkey gateway 1.15.2 in front of
mock providers that serve as real models do (a 400 context_length_exceeded over their window, prose
without tool calling, text without structured output). Each scenario of scenarios/gateways/capability/
runs end to end through the real CLI (three at a time), every check's verdict is pinned, and the
evidence behind each finding is asserted on the ledger: what each provider received and answered.

The end-to-end tests need `harness setup-gateways` (CI runs it first); a gateway that is not installed
skips its scenarios, with the reason. The fast tests (every scenario loads, its gateway config names
its providers) need neither gateway.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.gateways.base import GatewayContext, load_adapter
from harness.scenario import load_scenario
from tests.conftest import ROOT, harness_cmd
from tests.gateway_run import INSTALLED, MISSING, GatewayRun, gateway_of, installed, needs_litellm, needs_portkey

SCENARIOS = ROOT / "scenarios" / "gateways" / "capability"
# Beside the other gateway configs, in folders of their own: test_gateway_litellm.py wants every config of
# fixtures/gateways/litellm/ used by one of its scenarios.
CONFIGS = {"litellm": ROOT / "fixtures" / "gateways" / "litellm" / "capability",
           "portkey": ROOT / "fixtures" / "gateways" / "portkey" / "capability"}
KEY = "sk-test-svc-eu"  # the scenarios' default key, looked for in every artefact

# scenario -> (exit code, the checks that fail; every other listed check passes)
EXPECTED = {
    "litellm-context-overflow": (1, {"capability_fit"}),
    "litellm-context-window-fallbacks": (0, set()),
    "litellm-unsupported-params": (1, {"trigger_conditions"}),
    "litellm-unsupported-params-governed": (0, set()),
    "litellm-capability-blind-fallback": (1, {"capability_fit", "equivalence"}),
    "litellm-capability-by-route": (0, set()),
    "litellm-schema-validation": (1, {"capability_fit"}),
    "portkey-context-overflow": (1, {"capability_fit", "trigger_conditions"}),
    "portkey-context-on-status-codes": (0, set()),
}



class Run(GatewayRun):
    """A capability run: requests by class and the path each took through the providers."""

    def requests(self, request_class: str) -> list[dict]:
        return [r for r in self.of("request") if r["request_class"] == request_class]

    def path(self, request: dict) -> list[tuple[str, str]]:
        """Who the request reached, in order, and how each call ended (ground truth)."""
        return [(c["provider"], c["outcome"]) for c in self.by_id.get(request["id"], [])]

    def fallen_back(self, request_class: str) -> list[dict]:
        """Requests of the class that reached a provider other than their route's primary, gpt-eu here."""
        return [r for r in self.requests(request_class) if any(p != "gpt-eu" for p, _ in self.path(r))]


def _run(name: str, root: Path) -> Run:
    report = root / name
    done = harness_cmd("run", str(SCENARIOS / f"{name}.yaml"), "--report-dir", str(report), timeout=300)
    return Run(done.returncode, done.stdout + done.stderr, report)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    names = [name for name in EXPECTED if INSTALLED[gateway_of(name)]]
    if not names:
        pytest.skip("; ".join(MISSING.values()))
    root = tmp_path_factory.mktemp("capability")
    # Three at a time, as the other gateway suites: each LiteLLM proxy takes ~10 s to start on two cores.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, name, root) for name in names}
        return {name: future.result() for name, future in futures.items()}




def test_every_capability_scenario_is_pinned():
    assert {p.stem for p in SCENARIOS.glob("*.yaml")} == set(EXPECTED)


def test_every_config_is_used():
    used = set()
    for name in EXPECTED:
        scenario = load_scenario(SCENARIOS / f"{name}.yaml").scenario
        used.add((SCENARIOS / scenario.gateway.config).resolve())
    assert used == {p for folder in CONFIGS.values() for p in folder.iterdir()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scenario_loads_and_its_gateway_config_names_its_providers(name):
    """Without the gateways: the scenario is valid and its adapter maps every target of the config to a
    provider of the scenario (refusing a target it cannot name), the primaries included."""
    scenario = load_scenario(SCENARIOS / f"{name}.yaml").scenario
    assert scenario.gateway.kind == gateway_of(name)
    defaults = load_adapter(scenario.gateway.kind).defaults(GatewayContext(scenario, SCENARIOS))
    assert defaults.config_path is not None and defaults.config_path.resolve().parent == CONFIGS[scenario.gateway.kind]
    targets = set(defaults.served_target.values.values())
    assert targets <= set(scenario.providers)
    assert {route.primary for route in scenario.policy.routes.values()} <= targets


@pytest.mark.slow
@pytest.mark.parametrize("name", installed(*sorted(EXPECTED)))
def test_verdict_of_every_check_is_pinned(runs, name):
    run, (code, failing) = runs[name], EXPECTED[name]
    assert run.summary["status"] == "completed", run.output
    listed = load_scenario(SCENARIOS / f"{name}.yaml").scenario.check_names()
    got = {c["check"]: c["verdict"] for c in run.summary["checks"]}
    assert got == {c: "fail" if c in failing else "pass" for c in listed}, run.output
    assert run.returncode == code, run.output
    assert "Traceback" not in run.output


@pytest.mark.slow
@pytest.mark.parametrize("name", installed(*sorted(EXPECTED)))
def test_each_run_is_real_and_leaks_nothing(runs, name):
    run = runs[name]
    stats = run.summary["stats"]
    assert stats["requests"] >= 40 and stats["upstream_calls"] >= 40, stats
    assert all(w["hits"] > 0 for w in run.check("fault_effective")["stats"]["windows"])
    # The gateway's claim of who served (x-litellm-model-id, x-portkey-last-used-option-index) is the
    # provider that answered ok last, as the providers recorded it.
    ok = [r for r in run.of("request") if r["status"] == 200]
    assert ok and all(r["claimed_target"] == [p for p, o in run.path(r) if o == "ok"][-1] for r in ok)
    assert not any(KEY in text for text in run.texts.values())


def _ids(requests: list[dict]) -> list[str]:
    """Request ids as a violation lists them: sorted, the first 20."""
    return sorted(r["id"] for r in requests)[:20]


@needs_litellm
@pytest.mark.slow
def test_generic_fallbacks_send_a_context_overflow_to_a_smaller_window(runs):
    run = runs["litellm-context-overflow"]
    long = run.requests("summarise")
    assert len(long) >= 5
    # The 128k primary refused each 130k-token prompt, and LiteLLM sent it down the generic chain to
    # the 8k model (fallback_on_unsupported_params is false: an overflow is exempt), which refused it too.
    assert all(run.path(r) == [("gpt-eu", "context_length"), ("small-eu", "context_length")] for r in long)
    assert all(r["status"] == 400 and "ContextWindowExceededError" in r["error"] for r in long)
    # LiteLLM's own events say so: it attempted the fallback on a ContextWindowExceededError.
    failed = [a for a in run.of("audit") if a["raw"].get("event") == "fallback_failed"]
    assert len(failed) == len(long)
    assert {(a["raw"]["attempted"], a["fields"]["reason"]) for a in failed} == {
        ("small-eu", "ContextWindowExceededError (400)")}
    (violation,) = run.check("capability_fit")["violations"]
    assert violation["message"] == ("fallback to small-eu on route chat cannot serve requests of kind "
                                    "input_tokens=130000: context: needs 130,000 tokens, small-eu has 8.2k")
    assert violation["request_ids"] == _ids(long)
    # The outage's short requests went to the same small model, which fits them: no violation of theirs.
    chat = run.fallen_back("chat")
    assert len(chat) >= 5 and all(run.path(r) == [("gpt-eu", "error"), ("small-eu", "ok")] for r in chat)

    avoided = runs["litellm-context-window-fallbacks"]
    long = avoided.requests("summarise")
    assert len(long) >= 5 and all(r["status"] == 200 for r in long)
    assert all(avoided.path(r) == [("gpt-eu", "context_length"), ("long-eu", "ok")] for r in long)
    chat = avoided.fallen_back("chat")  # the generic chain still serves outages
    assert len(chat) >= 5 and all(avoided.path(r) == [("gpt-eu", "error"), ("small-eu", "ok")] for r in chat)


def _first_status(run: Run, request: dict) -> int:
    return run.by_id[request["id"]][0]["status"]


@needs_litellm
@pytest.mark.slow
def test_a_request_the_primary_cannot_serve_is_rerouted_by_default(runs):
    run = runs["litellm-unsupported-params"]
    # An image to the text-only primary: refused with a 400 (outside the outage), and rerouted.
    vision = run.requests("vision")
    assert all(run.path(r) == [("gpt-eu", "error"), ("claude-eu", "ok")] and r["status"] == 200 for r in vision)
    assert sum(_first_status(run, r) == 400 for r in vision) >= 3
    # A JSON schema for openai/gpt-4: LiteLLM's own parameter table refuses it, and every such request
    # goes to the fallback without the primary ever being called, outage or not.
    extract = run.requests("extract")
    assert len(extract) >= 5
    assert all(run.path(r) == [("claude-eu", "ok")] and r["status"] == 200 for r in extract)
    assert all(r["answer"]["schema_ok"] for r in extract)  # the fallback can serve it: capability_fit holds
    violations = run.check("trigger_conditions")["violations"]
    assert {v["observed"].get("cause") for v in violations} >= {"400"}
    assert any(v["message"].startswith("route chat fell back without a failing primary (gpt-eu was not called")
               for v in violations)

    avoided = runs["litellm-unsupported-params-governed"]
    vision = avoided.requests("vision")
    refused = [r for r in vision if _first_status(avoided, r) == 400]
    assert len(refused) >= 3 and all(avoided.path(r) == [("gpt-eu", "error")] and r["status"] == 400
                                     for r in refused)
    # Only the outage's 503 moved an image, to a fallback able to take it.
    assert all(avoided.path(r)[-1] == ("claude-eu", "ok") for r in vision if r not in refused)
    extract = avoided.requests("extract")
    assert len(extract) >= 5
    assert all(avoided.path(r) == [] and r["status"] == 400 and "UnsupportedParamsError" in r["error"]
               for r in extract)


@needs_litellm
@pytest.mark.slow
def test_tool_and_schema_requests_fall_back_to_a_model_without_them(runs):
    run = runs["litellm-capability-blind-fallback"]
    agent, extract = run.fallen_back("agent"), run.fallen_back("extract")
    assert len(agent) >= 3 and len(extract) >= 3
    # LiteLLM sent the tools to mini-eu although its model_info says it has no function calling ...
    calls = [c for r in agent for c in run.by_id[r["id"]] if c["provider"] == "mini-eu"]
    assert len(calls) == len(agent) and all(c["tools"] == ["search"] for c in calls)
    # ... which answered prose to tool_choice required, and text to a JSON schema: both returned as 200.
    for r in agent:
        assert r["status"] == 200 and r["claimed_target"] == "mini-eu"
        assert json.loads(r["answer"]["shape"]) == {"content": "text", "finish_reason": "stop"}
    assert all(r["status"] == 200 and r["answer"]["schema_ok"] is False for r in extract)
    # What the primary answers to the same requests: a tool call.
    primary = [r for r in run.requests("agent") if run.path(r) == [("gpt-eu", "ok")]]
    assert primary and all(json.loads(r["answer"]["shape"])["tool_calls"] == ["search"] for r in primary)
    unmet = {(v["observed"]["kind"].split("=")[0], tuple(v["observed"]["unmet"]), tuple(v["request_ids"]))
             for v in run.check("capability_fit")["violations"]}
    assert unmet == {("tool_choice", ("tools",), tuple(_ids(agent))),
                     ("response_format", ("structured_output",), tuple(_ids(extract)))}
    # The policy accepts the loss for plain chat only: agent and extract got a degraded answer.
    degraded = {(v["observed"]["request_class"], tuple(v["observed"]["aspects"]), tuple(v["request_ids"]))
                for v in run.check("equivalence")["violations"]}
    assert degraded == {("agent", ("tools",), tuple(_ids(agent))),
                        ("extract", ("structured_output",), tuple(_ids(extract)))}
    assert all(v["message"].startswith("degraded answer to a class that did not accept it: fallback mini-eu")
               for v in run.check("equivalence")["violations"])

    avoided = runs["litellm-capability-by-route"]
    for request_class in ("agent", "extract"):
        moved = avoided.fallen_back(request_class)
        assert len(moved) >= 3 and all(avoided.path(r) == [("gpt-eu", "error"), ("claude-eu", "ok")] for r in moved)
    assert all(json.loads(r["answer"]["shape"])["tool_calls"] == ["search"] for r in avoided.fallen_back("agent"))
    assert all(r["answer"]["schema_ok"] for r in avoided.fallen_back("extract"))
    chat = avoided.fallen_back("chat")  # plain chat keeps the cheap fallback
    assert len(chat) >= 5 and all(avoided.path(r) == [("gpt-eu", "error"), ("mini-eu", "ok")] for r in chat)


@needs_litellm
@pytest.mark.slow
def test_schema_validation_fails_closed_after_the_fallback_was_called(runs):
    run = runs["litellm-schema-validation"]
    extract = run.fallen_back("extract")
    assert len(extract) >= 3
    # mini-eu was called and answered (ok, in ground truth); LiteLLM rejected its prose against the
    # schema and returned the primary's 503: no client got a degraded answer ...
    assert all(run.path(r) == [("gpt-eu", "error"), ("mini-eu", "ok")] for r in extract)
    assert all(r["status"] == 503 and "JSONSchemaValidationError" in r["error"] for r in extract)
    assert all(r["answer"]["schema_ok"] for r in run.requests("extract") if r["status"] == 200)
    # ... but each of them went, its data included, to a model unable to serve it.
    (violation,) = run.check("capability_fit")["violations"]
    assert violation["observed"]["unmet"] == ["structured_output"] and violation["observed"]["target"] == "mini-eu"
    assert violation["request_ids"] == _ids(extract)
    chat = run.fallen_back("chat")
    assert len(chat) >= 5 and all(r["status"] == 200 for r in chat)


@needs_portkey
@pytest.mark.slow
def test_portkey_sends_a_context_overflow_down_the_whole_chain(runs):
    run = runs["portkey-context-overflow"]
    long = run.requests("summarise")
    assert len(long) >= 5
    # Any non-2xx falls back: the overflow went to the 8k model (refused again), then to the 1M one.
    assert all(run.path(r) == [("gpt-eu", "context_length"), ("small-eu", "context_length"), ("long-eu", "ok")]
               for r in long)
    assert all(r["status"] == 200 and r["claimed_target"] == "long-eu" for r in long)
    (trigger,) = run.check("trigger_conditions")["violations"]
    assert trigger["observed"]["cause"] == "context_length" and trigger["request_ids"] == _ids(long)
    messages = run.messages("capability_fit")
    assert sorted(messages) == [
        "fallback to small-eu on route chat cannot serve requests of kind input_tokens=130000: context: needs "
        "130,000 tokens, small-eu has 8.2k",
        "route chat fell back after gpt-eu refused a prompt over its context window, but context_length is not "
        "in fallback_on (a context refusal is no outage)"]

    avoided = runs["portkey-context-on-status-codes"]
    long = avoided.requests("summarise")
    # With on_status_codes the 400 is passed on, OpenAI's message kept; outages still fall back.
    assert len(long) >= 5 and all(avoided.path(r) == [("gpt-eu", "context_length")] for r in long)
    assert all(r["status"] == 400 and "maximum context length is 128000 tokens" in r["error"] for r in long)
    chat = avoided.fallen_back("chat")
    assert len(chat) >= 5 and all(avoided.path(r) == [("gpt-eu", "error"), ("small-eu", "ok")] for r in chat)

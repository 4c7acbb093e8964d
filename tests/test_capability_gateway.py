"""The reference gateway is capability-aware, and each capability defect is caught by its check.

First the gateway itself against real mock providers with declared capabilities (fast): which targets
it skips, how it treats a context-length refusal, the response_format it forwards, the region header it
relays. Then whole runs of the shipped capability scenarios through the real CLI (slow tier): the correct
gateway passes every check over five seeds, each defect fails the check that names it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from conftest_topology import (
    AUDIT_TOKEN,
    CLIENT_KEY,
    CONTROL_TOKEN,
    IDENTITIES,
    Rig,
    chat_body,
    gateway_config,
    parse_sse,
    traffic_headers,
    wait_for,
)
from jsonschema import Draft202012Validator
from test_reference_gateway import DOWN, run

from harness.core.capabilities import pad_to_tokens
from harness.core.identity import fingerprint
from harness.core.model import AuditMapping
from harness.selftest import DEFECT_CASES
from harness.topology.collector import build_collector_app
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.reference_gateway import GatewayConfig, build_gateway_app
from harness.topology.serving import start_app
from tests.conftest import SCENARIOS, harness_cmd, shipped_data

TOOLS = ["lookup_order", "issue_refund"]
SCHEMA = {"type": "object", "properties": {"vendor": {"type": "string"}, "total": {"type": "number"}},
          "required": ["vendor", "total"], "additionalProperties": False}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "invoice", "schema": SCHEMA, "strict": True}}


def _provider(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "region": "eu", "identity": "svc-eu", "tools": TOOLS,
            "data_classes": ["public", "internal"], **extra}


# The primary holds 2k tokens; the cheap fallback 500, without JSON mode or tool calling; the large one 8k.
PROVIDERS: dict[str, dict[str, Any]] = {
    "gpt-eu": _provider("gpt-4o", capabilities={"context_tokens": 2000},
                        profile={"system_fingerprint": "fp_se", "region_header": "x-ms-region"}),
    "small-eu": _provider("llama-3-8b", capabilities={"context_tokens": 500, "structured_output": False,
                                                      "tools": False}),
    "big-eu": _provider("claude-sonnet", capabilities={"context_tokens": 8000},
                        profile={"system_fingerprint": "fp_big", "region_header": "x-ms-region"}),
}


def _target(name: str) -> dict[str, Any]:
    return {"target": name, "equivalence": "non-equivalent", "approved_by": "cab", "approval_ref": f"CHG-{name}"}


def policy(**overrides: Any) -> dict[str, Any]:
    return {"routes": {"chat": {"primary": "gpt-eu", "fallbacks": [_target("small-eu"), _target("big-eu")]}},
            **overrides}


class CapabilityRig(Rig):
    """The shared Rig (conftest_topology) with providers that declare capabilities and profiles, built as
    `harness serve` builds them: each mock knows the others (a vendor fallback answers as one of them)."""

    def __init__(self, defects: tuple[str, ...] = (), policy_dict: dict[str, Any] | None = None,
                 providers: dict[str, dict[str, Any]] = PROVIDERS) -> None:
        super().__init__(defects, policy_dict)
        self.providers = providers

    async def __aenter__(self) -> CapabilityRig:
        by_fp = {fingerprint(key): name for name, key in IDENTITIES.items()}
        for name, spec in self.providers.items():
            app = build_provider_app(name, ProviderSpec.from_dict(spec, name, self.providers), self.sink,
                                     CONTROL_TOKEN, by_fp, 1)
            runner, self.urls[name] = await start_app(app)
            self.runners.append(runner)
        runner, collector_url = await start_app(build_collector_app(self.sink, AuditMapping(), IDENTITIES,
                                                                    AUDIT_TOKEN))
        collector_url = f"{collector_url}/{AUDIT_TOKEN}"  # as {collector.url}: ends in the token
        self.runners.append(runner)
        providers = {name: {**spec, "url": self.urls[name], "key": IDENTITIES[spec["identity"]]}
                     for name, spec in self.providers.items()}
        config = gateway_config(self.urls, collector_url, self.defects, self.policy_dict or policy(),
                                providers=providers, **self.overrides)
        runner, self.url = await start_app(build_gateway_app(GatewayConfig.from_dict(config)))
        self.runners.append(runner)
        self.session = aiohttp.ClientSession()
        return self

    async def ask(self, rid: str, *, prompt_tokens: int | None = None, stream: bool = False,
                  **fields: Any) -> tuple[int, dict[str, str], str]:
        body = chat_body(rid, stream=stream, tools=fields.pop("tools", None))
        if prompt_tokens is not None:
            text = body["messages"][1]["content"]
            body["messages"] = [{"role": "user", "content": pad_to_tokens(text, prompt_tokens)}]
        headers = {**traffic_headers(rid), "Authorization": f"Bearer {CLIENT_KEY}"}
        async with self.session.post(f"{self.url}/v1/chat/completions", json={**body, **fields},
                                     headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.text()


def rig(defects: tuple[str, ...] = (), **policy_overrides: Any) -> CapabilityRig:
    return CapabilityRig(defects=defects, policy_dict=policy(**policy_overrides))


def _content(text: str) -> str | None:
    return json.loads(text)["choices"][0]["message"]["content"]


# -- the capability filter ----------------------------------------------------------------------------------------

def test_fallback_skips_targets_that_cannot_serve_the_request() -> None:
    async def scenario() -> None:
        async with rig() as r:
            await r.fault("gpt-eu", "down", DOWN)
            # Short and plain: the first approved target serves it.
            assert (await r.ask("r1"))[1]["x-served-by"] == "small-eu"
            # Each of these needs what small-eu lacks: the gateway goes straight past it.
            asks = {"r2": {"prompt_tokens": 1000}, "r3": {"response_format": JSON_SCHEMA},
                    "r4": {"tools": TOOLS, "tool_choice": "required"}, "r5": {"max_tokens": 600}}
            for rid, fields in asks.items():
                status, headers, _ = await r.ask(rid, **fields)
                assert (status, headers["x-served-by"]) == (200, "big-eu"), rid
                # The primary is tried or skipped (it cools down after r1), small-eu never.
                calls = r.calls(rid)
                assert calls[-1] == ("big-eu", "ok") and "small-eu" not in {p for p, _ in calls}, rid
            assert await wait_for(lambda: len(r.sink.of("audit")) == 5)
            assert {a["fields"]["fallback"] for a in r.audits("r2")} == {"big-eu"}

    run(scenario())


def test_with_no_target_able_to_serve_it_the_request_is_not_moved() -> None:
    async def scenario() -> None:
        restricted = policy()
        restricted["routes"]["chat"]["fallbacks"][1]["request_classes"] = ["batch"]
        async with CapabilityRig(policy_dict=restricted) as r:
            await r.fault("gpt-eu", "down", DOWN)
            # For a chat request only small-eu is approved, and it cannot hold 1,000 tokens: the outage is
            # the client's to see, not a reason to send the prompt where it cannot fit.
            status, _, text = await r.ask("r1", prompt_tokens=1000)
            assert status == 503 and json.loads(text)["error"]["code"] == "upstream_unavailable"
            assert r.calls("r1") == [("gpt-eu", "error")]
            assert (await r.ask("r2"))[1]["x-served-by"] == "small-eu"

    run(scenario())


def test_defect_capability_blind() -> None:
    async def scenario() -> None:
        async with rig(defects=("capability-blind",)) as r:
            await r.fault("gpt-eu", "down", DOWN)
            # The long prompt goes to the 500-token model, which refuses it; a refusal is no outage.
            status, _, text = await r.ask("r1", prompt_tokens=1000)
            assert status == 400 and json.loads(text)["error"]["code"] == "context_length_exceeded"
            assert r.calls("r1") == [("gpt-eu", "error"), ("small-eu", "context_length")]
            # The JSON request gets text, the agent turn prose: answers the request did not ask for.
            status, headers, text = await r.ask("r2", response_format=JSON_SCHEMA)
            assert (status, headers["x-served-by"], _content(text)) == (200, "small-eu", "reply to r2 from small-eu")
            status, headers, text = await r.ask("r3", tools=TOOLS, tool_choice="required")
            assert headers["x-served-by"] == "small-eu" and "tool_calls" not in json.loads(text)["choices"][0][
                "message"]

    run(scenario())


# -- a context-length refusal ---------------------------------------------------------------------------------

def test_a_context_refusal_is_passed_on_and_cools_nothing_down() -> None:
    async def scenario() -> None:
        async with rig() as r:
            status, _, text = await r.ask("r1", prompt_tokens=3000)
            assert status == 400 and json.loads(text)["error"]["code"] == "context_length_exceeded"
            assert r.calls("r1") == [("gpt-eu", "context_length")]
            # The primary is healthy: the next request goes to it, not to a fallback.
            assert (await r.ask("r2"))[1]["x-served-by"] == "gpt-eu"
            assert r.sink.of("audit") == []

    run(scenario())


def test_context_length_in_fallback_on_moves_only_to_a_target_that_fits() -> None:
    async def scenario() -> None:
        async with rig(fallback_on=[429, 500, 502, 503, 504, "timeout", "connection_error", "context_length"]) as r:
            status, headers, _ = await r.ask("r1", prompt_tokens=3000)
            assert (status, headers["x-served-by"]) == (200, "big-eu")
            assert r.calls("r1") == [("gpt-eu", "context_length"), ("big-eu", "ok")]
            assert await wait_for(lambda: len(r.audits("r1")) == 1)
            assert r.audits("r1")[0]["fields"]["reason"] == "context_length"
            assert (await r.ask("r2"))[1]["x-served-by"] == "gpt-eu"

    run(scenario())


def test_defect_context_overflow_reroute() -> None:
    async def scenario() -> None:
        async with rig(defects=("context-overflow-reroute",)) as r:
            # context_length is not in fallback_on, and small-eu is smaller still: it goes there anyway.
            status, headers, _ = await r.ask("r1", prompt_tokens=3000)
            assert (status, headers["x-served-by"]) == (200, "big-eu")
            assert r.calls("r1") == [("gpt-eu", "context_length"), ("small-eu", "context_length"), ("big-eu", "ok")]
            # Outages still skip what cannot serve: the defect changes the context refusal only.
            await r.fault("gpt-eu", "down", DOWN)
            await r.ask("r2", prompt_tokens=1000)
            assert r.calls("r2") == [("gpt-eu", "error"), ("big-eu", "ok")]
            # The context refusal of r1 cooled nothing down: r2's primary call was its own.

    run(scenario())


# -- response_format ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("defects", "json_answer"), [((), True), (("drops-response-format",), False)],
                         ids=["correct", "drops-response-format"])
def test_response_format_reaches_the_fallback(defects: tuple[str, ...], json_answer: bool) -> None:
    async def scenario() -> None:
        async with rig(defects=defects) as r:
            # On the primary the format is forwarded either way.
            Draft202012Validator(SCHEMA).validate(json.loads(_content((await r.ask("r0",
                                                                       response_format=JSON_SCHEMA))[2]) or ""))
            await r.fault("gpt-eu", "down", DOWN)
            status, headers, text = await r.ask("r1", response_format=JSON_SCHEMA)
            assert (status, headers["x-served-by"]) == (200, "big-eu")
            content = _content(text)
            if json_answer:
                Draft202012Validator(SCHEMA).validate(json.loads(content or ""))
            else:
                assert content == "reply to r1 from big-eu"

    run(scenario())


# -- who answered: the region header ------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_the_region_header_is_relayed_also_under_a_vendor_reroute(stream: bool) -> None:
    async def scenario() -> None:
        # The primary's vendor serves from big-eu under a fault, unseen by the gateway.
        vendor = {**PROVIDERS, "gpt-eu": {**PROVIDERS["gpt-eu"], "vendor_fallback": {"to": "big-eu"}}}
        async with CapabilityRig(policy_dict=policy(), providers=vendor) as r:
            status, headers, text = await r.ask("r1", stream=stream)
            assert status == 200 and headers["x-ms-region"] == "eu" and headers["x-served-by"] == "gpt-eu"
            # The vendor's own fallback: the gateway sees a 200 from its primary; the answer says otherwise.
            await r.fault("gpt-eu", "capacity", {"kind": "error", "status": 429})
            status, headers, text = await r.ask("r2", stream=stream)
            assert status == 200 and headers["x-served-by"] == "gpt-eu" and headers["x-ms-region"] == "eu"
            first = json.loads(parse_sse(text)[0]) if stream else json.loads(text)
            assert (first["model"], first["system_fingerprint"]) == ("claude-sonnet", "fp_big")
            [call] = r.sink.upstream("r2")
            assert (call["provider"], call["vendor_reroute"]) == ("gpt-eu", "big-eu")

    run(scenario())


# -- whole runs of the shipped scenarios (slow) ---------------------------------------------------------------

NEW_SCENARIOS = ("context-window", "structured-output", "tool-calls", "vendor-reroute")
SEEDS = (1, 2, 3, 4, 5)


def _run(scenario: Path, report_dir: Path, *extra: str) -> tuple[int, dict[str, Any], list[dict[str, Any]], str]:
    result = harness_cmd("run", str(scenario), "--report-dir", str(report_dir), "--format", "json", *extra,
                         timeout=300)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (run_dir,) = report_dir.iterdir()
    events = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines() if line.strip()]
    return result.returncode, json.loads(result.stdout), events, result.stderr


def _verdicts(summary: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["verdict"] for c in summary["checks"]}


def _served(events: list[dict[str, Any]]) -> dict[str, str]:
    """Request id -> the provider whose ok call answered it (ground truth)."""
    return {e["id"]: e["provider"] for e in events if e["type"] == "upstream" and e["outcome"] == "ok"}


def _requests(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "request"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_SCENARIOS)
def test_correct_gateway_passes_over_five_seeds(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS / f"{name}.yaml"

    def one(seed: int) -> tuple[int, tuple[int, dict[str, Any], list[dict[str, Any]], str]]:
        return seed, _run(scenario, tmp_path / f"seed-{seed}", "--seed", str(seed))

    # Two runs at a time: a run's wall time is its traffic, not its CPU.
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(one, SEEDS))
    for seed, (code, summary, events, _) in runs:
        failing = {c["check"]: c["summary"] for c in summary["checks"] if c["verdict"] != "pass"}
        assert code == 0 and summary["verdict"] == "pass" and not failing, (name, seed, failing)
        GROUND_TRUTH[name](events)


def _context_window(events: list[dict[str, Any]]) -> None:
    served = _served(events)
    kinds = {r["id"]: r.get("kind") or "" for r in _requests(events)}
    long = {rid for rid, kind in kinds.items() if "input_tokens" in kind}
    # The outage moved traffic, short chats to the 8k model and long conversations to the 200k one.
    assert {served[rid] for rid in served if rid not in long} == {"gpt-eu", "small-eu"}
    assert {served[rid] for rid in long if rid in served} == {"gpt-eu", "claude-eu"}
    # No call ever went to a model too small for it; an oversized one is refused by the primary alone.
    assert not [e for e in events if e["type"] == "upstream" and e["outcome"] == "context_length"
                and e["provider"] != "gpt-eu"]


def _structured_output(events: list[dict[str, Any]]) -> None:
    served = _served(events)
    json_requests = [r for r in _requests(events) if "response_format" in (r.get("kind") or "")]
    assert {served[r["id"]] for r in json_requests} == {"gpt-eu", "gpt-eu-2"}
    assert all(json.loads(r["answer"]["shape"])["content"] == "json" for r in json_requests)
    assert all(r["answer"]["schema_ok"] for r in json_requests if "schema_ok" in r["answer"])
    assert "small-eu" in served.values()  # plain chat took the cheap model


def _tool_calls(events: list[dict[str, Any]]) -> None:
    served = _served(events)
    agent = [r for r in _requests(events) if r["request_class"] == "agent"]
    assert {served[r["id"]] for r in agent} == {"gpt-eu", "claude-eu"}
    assert all(json.loads(r["answer"]["shape"]).get("tool_calls") for r in agent)
    assert "small-eu" in served.values()


def _vendor_reroute(events: list[dict[str, Any]]) -> None:
    rerouted = {e["id"] for e in events if e["type"] == "upstream" and e.get("vendor_reroute") == "gpt-eu-2"}
    assert rerouted and set(_served(events).values()) == {"gpt-eu"}  # the gateway never moved anything
    # What the client saw of the rerouted answers: the sibling's fingerprint, relayed with its region header.
    answers = {r["id"]: r["answer"] for r in _requests(events)}
    assert {answers[rid]["system_fingerprint"] for rid in rerouted} == {"fp_fr_9c41"}
    assert all(answers[rid]["regions"] == {"x-ms-region": "eu"} for rid in rerouted)
    assert not [e for e in events if e["type"] == "audit"]


GROUND_TRUTH = {"context-window": _context_window, "structured-output": _structured_output,
                "tool-calls": _tool_calls, "vendor-reroute": _vendor_reroute}

NEW_DEFECTS = ("capability-blind", "context-overflow-reroute", "drops-response-format")


@pytest.mark.slow
@pytest.mark.parametrize("defect", NEW_DEFECTS)
def test_defect_is_caught_by_its_check(defect: str, tmp_path: Path) -> None:
    scenario_name, check = DEFECT_CASES[defect]
    data = shipped_data(SCENARIOS / scenario_name)
    data["gateway"]["defects"] = [defect]
    scenario = tmp_path / scenario_name
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    code, summary, events, _ = _run(scenario, tmp_path / "reports")
    assert code == 1 and summary["verdict"] == "fail"
    [result] = [c for c in summary["checks"] if c["check"] == check]
    assert result["verdict"] == "fail" and result["violations"], result["summary"]
    EVIDENCE[defect](events, result)


def _blind(events: list[dict[str, Any]], result: dict[str, Any]) -> None:
    refused = [e for e in events if e["type"] == "upstream" and e["provider"] == "small-eu"
               and e["outcome"] == "context_length"]
    assert refused, "long conversations went to the 8k model"
    assert "small-eu" in json.dumps(result["violations"])


def _overflow(events: list[dict[str, Any]], result: dict[str, Any]) -> None:
    by_id: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        if e["type"] == "upstream":
            by_id.setdefault(e["id"], []).append((e["provider"], e["outcome"]))
    rerouted = [calls for calls in by_id.values() if calls[:2] == [("gpt-eu", "context_length"),
                                                                   ("small-eu", "context_length")]]
    assert rerouted, "a context refusal of the primary was shopped to the 8k model"
    assert "small-eu" in json.dumps(result["violations"])


def _dropped(events: list[dict[str, Any]], result: dict[str, Any]) -> None:
    served = _served(events)
    texts = [r for r in _requests(events) if served.get(r["id"]) == "gpt-eu-2"
             and "response_format" in (r.get("kind") or "")]
    assert texts and all(json.loads(r["answer"]["shape"])["content"] == "text" for r in texts)
    assert "gpt-eu-2" in json.dumps(result["violations"])


EVIDENCE = {"capability-blind": _blind, "context-overflow-reroute": _overflow, "drops-response-format": _dropped}

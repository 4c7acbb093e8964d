"""The fault proxy in front of an upstream with limits: a context-window refusal is recorded as such
(outcome context_length, not an outage), and what the upstream's answers say about who answered
(model, fingerprint, region header) reaches the client untouched, so the drift detector can read it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest_topology import ListSink, chat_body

from harness.core.identity import fingerprint
from harness.topology.fault_proxy import build_proxy_app
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.serving import start_app
from tests.conftest import harness_cmd

KEY = "sk-test-eu-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
UPSTREAM = {"model": "gpt-4o-mini", "region": "us", "identity": "svc-eu", "data_classes": ["internal"],
            "capabilities": {"context_tokens": 100},
            "profile": {"system_fingerprint": "fp_us_9", "region_header": "x-ms-region"}}
DECLARED = ProviderSpec(model="gpt-4o", region="eu", identity="svc-eu", data_classes=["internal"])


async def _through_proxy(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str], ListSink]:
    upstream_sink, proxy_sink = ListSink(), ListSink()
    identities = {fingerprint(KEY): "svc-eu"}
    upstream_app = build_provider_app("real", ProviderSpec.from_dict(UPSTREAM, "real"), upstream_sink, "t",
                                      identities, 0)
    upstream_runner, upstream_url = await start_app(upstream_app)
    proxy_app = build_proxy_app("gpt-eu", DECLARED, upstream_url, proxy_sink, "t", identities, 0)
    proxy_runner, proxy_url = await start_app(proxy_app)
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"{proxy_url}/v1/chat/completions", json=body, headers=AUTH) as resp:
            return resp.status, await resp.json(), dict(resp.headers), proxy_sink
    finally:
        await proxy_runner.cleanup()
        await upstream_runner.cleanup()


def test_a_context_refusal_behind_the_proxy_is_recorded_as_context_length() -> None:
    body = chat_body("r1")
    body["messages"].append({"role": "user", "content": "x" * 2000})  # about 500 tokens: over 100
    status, answer, _, sink = asyncio.run(_through_proxy(body))
    assert status == 400 and answer["error"]["code"] == "context_length_exceeded"
    [call] = sink.upstream("r1")
    assert (call["outcome"], call["status"], call["provider"]) == ("context_length", 400, "gpt-eu")


def test_who_really_answered_reaches_the_client_through_the_proxy() -> None:
    status, answer, headers, sink = asyncio.run(_through_proxy(chat_body("r2")))
    assert status == 200
    # The proxy is declared as gpt-4o in the EU; the answer says otherwise, and nothing hides it.
    assert (answer["model"], answer["system_fingerprint"]) == ("gpt-4o-mini", "fp_us_9")
    assert headers["x-ms-region"] == "us"
    [call] = sink.upstream("r2")
    assert call["outcome"] == "ok" and "vendor_reroute" not in call


@pytest.mark.slow
def test_drift_detector_catches_a_real_upstream_answering_as_another_model(tmp_path: Path) -> None:
    """`harness run` through fault proxies whose primary upstream really serves another model than the one
    declared: nothing in ground truth says so; the answers alone do, and vendor_fallback fails on them."""
    from tests.test_fault_proxy import _env, _scenario_text, model_server

    with model_server("--model", "gpt-4o-mystery") as primary, model_server("--model", "claude-sonnet") as fallback:
        scenario = tmp_path / "proxy-drift.yaml"
        scenario.write_text(_scenario_text(primary, fallback, **{
            'tools: [search], upstream: "${HARNESS_UPSTREAM_GPT_EU':
            'tools: [search], profile: {model: gpt-4o}, upstream: "${HARNESS_UPSTREAM_GPT_EU'}))
        result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "reports"), env=_env(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    [run_dir] = list((tmp_path / "reports").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    verdicts = {c["check"]: c for c in summary["checks"]}
    drift = verdicts.pop("vendor_fallback")
    assert drift["verdict"] == "fail"
    assert any(v["message"].startswith("the upstream of gpt-eu on route chat answered as no declared provider: "
                                       "model gpt-4o-mystery") for v in drift["violations"]), drift
    # Everything else about the run holds: the drift is the only finding.
    assert {c["verdict"] for c in verdicts.values()} == {"pass"}, verdicts

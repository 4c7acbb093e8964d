"""The reference gateway against real mock providers and a real collector.

Correct behaviour first, then one test per defect showing the breach in the ground truth the
providers recorded (or in the audit trail the collector received).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from conftest_topology import (
    ADMIN_TOKEN,
    CLIENT_KEY,
    CONTROL_TOKEN,
    IDENTITIES,
    PROVIDERS,
    Rig,
    breaking_upstream,
    chat_body,
    gateway_config,
    parse_sse,
    policy,
    start_server,
    traffic_headers,
    wait_for,
)

from harness.core.identity import fingerprint, new_fingerprint_key
from harness.topology.reference_gateway import GatewayConfig, build_gateway_app
from harness.topology.serving import start_app

DOWN = {"kind": "error", "status": 503}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_normal_route_via_primary() -> None:
    async def scenario() -> None:
        async with Rig() as rig:
            status, headers, text = await rig.chat("r1", tools=["search"])
            assert status == 200 and headers["x-served-by"] == "gpt-eu"
            assert json.loads(text)["choices"][0]["message"]["content"] == "reply to r1 from gpt-eu"
            [call] = rig.sink.upstream("r1")
            assert (call["provider"], call["identity"], call["tools"], call["model"]) == (
                "gpt-eu", "svc-eu", ["search"], "gpt-4o")
            assert (await rig.chat("r2", model="nope"))[0] == 404
            async with rig.session.post(f"{rig.url}/v1/chat/completions", json=chat_body("r3")) as resp:
                assert resp.status == 401  # no client key
            async with rig.session.get(f"{rig.url}/health") as resp:
                assert resp.status == 200
            assert rig.calls("r3") == []

    run(scenario())


def test_fallback_on_503_is_audited() -> None:
    async def scenario() -> None:
        async with Rig() as rig:
            await rig.fault("gpt-eu", "down", DOWN)
            status, headers, _ = await rig.chat("r1")
            assert status == 200 and headers["x-served-by"] == "gpt-eu-b"
            assert rig.calls("r1") == [("gpt-eu", "error"), ("gpt-eu-b", "ok")]
            assert rig.sink.upstream("r1")[1]["identity"] == "svc-eu"
            assert await wait_for(lambda: len(rig.audits("r1")) == 1)
            [audit] = rig.audits("r1")
            fields = audit["fields"]
            assert (fields["primary"], fields["fallback"], fields["reason"], fields["route"], fields["tenant"]) == (
                "gpt-eu", "gpt-eu-b", "503", "chat", "acme")
            assert fields["timestamp"].endswith("Z") and audit["leaked_identities"] == []

    run(scenario())


def test_timeout_and_reset_fall_back_with_their_cause() -> None:
    async def scenario() -> None:
        async with Rig() as rig:
            await rig.fault("gpt-eu", "hang", {"kind": "timeout", "hold_s": 5}, match={"tenant": "acme"})
            await rig.fault("gpt-eu", "cut", {"kind": "reset"}, match={"tenant": "beta"})
            assert (await rig.chat("r1", tenant="acme"))[1]["x-served-by"] == "gpt-eu-b"
            assert (await rig.chat("r2", tenant="beta"))[1]["x-served-by"] == "gpt-eu-b"
            assert await wait_for(lambda: len(rig.sink.of("audit")) == 2)
            assert rig.audits("r1")[0]["fields"]["reason"] == "timeout"
            assert rig.audits("r2")[0]["fields"]["reason"] == "connection_error"

    run(scenario())


def test_cooldown_then_failback() -> None:
    async def scenario() -> None:
        async with Rig() as rig:
            await rig.fault("gpt-eu", "down", DOWN)
            await rig.chat("r1")
            await rig.heal("gpt-eu", "down")
            status, headers, _ = await rig.chat("r2")  # primary cooling down: straight to the fallback
            assert status == 200 and rig.calls("r2") == [("gpt-eu-b", "ok")]
            assert await wait_for(lambda: len(rig.audits("r2")) == 1)
            assert rig.audits("r2")[0]["fields"]["reason"] == "primary_cooldown"
            assert rig.calls("r3-beta") == []
            await rig.chat("r3-beta", tenant="beta")  # another tenant's primary never cooled down
            assert rig.calls("r3-beta") == [("gpt-eu", "ok")]
            await asyncio.sleep(1.05)
            assert (await rig.chat("r4"))[1]["x-served-by"] == "gpt-eu"  # failback

    run(scenario())


def test_fail_closed_class_is_not_rerouted() -> None:
    async def scenario() -> None:
        async with Rig() as rig:
            await rig.fault("gpt-eu", "down", DOWN)
            status, _, text = await rig.chat("r1", request_class="regulated")
            assert status == 503 and "error" in json.loads(text)
            assert rig.calls("r1") == [("gpt-eu", "error")]
            status, _, _ = await rig.chat("r2", request_class="regulated")  # cooling down: still the primary only
            assert status == 503 and rig.calls("r2") == [("gpt-eu", "error")]

    run(scenario())


def test_content_policy_is_returned_not_rerouted() -> None:
    async def scenario() -> None:
        async with Rig() as rig:
            await rig.fault("gpt-eu", "refuse", {"kind": "content_policy"})
            status, headers, text = await rig.chat("r1")
            assert status == 400 and json.loads(text)["error"]["code"] == "content_policy_violation"
            assert "x-served-by" not in headers and rig.calls("r1") == [("gpt-eu", "content_policy")]

    run(scenario())


def test_attempt_budget_and_data_class_clearance() -> None:
    async def scenario() -> None:
        async with Rig(policy_dict=policy(limits={"max_upstream_attempts": 2})) as rig:
            for name in ("gpt-eu", "gpt-eu-b", "gpt-eu-c"):
                await rig.fault(name, "down", DOWN)
            status, _, _ = await rig.chat("r1", data_class="public")
            assert status == 503 and rig.calls("r1") == [("gpt-eu", "error"), ("gpt-eu-b", "error")]
        async with Rig() as rig:
            for name in ("gpt-eu", "gpt-eu-b"):
                await rig.fault(name, "down", DOWN)
            status, _, _ = await rig.chat("r2", data_class="internal")  # gpt-eu-c is cleared for public only
            assert status == 503 and rig.calls("r2") == [("gpt-eu", "error"), ("gpt-eu-b", "error")]

    run(scenario())


def test_kill_switch_off_means_no_fallback() -> None:
    async def scenario() -> None:
        async with Rig() as rig:
            assert (await rig.switch(False, token="wrong"))[0] == 401
            assert await rig.switch(False) == (200, {"enabled": False})
            await rig.fault("gpt-eu", "down", DOWN)
            assert (await rig.chat("r1"))[0] == 503 and rig.calls("r1") == [("gpt-eu", "error")]
            assert await rig.switch(True) == (200, {"enabled": True})
            assert (await rig.chat("r2"))[1]["x-served-by"] == "gpt-eu-b"

    run(scenario())


def test_streaming_relay() -> None:
    async def scenario() -> None:
        async with Rig() as rig:
            await rig.fault("gpt-eu", "down", DOWN)
            status, headers, text = await rig.chat("r1", stream=True)
            assert status == 200 and headers["x-served-by"] == "gpt-eu-b"
            payloads = parse_sse(text)
            assert payloads[-1] == "[DONE]"
            assert json.loads(payloads[-2])["choices"][0]["finish_reason"] == "stop"
            assert rig.sink.upstream("r1")[-1]["stream"] is True

    run(scenario())


def test_upstream_stream_break_aborts_the_client() -> None:
    async def scenario() -> None:
        upstream = web.Application()
        upstream.router.add_post("/v1/chat/completions", breaking_upstream)
        up_runner, up_url = await start_app(upstream)
        config = gateway_config({"gpt-eu": up_url}, policy_dict=policy(routes={"chat": {"primary": "gpt-eu"}}))
        gw_runner, gw_url = await start_app(build_gateway_app(GatewayConfig.from_dict(config)))
        try:
            headers = {**traffic_headers("r1"), "Authorization": f"Bearer {CLIENT_KEY}"}
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{gw_url}/v1/chat/completions", json=chat_body("r1", stream=True),
                                        headers=headers) as resp:
                    assert resp.status == 200
                    try:
                        await resp.read()
                        broke = False
                    except aiohttp.ClientPayloadError:
                        broke = True
            assert broke, "a broken upstream stream must not end cleanly at the client"
        finally:
            await gw_runner.cleanup()
            await up_runner.cleanup()

    run(scenario())


# -- defects: each one shows up in the ground truth ----------------------------------------------

async def _fallback_once(rig: Rig, rid: str = "r1", **kwargs: Any) -> tuple[int, dict[str, str], str]:
    await rig.fault("gpt-eu", "down", DOWN)
    return await rig.chat(rid, **kwargs)


def test_defect_unapproved_target() -> None:
    async def scenario() -> None:
        async with Rig(defects=("unapproved-target",)) as rig:
            await _fallback_once(rig)
            assert rig.served_by("r1") == "rogue-eu"

    run(scenario())


def test_defect_cross_region() -> None:
    async def scenario() -> None:
        async with Rig(defects=("cross-region",)) as rig:
            await _fallback_once(rig)
            served = rig.sink.upstream("r1")[-1]
            assert served["provider"] == "gpt-us" and PROVIDERS["gpt-us"]["region"] != PROVIDERS["gpt-eu"]["region"]

    run(scenario())


def test_defect_identity_swap() -> None:
    async def scenario() -> None:
        async with Rig(defects=("identity-swap",)) as rig:
            await _fallback_once(rig)
            primary, fallback = rig.sink.upstream("r1")
            assert primary["identity"] == "svc-eu"
            assert (fallback["provider"], fallback["identity"], fallback["outcome"]) == ("gpt-eu-b", "svc-us", "ok")

    run(scenario())


def test_defect_extra_tools() -> None:
    async def scenario() -> None:
        async with Rig(defects=("extra-tools",)) as rig:
            await _fallback_once(rig, tools=["search"])
            primary, fallback = rig.sink.upstream("r1")
            assert primary["tools"] == ["search"] and "code_interpreter" in fallback["tools"]

    run(scenario())


def test_defect_reroute_sensitive() -> None:
    async def scenario() -> None:
        async with Rig(defects=("reroute-sensitive",)) as rig:
            await _fallback_once(rig, request_class="regulated")
            assert rig.served_by("r1") == "gpt-eu-b"

    run(scenario())


def test_defect_fallback_on_any_error() -> None:
    async def scenario() -> None:
        async with Rig(defects=("fallback-on-any-error",)) as rig:
            await rig.fault("gpt-eu", "refuse", {"kind": "content_policy"})
            await rig.chat("r1")
            assert rig.calls("r1") == [("gpt-eu", "content_policy"), ("gpt-eu-b", "ok")]

    run(scenario())


def test_defect_no_audit() -> None:
    async def scenario() -> None:
        async with Rig(defects=("no-audit",)) as rig:
            await _fallback_once(rig)
            assert rig.served_by("r1") == "gpt-eu-b"
            assert not await wait_for(lambda: bool(rig.sink.of("audit")), timeout_s=0.3)

    run(scenario())


def test_defect_wrong_audit_target() -> None:
    async def scenario() -> None:
        async with Rig(defects=("wrong-audit-target",)) as rig:
            await _fallback_once(rig)
            assert await wait_for(lambda: len(rig.audits("r1")) == 1)
            assert rig.audits("r1")[0]["fields"]["fallback"] != rig.served_by("r1")

    run(scenario())


def test_defect_sticky_fallback() -> None:
    async def scenario() -> None:
        async with Rig(defects=("sticky-fallback",)) as rig:
            await _fallback_once(rig)
            await rig.heal("gpt-eu", "down")
            await asyncio.sleep(1.05)  # past the cooldown: a correct gateway fails back now
            await rig.chat("r2")
            assert rig.calls("r2") == [("gpt-eu-b", "ok")]

    run(scenario())


def test_defect_retry_storm() -> None:
    async def scenario() -> None:
        async with Rig(defects=("retry-storm",)) as rig:
            await _fallback_once(rig)
            calls = rig.calls("r1")
            assert calls.count(("gpt-eu", "error")) == 6 and len(calls) > 3 and calls[-1] == ("gpt-eu-b", "ok")

    run(scenario())


def test_defect_ignore_kill_switch() -> None:
    async def scenario() -> None:
        async with Rig(defects=("ignore-kill-switch",)) as rig:
            assert await rig.switch(False) == (200, {"enabled": False})
            async with rig.session.get(f"{rig.url}/admin/fallback") as resp:
                assert await resp.json() == {"enabled": False}
            await _fallback_once(rig)
            assert rig.served_by("r1") == "gpt-eu-b"

    run(scenario())


def test_defect_truncate_stream() -> None:
    async def scenario() -> None:
        async with Rig(defects=("truncate-stream",)) as rig:
            status, _, text = await rig.chat("r1", stream=True)
            payloads = parse_sse(text)
            assert status == 200 and rig.calls("r1") == [("gpt-eu", "ok")]  # the provider sent it all
            assert payloads and "[DONE]" not in payloads
            assert all(json.loads(p)["choices"][0].get("finish_reason") is None for p in payloads)

    run(scenario())


def test_defect_key_leak() -> None:
    async def scenario() -> None:
        async with Rig(defects=("key-leak",)) as rig:
            await _fallback_once(rig)
            assert await wait_for(lambda: len(rig.audits("r1")) == 1)
            [audit] = rig.audits("r1")
            assert audit["leaked_identities"] == ["svc-eu"]
            assert audit["raw"]["upstream_key"] == "<redacted:svc-eu>"
            assert IDENTITIES["svc-eu"] not in json.dumps(rig.sink.events)

    run(scenario())


# -- the process entry point ---------------------------------------------------------------------

def test_serve_entry_point_subprocesses(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    fp_key = new_fingerprint_key()  # the run's key: the providers process fingerprints with it, as we do here
    providers_cfg = {"ledger_path": str(ledger), "control_token": CONTROL_TOKEN, "seed": 3,
                     "identities_by_fp": {fingerprint(k, fp_key): n for n, k in IDENTITIES.items()},
                     "fingerprint_key": fp_key.hex(), "providers": PROVIDERS}
    providers, ready = start_server("providers", providers_cfg, tmp_path)
    gateway = None
    try:
        assert ready["ready"] is True and set(ready["providers"]) == set(PROVIDERS)
        gateway, gw_ready = start_server("gateway", {**gateway_config(ready["providers"]), "port": 0}, tmp_path)
        assert gw_ready["url"].startswith("http://127.0.0.1:")

        async def send() -> int:
            headers = {**traffic_headers("r1"), "Authorization": f"Bearer {CLIENT_KEY}"}
            async with aiohttp.ClientSession() as session, session.post(
                    f"{gw_ready['url']}/v1/chat/completions", json=chat_body("r1"), headers=headers) as resp:
                return resp.status

        assert run(send()) == 200
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not ledger.read_text().strip():
            time.sleep(0.02)
        [event] = [json.loads(line) for line in ledger.read_text().splitlines()]
        assert (event["type"], event["id"], event["provider"], event["identity"]) == (
            "upstream", "r1", "gpt-eu", "svc-eu")
        assert ADMIN_TOKEN not in ledger.read_text() and IDENTITIES["svc-eu"] not in ledger.read_text()
    finally:
        for proc in (gateway, providers):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    assert proc.wait(timeout=10) == 0
                finally:
                    if proc.poll() is None:
                        proc.kill()
                    proc.communicate()

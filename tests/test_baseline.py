"""The steady-state hypothesis before the first fault (finding 7 of issue 12).

A run whose baseline never held proves nothing: live, the gate injects no fault and the run ends
unknown (exit 3) saying what the providers saw; offline, `harness check` reaches the same verdict.
"""

import gzip
import json
from pathlib import Path

import pytest

from harness.engine.judge import judge_ledger
from tests.conftest import ROOT, harness_cmd, shipped_text

LEDGERS = ROOT / "fixtures" / "ledgers"

# A gateway of the test's own: every chat call goes to one upstream URL with one key, as configured.
GATEWAY = '''
import argparse

import aiohttp
from aiohttp import web

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--upstream", required=True)
parser.add_argument("--key", required=True)
args = parser.parse_args()


async def completions(request):
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(args.upstream, data=await request.read(), headers=headers) as resp:
                return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")
    except aiohttp.ClientError as exc:
        return web.json_response({"error": {"message": str(exc)}}, status=502)


async def health(request):
    return web.json_response({"ok": True})


app = web.Application()
app.router.add_post("/v1/chat/completions", completions)
app.router.add_get("/healthz", health)
web.run_app(app, host="127.0.0.1", port=args.port, print=None)
'''

SCENARIO = '''version: 1
name: baseline-drill
seed: 5
identities:
  svc-eu: {key: "sk-test-svc-eu"}
providers:
  gpt-eu:    {model: gpt-4o, region: eu, identity: svc-eu, data_classes: [public, internal]}
  claude-eu: {model: claude-sonnet, region: eu, identity: svc-eu, data_classes: [public, internal]}
gateway:
  kind: command
  command: ["{python}", "GATEWAY", --port, "{port}", --upstream, "UPSTREAM", --key, "KEY"]
  ready_url: "{gateway.url}/healthz"
policy:
  routes:
    chat:
      primary: gpt-eu
      fallbacks:
        - {target: claude-eu, equivalence: non-equivalent, approved_by: platform-security, approval_ref: CHG-9000}
  reversibility: {failback_within_s: 2}
traffic:
  rate_per_s: 20
  duration_s: 8
  mix:
    - {route: chat, tenant: acme, region: eu, request_class: chat, data_class: internal}
faults:
  - name: primary-down
    target: {provider: gpt-eu}
    effect: {kind: error, status: 503}
    at_s: 2
    duration_s: 2
'''


def _scenario(tmp_path: Path, upstream: str, key: str = "{providers.gpt-eu.key}") -> Path:
    gateway = tmp_path / "gateway.py"
    gateway.write_text(GATEWAY)
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace("GATEWAY", str(gateway)).replace("UPSTREAM", upstream).replace("KEY", key))
    return path


def _run(tmp_path: Path, upstream: str, key: str = "{providers.gpt-eu.key}"):
    scenario = _scenario(tmp_path, upstream, key)
    result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "r"))
    ledger = next((tmp_path / "r").glob("*/ledger.jsonl"))
    events = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    return result, ledger, events


def _stopped_at_the_gate(result, events, codes=(3,)) -> str:
    """Exit 3, no fault injected, the traffic stopped early; the reason recorded in run_end."""
    assert result.returncode in codes, result.stdout + result.stderr
    for name in ("reversible", "steady_state"):
        line = next(row for row in result.stdout.splitlines() if f" {name} " in row)
        assert "UNKNOWN" in line and "baseline never held" in line, line
    assert "Traceback" not in result.stderr
    assert not [e for e in events if e["type"] == "fault_start"]
    [end] = [e for e in events if e["type"] == "run_end"]
    assert end["status"] == "baseline_failed"
    requests = [e for e in events if e["type"] == "request"]
    assert requests and len(requests) < 20 * 8 * 0.75  # stopped at ~2 s of 8
    [note] = [e for e in events if e["type"] == "note" and "baseline" in e]
    assert note["baseline"]["status"] == "failed" and note["baseline"]["held"] == 0
    return str(end["reason"])


@pytest.mark.slow
def test_gateway_on_a_path_the_provider_does_not_serve_stops_before_any_fault(tmp_path):
    result, ledger, events = _run(tmp_path, "{providers.gpt-eu.url}/chat/completions")
    reason = _stopped_at_the_gate(result, events)
    assert "baseline never held: 0 of" in reason
    assert "on /chat/completions, which they do not serve (they serve /v1/chat/completions)" in reason
    assert "end in /v1" in reason  # the fix
    unserved = [e for e in events if e["type"] == "upstream" and e.get("not_served")]
    assert unserved and all(e["path"] == "/chat/completions" and e["status"] == 404 for e in unserved)

    # Offline: the same ledger, the same unknown, for the same reason.
    checked = harness_cmd("check", str(ledger))
    assert checked.returncode == 3, checked.stdout + checked.stderr
    for name in ("reversible", "steady_state"):
        line = next(row for row in checked.stdout.splitlines() if f" {name} " in row)
        assert "UNKNOWN" in line and "baseline never held" in line and "/chat/completions" in line, line


@pytest.mark.slow
def test_gateway_with_a_key_of_no_known_identity_stops_before_any_fault(tmp_path):
    result, _, events = _run(tmp_path, "{providers.gpt-eu.url}/v1/chat/completions", key="sk-rogue")
    # The mock answers an unknown key (a real provider would say 401), so the client saw 2xx that no
    # provider's record backs: response_integrity may rightly report that (exit 1); nothing else passes.
    reason = _stopped_at_the_gate(result, events, codes=(1, 3))
    assert "credential of no known identity (on gpt-eu)" in reason
    assert "sk-rogue" not in json.dumps([e for e in events if e["type"] == "upstream"])  # a fingerprint only


@pytest.mark.slow
def test_gateway_that_reaches_no_provider_stops_before_any_fault(tmp_path):
    result, _, events = _run(tmp_path, "http://127.0.0.1:9/v1/chat/completions")  # nothing listens on 9
    reason = _stopped_at_the_gate(result, events)
    assert "recorded no call at all: the gateway never reached a provider" in reason
    assert not [e for e in events if e["type"] == "upstream"]


def test_a_correct_run_held_its_baseline_before_and_after_the_fault():
    judged = judge_ledger(LEDGERS / "regional-outage__correct.jsonl.gz", ["reversible", "steady_state"])
    for result in judged.results:
        assert result.verdict.value == "pass", result.summary
        assert result.stats["baseline"]["status"] == "held", result.stats["baseline"]
        assert result.stats["baseline"]["requests"] >= 5
    reversible = judged.results[0]
    assert "steady state held again: 100% of" in reversible.summary
    assert reversible.stats["steady_state_after_recovery"]["held_again"] is True


def _as_if_every_call_missed_the_path(source: Path, target: Path) -> None:
    """The issue's ledger, from a recorded correct run: a gateway posting to /chat/completions, every
    request answered 404 by it, every call refused by the provider; the faults still injected (no gate)."""
    out = []
    with gzip.open(source, "rt") as handle:
        for line in handle:
            event = json.loads(line)
            if event["type"] == "request":
                event.update(status=404, outcome="http_error", body_valid=False, error="not found")
            elif event["type"] == "upstream":
                event.update(status=404, outcome="error", not_served=True, path="/chat/completions",
                             serves="/v1/chat/completions", fault=None)
            out.append(json.dumps(event))
    target.write_text("\n".join(out) + "\n")


def test_an_ungated_ledger_whose_baseline_never_held_is_unknown_not_fail_or_pass(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    _as_if_every_call_missed_the_path(LEDGERS / "regional-outage__correct.jsonl.gz", ledger)
    results = {r.check: r for r in judge_ledger(ledger, ["reversible", "steady_state"]).results}
    for name in ("reversible", "steady_state"):  # were FAIL and PASS
        assert results[name].verdict.value == "unknown", results[name].summary
        assert results[name].summary.startswith("baseline never held: 0 of 60 requests succeeded")
        assert "(they serve /v1/chat/completions): set the gateway's base URL (api_base)" in results[name].summary
        assert not results[name].violations


def test_baseline_bounds_are_checked_at_load_time(tmp_path):
    path = tmp_path / "s.yaml"
    text = shipped_text(ROOT / "scenarios" / "regional-outage.yaml")
    path.write_text(text + "baseline: {min_success: 1.5, min_requests: 0}\n")
    result = harness_cmd("validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "baseline.min_success" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr

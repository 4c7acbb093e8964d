"""Portkey gateway 1.15.2 under test: its shipped scenarios run end to end through the real CLI
(three at a time), with every check's verdict pinned and the evidence behind each finding asserted;
plus unit tests of the adapter's pure parts (config rendering, target names, kill-switch config).

The end-to-end tests need `harness setup-gateways portkey` (CI runs it first) and Node on PATH;
without them they are skipped with that reason, while the unit tests still run.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.gateways import portkey
from harness.gateways.base import GatewayContext, install_dir
from harness.scenario import load_scenario
from tests.conftest import ROOT, harness_cmd
from tests.gateway_run import GatewayRun

SCENARIOS = ROOT / "scenarios" / "gateways"
CONFIGS = ROOT / "fixtures" / "gateways" / "portkey"
TARGET = install_dir() / "portkey"
INSTALLED = portkey.installed_version(TARGET) == portkey.VERSION and shutil.which("node") is not None
needs_portkey = pytest.mark.skipif(not INSTALLED, reason=f"Portkey {portkey.VERSION} is not installed in {TARGET} "
                                   "(or node is not on PATH): run `harness setup-gateways portkey` first")
KEY = "sk-test-svc-eu"  # the scenarios' default key of svc-eu, so the tests can look for it in the reports

# scenario -> (exit code, the checks that fail; every other listed check passes)
EXPECTED = {
    "portkey-regional-outage": (1, {"fail_closed", "logged"}),
    "portkey-tenant-outage": (1, {"logged"}),
    "portkey-fail-closed-class": (1, {"fail_closed", "logged"}),
    "portkey-fail-closed-by-route": (0, set()),
    "portkey-content-policy-refusal": (1, {"trigger_conditions"}),
    "portkey-content-policy-on-status-codes": (0, set()),
    "portkey-failback-after-recovery": (1, {"logged"}),
    "portkey-kill-switch": (1, {"logged"}),
}

# Streaming is a known failure of Portkey 1.15.2 on Node 20, so the shipped scenarios do not stream.
STREAMING = """\
{version: 1, name: portkey-streaming, seed: 5, identities: {svc-eu: {key: sk-test-svc-eu}},
 providers: {gpt-eu: {model: gpt-4o, region: eu, identity: svc-eu, data_classes: [internal]},
             claude-eu: {model: claude-sonnet, region: eu, identity: svc-eu, data_classes: [internal]}},
 gateway: {kind: portkey, config: fixtures/gateways/portkey/fallback.json},
 policy: {routes: {chat: {primary: gpt-eu, fallbacks: [{target: claude-eu, equivalence: equivalent, approved_by: sec,
                                                         approval_ref: CHG-1}]}}},
 traffic: {rate_per_s: 5, duration_s: 2, mix: [{route: chat, tenant: acme, region: eu, request_class: chat,
                                                data_class: internal, stream: true}]},
 checks: [response_integrity]}
"""


Run = GatewayRun


def _run(scenario: Path, report: Path) -> Run:
    done = harness_cmd("run", str(scenario), "--report-dir", str(report), timeout=150)
    return Run(done.returncode, done.stdout + done.stderr, report)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    if not INSTALLED:
        pytest.skip(f"Portkey {portkey.VERSION} is not installed in {TARGET}: run `harness setup-gateways portkey`")
    base = tmp_path_factory.mktemp("portkey")
    (base / "portkey-streaming.yaml").write_text(STREAMING)
    jobs = {name: SCENARIOS / f"{name}.yaml" for name in EXPECTED}
    jobs["portkey-streaming"] = base / "portkey-streaming.yaml"
    # Three at a time: each run holds a Node gateway, a provider process and 10-20 req/s of traffic.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, path, base / name) for name, path in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_shipped_portkey_scenario_is_pinned():
    assert {p.stem for p in SCENARIOS.glob("portkey-*.yaml")} == set(EXPECTED)


@needs_portkey
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_of_each_check_is_pinned(runs, name):
    run, (code, failing) = runs[name], EXPECTED[name]
    assert run.returncode == code, run.output
    assert run.summary["status"] == "completed"
    verdicts = {c["check"]: c["verdict"] for c in run.summary["checks"]}
    listed = load_scenario(SCENARIOS / f"{name}.yaml").scenario.check_names()
    assert verdicts == {c: "fail" if c in failing else "pass" for c in listed}, run.output
    # The gateway's claim (x-portkey-last-used-option-index, mapped) always matched the ground truth.
    ok = [r for r in run.of("request") if r["status"] == 200]
    assert ok and all(r["claimed_target"] == run.by_id[r["id"]][-1]["provider"] for r in ok)
    # Keys appear nowhere in what the run wrote, although Portkey's logs carry them in plain text.
    assert not any(KEY in text for text in run.texts.values())


@needs_portkey
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, (_, failing) in EXPECTED.items() if "logged" in failing])
def test_log_stream_leaks_keys_and_names_no_request(runs, name):
    run = runs[name]
    messages = [v["message"] for v in run.check("logged")["violations"]]
    assert "audit event carries a credential of identity svc-eu" in messages
    audits = run.of("audit")
    assert len(audits) == len(run.of("request"))  # Portkey logs every request, fallback or not
    assert all(a["leaked_identities"] == ["svc-eu"] for a in audits)
    first = audits[0]["raw"]["requestOptions"][0]
    assert first["providerOptions"]["apiKey"] == "<redacted:svc-eu>"
    assert first["transformedRequest"]["headers"]["authorization"] == "Bearer <redacted:svc-eu>"
    # It records each fallback truthfully, but with no request id (nor tenant) it is nobody's record.
    fallbacks = [a for a in audits if a["fields"].get("fallback") == "claude-eu"]
    served = [r for r in run.of("request") if r["claimed_target"] == "claude-eu"]
    assert len(fallbacks) == len(served) > 10
    assert all(set(a["fields"]) == {"route", "primary", "fallback", "reason", "timestamp"} for a in fallbacks)
    assert all(a["fields"]["primary"] == "gpt-eu" for a in fallbacks)
    assert any(m.startswith("no audit event for a fallback to claude-eu") for m in messages)


@needs_portkey
@pytest.mark.slow
@pytest.mark.parametrize("name", ["portkey-regional-outage", "portkey-fail-closed-class"])
def test_fallback_config_reroutes_regulated_requests(runs, name):
    run = runs[name]
    faulted = sorted(rid for rid, c in run.by_id.items() if c[0]["fault"] and c[0]["request_class"] == "regulated")
    violation = run.check("fail_closed")["violations"][0]
    assert violation["observed"]["provider"] == "claude-eu"
    assert violation["observed"]["count"] == len(faulted) > 5 and violation["request_ids"] == faulted[:20]
    assert all([c["provider"] for c in run.by_id[rid]] == ["gpt-eu", "claude-eu"] for rid in faulted)


@needs_portkey
@pytest.mark.slow
def test_conditional_route_fails_regulated_requests_closed(runs):
    run = runs["portkey-fail-closed-by-route"]
    calls, requests = run.by_id, {r["id"]: r for r in run.of("request")}
    regulated = [rid for rid, c in calls.items() if c[0]["fault"] and c[0]["request_class"] == "regulated"]
    batch = [rid for rid, c in calls.items() if c[0]["fault"] and c[0]["request_class"] == "batch"]
    assert len(regulated) > 5 and len(batch) > 10
    assert all(len(calls[rid]) == 1 and requests[rid]["status"] == 502 for rid in regulated)  # passed on
    assert all(calls[rid][-1]["provider"] == "claude-eu" for rid in batch)  # batch still falls back


@needs_portkey
@pytest.mark.slow
def test_content_policy_refusal_is_shopped_unless_status_codes_are_set(runs):
    shopped = runs["portkey-content-policy-refusal"]
    refused = [rid for rid, c in shopped.by_id.items() if c[0]["outcome"] == "content_policy"]
    assert len(refused) > 10
    assert all([c["provider"] for c in shopped.by_id[rid]] == ["gpt-eu", "claude-eu"] for rid in refused)
    assert shopped.check("trigger_conditions")["violations"][0]["observed"]["cause"] == "400"
    held = runs["portkey-content-policy-on-status-codes"]
    refused = [rid for rid, c in held.by_id.items() if c[0]["outcome"] == "content_policy"]
    statuses = {r["id"]: r["status"] for r in held.of("request")}
    assert len(refused) > 10 and all(statuses[rid] == 400 for rid in refused)
    assert not any(c["provider"] == "claude-eu" for c in held.of("upstream"))


@needs_portkey
@pytest.mark.slow
def test_primary_is_tried_on_every_request_so_failback_is_immediate(runs):
    run = runs["portkey-failback-after-recovery"]
    window = run.of("fault_start")[0]["ts"], run.of("fault_end")[0]["ts"]
    during = [c for c in run.by_id.values() if window[0] + 0.2 < c[0]["ts"] < window[1] - 0.2]
    assert len(during) > 50
    # No circuit breaker, and the primary's Retry-After (3 s) is ignored: each request calls it first.
    assert all(c[0]["provider"] == "gpt-eu" and c[0]["status"] == 503 for c in during)
    assert run.check("reversible")["stats"]["slowest_failback_s"] < 1.0


@needs_portkey
@pytest.mark.slow
def test_kill_switch_sends_the_primary_only_config(runs):
    run = runs["portkey-kill-switch"]
    switches = run.of("kill_switch")
    assert [s["state"] for s in switches] == ["off", "on"] and all(s["ok"] for s in switches)
    off = [r for r in run.of("request") if switches[0]["ts"] < r["ts"] < switches[1]["ts"] - 0.1]
    calls = run.by_id
    assert len(off) > 40
    assert all(r["status"] == 503 and [c["provider"] for c in calls[r["id"]]] == ["gpt-eu"] for r in off)
    after = [r for r in run.of("request") if switches[1]["ts"] + 0.2 < r["ts"] < run.of("fault_end")[0]["ts"] - 0.2]
    assert after and all(r["claimed_target"] == "claude-eu" for r in after)  # falls back again once on


@needs_portkey
@pytest.mark.slow
def test_streaming_fails_in_portkey_itself(runs):
    # A known limitation of Portkey 1.15.2 on Node 20, not of the harness: the provider streams a
    # complete answer, Portkey fails while passing it on ("TypeError: immutable") and answers 500.
    # If this starts failing because streams work, add streaming traffic back to the scenarios.
    run = runs["portkey-streaming"]
    requests, calls = run.of("request"), run.by_id
    assert len(requests) == 10
    assert all(r["status"] == 500 and "Something went wrong" in r["error"] for r in requests)
    assert all([(c["provider"], c["status"], c["stream"]) for c in calls[r["id"]]] == [("gpt-eu", 200, True)]
               for r in requests)
    assert "TypeError: immutable" in run.texts["gateway.log"]


@needs_portkey
@pytest.mark.slow
def test_portkey_listens_on_loopback_only(tmp_path, monkeypatch):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads listening sockets from /proc/net (Linux)")
    monkeypatch.chdir(ROOT)  # the scenario's config path is relative to the checkout
    context, adapter = _context("portkey-tenant-outage"), portkey.PortkeyAdapter()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    plan = adapter.plan(context, _values(port=str(port)), tmp_path)
    proc = subprocess.Popen(plan.argv, env={**os.environ, **plan.env}, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            assert proc.poll() is None, "Portkey exited at start"
            with contextlib.suppress(OSError), urllib.request.urlopen(plan.ready_url, timeout=1):
                break
            time.sleep(0.2)
        else:
            pytest.fail("Portkey did not answer within 20 s")
        rows = [line.split() for name in ("tcp", "tcp6") if Path(f"/proc/net/{name}").exists()
                for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]]
        listening = {row[1].split(":")[0] for row in rows if row[3] == "0A" and int(row[1].split(":")[1], 16) == port}
        assert listening == {"0100007F"}  # 127.0.0.1 only, not 0.0.0.0 or ::
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_install_tells_the_user_to_run_setup(tmp_path):
    result = harness_cmd("run", str(SCENARIOS / "portkey-tenant-outage.yaml"), "--report-dir", str(tmp_path / "r"),
                         env={"HARNESS_GATEWAYS_DIR": str(tmp_path / "empty")})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "harness setup-gateways portkey" in result.stdout + result.stderr


# -- the adapter's pure parts ------------------------------------------------------------------
def _scenario(name: str = "portkey-fail-closed-by-route"):
    return load_scenario(SCENARIOS / f"{name}.yaml").scenario


def _context(name: str = "portkey-fail-closed-by-route") -> GatewayContext:
    """What the engine tells the adapter. The shipped Portkey scenarios name their config relative to
    the checkout (fixtures/gateways/portkey/...): resolved from the working directory when nothing
    beside the scenario file has that path."""
    return GatewayContext(_scenario(name), SCENARIOS)


def _values(port: str = "8787", key: str = KEY) -> dict[str, str]:
    return {"port": port, "providers.gpt-eu.url": "http://127.0.0.1:1001", "providers.gpt-eu.key": key,
            "providers.claude-eu.url": "http://127.0.0.1:1002", "providers.claude-eu.key": key}


def test_target_names_follow_portkeys_option_index():
    flat = portkey.load_template(CONFIGS / "fallback.json")
    assert portkey.target_names(flat, {"gpt-eu", "claude-eu"}, "f") == {
        "config.targets[0]": "gpt-eu", "config.targets[1]": "claude-eu"}
    nested = portkey.load_template(CONFIGS / "fail-closed-by-route.json")
    assert portkey.target_names(nested, {"gpt-eu", "claude-eu"}, "f") == {
        "config.targets[0].targets[0]": "gpt-eu", "config.targets[1].targets[0]": "gpt-eu",
        "config.targets[1].targets[1]": "claude-eu"}
    bare = {"provider": "openai", "custom_host": "{providers.gpt-eu.url}/v1"}
    assert portkey.target_names(bare, {"gpt-eu"}, "f") == {"config": "gpt-eu"}


@pytest.mark.parametrize(("host", "message"), [("https://api.openai.com/v1", "must point at a provider"),
                                               ("{providers.gpt-us.url}/v1", "does not define")])
def test_a_target_that_names_no_provider_is_refused(host, message):
    config = {"strategy": {"mode": "fallback"}, "targets": [{"custom_host": "{providers.gpt-eu.url}/v1"},
                                                            {"custom_host": host}]}
    with pytest.raises(HarnessError, match=message) as info:
        portkey.target_names(config, {"gpt-eu"}, "cfg.json")
    assert "config.targets[1]" in str(info.value)


def test_kill_switch_config_keeps_the_primary_at_its_index():
    flat = portkey.load_template(CONFIGS / "fallback-on-outage-codes.json")
    assert portkey.without_fallback(flat) == {"strategy": {"mode": "single"}, "targets": [flat["targets"][0]]}
    nested = portkey.load_template(CONFIGS / "fail-closed-by-route.json")
    switched = portkey.without_fallback(nested)
    assert switched["strategy"] == nested["strategy"] and switched["targets"][0] == nested["targets"][0]
    assert switched["targets"][1]["strategy"] == {"mode": "single"}
    names = portkey.target_names(switched, {"gpt-eu", "claude-eu"}, "f")
    assert names == {"config.targets[0].targets[0]": "gpt-eu", "config.targets[1].targets[0]": "gpt-eu"}


def test_render_fills_placeholders_and_escapes_values():
    config = portkey.render(portkey.load_template(CONFIGS / "fallback.json"), _values(key='sk-"odd\\'), "f")
    assert config["targets"][1]["custom_host"] == "http://127.0.0.1:1002/v1"
    assert json.loads(json.dumps(config))["targets"][0]["api_key"] == 'sk-"odd\\'
    with pytest.raises(HarnessError, match=r"config.targets\[0\].api_key: unknown placeholder \{nope\}"):
        portkey.render({"targets": [{"api_key": "{nope}"}]}, _values(), "f")


def test_defaults_read_portkey_headers_and_log_stream(monkeypatch):
    monkeypatch.chdir(ROOT)
    defaults = portkey.PortkeyAdapter().defaults(_context())
    assert defaults.config_path is not None and defaults.config_path.resolve() == CONFIGS / "fail-closed-by-route.json"
    assert defaults.served_target.header == "x-portkey-last-used-option-index"
    assert defaults.served_target.values["config.targets[1].targets[1]"] == "claude-eu"
    audit = defaults.audit
    assert (audit.source, audit.url, audit.values) == ("sse", "{gateway.url}/log/stream", defaults.served_target.values)
    assert "request_id" not in audit.fields and "tenant" not in audit.fields  # Portkey's log has neither
    switch = defaults.kill_switch
    assert switch is not None and switch.mode == "request"
    config = json.loads(switch.request_headers["x-portkey-config"])
    assert config["targets"][1]["strategy"] == {"mode": "single"} and "{providers.gpt-eu.key}" in json.dumps(config)


def test_plan_starts_node_on_loopback_with_the_rendered_config(tmp_path, monkeypatch):
    fake = tmp_path / "gw" / "portkey"
    (portkey.package_dir(fake) / "build").mkdir(parents=True)
    (portkey.package_dir(fake) / "package.json").write_text(json.dumps({"version": portkey.VERSION}))
    (portkey.package_dir(fake) / "build" / "start-server.js").write_text("")
    monkeypatch.setenv("HARNESS_GATEWAYS_DIR", str(tmp_path / "gw"))
    monkeypatch.setattr(portkey.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.chdir(ROOT)
    adapter = portkey.PortkeyAdapter()
    plan = adapter.plan(_context(), _values(port="9999"), tmp_path)
    preload = tmp_path / "portkey-bind-loopback.cjs"
    assert plan.argv == ["/usr/bin/node", "--require", str(preload), str(portkey.package_dir(fake) / "build" /
                         "start-server.js"), "--port=9999"]  # no --headless: it would remove /log/stream
    assert "127.0.0.1" in preload.read_text()
    assert (plan.url, plan.ready_url, plan.env["NODE_ENV"]) == ("http://127.0.0.1:9999", "http://127.0.0.1:9999/",
                                                               "development")
    sent = json.loads(plan.request_headers["x-portkey-config"])
    assert sent["targets"][1]["targets"][1]["custom_host"] == "http://127.0.0.1:1002/v1"
    with pytest.raises(HarnessError, match="must escape"):
        adapter.plan(_context(), _values(key='sk-"x'), tmp_path)
    monkeypatch.setenv("HARNESS_GATEWAYS_DIR", str(tmp_path / "nothing"))
    with pytest.raises(HarnessError, match="harness setup-gateways portkey"):
        adapter.plan(_context(), _values(), tmp_path)


def test_install_is_skipped_when_the_version_is_there(tmp_path, monkeypatch):
    (portkey.package_dir(tmp_path)).mkdir(parents=True)
    (portkey.package_dir(tmp_path) / "package.json").write_text(json.dumps({"version": portkey.VERSION}))
    monkeypatch.setattr(portkey.subprocess, "run", lambda *a, **k: pytest.fail("npm must not run"))
    portkey.PortkeyAdapter().install(tmp_path)

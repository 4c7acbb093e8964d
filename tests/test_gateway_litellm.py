"""LiteLLM proxy 1.110.2 under test: its shipped scenarios run end to end through the real CLI
(three at a time), with every check's verdict pinned and the evidence behind each finding asserted;
plus unit tests of the adapter's pure parts (requirement derivation, config rendering, launch plan,
the callback's events), which need no LiteLLM.

The end-to-end tests need `harness setup-gateways litellm` (CI runs it first); without the install
they are skipped, with the reason.
"""

import base64
import json
import stat
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.gateways import litellm
from harness.gateways.base import GatewayContext, install_dir, load_adapter
from harness.scenario import load_scenario
from tests.conftest import ROOT, harness_cmd
from tests.gateway_run import GatewayRun

SCENARIOS = ROOT / "scenarios" / "gateways"
CONFIGS = ROOT / "fixtures" / "gateways" / "litellm"
LEDGERS = ROOT / "fixtures" / "ledgers" / "gateways"  # recorded from a run of this file (see the report's README)
BINARY = install_dir() / "litellm" / "venv" / "bin" / "litellm"
needs_litellm = pytest.mark.skipif(not BINARY.exists(), reason=f"LiteLLM proxy is not installed ({BINARY} is "
                                   "missing): run `harness setup-gateways litellm` first")
KEYS = ("sk-test-svc-eu", "sk-test-svc-us")  # the scenarios' default keys, looked for in every artefact

CHECKS9 = ("approved_targets", "trust_boundary", "trigger_conditions", "logged", "reversible", "steady_state",
           "attempt_budget", "response_integrity", "fault_effective")
CP = ("trigger_conditions", "steady_state", "attempt_budget", "response_integrity", "fault_effective")


def _verdicts(checks: tuple[str, ...], **changed: str) -> dict[str, str]:
    return {name: changed.get(name, "pass") for name in checks}


# scenario -> (exit code, the verdict of each check it lists)
EXPECTED = {
    "litellm-regional-outage": (0, _verdicts(CHECKS9)),
    "litellm-regional-outage-cross-region": (1, _verdicts(CHECKS9, trust_boundary="fail")),
    "litellm-retry-storm": (1, _verdicts(CHECKS9, attempt_budget="fail")),
    "litellm-tenant-outage": (1, _verdicts(CHECKS9, approved_targets="fail")),
    "litellm-tenant-outage-governed": (0, _verdicts(CHECKS9)),
    "litellm-fail-closed-class": (1, _verdicts(("fail_closed", *CHECKS9), fail_closed="fail")),
    "litellm-fail-closed-by-route": (0, _verdicts(("fail_closed", *CHECKS9))),
    "litellm-content-policy-refusal": (1, _verdicts(CP, trigger_conditions="fail")),
    "litellm-content-policy-refusal-governed": (0, _verdicts(CP)),
    "litellm-failback-after-recovery": (1, _verdicts(CHECKS9, reversible="fail", steady_state="fail")),
    "litellm-failback-governed": (0, _verdicts(CHECKS9)),
    "litellm-kill-switch": (0, _verdicts(CHECKS9)),
}


Run = GatewayRun


def _run(name: str, root: Path) -> Run:
    report = root / name
    result = harness_cmd("run", str(SCENARIOS / f"{name}.yaml"), "--report-dir", str(report), timeout=300)
    return Run(result.returncode, result.stdout + result.stderr, report)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    if not BINARY.exists():
        pytest.skip(f"LiteLLM proxy is not installed ({BINARY}): run `harness setup-gateways litellm` first")
    root = tmp_path_factory.mktemp("litellm")
    # Three at a time: each proxy takes ~10 s to start on two cores, traffic runs 10-16 s.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, name, root) for name in EXPECTED}
        return {name: future.result() for name, future in futures.items()}


# Verdicts that depend on timing, and the one violation allowed when they fail. With a cooldown, LiteLLM
# cools a deployment down when it gets round to a failure (up to ~1 s later on a loaded machine); a request
# of the unaffected tenant that reaches the primary meanwhile succeeds, and LiteLLM still skips the primary
# afterwards: a fallback after the primary was known to answer again. Whether a run catches it depends on
# where requests fall; what it is, when caught, does not (the recorded ledger holds one such run).
RACES = {("litellm-tenant-outage", "trigger_conditions"): "had answered since its last failure"}


@needs_litellm
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_of_every_check_is_pinned(runs, name):
    run = runs[name]
    code, verdicts = EXPECTED[name]
    assert run.summary["status"] == "completed", run.output
    got = {c["check"]: c["verdict"] for c in run.summary["checks"]}
    for (scenario, check), allowed in RACES.items():
        if scenario == name and got[check] == "fail":
            assert all(allowed in v["message"] for v in run.check(check)["violations"]), run.output
            got[check] = verdicts[check]
    assert got == verdicts, run.output
    assert run.returncode == code, run.output
    assert "Traceback" not in run.output


@needs_litellm
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_run_is_real_and_leaks_nothing(runs, name):
    run = runs[name]
    stats = run.summary["stats"]
    assert stats["requests"] >= 100 and stats["upstream_calls"] >= 100, stats
    assert all(w["hits"] > 0 for w in run.check("fault_effective")["stats"]["windows"])
    # Ground truth and LiteLLM's claim agree: x-litellm-model-id names the provider that served.
    claimed = [r for r in run.of("request") if r["status"] == 200]
    assert claimed and all(r["claimed_target"] for r in claimed)
    # LiteLLM's logging payload carries no upstream key, and no artefact of ours does.
    assert not any(a["leaked_identities"] for a in run.of("audit"))
    forms = [form for key in KEYS for form in (key, base64.b64encode(key.encode()).decode())]
    for file_name, text in run.texts.items():
        assert not any(form in text for form in forms), file_name


@needs_litellm
@pytest.mark.slow
def test_governed_regional_outage_falls_back_streams_and_fails_back(runs):
    run = runs["litellm-regional-outage"]
    served = run.summary["stats"]["served_by"]
    assert served["claude-eu"] >= 40 and served["gpt-eu"] >= 80, served
    streamed = [r for r in run.of("request") if r["stream"]]
    assert streamed and all(r["stream_complete"] for r in streamed)
    assert any(r["claimed_target"] == "claude-eu" for r in streamed)
    assert run.check("reversible")["stats"]["slowest_failback_s"] < 4
    # Every fallback is in LiteLLM's own events, naming route, primary, fallback and why.
    fallbacks = run.audits("fallback")
    assert len(fallbacks) == served["claude-eu"]
    assert {(a["fields"]["route"], a["fields"]["primary"], a["fields"]["fallback"]) for a in fallbacks} == {
        ("chat", "gpt-eu", "claude-eu")}
    assert {a["fields"]["reason"] for a in fallbacks} == {"ServiceUnavailableError (503)"}
    # No cooldown: every request of the outage tried the primary once, then fell back (2 calls).
    assert all([c["provider"] for c in cs] == ["gpt-eu", "claude-eu"] for cs in run.calls().values()
               if any(c["provider"] == "claude-eu" for c in cs))


@needs_litellm
@pytest.mark.slow
def test_cross_region_fallback_changes_identity_and_region(runs):
    violations = run_violations(runs["litellm-regional-outage-cross-region"], "trust_boundary")
    messages = [v["message"] for v in violations]
    assert "fallback to gpt-us on route chat ran as identity svc-us, not the primary's svc-eu" in messages
    assert "fallback to gpt-us on route chat left region eu for us" in messages
    identity = next(v for v in violations if "identity" in v["message"])
    assert identity["diff"]["values_changed"]["root['identity']"] == {"new_value": "svc-us", "old_value": "svc-eu"}


@needs_litellm
@pytest.mark.slow
def test_defaults_retry_the_failing_primary_and_say_they_did_not(runs):
    run = runs["litellm-retry-storm"]
    budget = run.check("attempt_budget")
    assert budget["stats"]["max_attempts"] == 4
    over = budget["violations"][0]["request_ids"]
    calls = run.calls()
    for rid in over:  # the SDK inside LiteLLM called the down primary 3 times, then LiteLLM fell back
        assert [c["provider"] for c in calls[rid]] == ["gpt-eu", "gpt-eu", "gpt-eu", "claude-eu"]
    # ... while LiteLLM's own record of those requests says no retry happened.
    successes = [a for a in run.audits("success") if a["fields"].get("request_id") in over]
    assert successes and {a["raw"]["attempted_retries"] for a in successes} == {0}


@needs_litellm
@pytest.mark.slow
def test_cooldown_is_per_deployment_not_per_tenant(runs):
    run = runs["litellm-tenant-outage"]
    violation = run_violations(run, "approved_targets")[0]
    assert "not approved for tenant acme" in violation["message"]
    calls = run.calls()
    # acme's rerouted requests never reached the primary: LiteLLM skipped it, cooled down by globex ...
    assert all(calls[rid][0]["provider"] == "claude-eu" for rid in violation["request_ids"])
    # ... and LiteLLM's own fallback event says so: its 429 "in cooldown", not the provider's 500.
    acme = [a for a in run.audits("fallback") if a["fields"].get("request_id") in violation["request_ids"]]
    assert acme and {a["fields"]["reason"] for a in acme} == {"RouterRateLimitError (429)"}
    assert all("in cooldown" in a["raw"]["litellm"]["exception"] for a in acme)
    avoided = runs["litellm-tenant-outage-governed"]
    tenants = {r["id"]: r["tenant"] for r in avoided.of("request")}
    rerouted = {tenants[rid] for rid, cs in avoided.calls().items() if any(c["provider"] != "gpt-eu" for c in cs)}
    assert rerouted == {"globex"}


@needs_litellm
@pytest.mark.slow
def test_fail_closed_needs_a_model_group_of_its_own(runs):
    run = runs["litellm-fail-closed-class"]
    violation = run_violations(run, "fail_closed")[0]
    assert violation["message"] == "sensitive request (request class regulated) on route chat was rerouted to claude-eu"
    avoided = runs["litellm-fail-closed-by-route"]
    for either in (run, avoided):  # plain chat, not hit by the outage, stays on the primary in both
        chat = {r["id"] for r in either.of("request") if r["request_class"] == "chat"}
        assert chat and all(c["provider"] == "gpt-eu" for rid, cs in either.calls().items() if rid in chat for c in cs)
    regulated = [r for r in avoided.of("request") if r["request_class"] == "regulated"]
    calls = avoided.calls()
    assert regulated and all(c["provider"] == "gpt-eu" for r in regulated for c in calls.get(r["id"], []))
    # The outage reached them (502s passed on): they failed closed.
    assert sum(1 for r in regulated if r["status"] != 200) >= 5
    # while batch did fall back (about 30 batch requests meet the outage; LiteLLM on a loaded machine sends fewer)
    assert avoided.summary["stats"]["served_by"]["claude-eu"] >= 10


@needs_litellm
@pytest.mark.slow
def test_content_policy_refusal_is_rerouted_unless_400s_are_excluded(runs):
    violation = run_violations(runs["litellm-content-policy-refusal"], "trigger_conditions")[0]
    assert violation["observed"]["cause"] == "400"
    avoided = runs["litellm-content-policy-refusal-governed"]
    refused = [r for r in avoided.of("request") if r["request_class"] == "risky-prompt" and r["status"] == 400]
    assert len(refused) >= 10 and "claude-eu" not in avoided.summary["stats"]["served_by"]


@needs_litellm
@pytest.mark.slow
def test_retry_after_outlasts_a_router_level_cooldown(runs):
    sticky = runs["litellm-failback-after-recovery"]
    messages = [v["message"] for v in run_violations(sticky, "reversible")]
    assert "route chat still fell back more than 4s after fault primary-rate-limited healed" in messages
    # Two 429s with Retry-After: 20 and the primary was not called again for the rest of the run ...
    assert sum(1 for c in sticky.of("upstream") if c["provider"] == "gpt-eu" and c["status"] == 429) <= 3
    # ... although cooldown_time is 1: LiteLLM's own events say it took the upstream's 20 s.
    assert any("Try again in 20 seconds" in a["raw"]["litellm"]["exception"] for a in sticky.audits("fallback"))
    avoided = runs["litellm-failback-governed"]
    assert avoided.check("reversible")["stats"]["slowest_failback_s"] < 2
    assert avoided.summary["stats"]["served_by"]["claude-eu"] >= 20


@needs_litellm
@pytest.mark.slow
def test_kill_switch_disables_fallbacks_per_request(runs):
    run = runs["litellm-kill-switch"]
    window = run.check("reversible")["stats"]["kill_switch_windows"][0]
    assert window["verdict"] == "judged" and window["requests"] >= 20
    t0 = run.events[0]["ts"]
    # Sent while it was off (a request sent as it went back on may fall back: the check allows it too).
    off = [r for r in run.of("request") if window["off_at_s"] <= r["ts"] - t0 < window["on_at_s"] - 0.01]
    assert off and all(r["status"] != 200 for r in off)  # failed closed: the primary was down
    assert run.summary["stats"]["served_by"]["claude-eu"] >= 20  # fallback before and after the switch


def _rejudge(name: str) -> tuple[str, dict]:
    result = harness_cmd("check", str(LEDGERS / f"{name}.jsonl.gz"), "--json", timeout=120)
    return name, json.loads(result.stdout)


@pytest.mark.slow
def test_recorded_litellm_ledgers_keep_their_verdicts():
    """Ledgers recorded from real LiteLLM runs, judged offline: the findings hold without LiteLLM installed."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        judged = dict(pool.map(_rejudge, sorted(EXPECTED)))
    for name, summary in judged.items():
        got = {c["check"]: c["verdict"] for c in summary["checks"]}
        for (scenario, check), allowed in RACES.items():
            if scenario == name and got[check] == "fail":
                assert all(allowed in v["message"] for c in summary["checks"] if c["check"] == check
                           for v in c["violations"])
                got[check] = EXPECTED[name][1][check]
        assert got == EXPECTED[name][1], name
        assert summary["status"] == "completed", name
    # The recorded tenant outage caught the race: fallbacks after LiteLLM had seen the primary answer again.
    trigger = next(c for c in judged["litellm-tenant-outage"]["checks"] if c["check"] == "trigger_conditions")
    assert trigger["verdict"] == "fail"
    seen = trigger["violations"][0]["observed"]
    assert seen["answered"] == "ok" and seen["last_failure_at_s"] < seen["answered_at_s"] < seen["answer_known_at_s"]


def run_violations(run: Run, check: str) -> list[dict]:
    violations = run.check(check)["violations"]
    assert violations, run.output
    return violations


# -- the adapter's pure parts: no LiteLLM needed ------------------------------------------------------------------

def test_every_litellm_scenario_is_pinned_and_every_config_used():
    assert {p.stem for p in SCENARIOS.glob("litellm-*.yaml")} == set(EXPECTED)
    used = set()
    for name, (_, verdicts) in EXPECTED.items():
        scenario = load_scenario(SCENARIOS / f"{name}.yaml").scenario
        assert scenario.gateway.kind == "litellm" and scenario.gateway.config
        assert set(scenario.check_names()) == set(verdicts), name
        config = (SCENARIOS / scenario.gateway.config).resolve()
        assert config.parent == CONFIGS and config.is_file(), name
        used.add(config.name)
        template = litellm.read_template(config)
        litellm.check_deployments(litellm.render_config(config.read_text(), {**VALUES, **{
            f"providers.{p}.{k}": v for p in scenario.providers for k, v in (("url", "http://127.0.0.1:1"),
                                                                             ("key", "k"))}}, "m", name),
            litellm.target_names(scenario, template), name)
    assert used == {p.name for p in CONFIGS.glob("*.yaml")}


METADATA = """\
Metadata-Version: 2.4
Name: litellm
Version: 1.110.2
Requires-Dist: fastuuid>=0.14.0,<1.0 ; python_full_version < '3.15'
Requires-Dist: httpx[http2]>=0.28.0,<1.0
Requires-Dist: tiktoken>=0.8.0,<1.0 ; python_full_version < '3.14'
Requires-Dist: tiktoken>=0.12.0,<1.0 ; python_full_version == '3.14.*'
Requires-Dist: async-timeout>=4.0.3,<6.0 ; python_full_version < '3.11'
Requires-Dist: rich>=13.9.4,<14.0 ; extra == 'cli'
Requires-Dist: pyyaml>=6.0.3,<7.0
Requires-Dist: litellm-proxy==1.110.2 ; extra == 'proxy'
Requires-Dist: gunicorn>=23.0.0,<24.0 ; extra == 'proxy'
Requires-Dist: uvloop>=0.22.1,<1.0 ; sys_platform != 'win32' and extra == 'proxy'
Requires-Dist: pyyaml>=6.0.3,<7.0 ; extra == 'proxy'
Requires-Dist: litellm-proxy-extras==0.4.114.post1 ; extra == 'proxy'
Requires-Dist: litellm-enterprise==0.1.83.post1 ; extra == 'proxy'
Requires-Dist: grpcio==1.84.1 ; extra == 'proxy-runtime'
Provides-Extra: proxy
"""


def test_requirements_are_the_proxy_extra_minus_what_is_pinned():
    assert litellm.derive_requirements(METADATA, python_version="3.11") == [
        "fastuuid<1.0,>=0.14.0", "httpx[http2]<1.0,>=0.28.0", "tiktoken<1.0,>=0.8.0", "pyyaml<7.0,>=6.0.3",
        "gunicorn<24.0,>=23.0.0", "uvloop<1.0,>=0.22.1"]
    # Markers are evaluated for the given Python: 3.10 needs async-timeout, 3.14 another tiktoken.
    assert "async-timeout<6.0,>=4.0.3" in litellm.derive_requirements(METADATA, python_version="3.10")
    assert "tiktoken<1.0,>=0.12.0" in litellm.derive_requirements(METADATA, python_version="3.14")
    assert litellm.PINNED == ("litellm==1.110.2", "litellm-proxy-extras==0.4.110", "litellm-enterprise==0.1.83")
    assert litellm.VERSION not in litellm.FORBIDDEN


def test_install_is_skipped_when_the_version_is_there(tmp_path, monkeypatch):
    monkeypatch.setattr(litellm, "installed_version", lambda target: litellm.VERSION)
    monkeypatch.setattr(litellm.subprocess, "run", lambda *a, **k: pytest.fail("nothing may be run"))
    said: list[str] = []
    litellm.install(tmp_path / "litellm", log=said.append)
    assert said == [f"litellm {litellm.VERSION} already installed in {tmp_path / 'litellm' / 'venv'}"]


def _scenario(name: str = "litellm-fail-closed-by-route"):
    return load_scenario(SCENARIOS / f"{name}.yaml").scenario


def _context(name: str = "litellm-fail-closed-by-route") -> GatewayContext:
    """What the engine tells the adapter: its config (fail-closed-route.yaml) resolves beside the scenario."""
    return GatewayContext(_scenario(name), SCENARIOS)


VALUES = {"port": "4555", "collector.url": "http://127.0.0.1:9/", "workdir": "/w", "python": "py", "scenario_dir": ".",
          "providers.gpt-eu.url": "http://127.0.0.1:7001", "providers.gpt-eu.key": 'sk-"odd: key#1',
          "providers.claude-eu.url": "http://127.0.0.1:7002", "providers.claude-eu.key": "sk-2"}


def test_config_is_rendered_with_keys_callback_and_master_key():
    text = (CONFIGS / "fail-closed-route.yaml").read_text()
    config = litellm.render_config(text, VALUES, "sk-master", "fail-closed-route.yaml")
    first = config["model_list"][0]
    # Filled after parsing: a key with quotes, a colon and a hash stays one string.
    assert first["litellm_params"]["api_key"] == 'sk-"odd: key#1'
    assert first["litellm_params"]["api_base"] == "http://127.0.0.1:7001/v1"
    assert config["general_settings"]["master_key"] == "sk-master"
    assert config["litellm_settings"]["callbacks"] == ["litellm_callback.handler"]
    assert litellm.primaries(config) == {"chat": "gpt-eu", "chat-fallback": "claude-eu",
                                         "chat-regulated": "gpt-eu@chat-regulated"}
    names = litellm.target_names(_scenario(), litellm.read_template(CONFIGS / "fail-closed-route.yaml"))
    assert names == {"gpt-eu": "gpt-eu", "claude-eu": "claude-eu", "gpt-eu@chat-regulated": "gpt-eu"}
    litellm.check_deployments(config, names, "fail-closed-route.yaml")


def test_config_without_the_callback_gets_it_and_a_hardcoded_master_key_is_replaced():
    text = ("model_list: [{model_name: chat, litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:1/v1'},"
            " model_info: {id: gpt-eu}}]\nlitellm_settings: {callbacks: [custom.handler]}\n"
            "general_settings: {master_key: sk-1234}\n")
    config = litellm.render_config(text, VALUES, "sk-fresh", "t.yaml")
    assert config["litellm_settings"]["callbacks"] == ["custom.handler", "litellm_callback.handler"]
    assert config["general_settings"]["master_key"] == "sk-fresh"


@pytest.mark.parametrize(("text", "message"), [
    ("model_list: [{model_name: chat, litellm_params: {api_base: '{providers.nope.url}'}}]",
     "unknown placeholder {providers.nope.url}"),
    ("model_list: [{model_name: chat, litellm_params: {api_base: {providers.gpt-eu.url}/v1}}]", "not valid YAML"),
    ("router_settings: {}", "needs a model_list"),
])
def test_bad_templates_are_refused_with_a_hint(text, message):
    with pytest.raises(HarnessError) as info:
        litellm.render_config(text, VALUES, "sk", "t.yaml")
    assert message in str(info.value)


@pytest.mark.parametrize(("api_base", "ident", "message"), [
    ("https://api.openai.com/v1", "gpt-eu", "is not on 127.0.0.1"),
    ("http://127.0.0.1:1/v1", "dep-1", "names no provider"),
    ("http://127.0.0.1:1/v1", None, "names no provider"),
])
def test_deployments_must_stay_local_and_be_named(api_base, ident, message):
    info = {"model_info": {"id": ident}} if ident else {}
    config = {"model_list": [{"model_name": "chat", "litellm_params": {"api_base": api_base}, **info}]}
    with pytest.raises(HarnessError, match=message):
        litellm.check_deployments(config, litellm.target_names(_scenario()), "t.yaml")


def test_plan_renders_a_private_config_and_starts_the_proxy_offline(tmp_path, monkeypatch):
    fake = tmp_path / "gateways" / "litellm" / "venv" / "bin"
    fake.mkdir(parents=True)
    (fake / "litellm").write_text("#!/bin/sh\n")
    monkeypatch.setenv("HARNESS_GATEWAYS_DIR", str(tmp_path / "gateways"))
    adapter = load_adapter("litellm")
    work = tmp_path / "work"
    work.mkdir()
    plan = adapter.plan(_context(), VALUES, work)
    rendered = work / "litellm.yaml"
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    assert (work / "litellm_callback.py").read_text() == (ROOT / "harness/gateways/litellm_callback.py").read_text()
    assert plan.argv == [str(fake / "litellm"), "--config", str(rendered), "--port", "4555", "--host", "127.0.0.1",
                         "--num_workers", "1"]
    assert plan.ready_url == "http://127.0.0.1:4555/health/liveliness"
    master = plan.request_headers["Authorization"].removeprefix("Bearer ")
    assert master.startswith("sk-harness-") and master in rendered.read_text()
    assert plan.env["LITELLM_OFFLINE_MODE"] == "true" and plan.env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert plan.env["HARNESS_AUDIT_URL"] == "http://127.0.0.1:9/audit"
    assert json.loads(plan.env["HARNESS_LITELLM_PRIMARIES"])["chat"] == "gpt-eu"
    again = adapter.plan(_context(), VALUES, work)
    assert again.request_headers != plan.request_headers  # a fresh master key per run


def test_missing_install_names_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_GATEWAYS_DIR", str(tmp_path))
    with pytest.raises(HarnessError, match="harness setup-gateways litellm"):
        load_adapter("litellm").plan(_context("litellm-regional-outage"), VALUES, tmp_path)


def test_defaults_read_the_model_id_header_and_switch_off_per_request():
    defaults = load_adapter("litellm").defaults(_context())
    assert defaults.config_path is not None and defaults.config_path.resolve() == CONFIGS / "fail-closed-route.yaml"
    assert defaults.served_target.header == "x-litellm-model-id"
    assert defaults.served_target.values["gpt-eu@chat-regulated"] == "gpt-eu"
    assert defaults.audit.source == "collector" and defaults.audit.values["claude-eu"] == "claude-eu"
    assert defaults.kill_switch is not None and defaults.kill_switch.mode == "request"
    assert defaults.kill_switch.request_body == {"disable_fallbacks": True}


@pytest.fixture
def callback(monkeypatch):
    """The callback module imported against a stand-in for LiteLLM's CustomLogger."""
    module = types.ModuleType("litellm.integrations.custom_logger")
    module.CustomLogger = type("CustomLogger", (), {"__init__": lambda self, **kw: None})
    for name in ("litellm", "litellm.integrations"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "litellm.integrations.custom_logger", module)
    monkeypatch.setenv("HARNESS_LITELLM_PRIMARIES", json.dumps({"chat": "gpt-eu"}))
    monkeypatch.delenv("HARNESS_AUDIT_URL", raising=False)
    monkeypatch.delitem(sys.modules, "harness.gateways.litellm_callback", raising=False)
    import harness.gateways.litellm_callback as loaded

    yield loaded
    sys.modules.pop("harness.gateways.litellm_callback", None)


def test_callback_events_name_request_route_primary_and_fallback(callback):
    token = [{"role": "user", "content": [{"type": "text", "text": "[[harness:id=r7;tenant=acme;class=chat]] hi"}]}]
    metadata = {"original_model_group": "chat", "model_group": "chat-fallback", "attempted_fallbacks": 1,
                "model_info": {"id": "claude-eu"}, "previous_models": [
                    {"exception_type": "ServiceUnavailableError", "exception_string": "down"}]}
    secret = {"api_key": "sk-secret", "litellm_params": {"api_key": "sk-secret", "metadata": metadata},
              "messages": token, "standard_logging_object": {"model_group": "chat-fallback", "model_id": "claude-eu"}}
    success = callback.build_event("success", secret)
    assert {k: success[k] for k in ("request_id", "tenant", "request_class", "route", "primary", "fallback")} == {
        "request_id": "r7", "tenant": "acme", "request_class": "chat", "route": "chat", "primary": "gpt-eu",
        "fallback": "claude-eu"}
    assert success["reason"] == "ServiceUnavailableError: down" and success["timestamp"]
    assert "sk-secret" not in json.dumps(success)  # the raw kwargs are never forwarded

    class Down(Exception):
        status_code = 503

    fallback = callback.build_event("fallback", {"messages": token, "model": "chat-fallback", "metadata": metadata},
                                    "chat", Down("x"))
    assert (fallback["route"], fallback["fallback"], fallback["reason"]) == ("chat", "claude-eu", "Down (503)")
    failed = callback.build_event("fallback_failed", {"messages": token, "metadata": metadata}, "chat", Down("x"))
    assert "fallback" not in failed and failed["attempted"] == "claude-eu"
    primary = callback.build_event("success", {"messages": token, "standard_logging_object": {
        "model_group": "chat", "model_id": "gpt-eu"}})
    assert "fallback" not in primary  # served by the primary: nothing to audit as a fallback
    by_header = callback.build_event("failure", {"standard_logging_object": {"metadata": {
        "requester_custom_headers": {"x-harness-request-id": "r9", "x-harness-tenant": "globex"}},
        "error_information": {"error_class": "RateLimitError", "error_code": "429"}}})
    assert (by_header["request_id"], by_header["tenant"], by_header["reason"]) == ("r9", "globex",
                                                                                   "RateLimitError (429)")

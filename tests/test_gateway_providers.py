"""Real gateways on the providers' own APIs (issue 11): the LiteLLM proxy 1.110.2 with azure/, anthropic/, gemini/
and bedrock/ deployments, and the Portkey gateway 1.15.2 with its azure-openai, anthropic, google and bedrock
providers, each pointed at the harness's mock providers by its base URL only (api_base,
aws_bedrock_runtime_endpoint, custom_host). Each scenario of scenarios/gateways/providers/ runs end to end through
the real CLI, every check's verdict is pinned, and the ledger facts behind each verdict are asserted: which API
each upstream call spoke and under which identity, how many calls a failure cost, what the client got.

The end-to-end tests need `harness setup-gateways` (CI runs it first); a gateway that is not installed skips its
scenarios, with the reason. The fast tests (every scenario loads, its config names its providers and stays on
127.0.0.1) need neither gateway.
"""

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.gateways import litellm
from harness.gateways.base import GatewayContext, load_adapter
from harness.scenario import load_scenario
from tests.conftest import ROOT, harness_cmd
from tests.gateway_run import INSTALLED, MISSING, GatewayRun, gateway_of, installed, needs_litellm, needs_portkey

SCENARIOS = ROOT / "scenarios" / "gateways" / "providers"
CONFIGS = {"litellm": ROOT / "fixtures" / "gateways" / "litellm" / "providers",
           "portkey": ROOT / "fixtures" / "gateways" / "portkey" / "providers"}
# The scenarios' default credentials (the AWS secret included), looked for in every artefact of a run.
SECRETS = ("azure-test-key-eu", "sk-ant-test-eu", "gemini-test-key-eu", "AKIAHARNESSTEST0001",
           "harness-test-secret-access-key")

CHECKS9 = ("approved_targets", "trust_boundary", "trigger_conditions", "logged", "reversible", "steady_state",
           "attempt_budget", "response_integrity", "fault_effective")
REFUSAL = ("trigger_conditions", "steady_state", "attempt_budget", "response_integrity", "fault_effective")
CONTRACT = ("capability_fit", "equivalence", "approved_targets", "trust_boundary", "trigger_conditions",
            "steady_state", "attempt_budget", "response_integrity", "fault_effective")


def _verdicts(checks: tuple[str, ...], **changed: str) -> dict[str, str]:
    return {name: changed.get(name, "pass") for name in checks}


# scenario -> (exit code, the verdict of each check it lists)
EXPECTED = {
    "litellm-azure-anthropic-regional-outage": (0, _verdicts(CHECKS9)),
    "litellm-azure-anthropic-defaults": (1, _verdicts(CHECKS9, attempt_budget="fail")),
    "litellm-bedrock-azure-throttling": (0, _verdicts(CHECKS9)),
    "litellm-gemini-exhausted": (1, _verdicts(CHECKS9, attempt_budget="fail")),
    "litellm-anthropic-overloaded": (1, _verdicts(CHECKS9, attempt_budget="fail")),
    "litellm-capacity-errors-governed": (0, _verdicts(CHECKS9)),
    "litellm-content-policy-providers": (1, _verdicts(REFUSAL, trigger_conditions="fail")),
    "litellm-content-policy-providers-governed": (0, _verdicts(REFUSAL)),
    "litellm-content-policy-chains": (1, _verdicts(REFUSAL, trigger_conditions="fail")),
    "litellm-cross-provider-contract": (0, _verdicts(CONTRACT)),
    "portkey-azure-anthropic-regional-outage": (1, _verdicts(CHECKS9, logged="fail")),
    # Every fallback is refused (no max_tokens), yet each refused call is still its request's: the approved
    # target and its documented identity exception hold; the 400s reach the client.
    "portkey-azure-anthropic-as-documented": (1, _verdicts(CHECKS9, logged="fail")),
    # No Bedrock call verifies (below): each is an unknown caller's, so trust_boundary cannot attribute them
    # (unknown), the baseline never holds (no request answered by its primary: no fault injected, nothing else
    # to judge), and the requests they served look served by no provider (logged, response_integrity fail).
    "portkey-bedrock-azure-throttling": (1, _verdicts(CHECKS9, logged="fail", response_integrity="fail",
                                                      **dict.fromkeys(("approved_targets", "trust_boundary",
                                                                       "trigger_conditions", "reversible",
                                                                       "steady_state", "attempt_budget",
                                                                       "fault_effective"), "unknown"))),
    "portkey-gemini-exhausted": (1, _verdicts(CHECKS9, logged="fail")),
    "portkey-anthropic-overloaded": (1, _verdicts(CHECKS9, logged="fail")),
    "portkey-content-policy-providers": (1, _verdicts(REFUSAL, trigger_conditions="fail")),
    "portkey-content-policy-providers-on-status-codes": (0, _verdicts(REFUSAL)),
    "portkey-cross-provider-contract": (1, _verdicts(CONTRACT, equivalence="fail")),
}
# Portkey's streams, by provider API: four routes of content-policy.json, streaming only, no fault.
STREAMS = """\
{version: 1, name: portkey-streams-by-provider, seed: 5,
 identities: {azure-eu: {key: azure-test-key-eu}, anthropic-eu: {key: sk-ant-test-eu},
              gemini-eu: {key: gemini-test-key-eu},
              aws-eu: {key: AKIAHARNESSTEST0001, secret: harness-test-secret-access-key}},
 providers: {azure-gpt-eu: {api: azure-openai, model: gpt-4o-eu, region: eu, identity: azure-eu,
                            data_classes: [internal]},
             sonnet-eu: {api: anthropic, model: claude-sonnet-4-5, region: eu, identity: anthropic-eu,
                         data_classes: [internal]},
             gemini-pro-eu: {api: gemini, model: gemini-2.5-pro, region: eu, identity: gemini-eu,
                             data_classes: [internal]},
             claude-bedrock-eu: {api: bedrock, model: "anthropic.claude-sonnet-4-5-20250929-v1:0", region: eu-central-1,
                                 identity: aws-eu, data_classes: [internal]},
             haiku-eu: {api: anthropic, model: claude-haiku-4-5, region: eu, identity: anthropic-eu,
                        data_classes: [internal]}},
 gateway: {kind: portkey, config: CONFIG},
 policy: {routes: {azure: {primary: azure-gpt-eu}, claude: {primary: sonnet-eu}, gemini: {primary: gemini-pro-eu},
                   bedrock: {primary: claude-bedrock-eu}}},
 traffic: {rate_per_s: 8, duration_s: 3, mix: [
   {route: azure, tenant: acme, region: eu, request_class: chat, data_class: internal, stream: true},
   {route: claude, tenant: acme, region: eu, request_class: chat, data_class: internal, stream: true},
   {route: gemini, tenant: acme, region: eu, request_class: chat, data_class: internal, stream: true},
   {route: bedrock, tenant: acme, region: eu, request_class: chat, data_class: internal, stream: true}]},
 checks: [response_integrity]}
"""


def _streams_config() -> dict:
    """content-policy.json (a fallback group per model name) plus a bedrock group, which the shipped drills
    leave out (Portkey's signatures never verify on a port) but whose stream this test still reads."""
    config = json.loads((CONFIGS["portkey"] / "content-policy.json").read_text())
    config["strategy"]["conditions"].append({"query": {"params.model": {"$eq": "bedrock"}}, "then": "bedrock"})
    config["targets"].append({"name": "bedrock", "strategy": {"mode": "fallback"}, "targets": [
        {"provider": "bedrock", "aws_access_key_id": "{providers.claude-bedrock-eu.key}",
         "aws_secret_access_key": "{providers.claude-bedrock-eu.secret}",
         "aws_region": "{providers.claude-bedrock-eu.region}", "custom_host": "{providers.claude-bedrock-eu.url}",
         "override_params": {"model": "anthropic.claude-sonnet-4-5-20250929-v1:0"}}]})
    return config



class Run(GatewayRun):
    """A run read back, with each request's path through the providers."""

    def path(self, request: dict) -> list[tuple[str, int]]:
        """Who the request reached, in order, and the status each answered (ground truth)."""
        return [(c["provider"], c["status"]) for c in self.by_id.get(request["id"], [])]

    def faulted(self, **where: str) -> list[dict]:
        """Requests whose first call met a fault window, optionally of one route / request class."""
        return [r for r in self.of("request") if self.by_id.get(r["id"]) and self.by_id[r["id"]][0]["fault"]
                and all(r[k] == v for k, v in where.items())]

    def transition(self, route: str) -> dict:
        return next(t for t in self.summary["transitions"] if t["route"] == route)


def _run(path: Path, report: Path) -> Run:
    done = harness_cmd("run", str(path), "--report-dir", str(report), timeout=300)
    return Run(done.returncode, done.stdout + done.stderr, report)


# Runs the baseline gate stops before any fault (harness.engine.baseline): the drill would prove nothing.
STOPPED_AT_THE_BASELINE = {"portkey-bedrock-azure-throttling": "baseline_failed"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    names = [name for name in EXPECTED if INSTALLED[gateway_of(name)]]
    if not names:
        pytest.skip("; ".join(MISSING.values()))
    root = tmp_path_factory.mktemp("providers")
    jobs = {name: SCENARIOS / f"{name}.yaml" for name in names}
    if INSTALLED["portkey"]:
        (root / "portkey-streams.json").write_text(json.dumps(_streams_config(), indent=2))
        (root / "portkey-streams.yaml").write_text(STREAMS.replace("CONFIG", str(root / "portkey-streams.json")))
        jobs["portkey-streams"] = root / "portkey-streams.yaml"
    # One LiteLLM proxy at a time, beside one Portkey run: on two cores a second proxy (~20 s of CPU to start,
    # then a core's worth at 15 requests/s through the Azure SDK) starves the first one's traffic into client
    # timeouts (measured: p50 latency 4.5 s, 13 timeouts, against 0.25 s and none alone).
    with ThreadPoolExecutor(max_workers=1) as heavy, ThreadPoolExecutor(max_workers=1) as light:
        futures = {name: (heavy if gateway_of(name) == "litellm" else light).submit(_run, path, root / name)
                   for name, path in jobs.items()}
        return {name: future.result() for name, future in futures.items()}




# -- without the gateways ---------------------------------------------------------------------------------------

def test_every_provider_scenario_is_pinned_and_every_config_used():
    assert {p.stem for p in SCENARIOS.glob("*.yaml")} == set(EXPECTED)
    used = set()
    for name, (_, verdicts) in EXPECTED.items():
        scenario = load_scenario(SCENARIOS / f"{name}.yaml").scenario
        assert set(scenario.check_names()) == set(verdicts), name
        used.add((SCENARIOS / scenario.gateway.config).resolve())
    assert used == {p for folder in CONFIGS.values() for p in folder.iterdir()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scenario_loads_and_its_gateway_config_names_its_providers(name):
    """The scenario is valid, speaks a provider API other than OpenAI's, and its adapter maps every target of
    the config to a provider of the scenario, the primaries included; a LiteLLM config, rendered, stays on
    127.0.0.1."""
    scenario = load_scenario(SCENARIOS / f"{name}.yaml").scenario
    kind = scenario.gateway.kind
    assert kind == gateway_of(name)
    assert "openai" not in {p.api for p in scenario.providers.values()}
    defaults = load_adapter(kind).defaults(GatewayContext(scenario, SCENARIOS))
    assert defaults.config_path is not None and defaults.config_path.resolve().parent == CONFIGS[kind]
    targets = set(defaults.served_target.values.values())
    assert targets <= set(scenario.providers)
    assert {route.primary for route in scenario.policy.routes.values()} <= targets
    if kind == "litellm":
        values = {f"providers.{p}.{field}": value for p in scenario.providers
                  for field, value in (("url", "http://127.0.0.1:1"), ("key", "k"), ("secret", "s"),
                                       ("region", "eu-central-1"))}
        template = defaults.config_path.read_text()
        config = litellm.render_config(template, values, "m", name)
        litellm.check_deployments(config, litellm.target_names(scenario, litellm.read_template(defaults.config_path)),
                                  name)


def test_a_bedrock_deployment_is_known_by_its_runtime_endpoint():
    """A Bedrock deployment calls (and signs for) aws_bedrock_runtime_endpoint, even beside an api_base: that is
    the URL the adapter maps to a provider and keeps on 127.0.0.1."""
    def config(endpoint: str, ident: str) -> dict:
        return {"model_list": [{"model_name": "chat", "model_info": {"id": ident}, "litellm_params": {
            "model": "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", "api_base": "http://127.0.0.1:2",
            "aws_bedrock_runtime_endpoint": endpoint}}]}

    scenario = load_scenario(SCENARIOS / "litellm-bedrock-azure-throttling.yaml").scenario
    local = config("{providers.claude-bedrock-eu.url}", "claude@bedrock")
    assert [base for _, _, base in litellm.deployments(local)] == ["{providers.claude-bedrock-eu.url}"]
    assert litellm.target_names(scenario, local)["claude@bedrock"] == "claude-bedrock-eu"
    remote = config("https://bedrock-runtime.eu-central-1.amazonaws.com", "claude-bedrock-eu")
    with pytest.raises(HarnessError, match="is not on 127.0.0.1"):
        litellm.check_deployments(remote, litellm.target_names(scenario, remote), "t")


# -- end to end: verdicts and what every run must be -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", installed(*sorted(EXPECTED)))
def test_verdict_of_every_check_is_pinned(runs, name):
    run, (code, verdicts) = runs[name], EXPECTED[name]
    assert run.summary["status"] == STOPPED_AT_THE_BASELINE.get(name, "completed"), run.output
    assert {c["check"]: c["verdict"] for c in run.summary["checks"]} == verdicts, run.output
    assert run.returncode == code, run.output
    assert "Traceback" not in run.output


@pytest.mark.slow
@pytest.mark.parametrize("name", installed(*sorted(set(EXPECTED) - set(STOPPED_AT_THE_BASELINE))))
def test_each_run_is_real_speaks_each_api_and_leaks_nothing(runs, name):
    run = runs[name]
    stats = run.summary["stats"]
    assert stats["requests"] >= 100 and stats["upstream_calls"] >= 100, stats
    assert all(w["hits"] > 0 for w in run.check("fault_effective")["stats"]["windows"])
    # Every call reached its provider in the provider's own API (the mock read it on that API's routes).
    providers = load_scenario(SCENARIOS / f"{name}.yaml").scenario.providers
    assert {(c["provider"], c["api"]) for c in run.of("upstream")} <= {(n, p.api) for n, p in providers.items()}
    # The gateway's claim of who served is the provider that answered last, as the providers recorded it.
    answered = [r for r in run.of("request") if r["status"] == 200]
    assert answered and all(r["claimed_target"] == run.by_id[r["id"]][-1]["provider"] for r in answered)
    # No request timed out at the client: every verdict above is about the gateway, not a starved machine.
    assert not [r for r in run.of("request") if r["outcome"] == "timeout"]
    forms = [form for key in SECRETS for form in (key, base64.b64encode(key.encode()).decode())]
    for file_name, text in run.texts.items():
        assert not any(form in text for form in forms), file_name


# -- the issue-11 drill: Azure OpenAI -> Anthropic -----------------------------------------------------------------

def _identity_change(run: Run, route: str = "chat") -> list[tuple]:
    changes = run.transition(route)["trust_envelope"]["changes"]
    return [(c["field"], c["primary"], c["fallback"], c.get("exception", {}).get("approval_ref"), c["breach"])
            for c in changes]


@needs_litellm
@pytest.mark.slow
def test_drill_serves_through_both_providers_each_in_its_api_with_its_key(runs):
    run = runs["litellm-azure-anthropic-regional-outage"]
    # Each provider was called in its own API with its own credential, never the other's.
    assert {(c["provider"], c["api"], c["identity"]) for c in run.of("upstream")} == {
        ("azure-gpt-eu", "azure-openai", "azure-eu"), ("claude-eu", "anthropic", "anthropic-eu")}
    faulted = run.faulted()
    assert len(faulted) >= 40
    assert all(run.path(r) == [("azure-gpt-eu", 503), ("claude-eu", 200)] for r in faulted)
    assert all(r["status"] == 200 and r["claimed_target"] == "claude-eu" for r in faulted)
    # Streams were served whole by both providers (Azure's SSE, Anthropic's named events, as OpenAI chunks).
    streamed = {run.by_id[r["id"]][-1]["provider"] for r in run.of("request") if r["stream"] and r["stream_complete"]}
    assert streamed == {"azure-gpt-eu", "claude-eu"}
    # The trust-envelope diff shows both identities, the change allowed by the approval's exception.
    assert _identity_change(run) == [("identity", "azure-eu", "anthropic-eu", "SEC-312", False)]
    assert "trust envelope: identity azure-eu -> anthropic-eu (exception)" in run.output
    # LiteLLM's own audit events name both, and carry neither key.
    fallbacks = run.audits("fallback")
    assert len(fallbacks) == len(faulted)
    assert all(a["fields"]["primary"] == "azure-gpt-eu" and a["fields"]["fallback"] == "claude-eu" for a in fallbacks)
    assert not any(a["leaked_identities"] for a in run.of("audit"))


@needs_litellm
@pytest.mark.slow
def test_an_azure_deployment_is_called_three_times_before_it_falls_back_by_default(runs):
    run = runs["litellm-azure-anthropic-defaults"]
    rerouted = [r for r in run.faulted() if run.by_id[r["id"]][-1]["provider"] == "claude-eu"]
    assert len(rerouted) >= 10
    assert all(run.path(r) == [("azure-gpt-eu", 503)] * 3 + [("claude-eu", 200)] for r in rerouted)
    violation = run.check("attempt_budget")["violations"][0]
    assert violation["observed"]["max_attempts"] == 4 and violation["observed"]["count"] == len(rerouted)
    # Governed (max_retries 0, num_retries 0): one call to the failing deployment, then the fallback.
    governed = runs["litellm-azure-anthropic-regional-outage"]
    assert max(len(calls) for calls in governed.by_id.values()) == 2


@needs_portkey
@pytest.mark.slow
def test_portkey_drill_falls_back_across_apis_but_logs_both_keys(runs):
    run = runs["portkey-azure-anthropic-regional-outage"]
    assert {(c["provider"], c["api"], c["identity"]) for c in run.of("upstream")} == {
        ("azure-gpt-eu", "azure-openai", "azure-eu"), ("claude-eu", "anthropic", "anthropic-eu")}
    faulted = run.faulted()
    assert len(faulted) >= 40 and all(run.path(r) == [("azure-gpt-eu", 503), ("claude-eu", 200)] for r in faulted)
    assert _identity_change(run) == [("identity", "azure-eu", "anthropic-eu", "SEC-312", False)]
    # Its log events carry the Azure api-key on every request and the Anthropic key on every fallback.
    messages = run.messages("logged")
    assert "audit event carries a credential of identity azure-eu" in messages
    assert "audit event carries a credential of identity anthropic-eu" in messages
    leaked = [a["leaked_identities"] for a in run.of("audit")]
    assert sum("anthropic-eu" in ids for ids in leaked) == len(faulted)


@needs_portkey
@pytest.mark.slow
def test_portkey_sends_anthropic_no_max_tokens_so_the_fallback_is_refused(runs):
    run = runs["portkey-azure-anthropic-as-documented"]
    faulted = run.faulted()
    assert len(faulted) >= 40
    # The client gets Anthropic's 400 (max_tokens is required) from the fallback Portkey says served.
    assert all(r["status"] == 400 and "max_tokens: Field required" in r["error"] and r["claimed_target"] == "claude-eu"
               for r in faulted)
    refused = [c for c in run.of("upstream") if c["provider"] == "claude-eu"]
    assert len(refused) == len(faulted) and all(c["status"] == 400 for c in refused)
    # Refused, each call still names its request (the token is read from the body the API refuses), so the
    # fallback is judged by approved_targets and trust_boundary like any other.
    assert {c["id"] for c in refused} == {r["id"] for r in faulted}
    # With max_tokens set on the target (override_params), the same fallback serves: see the drill above.


# -- cross-provider chains -------------------------------------------------------------------------------------------

@needs_litellm
@pytest.mark.slow
def test_bedrock_to_azure_signs_with_the_aws_identity_and_changes_identity_and_region(runs):
    run = runs["litellm-bedrock-azure-throttling"]
    assert {(c["provider"], c["api"], c["identity"]) for c in run.of("upstream")} == {
        ("claude-bedrock-eu", "bedrock", "aws-eu"), ("azure-gpt-eu", "azure-openai", "azure-eu")}
    faulted = run.faulted()
    assert len(faulted) >= 30
    assert all(run.path(r) == [("claude-bedrock-eu", 429), ("azure-gpt-eu", 200)] for r in faulted)
    assert _identity_change(run) == [("identity", "aws-eu", "azure-eu", "SEC-313", False),
                                     ("region", "eu-central-1", "germanywestcentral", "SEC-313", False)]


@needs_portkey
@pytest.mark.slow
def test_portkey_bedrock_signatures_do_not_verify_and_its_log_holds_the_aws_secret(runs):
    run = runs["portkey-bedrock-azure-throttling"]
    # Portkey signs `host` without the port of its custom_host, so no SigV4 signature verifies: every Bedrock call
    # is an unknown caller's (AWS itself would answer 403 SignatureDoesNotMatch), recorded but joined to no request.
    bedrock = [c for c in run.of("upstream") if c["provider"] == "claude-bedrock-eu"]
    assert len(bedrock) == run.summary["stats"]["requests"]
    assert all(c["identity"] == "unknown" and c["caller"] == "unknown" and c["id"] is None for c in bedrock)
    assert {c["claimed_id"] for c in bedrock} == {r["id"] for r in run.of("request")}
    trust = run.check("trust_boundary")
    assert trust["verdict"] == "unknown" and not trust["violations"]
    assert f"{len(bedrock)} calls to claude-bedrock-eu with a credential of no known identity" in trust["summary"]
    # Its log events carry the AWS access key id and the secret access key in plain text, on every request.
    assert "audit event carries a credential of identity aws-eu.secret" in run.messages("logged")
    assert all({"aws-eu", "aws-eu.secret"} <= set(a["leaked_identities"]) for a in run.of("audit"))
    # No request was answered by its primary with a verified identity: the baseline never held, so no fault was
    # injected and the run says why, from the providers' records.
    assert not run.of("fault_start")
    assert run.summary["status"] == "baseline_failed"
    assert "credential of no known identity (on claude-bedrock-eu)" in run.summary["status_reason"], run.summary
    forms = [form for key in SECRETS for form in (key, base64.b64encode(key.encode()).decode())]
    leaked = [file_name for file_name, text in run.texts.items() if any(form in text for form in forms)]
    assert leaked == [], leaked  # Portkey's log holds the secret; the run's own artefacts never do


# -- capacity errors: Gemini's quota, Anthropic's 529 ----------------------------------------------------------------

@needs_litellm
@pytest.mark.slow
@pytest.mark.parametrize(("name", "primary", "fallback", "statuses"), [
    ("litellm-gemini-exhausted", "gemini-pro-eu", "gemini-flash-eu", {429, 503}),
    ("litellm-anthropic-overloaded", "sonnet-eu", "haiku-eu", {529}),
])
def test_router_retries_a_capacity_error_twice_before_the_fallback(runs, name, primary, fallback, statuses):
    run = runs[name]
    rerouted = [r for r in run.faulted() if run.by_id[r["id"]][-1]["provider"] == fallback]
    assert len(rerouted) >= 10
    for request in rerouted:
        path = run.path(request)
        assert [p for p, _ in path] == [primary] * 3 + [fallback] and path[-1][1] == 200
        assert {status for _, status in path[:3]} <= statuses
    # Some requests outlived the fault on their retries: served by the primary after one or two failures.
    assert any([p for p, _ in run.path(r)][-1] == primary and len(run.path(r)) > 1 for r in run.faulted())
    violation = run.check("attempt_budget")["violations"][0]
    assert violation["observed"] == {"count": len(rerouted), "max_attempts": 4, "route": "chat"}


@needs_litellm
@pytest.mark.slow
def test_without_router_retries_a_capacity_error_costs_one_call(runs):
    run = runs["litellm-capacity-errors-governed"]
    for route, primary, fallback, statuses in (("gemini", "gemini-pro-eu", "gemini-flash-eu", {429, 503}),
                                               ("claude", "sonnet-eu", "haiku-eu", {529})):
        faulted = run.faulted(route=route)
        assert len(faulted) >= 15
        assert all([p for p, _ in run.path(r)] == [primary, fallback] and run.path(r)[0][1] in statuses
                   for r in faulted), route
        # Each API said it in its own words: Anthropic's 529 is recorded as the overloaded outcome.
    assert {c["outcome"] for c in run.of("upstream") if c["status"] == 529} == {"overloaded"}


@needs_portkey
@pytest.mark.slow
def test_portkey_neither_retries_a_529_nor_a_quota_error_and_falls_back_at_once(runs):
    run = runs["portkey-anthropic-overloaded"]
    faulted = run.faulted()
    assert len(faulted) >= 30
    # retry: {attempts: 2} retries only 429, 500, 502, 503 and 504 by default: the 529 goes straight on.
    assert all(run.path(r) == [("sonnet-eu", 529), ("haiku-eu", 200)] for r in faulted)
    gemini = runs["portkey-gemini-exhausted"]
    faulted = gemini.faulted()
    assert len(faulted) >= 30
    assert all([p for p, _ in gemini.path(r)] == ["gemini-pro-eu", "gemini-flash-eu"] for r in faulted)
    assert {gemini.path(r)[0][1] for r in faulted} == {429, 503}


# -- content-policy refusals, in each API's words ----------------------------------------------------------------------

def _refusals(run: Run, route: str) -> list[dict]:
    """Requests whose primary refused them (upstream outcome content_policy)."""
    return [r for r in run.of("request") if r["route"] == route and run.by_id.get(r["id"])
            and run.by_id[r["id"]][0]["outcome"] == "content_policy"]


# What each route's refused requests got: "shopped" (to haiku-eu, a 200 from it), "held" (the primary's 400
# passed on), or the finish_reason of the primary's own 200 refusal, passed on.
SHOPPED, HELD = "shopped", "held"
REFUSED = {
    "litellm-content-policy-providers": {"azure": SHOPPED, "claude": "content_filter", "gemini": "content_filter",
                                         "bedrock": "content_filter"},
    "litellm-content-policy-providers-governed": {"azure": HELD, "claude": "content_filter",
                                                  "gemini": "content_filter", "bedrock": "content_filter"},
    "litellm-content-policy-chains": {"azure": SHOPPED, "claude": SHOPPED, "gemini": SHOPPED, "bedrock": SHOPPED},
    # Portkey maps Anthropic's stop_reason refusal to finish_reason stop: an empty answer, not a refusal.
    # Without bedrock: Portkey's SigV4 signatures never verify on a port, so its bedrock calls are nobody's.
    "portkey-content-policy-providers": {"azure": SHOPPED, "claude": "stop", "gemini": "content_filter"},
    "portkey-content-policy-providers-on-status-codes": {"azure": HELD, "claude": "stop", "gemini": "content_filter"},
}
PRIMARIES = {"azure": "azure-gpt-eu", "claude": "sonnet-eu", "gemini": "gemini-pro-eu", "bedrock": "claude-bedrock-eu"}


@pytest.mark.slow
@pytest.mark.parametrize("name", installed(*sorted(REFUSED)))
def test_what_a_refusal_in_each_api_becomes(runs, name):
    run = runs[name]
    for route, fate in REFUSED[name].items():
        refused, primary = _refusals(run, route), PRIMARIES[route]
        assert len(refused) >= 3, route
        first = {run.path(r)[0] for r in refused}
        # Azure refuses with its 400 content_filter error; the others answer 200 with their refusal.
        assert first == {(primary, 400 if route == "azure" else 200)}, route
        if fate == SHOPPED:
            assert all(run.path(r)[1:] == [("haiku-eu", 200)] and r["status"] == 200 for r in refused), route
        elif fate == HELD:
            assert all(len(run.path(r)) == 1 and r["status"] == 400 for r in refused), route
        else:
            assert all(len(run.path(r)) == 1 and r["status"] == 200 for r in refused), route
            assert {json.loads(r["answer"]["shape"])["finish_reason"] for r in refused} == {fate}, route
    shopped = {route for route, fate in REFUSED[name].items() if fate == SHOPPED}
    causes = {v["observed"]["route"]: v["observed"]["cause"] for v in run.check("trigger_conditions")["violations"]}
    assert causes == {route: "400" if route == "azure" else "content_policy" for route in shopped}
    # A refusal shopped across providers is answered under another key: a breach of the envelope besides
    # (claude's fallback, haiku-eu, shares its key).
    for route in shopped - {"claude"}:
        assert ("identity", "anthropic-eu") in {(c["field"], c["fallback"]) for c in
                                                run.transition(route)["trust_envelope"]["changes"] if c["breach"]}


@needs_litellm
@pytest.mark.slow
def test_litellm_holds_azures_refusal_back_only_with_a_content_policy_chain(runs):
    """fallback_on_unsupported_params: false keeps an openai/ deployment's 400 refusal (litellm-content-policy-
    refusal-governed), but not Azure's: LiteLLM maps content_filter to a ContentPolicyViolationError, which goes
    down the generic fallbacks chain unless content_policy_fallbacks names a chain (an empty one) for the group."""
    shopped = runs["litellm-content-policy-providers"]
    assert all(r["claimed_target"] == "haiku-eu" for r in _refusals(shopped, "azure"))
    held = runs["litellm-content-policy-providers-governed"]
    refused = _refusals(held, "azure")
    assert refused and all(r["status"] == 400 and "ContentPolicyViolationError" in r["error"]
                           and "Azure OpenAI's content management policy" in r["error"] for r in refused)


# -- does a cross-provider fallback keep tools and response_format? ---------------------------------------------------

def _answers(run: Run, request_class: str, provider: str) -> set[str]:
    return {r["answer"]["shape"] for r in run.of("request")
            if r["request_class"] == request_class and r["status"] == 200 and r["claimed_target"] == provider}


@pytest.mark.slow
@pytest.mark.parametrize("name", installed("litellm-cross-provider-contract", "portkey-cross-provider-contract"))
def test_tools_cross_to_anthropic_and_response_format_only_through_litellm(runs, name):
    run = runs[name]
    tool_call = '{"content":null,"finish_reason":"tool_calls","tool_calls":["search"]}'
    json_answer = '{"content":"json","finish_reason":"stop","json":{"currency":"string","total":"number"}}'
    # Both gateways carry the tool into Anthropic's Messages API and its tool_use back as an OpenAI tool call.
    agent_calls = [c for c in run.of("upstream") if c["provider"] == "claude-eu" and c["request_class"] == "agent"]
    assert len(agent_calls) >= 5 and all(c["tools"] == ["search"] for c in agent_calls)
    assert _answers(run, "agent", "claude-eu") == _answers(run, "agent", "azure-gpt-eu") == {tool_call}
    assert _answers(run, "extract", "azure-gpt-eu") == {json_answer}
    if name.startswith("litellm"):
        # LiteLLM sends response_format to Anthropic as output_format: the same JSON answer comes back.
        assert _answers(run, "extract", "claude-eu") == {json_answer}
    else:
        # Portkey's anthropic provider drops response_format: Claude answers prose to a JSON-schema request.
        assert _answers(run, "extract", "claude-eu") == {'{"content":"text","finish_reason":"stop"}'}
        (violation,) = run.check("equivalence")["violations"]
        assert violation["observed"]["aspects"] == ["structured_output"]
        assert violation["observed"]["count"] == len([r for r in run.of("request") if r["request_class"] == "extract"
                                                      and r["claimed_target"] == "claude-eu"])


# -- Portkey's streams, by provider API --------------------------------------------------------------------------------

@needs_portkey
@pytest.mark.slow
def test_portkey_streams_by_provider_api(runs):
    run = runs["portkey-streams"]
    by_route: dict[str, set] = {}
    for r in run.of("request"):
        by_route.setdefault(r["route"], set()).add((r["status"], r["stream_complete"]))
    # Azure OpenAI and Anthropic: the provider streams a whole answer, Portkey fails passing it on
    # ("TypeError: immutable", as for OpenAI in test_gateway_portkey.py) and answers 500.
    assert by_route["azure"] == by_route["claude"] == {(500, None)}
    # Gemini: a 200 whose stream ends with a finish_reason but never `data: [DONE]` (Portkey passes [DONE] on
    # only when the upstream sends one, and Gemini does not): the harness counts it as cut.
    assert by_route["gemini"] == {(200, False)}
    # Bedrock (ConverseStream, an AWS event stream): whole, ending with [DONE].
    assert by_route["bedrock"] == {(200, True)}
    assert all(c["status"] == 200 and c["stream"] for c in run.of("upstream"))
    assert "TypeError: immutable" in run.texts["gateway.log"]

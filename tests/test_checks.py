"""Each check on real ledger files: a PASS ledger, a FAIL ledger and one with nothing to judge."""

from __future__ import annotations

import pytest

from harness.checks import NO_TRAFFIC, run_checks
from harness.checks.common import Groups, cause_of, fallback_calls, primary_of
from harness.core.events import CUT_IN_FLIGHT
from harness.core.registry import check_names, checks
from harness.core.verdict import CheckResult, Verdict
from tests.ledger_builder import LedgerBuilder, make_scenario, scenario_dict

ALLOWED_EVIDENCES = {"accountability", "traceability", "reversibility", "least privilege of the non-human identity",
                     "equivalence, or knowingly degraded"}
FAULT = "primary-down"


@pytest.fixture
def builder(tmp_path):
    def make(scenario=None):
        b = LedgerBuilder(tmp_path / f"ledger-{len(list(tmp_path.iterdir()))}.jsonl", scenario or make_scenario())
        b.run_start()
        return b
    return make


def judge(b, name, scenario=None, end=True) -> CheckResult:
    if end:
        b.run_end()
    history = b.history()
    [res] = run_checks(scenario or b.scenario, history, [name])
    return res


def healthy(b) -> None:
    """A well-behaved gateway: steady state, a primary outage with fallback, failback, a fail-closed request."""
    for i in range(5):
        b.exchange(f"r00{i}", 1 + i, [("p-eu", "ok")])
    b.fault(FAULT, 10, 20, ["p-eu"])
    b.exchange("r010", 11, [{"provider": "p-eu", "outcome": "error", "status": 503, "fault": FAULT}, ("f-eu", "ok")])
    b.fallback_audit("r010", 11.5, "f-eu")
    # Cooldown: the gateway skips the primary that just failed.
    b.exchange("r011", 11.2, [("f-eu", "ok")])
    b.fallback_audit("r011", 11.6, "f-eu")
    b.exchange("r012", 12, [{"provider": "p-eu", "outcome": "error", "status": 503, "fault": FAULT}],
               request_class="regulated")
    b.exchange("r020", 21, [("p-eu", "ok")])
    for i in range(5):
        b.exchange(f"r03{i}", 26 + i, [("p-eu", "ok")])


def violation(res: CheckResult, fragment: str):
    found = [v for v in res.violations if fragment in v.message]
    assert found, f"no violation with {fragment!r} in {[v.message for v in res.violations]}"
    return found[0]


# --- the whole suite on one healthy ledger -------------------------------------------------------

def test_healthy_run_passes_every_check(builder):
    b = builder()
    healthy(b)
    b.run_end()
    results = run_checks(b.scenario, b.history())
    applicable = b.scenario.check_names()  # checks: all = every check that applies to the scenario
    assert [r.check for r in results] == applicable
    assert {r.check: r.verdict for r in results} == {name: Verdict.PASS for name in applicable}, \
        [(r.check, r.summary) for r in results if r.verdict is not Verdict.PASS]
    for r in results:
        assert not r.violations
        assert r.evidences and set(r.evidences) <= ALLOWED_EVIDENCES
        assert r.to_dict()["verdict"] == "pass"


def test_every_check_declares_itself():
    described = checks()
    assert list(described) == list(check_names())
    for registered in described.values():
        assert registered.description
        assert set(registered.evidences) <= ALLOWED_EVIDENCES
        assert registered.severity in ("blocker", "critical", "normal", "minor", "trivial")
        assert registered.frameworks and registered.accumulator.name == registered.name


# --- run_checks rules ----------------------------------------------------------------------------

def test_no_traffic_makes_every_check_unknown(builder):
    b = builder()
    b.fault(FAULT, 1, 2, ["p-eu"])
    b.kill_switch(3, "off", ok=False, status=500)
    b.run_end()
    results = run_checks(b.scenario, b.history(), list(check_names()))
    assert len(results) == len(check_names())
    assert all(r.verdict is Verdict.UNKNOWN and r.summary == NO_TRAFFIC for r in results)


def test_aborted_run_turns_pass_into_unknown_but_fail_stays(builder):
    b = builder()
    healthy(b)
    b.exchange("r040", 40, [("p-eu", "ok"), ("p-eu", "ok"), ("p-eu", "ok"), ("p-eu", "ok")])
    b.run_end(status="aborted", reason="gateway crashed")
    results = {r.check: r for r in run_checks(b.scenario, b.history())}
    assert results["attempt_budget"].verdict is Verdict.FAIL
    for name in set(b.scenario.check_names()) - {"attempt_budget"}:
        assert results[name].verdict is Verdict.UNKNOWN, name
        assert results[name].summary == "run aborted: gateway crashed"
        assert results[name].stats["summary_if_completed"]


def test_missing_run_end_is_incomplete(builder):
    b = builder()
    healthy(b)
    [res] = run_checks(b.scenario, b.history(), ["approved_targets"])
    assert res.verdict is Verdict.UNKNOWN
    assert res.summary == "run incomplete: the ledger has no run_end event"


def test_names_select_and_keep_registry_order(builder):
    b = builder()
    healthy(b)
    b.run_end()
    history = b.history()
    assert [r.check for r in run_checks(b.scenario, history, ["logged", "approved_targets"])] == \
        ["approved_targets", "logged"]
    with pytest.raises(ValueError, match="unknown check"):
        run_checks(b.scenario, history, ["nope"])
    data = scenario_dict()
    data["checks"] = ["reversible"]
    assert [r.check for r in run_checks(make_scenario(data), history)] == ["reversible"]


def test_requests_on_undeclared_routes_are_counted_and_ignored(builder):
    b = builder()
    b.exchange("x001", 1, [("p-eu", "ok"), ("rogue", "ok")], route="other")
    res = judge(b, "approved_targets")
    assert res.verdict is Verdict.UNKNOWN
    assert res.stats["unrouted_requests"] == 1 and res.stats["requests"] == 0


def test_common_helpers():
    scenario = make_scenario()
    assert primary_of(scenario, "chat") == "p-eu" and primary_of(scenario, "other") is None
    calls = [{"provider": "p-eu", "outcome": "error", "status": 503}, {"provider": "f-eu", "outcome": "ok"}]
    assert fallback_calls(calls, "p-eu") == calls[1:]
    assert [cause_of(c) for c in (
        {"outcome": "error", "status": 503}, {"outcome": "content_policy", "status": 400},
        {"outcome": "timeout", "status": 0}, {"outcome": "reset", "status": 0}, {"outcome": "ok", "status": 200},
    )] == [503, 400, "timeout", "connection_error", "ok"]
    groups = Groups()
    for i in reversed(range(500)):
        groups.add("k", f"r{i:04d}", "m")
        groups.add("k", f"r{i:04d}", "m")  # the same request twice counts once
    [v] = groups.violations()
    assert v.observed == {"count": 500} and v.request_ids == [f"r{i:04d}" for i in range(20)]


# --- approved_targets ----------------------------------------------------------------------------

def test_approved_targets_fail(builder):
    b = builder()
    healthy(b)
    b.exchange("r101", 13, [("p-eu", "error"), ("rogue", "error"), ("rogue", "ok")])
    b.exchange("r102", 14, [("p-eu", "error"), ("f-us", "ok")], tenant="globex")
    res = judge(b, "approved_targets")
    assert res.verdict is Verdict.FAIL
    rogue = violation(res, "fallback to rogue is not an approved target of route chat")
    assert rogue.request_ids == ["r101"] and rogue.observed["count"] == 1  # a request, not its two calls
    assert rogue.expected == {"approved_targets": ["f-eu", "f-own", "f-us"]}
    tenant = violation(res, "fallback to f-us on route chat is not approved for tenant globex")
    assert tenant.request_ids == ["r102"]
    assert "f-us is approved only for tenants: acme" in tenant.message
    assert res.stats["unapproved_calls"] == 3


def test_approved_targets_route_restriction(builder):
    data = scenario_dict()
    data["policy"]["routes"]["chat"]["regions"] = ["eu"]
    b = builder(make_scenario(data))
    b.exchange("r001", 1, [("p-eu", "error"), ("f-eu", "ok")], region="apac")
    res = judge(b, "approved_targets")
    assert res.verdict is Verdict.FAIL
    v = violation(res, "route chat allows fallback only for regions: eu")
    assert v.request_ids == ["r001"] and v.expected["scope"] == "route"


def test_approved_targets_unknown_without_fallback(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "ok")])
    res = judge(b, "approved_targets")
    assert res.verdict is Verdict.UNKNOWN
    assert "no fallback call" in res.summary


# --- trust_boundary ------------------------------------------------------------------------------

def test_trust_boundary_fail_with_deepdiff_evidence(builder):
    b = builder()
    healthy(b)
    b.exchange("r101", 13, [{"provider": "p-eu", "outcome": "error", "tools": ["search"]},
                            {"provider": "f-eu", "outcome": "ok", "tools": ["search", "shell"]}], tools=["search"])
    b.exchange("r102", 14, [("p-eu", "error"), ("f-us", "ok")], data_class="pii")
    b.exchange("r103", 15, [("p-eu", "error"), {"provider": "f-own", "outcome": "ok", "identity": "svc-gw"}])
    b.exchange("r104", 16, [{"provider": "p-eu", "outcome": "ok", "identity": "unknown"}])
    res = judge(b, "trust_boundary")
    assert res.verdict is Verdict.FAIL
    tools = violation(res, "fallback to f-eu on route chat was offered extra tools: shell")
    assert tools.request_ids == ["r101"]
    assert tools.diff == {"iterable_item_added": {"root['tools'][1]": "shell"}}
    clearance = violation(res, "fallback to f-us on route chat is not cleared for data class pii")
    assert clearance.request_ids == ["r102"] and clearance.diff is None
    # The identity "stayed the same" (svc-gw) yet the primary's key reached f-own: a leak.
    leak = violation(res, "f-own received the key of identity svc-gw; it accepts only svc-own's")
    assert leak.request_ids == ["r103"] and leak.expected == {"identity": "svc-own"}
    assert not [v for v in res.violations if "ran as identity" in v.message]
    assert violation(res, "call to p-eu carried an unrecognised credential").request_ids == ["r104"]
    assert res.stats["envelope_diffs_computed"] == 1


def test_trust_boundary_identity_swap_and_declared_reference(builder):
    b = builder()
    # No primary call: the reference is the declared envelope (p-eu's identity, the client's tools).
    b.exchange("r001", 1, [{"provider": "f-own", "outcome": "ok"}])
    res = judge(b, "trust_boundary")
    v = violation(res, "fallback to f-own on route chat ran as identity svc-own, not the primary's svc-gw")
    assert v.request_ids == ["r001"]
    assert v.diff["values_changed"]["root['identity']"] == {"new_value": "svc-own", "old_value": "svc-gw"}


def test_trust_exception_allows_region_only_for_its_target(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "error"), ("f-us", "ok")])
    assert judge(b, "trust_boundary").verdict is Verdict.PASS
    data = scenario_dict()
    del data["policy"]["routes"]["chat"]["fallbacks"][1]["trust_exceptions"]
    b = builder(make_scenario(data))
    b.exchange("r001", 1, [("p-eu", "error"), ("f-us", "ok")])
    res = judge(b, "trust_boundary")
    v = violation(res, "fallback to f-us on route chat left region eu for us")
    assert v.request_ids == ["r001"] and v.expected == {"region": "eu"}
    assert v.diff["values_changed"]["root['region']"] == {"new_value": "us", "old_value": "eu"}


def test_trust_boundary_pass_computes_no_diff(builder):
    b = builder()
    healthy(b)
    b.exchange("r101", 13, [{"provider": "p-eu", "outcome": "error", "tools": ["search", "shell"]},
                            {"provider": "f-eu", "outcome": "ok", "tools": ["search"]}])  # fewer tools: fine
    res = judge(b, "trust_boundary")
    assert res.verdict is Verdict.PASS
    assert res.stats["envelope_diffs_computed"] == 0 and res.stats["fallback_calls"] == 3


def test_trust_boundary_unknown_without_fallback(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "ok")])
    res = judge(b, "trust_boundary")
    assert res.verdict is Verdict.UNKNOWN and "no fallback call" in res.summary


# --- fail_closed ---------------------------------------------------------------------------------

def test_fail_closed_fail(builder):
    b = builder()
    healthy(b)
    b.exchange("r101", 13, [("p-eu", "error"), ("f-eu", "ok")], request_class="regulated")
    b.exchange("r102", 14, [("p-eu", "timeout"), ("f-eu", "ok")], data_class="pii")
    res = judge(b, "fail_closed")
    assert res.verdict is Verdict.FAIL
    v = violation(res, "sensitive request (request class regulated) on route chat was rerouted to f-eu")
    assert v.request_ids == ["r101"]
    assert violation(res, "(data class pii)").request_ids == ["r102"]


def test_fail_closed_unknown(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "ok")], request_class="regulated")  # primary healthy: nothing to judge
    res = judge(b, "fail_closed")
    assert res.verdict is Verdict.UNKNOWN and "no sensitive request faced a failing primary" in res.summary
    data = scenario_dict()
    data["policy"]["fail_closed"] = {}
    b = builder(make_scenario(data))
    healthy(b)
    res = judge(b, "fail_closed")
    assert res.verdict is Verdict.UNKNOWN and "declares nothing fail-closed" in res.summary


# --- trigger_conditions --------------------------------------------------------------------------

def test_trigger_conditions_fail(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "content_policy"), ("f-eu", "ok")])
    b.exchange("r002", 2, [("p-eu", "ok"), ("f-eu", "ok")])
    b.exchange("r003", 3, [("f-eu", "ok")])  # no earlier primary call at all
    b.exchange("r004", 4, [("p-eu", "error", 503), ("f-eu", "ok")])  # legitimate
    res = judge(b, "trigger_conditions")
    assert res.verdict is Verdict.FAIL
    assert violation(res, "fell back from p-eu to f-eu on 400, which is not in fallback_on").request_ids == ["r001"]
    assert violation(res, "although the primary answered ok").request_ids == ["r002"]
    skipped = violation(res, "route chat fell back without a failing primary (p-eu was not called and had not failed")
    assert skipped.request_ids == ["r003"] and skipped.observed["last_failure_before"] is None
    assert res.stats["judged"] == 4


def test_trigger_conditions_cooldown_after_failure_passes(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "reset"), ("f-eu", "ok")])
    b.exchange("r002", 1.5, [("f-eu", "ok")])
    res = judge(b, "trigger_conditions")
    assert res.verdict is Verdict.PASS, res.violations
    assert res.stats["fallbacks_without_own_primary_call"] == 1


def test_trigger_conditions_half_open_probe_in_flight_is_not_held_against_the_gateway(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "error", 503), ("f-eu", "ok")])
    b.exchange("r002", 2, [("p-eu", "ok")], duration=0.5)  # the probe: the gateway learns at 2.5
    b.exchange("r003", 2.1, [("f-eu", "ok")])  # probe still in flight: cooldown holds
    b.exchange("r004", 3, [("f-eu", "ok")])  # the probe had answered: no reason to skip the primary
    res = judge(b, "trigger_conditions")
    [v] = res.violations
    assert v.message == ("route chat fell back without a failing primary "
                         "(p-eu was not called and had answered since its last failure)")
    assert v.request_ids == ["r004"]
    assert v.observed["answered"] == "ok" and v.observed["answered_at_s"] == pytest.approx(2.01)


def test_trigger_conditions_accepts_a_cooldown_scoped_to_the_failing_tenant(builder):
    """A tenant's quota ran out: other tenants keep the primary, that tenant's requests skip it."""
    b = builder()
    b.exchange("r001", 1, [("p-eu", "error", 429), ("f-eu", "ok")], tenant="globex")
    b.exchange("r002", 1.2, [("p-eu", "ok")], tenant="acme")
    b.exchange("r003", 1.5, [("f-eu", "ok")], tenant="globex")
    b.exchange("r004", 1.6, [("f-eu", "ok")], tenant="acme")  # acme's primary had answered: unexplained
    res = judge(b, "trigger_conditions")
    [v] = res.violations
    assert v.request_ids == ["r004"]
    assert v.observed["scope"] == "region, request_class" and v.observed["answered_at_s"] == pytest.approx(1.21)


def test_trigger_conditions_unknown(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "ok")])
    assert judge(b, "trigger_conditions").verdict is Verdict.UNKNOWN


# --- logged --------------------------------------------------------------------------------------

def test_logged_cut_in_flight_by_the_runs_stop(builder):
    """A request the run's stop cut off may have reached a fallback the gateway had no time to log."""
    b = builder()
    b.exchange("r001", 1, [("p-eu", "error"), ("f-eu", "ok")], status=None, outcome="unknown", error=CUT_IN_FLIGHT)
    b.exchange("r002", 2, [("p-eu", "error"), ("f-eu", "ok")])
    b.fallback_audit("r002", 2.5, "f-eu")
    res = judge(b, "logged")
    assert res.verdict is Verdict.PASS and res.stats["fallback_cut_in_flight"] == 1
    b = builder()
    b.exchange("r003", 3, [("p-eu", "error"), ("f-eu", "ok")], status=None, outcome="unknown",
               error="client could not send it: OSError: x")  # not cut by the stop: still owed an audit
    assert violation(judge(b, "logged"), "no audit event for a fallback to f-eu on route chat").request_ids == ["r003"]


def test_logged_fail(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "error"), ("f-eu", "ok")])  # no audit at all
    b.exchange("r002", 2, [("p-eu", "error"), ("f-eu", "ok")])
    b.fallback_audit("r002", 2.5, "f-eu", reason="")
    b.exchange("r003", 3, [("p-eu", "error"), ("f-eu", "ok")])
    b.fallback_audit("r003", 30, "f-eu")  # 26.8 s after the response
    b.exchange("r004", 4, [("p-eu", "error"), ("f-eu", "ok")])
    b.fallback_audit("r004", 4.5, "f-us")  # names a target that got no call
    b.exchange("r005", 5, [("p-eu", "ok")], claimed_target="f-eu")
    b.audit(6, {"request_id": "r005", "note": "key sk-***"}, leaked=["svc-gw"])
    res = judge(b, "logged")
    assert res.verdict is Verdict.FAIL
    assert violation(res, "no audit event for a fallback to f-eu on route chat").request_ids == ["r001"]
    assert violation(res, "audit event misses required fields: reason").request_ids == ["r002"]
    late = violation(res, "audit event arrived more than 5s after the response")
    assert late.request_ids == ["r003"] and late.observed["max_delay_s"] == pytest.approx(26.8)
    assert violation(res, "audit event names fallback f-us, f-eu served").request_ids == ["r004"]
    phantom = violation(res, "audit event names fallback f-us, which received no call for that request")
    assert phantom.request_ids == ["r004"]
    assert violation(res, "gateway claimed f-eu, p-eu served").request_ids == ["r005"]
    leak = violation(res, "audit event carries a credential of identity svc-gw")
    assert leak.request_ids == ["r005"] and "sk-" not in str(leak.to_dict())


def test_logged_unknown(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "ok")])
    assert judge(b, "logged").verdict is Verdict.UNKNOWN


# --- reversible ----------------------------------------------------------------------------------

def test_reversible_pass_records_failback_time(builder):
    b = builder()
    healthy(b)
    res = judge(b, "reversible")
    assert res.verdict is Verdict.PASS
    [window] = res.stats["windows"]
    assert window["window"] == FAULT and window["failback_s"] == pytest.approx(1.0) and window["requests_after"] == 5


def test_reversible_sticky_fallback_fails(builder):
    b = builder()
    b.fault(FAULT, 10, 20, ["p-eu"])
    b.exchange("r010", 11, [("p-eu", "error"), ("f-eu", "ok")])
    b.exchange("r030", 30, [("f-eu", "ok")])
    b.exchange("r031", 31, [("f-eu", "ok")])
    res = judge(b, "reversible")
    assert res.verdict is Verdict.FAIL
    sticky = violation(res, "route chat still fell back more than 5s after fault primary-down healed")
    assert sticky.request_ids == ["r030", "r031"] and sticky.observed["count"] == 2
    assert violation(res, "no request on route chat was served by p-eu after fault primary-down healed")


def test_reversible_kill_switch(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "ok")])
    b.kill_switch(5, "off")
    b.exchange("r006", 6, [("p-eu", "error"), ("f-eu", "ok")])
    b.exchange("r007", 7, [("p-eu", "error")])
    b.kill_switch(8, "on")
    b.kill_switch(9, "off", ok=False, status=500, error="switch broken")
    res = judge(b, "reversible")
    assert res.verdict is Verdict.FAIL
    assert violation(res, "route chat fell back to f-eu while fallback was switched off").request_ids == ["r006"]
    failed = violation(res, "kill switch call failed: 500/switch broken")
    assert failed.request_ids == [] and failed.observed["state"] == "off"


def test_reversible_kill_switch_respected_passes(builder):
    b = builder()
    b.kill_switch(5, "off")
    b.exchange("r006", 6, [("p-eu", "error")])
    b.kill_switch(8, "on")
    assert judge(b, "reversible").verdict is Verdict.PASS


def test_reversible_unknown(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "ok")])
    res = judge(b, "reversible")
    assert res.verdict is Verdict.UNKNOWN and "fallback was never switched off" in res.summary
    b = builder()
    b.fault(FAULT, 10, 20, ["p-eu"])
    b.exchange("r010", 11, [("p-eu", "error"), ("f-eu", "ok")])
    b.exchange("r011", 22, [("p-eu", "ok")])  # inside the grace period only
    res = judge(b, "reversible", end=False)
    assert res.verdict is Verdict.UNKNOWN
    assert "run ended before failback could be observed" in res.summary


# --- steady_state --------------------------------------------------------------------------------

def test_steady_state_fail(builder):
    b = builder()
    healthy(b)
    b.exchange("r101", 3.5, [("p-eu", "error"), ("f-eu", "ok")])
    b.exchange("r102", 40, [("f-eu", "ok")])
    res = judge(b, "steady_state")
    assert res.verdict is Verdict.FAIL
    v = violation(res, "route chat fell back from p-eu to f-eu outside any fault window")
    assert v.request_ids == ["r101", "r102"] and v.observed["count"] == 2
    assert v.observed["first_at_s"] == pytest.approx(3.52)


def test_steady_state_unknown(builder):
    b = builder()
    b.fault(FAULT, 0.5, 20, ["p-eu"])
    b.exchange("r001", 1, [("p-eu", "error"), ("f-eu", "ok")])
    assert judge(b, "steady_state").verdict is Verdict.UNKNOWN


# --- attempt_budget ------------------------------------------------------------------------------

def test_attempt_budget_fail(builder):
    b = builder()
    healthy(b)
    b.exchange("r101", 13, [("p-eu", "error")] * 4 + [("f-eu", "ok")])
    res = judge(b, "attempt_budget")
    assert res.verdict is Verdict.FAIL
    v = violation(res, "requests on route chat made more than 3 upstream attempts")
    assert v.request_ids == ["r101"] and v.observed["max_attempts"] == 5
    assert res.stats["max_attempts"] == 5 and res.stats["attempts_histogram"]["5"] == 1
    assert res.stats["primary_calls_in_windows"]["max"] == 4


def test_attempt_budget_unknown(builder):
    b = builder()
    b.exchange("r001", 1, [], status=503)
    assert judge(b, "attempt_budget").verdict is Verdict.UNKNOWN


# --- response_integrity --------------------------------------------------------------------------

def test_response_integrity_fail(builder):
    b = builder()
    healthy(b)
    b.exchange("r101", 13, [("p-eu", "error"), ("f-eu", "ok")], stream=True, stream_complete=False)
    b.exchange("r102", 14, [("p-eu", "error")], status=200)
    b.exchange("r103", 15, [("p-eu", "ok")], body_valid=False)
    # The gateway signalled the cut: not a success passed off as one.
    b.exchange("r104", 16, [("p-eu", "ok")], stream=True, status=200, outcome="transport_error",
               stream_complete=False)
    res = judge(b, "response_integrity")
    assert res.verdict is Verdict.FAIL
    assert violation(res, "a cut stream on route chat was passed off as a clean 200").request_ids == ["r101"]
    assert violation(res, "success with no provider answering").request_ids == ["r102"]
    assert violation(res, "a 200 on route chat carried an invalid body").request_ids == ["r103"]
    assert len(res.violations) == 3


def test_response_integrity_a_refusal_said_as_an_answer_is_a_provider_answering(builder):
    # Anthropic / Gemini / Bedrock refuse with HTTP 200: passed on as a 200, it is no success from nowhere.
    b = builder()
    healthy(b)
    b.request("r101", 13, status=200, body_valid=True)
    b.upstream("r101", "p-eu", 13.01, outcome="content_policy", status=200)
    b.request("r102", 14, status=200, body_valid=True)
    b.upstream("r102", "p-eu", 14.01, outcome="content_policy", status=400)
    res = judge(b, "response_integrity")
    assert res.verdict is Verdict.FAIL  # a 400 refusal answered as a 200 still has no provider behind it
    assert violation(res, "success with no provider answering").request_ids == ["r102"]


def test_response_integrity_unknown(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "error")], status=503)
    assert judge(b, "response_integrity").verdict is Verdict.UNKNOWN


# --- fault_effective -----------------------------------------------------------------------------

def test_fault_effective_pass_and_stats(builder):
    b = builder()
    healthy(b)
    res = judge(b, "fault_effective")
    assert res.verdict is Verdict.PASS
    [window] = res.stats["windows"]
    assert window["hits"] == 2 and window["first_hit_s"] == pytest.approx(11.01)


def test_fault_effective_unknown_when_a_fault_missed(builder):
    b = builder()
    healthy(b)
    b.fault("fallback-slow", 30, 35, ["f-eu"])
    res = judge(b, "fault_effective")
    assert res.verdict is Verdict.UNKNOWN
    assert "fault fallback-slow never hit traffic" in res.summary
    assert not res.violations  # a fault that missed proves nothing; it breaches nothing


def test_fault_effective_unknown_without_faults(builder):
    b = builder()
    b.exchange("r001", 1, [("p-eu", "ok")])
    res = judge(b, "fault_effective")
    assert res.verdict is Verdict.UNKNOWN and "no fault was injected" in res.summary


# --- scale ---------------------------------------------------------------------------------------

def test_twenty_thousand_requests_group_and_memoize(builder):
    """One violation group for 10,000 identical breaches, ids capped and sorted, one DeepDiff."""
    b = builder()
    b.fault(FAULT, 0, 1000, ["p-eu"])
    for i in range(20_000):
        rid = f"r{i:06d}"
        at = i * 0.04
        if i % 2:
            b.exchange(rid, at, [("p-eu", "ok")])
        else:
            b.exchange(rid, at, [{"provider": "p-eu", "outcome": "error", "fault": FAULT},
                                 {"provider": "f-eu", "outcome": "ok", "tools": ["shell"]}])
    b.run_end(at=1000)
    results = {r.check: r for r in run_checks(b.scenario, b.history())}
    tb = results["trust_boundary"]
    assert tb.verdict is Verdict.FAIL
    [v] = tb.violations
    assert v.observed["count"] == 10_000
    assert v.request_ids == [f"r{i:06d}" for i in range(0, 40, 2)]
    assert tb.stats["envelope_diffs_computed"] == 1 and tb.stats["distinct_differing_envelopes"] == 1
    assert results["approved_targets"].verdict is Verdict.PASS
    assert results["approved_targets"].stats["fallback_calls"] == 10_000
    assert results["fault_effective"].stats["hits"] == 10_000


# --- one implementation, every entry point ---------------------------------------------------------

def test_each_registered_check_gives_what_run_checks_gives(builder):
    b = builder()
    healthy(b)
    b.exchange("r101", 13, [("p-eu", "error"), ("rogue", "ok")], tenant="globex")
    b.run_end()
    history = b.history()
    together = {r.check: r for r in run_checks(b.scenario, history, list(checks()))}
    for name in checks():
        [alone] = run_checks(b.scenario, history, [name])
        assert alone.to_dict() == together[name].to_dict(), name


def test_groups_merge_and_count_beyond_their_ids():
    first, later = Groups(), Groups()
    first.add("a", "r2", "alpha")
    later.add("b", "r1", "beta")
    later.add("b", "r3", "beta")
    later.add_count("b", 5)  # occurrences whose ids the group no longer keeps
    merged = first.merged(later)
    assert len(merged) == 2 and merged.total == 8
    assert [(v.message, v.observed["count"], v.request_ids) for v in merged.violations()] == [
        ("beta", 7, ["r1", "r3"]), ("alpha", 1, ["r2"])]

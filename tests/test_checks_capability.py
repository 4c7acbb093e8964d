"""capability_fit, equivalence and vendor_fallback on ledgers written as real runs write them, the drift
detector they rely on, and the applicability hook that keeps them out of scenarios they cannot judge.

Answers are built with the traffic driver's own `answer_record` (shape, schema_ok, digest, region
headers), so the checks read exactly what a run records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.checks import accumulators, judge_results, run_checks
from harness.core.capabilities import needs_of_entry, request_kind
from harness.core.drift import detect
from harness.core.model import MixEntry, Scenario
from harness.core.registry import check_names, describe
from harness.core.verdict import CheckResult, Verdict
from harness.ledger import load_history
from harness.ledger.feed import feed_ledger
from harness.scenario import load_scenario, scenario_from_dict
from harness.traffic.answers import AnswerParts, answer_record
from tests.conftest import ROOT
from tests.ledger_builder import LedgerBuilder

NEW_CHECKS = ("capability_fit", "equivalence", "vendor_fallback")
# The checks `checks: all` ran before issue 10, in report order: what every existing scenario still runs.
OLD_CHECKS = ["approved_targets", "trust_boundary", "fail_closed", "trigger_conditions", "logged", "reversible",
              "steady_state", "attempt_budget", "response_integrity", "fault_effective"]
SCHEMA = {"type": "object", "properties": {"total": {"type": "number"}, "currency": {"type": "string"}},
          "required": ["total", "currency"]}
ATTRS = {"route": "chat", "tenant": "acme", "region": "eu", "data_class": "internal"}
# Mix entries, one per request kind (the request class does not make a kind: invoice and triage share one).
INVOICE = {**ATTRS, "request_class": "invoice",
           "response_format": {"type": "json_schema", "name": "invoice", "schema": SCHEMA}}
TRIAGE = {**INVOICE, "request_class": "triage"}
LONG = {**ATTRS, "request_class": "chat", "input_tokens": 9000}
AGENT = {**ATTRS, "request_class": "agent", "tools": ["search"], "tool_choice": "required"}
NAMED = {**AGENT, "tool_choice": "search"}
SEEDED = {**ATTRS, "request_class": "chat", "seed": 7}
PLAIN = {**ATTRS, "request_class": "chat"}
FAULT = "primary-down"
KEY = "${K:-sk-test}"


def scenario_data(*, small: dict[str, Any] | None = None, route: dict[str, Any] | None = None,
                  providers: dict[str, Any] | None = None, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """An EU primary, an equivalent second deployment and a small model that lacks most capabilities."""
    small_target = {"target": "small-eu", "equivalence": "non-equivalent", "approved_by": "cab",
                    "approval_ref": "CAB-3", "degrades": ["structured_output"], "degradation_accepted_by": ["triage"],
                    **(small or {})}
    return {
        "version": 1, "name": "capability-test",
        "identities": {"svc-gw": {"key": KEY}},
        "providers": {
            "p-eu": {"model": "m-large", "region": "eu", "identity": "svc-gw", "data_classes": ["internal", "pii"],
                     "tools": ["search", "shell"], "capabilities": {"context_tokens": 128000},
                     "profile": {"system_fingerprint": "fp_p", "region_header": "x-region"}},
            "f-eu": {"model": "m-large-b", "region": "eu", "identity": "svc-gw", "data_classes": ["internal", "pii"],
                     "tools": ["search"], "capabilities": {"context_tokens": 128000}},
            "small-eu": {"model": "m-small", "region": "eu", "identity": "svc-gw", "data_classes": ["internal"],
                         "capabilities": {"context_tokens": 8000, "max_output_tokens": 256, "structured_output": False,
                                          "tools": False, "deterministic_seed": False},
                         "profile": {"system_fingerprint": "fp_s", "region_header": "x-region"}},
            **(providers or {}),
        },
        "gateway": {"kind": "reference"},
        "policy": {"routes": {"chat": {"primary": "p-eu", "fallbacks": [
            {"target": "f-eu", "equivalence": "equivalent", "approved_by": "cab", "approval_ref": "CAB-1"},
            small_target], **(route or {})}}, **(policy or {})},
        "traffic": {"rate_per_s": 10, "duration_s": 60, "mix": [PLAIN, INVOICE, TRIAGE, LONG, AGENT, NAMED, SEEDED]},
    }


def scenario(**changes: Any) -> Scenario:
    """The scenario as a run loads it: the load-time rules too (a scenario no run could have is no test)."""
    return scenario_from_dict(scenario_data(**changes), "test")


def answer(entry: dict[str, Any] | None, *, model: str, text: str | None = None, calls: tuple[str, ...] = (),
           finish: str = "stop", fingerprint: str | None = None, headers: dict[str, str] | None = None
           ) -> dict[str, Any]:
    """The request event's `answer`, built by the driver's own code from what came back."""
    parts = AnswerParts()
    parts.model, parts.system_fingerprint, parts.text = model, fingerprint, text
    parts.tool_calls, parts.finish_reason = list(calls), finish
    mix = MixEntry.model_validate(entry) if entry else None
    needs = needs_of_entry(mix) if mix is not None and request_kind(mix) else None
    return answer_record(parts, headers or {}, needs)


def primary_answer(entry: dict[str, Any] | None) -> dict[str, Any]:
    """What p-eu answers, as the mock does: JSON valid against the schema when asked, else text."""
    text = '{"total": 12.5, "currency": "EUR"}' if entry and "response_format" in entry else "an answer"
    return answer(entry, model="m-large", text=text, fingerprint="fp_p", headers={"x-region": "eu"})


class Ledger(LedgerBuilder):
    """LedgerBuilder plus what issue 10 adds: `kind` and `answer` on requests, `vendor_reroute` on calls."""

    def __init__(self, path: Path, s: Scenario) -> None:
        super().__init__(path, s)
        self._extra: dict[str, dict[str, Any]] = {}
        self.run_start()

    def append(self, event: dict[str, Any]) -> None:
        extra = self._extra.pop(event["type"], None)
        super().append({**event, **extra} if extra else event)

    def upstream(self, rid: str | None, provider: str, at: float, *, vendor_reroute: str | None = None,
                 **kwargs: Any) -> None:
        if vendor_reroute is not None:
            self._extra["upstream"] = {"vendor_reroute": vendor_reroute}
        super().upstream(rid, provider, at, **kwargs)

    def ask(self, rid: str, at: float, entry: dict[str, Any] | None, calls: list[Any],
            got: dict[str, Any] | None = None, **request: Any) -> None:
        """One request of mix entry `entry` (its kind and attributes) with its calls and its answer."""
        extra: dict[str, Any] = {}
        kind = request_kind(MixEntry.model_validate(entry)) if entry else None
        if kind is not None:
            extra["kind"] = kind
        if got is not None:
            extra["answer"] = got
        attrs = {k: v for k, v in (entry or {}).items() if k in ("tenant", "region", "request_class", "data_class")}
        attrs["tools"] = list((entry or {}).get("tools", []))
        self._extra["request"] = extra
        self.exchange(rid, at, calls, **{**attrs, **request})

    def steady(self, entry: dict[str, Any], first: int = 0, n: int = 3) -> None:
        """Primary-served answers of the entry's kind: the reference a fallback's answer is compared with."""
        for i in range(first, first + n):
            self.ask(f"p{i:03d}-{entry['request_class']}", 1 + i * 0.1, entry, [("p-eu", "ok")], primary_answer(entry))


DOWN = {"provider": "p-eu", "outcome": "error", "status": 503, "fault": FAULT}


def judge(b: Ledger, name: str, s: Scenario | None = None) -> CheckResult:
    b.fault(FAULT, 10, 30, ["p-eu"])
    b.run_end()
    [res] = run_checks(s or b.scenario, b.history(), [name])
    return res


def only(res: CheckResult, fragment: str) -> Any:
    found = [v for v in res.violations if fragment in v.message]
    assert len(found) == 1, f"{fragment!r} in {[v.message for v in res.violations]}"
    return found[0]


@pytest.fixture
def ledger(tmp_path):
    made = iter(range(100))

    def make(s: Scenario | None = None) -> Ledger:
        return Ledger(tmp_path / f"ledger-{next(made)}.jsonl", s or scenario())
    return make


# --- capability_fit ------------------------------------------------------------------------------

def test_capability_fit_passes_fallbacks_to_targets_that_serve_them(ledger):
    b = ledger()
    b.ask("r1", 11, INVOICE, [DOWN, ("f-eu", "ok")])
    b.ask("r2", 12, LONG, [DOWN, ("f-eu", "ok")])
    b.ask("r3", 13, PLAIN, [DOWN, ("small-eu", "ok")])  # a plain request needs nothing special
    res = judge(b, "capability_fit")
    assert res.verdict is Verdict.PASS, res.summary
    assert res.summary == ("all 2 fallback calls with requirements went to targets able to serve them "
                           "(3 fallback calls in all)")
    assert res.stats["calls_with_requirements"] == 2 and res.stats["unfit_calls"] == 0


def test_capability_fit_names_what_a_target_cannot_serve(ledger):
    b = ledger()
    b.ask("r1", 11, LONG, [DOWN, {"provider": "small-eu", "outcome": "context_length", "status": 400}],
          status=502)
    b.ask("r2", 12, LONG, [DOWN, {"provider": "small-eu", "outcome": "context_length", "status": 400}],
          status=502)
    b.ask("r3", 13, AGENT, [DOWN, ("small-eu", "ok")])
    b.ask("r4", 14, INVOICE, [DOWN, ("small-eu", "ok")])  # invoice does not accept the lost structured output
    res = judge(b, "capability_fit")
    assert res.verdict is Verdict.FAIL
    assert res.summary == "4 fallback calls to targets unable to serve the request: 3 violations (4 occurrences)"
    context = only(res, "context: needs 9,000 tokens, small-eu has 8k")
    assert context.request_ids == ["r1", "r2"] and context.observed["count"] == 2
    assert context.message.startswith("fallback to small-eu on route chat cannot serve requests of kind "
                                      "input_tokens=9000")
    tools = only(res, "tools: offers search with tool_choice required, small-eu has no tool calling")
    assert tools.request_ids == ["r3"] and tools.observed["unmet"] == ["tools"]
    assert only(res, "structured_output: asks response_format json_schema").request_ids == ["r4"]
    assert res.stats["unmet_by_aspect"] == {"context": 2, "structured_output": 1, "tools": 1}


def test_capability_fit_accepts_a_declared_degradation_for_the_classes_that_accept_it(ledger):
    s = scenario(small={"degrades": ["context", "structured_output"], "degradation_accepted_by": ["triage"]})
    b = ledger(s)
    b.ask("r1", 11, TRIAGE, [DOWN, ("small-eu", "ok")])
    res = judge(b, "capability_fit")
    assert res.verdict is Verdict.PASS, res.violations
    assert res.stats["accepted_degraded_calls"] == 1 and res.stats["accepted_by_aspect"] == {"structured_output": 1}
    assert "1 of them knowingly degraded" in res.summary

    # A prompt over the window is refused, not degraded: declaring `context` accepts smaller windows for the
    # requests that fit, never a call that cannot be served at all.
    b = ledger(s)
    b.ask("r2", 11, {**LONG, "request_class": "triage"}, [DOWN, ("small-eu", "context_length", 400)], status=502)
    assert "context: needs 9,000 tokens" in judge(b, "capability_fit").violations[0].message


def test_a_context_refusal_falls_back_only_where_the_policy_says_so(ledger):
    refused = {"provider": "p-eu", "outcome": "context_length", "status": 400}
    b = ledger()
    b.ask("r1", 11, LONG, [refused, ("f-eu", "ok")])
    b.ask("r2", 12, LONG, [refused], status=400)  # refused and not rerouted: right
    res = judge(b, "capability_fit")
    assert res.verdict is Verdict.FAIL
    v = only(res, "fell back after p-eu refused a prompt over its context window")
    assert v.request_ids == ["r1"] and "context_length is not in fallback_on" in v.message
    assert res.summary == "1 fallback after a context refusal: 1 violation (1 occurrence)"
    assert res.stats["fallbacks_after_context_refusal"] == 1

    allowed = scenario(policy={"fallback_on": [503, "context_length"]})
    b = ledger(allowed)
    b.ask("r1", 11, LONG, [refused, ("f-eu", "ok")])
    assert judge(b, "capability_fit").verdict is Verdict.PASS


def test_a_vendor_reroute_is_judged_against_the_provider_it_went_to(ledger):
    s = scenario(providers={"p-eu": {**scenario_data()["providers"]["p-eu"], "vendor_fallback": {"to": "small-eu"}}})
    b = ledger(s)
    b.ask("r1", 11, INVOICE, [{"provider": "p-eu", "outcome": "ok", "fault": FAULT, "vendor_reroute": "small-eu"}])
    b.ask("r2", 12, INVOICE, [("p-eu", "ok")])
    res = judge(b, "capability_fit")
    v = only(res, "vendor reroute of p-eu to small-eu on route chat cannot serve")
    assert v.request_ids == ["r1"] and v.observed["vendor_reroute_of"] == "p-eu"
    assert res.stats["vendor_rerouted_calls"] == 1 and res.stats["fallback_calls"] == 1


def test_capability_fit_is_unknown_without_a_fallback_that_asked_for_anything(ledger):
    b = ledger()
    b.ask("r1", 1, INVOICE, [("p-eu", "ok")])
    res = judge(b, "capability_fit")
    assert res.verdict is Verdict.UNKNOWN and res.summary == "no fallback call was made: no capability to judge"
    b = ledger()
    b.ask("r1", 11, PLAIN, [DOWN, ("small-eu", "ok")])
    res = judge(b, "capability_fit")
    assert res.verdict is Verdict.UNKNOWN and "no fallback call carried requirements" in res.summary


# --- equivalence ---------------------------------------------------------------------------------

def test_equivalence_passes_answers_with_the_primarys_shape(ledger):
    b = ledger()
    b.steady(INVOICE)
    b.ask("r1", 11, INVOICE, [DOWN, ("f-eu", "ok")],
          answer(INVOICE, model="m-large-b", text='{"total": 3, "currency": "USD"}'))
    b.ask("r2", 12, PLAIN, [DOWN, ("f-eu", "ok")], answer(None, model="m-large-b", text="hello"))
    b.ask("r3", 13, PLAIN, [("p-eu", "ok")], primary_answer(None))
    res = judge(b, "equivalence")
    assert res.verdict is Verdict.PASS, res.violations
    assert res.summary == ("all 2 fallback-served answers kept the primary's response contract "
                           "(2 with the primary's shape)")
    assert res.stats["primary_answers"] == 4 and res.stats["shape_diffs_computed"] == 0


def _lost_json(b: Ledger) -> None:
    """Triage and invoice JSON requests answered in text by small-eu during the outage."""
    b.steady(INVOICE)
    for i, entry in enumerate((TRIAGE, TRIAGE, INVOICE)):
        b.ask(f"r{i}", 11 + i, entry, [DOWN, ("small-eu", "ok")], answer(entry, model="m-small", text="total 3 EUR"))


def test_an_equivalent_target_that_lost_structured_output_fails_with_the_shape_diff(ledger):
    b = ledger(scenario(small={"equivalence": "equivalent", "degrades": [], "degradation_accepted_by": []}))
    _lost_json(b)
    res = judge(b, "equivalence")
    assert res.verdict is Verdict.FAIL
    [v] = res.violations
    assert v.message.startswith("fallback small-eu on route chat is declared equivalent but broke the primary's "
                                "response contract for requests of kind response_format=json_schema:invoice:")
    assert "shape differs from the primary's (content json -> text, json removed)" in v.message
    assert "answer not valid against the requested schema" in v.message
    assert v.request_ids == ["r0", "r1", "r2"] and v.observed["aspects"] == ["structured_output"]
    # The DeepDiff of the primary's response shape against the fallback's, as JSON.
    assert v.diff["values_changed"] == {"root['content']": {"new_value": "text", "old_value": "json"}}
    assert v.diff["dictionary_item_removed"] == ["root['json']"]
    assert res.stats["shape_diffs_computed"] == 1


def test_the_same_loss_declared_for_an_accepting_class_passes(ledger):
    b = ledger()  # small-eu: non-equivalent, degrades [structured_output], accepted by triage
    b.steady(INVOICE)
    for i in range(2):
        b.ask(f"r{i}", 11 + i, TRIAGE, [DOWN, ("small-eu", "ok")], answer(TRIAGE, model="m-small", text="3 EUR"))
    res = judge(b, "equivalence")
    assert res.verdict is Verdict.PASS, res.violations
    assert res.stats["accepted_degraded_answers"] == 2 and res.stats["accepted_by_aspect"] == {"structured_output": 2}
    assert "2 knowingly degraded for classes that accept it" in res.summary


def test_a_degraded_answer_to_a_class_that_did_not_accept_it_fails(ledger):
    b = ledger()
    _lost_json(b)
    res = judge(b, "equivalence")
    [v] = res.violations  # the two triage answers are accepted; the invoice one is not
    assert v.message.startswith("degraded answer to a class that did not accept it: fallback small-eu on route "
                                "chat degraded structured_output for request class invoice")
    assert "accepted by: triage" in v.message and v.request_ids == ["r2"]
    assert v.diff["values_changed"]["root['content']"] == {"new_value": "text", "old_value": "json"}
    assert res.stats["accepted_degraded_answers"] == 2


def test_a_degradation_the_approval_does_not_name_fails_even_for_an_accepting_class(ledger):
    b = ledger(scenario(small={"degrades": ["context"]}))
    for i in range(2):
        b.ask(f"r{i}", 11 + i, TRIAGE, [DOWN, ("small-eu", "ok")], answer(TRIAGE, model="m-small", text="3 EUR"))
    b.steady(INVOICE)
    res = judge(b, "equivalence")
    v = only(res, "degraded structured_output for requests of kind")
    assert "which its approval does not name (degrades: context)" in v.message and v.request_ids == ["r0", "r1"]


def test_a_cut_answer_where_the_primary_finished_is_a_lost_output_budget(ledger):
    b = ledger()
    b.steady(PLAIN)
    b.ask("r1", 11, PLAIN, [DOWN, ("f-eu", "ok")], answer(None, model="m-large-b", text="an ans", finish="length"))
    res = judge(b, "equivalence")
    v = only(res, "finish_reason stop -> length")
    assert v.observed["aspects"] == ["output_budget"] and "declared equivalent" in v.message
    assert v.message.endswith("for plain requests: shape differs from the primary's (finish_reason stop -> length)")


def test_tool_calls_keep_to_the_offered_tools_and_to_tool_choice(ledger):
    both = {**AGENT, "tools": ["search", "shell"]}
    b = ledger()
    for i in range(3):  # the primary calls the tool it is offered
        b.ask(f"p{i}", 2 + i, AGENT, [("p-eu", "ok")], answer(AGENT, model="m-large", calls=("search",),
                                                             finish="tool_calls", fingerprint="fp_p"))
    b.ask("r1", 11, AGENT, [DOWN, ("f-eu", "ok")], answer(AGENT, model="m-large-b", text="I would search"))
    b.ask("r2", 12, AGENT, [DOWN, ("f-eu", "ok")], answer(AGENT, model="m-large-b", calls=("shell",),
                                                          finish="tool_calls"))
    b.ask("r3", 13, both, [DOWN, ("f-eu", "ok")], answer(both, model="m-large-b", calls=("shell",),
                                                         finish="tool_calls"))
    b.ask("r4", 14, NAMED, [DOWN, ("f-eu", "ok")], answer(NAMED, model="m-large-b", text="no tool"))
    res = judge(b, "equivalence")
    assert only(res, "no call of search though tool_choice names it").request_ids == ["r4"]
    assert "no tool call though tool_choice is required" in only(res, "no tool call").message
    assert only(res, "no tool call").request_ids == ["r1"]
    outside = only(res, "tool calls outside the offered tools: shell")
    assert outside.request_ids == ["r2"] and "tool calls outside f-eu's tools: shell" in outside.message
    # Offered by the client, but f-eu may be offered only search: still outside what it may call.
    beyond = [v for v in res.violations if "outside f-eu's tools: shell" in v.message and v is not outside]
    assert [v.request_ids for v in beyond] == [["r3"]]
    assert all(v.observed["aspects"] == ["tools"] for v in res.violations)


def test_a_seed_answered_two_ways_by_one_target_is_non_deterministic(ledger):
    s = scenario(small={"degrades": ["determinism"], "degradation_accepted_by": ["triage"]})
    b = ledger(s)
    b.steady(SEEDED)
    for i, text in enumerate(("seeded answer 7 from m-small #1", "seeded answer 7 from m-small #2",
                              "seeded answer 7 from m-small #1")):
        b.ask(f"r{i}", 11 + i, SEEDED, [DOWN, ("small-eu", "ok")], answer(SEEDED, model="m-small", text=text))
    for i in range(2):  # f-eu gives one answer per seed: deterministic, though not the primary's
        b.ask(f"q{i}", 14 + i, SEEDED, [DOWN, ("f-eu", "ok")], answer(SEEDED, model="m-large-b", text="seeded 7"))
    res = judge(b, "equivalence")
    v = only(res, "different answers to the same seed from small-eu")
    assert v.message.startswith("degraded answer to a class that did not accept it: fallback small-eu")
    assert v.request_ids == ["r0", "r1"] and v.observed["count"] == 2 and v.observed["aspects"] == ["determinism"]
    assert not [x for x in res.violations if "f-eu" in x.message]


def test_equivalence_is_unknown_without_a_fallback_answer_or_anything_to_compare_it_with(ledger):
    b = ledger()
    b.steady(INVOICE)
    res = judge(b, "equivalence")
    assert res.verdict is Verdict.UNKNOWN
    assert res.summary == "no fallback served a readable successful answer: no response to compare"
    b = ledger()  # the outage came before the primary ever answered a plain request
    b.ask("r1", 11, PLAIN, [DOWN, ("f-eu", "ok")], answer(None, model="m-large-b", text="hello"))
    res = judge(b, "equivalence")
    assert res.verdict is Verdict.UNKNOWN and "no primary answer of the same route and kind" in res.summary
    assert res.stats["without_primary_reference"] == 1


def test_a_reference_that_comes_after_the_outage_still_counts(ledger):
    b = ledger(scenario(small={"equivalence": "equivalent", "degrades": [], "degradation_accepted_by": []}))
    b.ask("r1", 11, INVOICE, [DOWN, ("small-eu", "ok")], answer(INVOICE, model="m-small", text="3 EUR"))
    b.steady(INVOICE, first=400)  # at 41 s and later
    res = judge(b, "equivalence")
    assert only(res, "declared equivalent").request_ids == ["r1"]


def test_one_diff_per_distinct_pair_however_many_answers_share_it(ledger):
    b = ledger(scenario(small={"equivalence": "equivalent", "degrades": [], "degradation_accepted_by": []}))
    b.steady(INVOICE)
    for i in range(30):
        b.ask(f"r{i:03d}", 10 + i * 0.5, INVOICE, [DOWN, ("small-eu", "ok")],
              answer(INVOICE, model="m-small", text=f"total {i}"))
    res = judge(b, "equivalence")
    [v] = res.violations
    assert v.observed["count"] == 30 and v.request_ids == [f"r{i:03d}" for i in range(20)]
    assert res.stats["shape_diffs_computed"] == 1 and res.stats["distinct_answer_buckets"] == 1


def test_a_vendor_rerouted_answer_is_a_fallback_served_one(ledger):
    s = scenario(providers={"p-eu": {**scenario_data()["providers"]["p-eu"], "vendor_fallback": {"to": "small-eu"}}})
    b = ledger(s)
    b.steady(INVOICE)
    b.ask("r1", 11, INVOICE, [{"provider": "p-eu", "outcome": "ok", "fault": FAULT, "vendor_reroute": "small-eu"}],
          answer(INVOICE, model="m-small", text="3 EUR", fingerprint="fp_s"))
    res = judge(b, "equivalence")
    v = only(res, "p-eu rerouted by its vendor to small-eu on route chat degraded structured_output")
    assert v.observed["vendor_reroute_of"] == "p-eu" and res.stats["primary_answers"] == 3


# --- vendor_fallback and the drift detector ------------------------------------------------------

def vendor_scenario(to: str = "f-eu", route: dict[str, Any] | None = None, **provider: Any) -> Scenario:
    """p-eu's vendor answers as `to` under a fault; f-eu declares its own profile, f-us sits in another region."""
    data = scenario_data(route=route)
    providers = data["providers"]
    providers["p-eu"]["vendor_fallback"] = {"to": to}
    providers["f-eu"]["profile"] = {"system_fingerprint": "fp_f", "region_header": "x-region"}
    providers["f-us"] = {"model": "m-large-us", "region": "us", "identity": "svc-gw", "data_classes": ["internal"],
                         "profile": {"system_fingerprint": "fp_u", "region_header": "x-region"}}
    providers["rogue"] = {"model": "m-cheap", "region": "eu", "identity": "svc-gw", "data_classes": ["internal"]}
    providers[to].update(provider)
    data["policy"]["routes"]["chat"]["fallbacks"].append(
        {"target": "f-us", "equivalence": "equivalent", "approved_by": "cab", "approval_ref": "CAB-4"})
    return scenario_from_dict(data, "test")


def rerouted(b: Ledger, rid: str, at: float, to: str, got: dict[str, Any] | None, **request: Any) -> None:
    b.ask(rid, at, PLAIN, [{"provider": "p-eu", "outcome": "ok", "fault": FAULT, "vendor_reroute": to}], got,
          claimed_target="p-eu", **request)


def as_provider(s: Scenario, name: str) -> dict[str, Any]:
    """The answer the mock gives as provider `name`: its profile's model, fingerprint and region header."""
    p = s.providers[name]
    headers = {p.profile.region_header: p.region} if p.profile.region_header else {}
    return answer(None, model=p.profile.model or p.model, text="hi", fingerprint=p.profile.system_fingerprint,
                  headers=headers)


def test_drift_detector_names_who_really_answered():
    s = vendor_scenario()
    providers = s.providers
    assert detect(as_provider(s, "p-eu"), "p-eu", providers) is None
    drift = detect(as_provider(s, "f-us"), "p-eu", providers)
    assert drift is not None and drift.matches == ("f-us",)
    assert drift.describe() == "answered as f-us: model m-large-us, fingerprint fp_u, x-region us"
    assert [m[0] for m in drift.mismatches] == ["model", "fingerprint", "region"]
    # A gateway relays the region header under its own name; a field the answer lacks is no evidence.
    relayed = answer(None, model="m-large", text="hi", headers={"llm_provider-x-region": "us"})
    assert detect(relayed, "p-eu", providers).mismatches == (("region", "us", "eu"),)  # type: ignore[union-attr]
    assert detect(answer(None, model="m-large", text="hi"), "p-eu", providers) is None
    unknown = detect(answer(None, model="m-other", text="hi"), "p-eu", providers)
    assert unknown is not None and unknown.describe() == "answered as no declared provider: model m-other"
    assert detect(as_provider(s, "f-us"), "nobody", providers) is None


def test_vendor_fallback_passes_a_reroute_caught_approved_and_inside_the_boundary(ledger):
    s = vendor_scenario()
    b = ledger(s)
    b.ask("p1", 1, PLAIN, [("p-eu", "ok")], as_provider(s, "p-eu"), claimed_target="p-eu")
    rerouted(b, "r1", 11, "f-eu", as_provider(s, "f-eu"))
    rerouted(b, "r2", 12, "f-eu", as_provider(s, "f-eu"))
    res = judge(b, "vendor_fallback")
    assert res.verdict is Verdict.PASS, res.violations
    assert res.summary == ("all 2 vendor reroutes that answered a client were caught from the answer alone, to "
                           "approved targets inside the trust boundary")
    assert res.stats["caught_by_drift"] == 2 and res.stats["drift_without_vendor_reroute"] == 0
    assert res.stats["vendor_reroutes_by_target"] == {"f-eu": 2}


def test_a_reroute_whose_answers_look_like_the_primarys_went_unseen(ledger):
    s = vendor_scenario(to="rogue", model="m-large")  # same model name, no fingerprint: indistinguishable
    b = ledger(s)
    rerouted(b, "r1", 11, "rogue", as_provider(s, "rogue"))
    res = judge(b, "vendor_fallback")
    v = only(res, "went unseen")
    assert v.message.startswith("vendor reroute of p-eu to rogue on route chat went unseen: its answers match what "
                                "p-eu declares (model m-large)")
    assert v.request_ids == ["r1"]
    assert only(res, "is not an approved target of route chat").request_ids == ["r1"]


def test_a_reroute_out_of_the_region_or_the_data_class_breaks_the_boundary(ledger):
    s = vendor_scenario(to="f-us")
    b = ledger(s)
    rerouted(b, "r1", 11, "f-us", as_provider(s, "f-us"))
    rerouted(b, "r2", 12, "f-us", as_provider(s, "f-us"), data_class="pii")
    res = judge(b, "vendor_fallback")
    assert only(res, "left region eu for us").request_ids == ["r1", "r2"]
    assert only(res, "is not cleared for data class pii").request_ids == ["r2"]
    assert res.stats["caught_by_drift"] == 2  # caught, yet out of bounds


def test_a_reroute_to_an_unapproved_target_fails_with_the_approval_rule(ledger):
    s = vendor_scenario(route={"tenants": ["acme"]})  # fallback on route chat: only for tenant acme
    b = ledger(s)
    rerouted(b, "r1", 11, "f-eu", as_provider(s, "f-eu"), tenant="globex")
    rerouted(b, "r2", 12, "f-eu", as_provider(s, "f-eu"))
    res = judge(b, "vendor_fallback")
    [v] = res.violations
    assert v.message == ("vendor reroute of p-eu to f-eu on route chat: fallback to f-eu on route chat is not approved "
                         "for tenant globex (route chat allows fallback only for tenants: acme)")
    assert v.request_ids == ["r1"]


def test_vendor_fallback_is_unknown_without_a_reroute_and_counts_drift_in_the_stats(ledger):
    s = vendor_scenario()
    b = ledger(s)
    b.ask("p1", 1, PLAIN, [("p-eu", "ok")], as_provider(s, "p-eu"), claimed_target="p-eu")
    # The gateway claims the primary, but f-eu answered (no vendor reroute in ground truth).
    b.ask("r1", 11, PLAIN, [DOWN, ("f-eu", "ok")], as_provider(s, "f-eu"), claimed_target="p-eu")
    res = judge(b, "vendor_fallback")
    assert res.verdict is Verdict.UNKNOWN
    assert res.summary == "no vendor reroute happened: nothing to judge (drift on 1 answer without one in ground truth)"
    assert res.stats["drift_examples"] == {"p-eu claimed, answered as f-eu: model m-large-b, fingerprint fp_f, "
                                           "x-region eu": 1}
    b = ledger(s)
    rerouted(b, "r1", 11, "f-eu", None, status=502)
    res = judge(b, "vendor_fallback")
    assert res.verdict is Verdict.UNKNOWN and "no client got an answer from one" in res.summary


# --- applicability, streaming ---------------------------------------------------------------------

def _declares_issue_10(raw: dict[str, Any]) -> bool:
    """Read from the YAML itself, not through the model: any capability, profile, vendor fallback,
    requirement or degradation."""
    providers = (raw.get("providers") or {}).values()
    mix = (raw.get("traffic") or {}).get("mix") or []
    routes = ((raw.get("policy") or {}).get("routes") or {}).values()
    requirements = {"input_tokens", "max_tokens", "response_format", "tool_choice", "seed", "modalities"}
    return (any({"capabilities", "profile", "vendor_fallback"} & set(p) for p in providers)
            or any(requirements & set(entry) for entry in mix)
            or any(t.get("degrades") for r in routes for t in r.get("fallbacks") or []))


def test_existing_scenarios_run_exactly_the_checks_they_ran_before():
    paths = sorted([*ROOT.glob("scenarios/*.yaml"), *ROOT.glob("scenarios/gateways/*.yaml"),
                    *ROOT.glob("fixtures/scenarios/*.yaml")])
    judged = 0
    for path in paths:
        raw = yaml.safe_load(path.read_text())
        if _declares_issue_10(raw):
            continue
        names = load_scenario(path, env={}).scenario.check_names()
        assert names == (OLD_CHECKS if raw.get("checks", "all") == "all" else raw["checks"]), path
        judged += 1
    assert judged >= 29  # the 29 scenarios shipped before issue 10: none may be skipped by mistake


def test_new_checks_apply_to_what_their_scenarios_declare():
    assert set(NEW_CHECKS) <= set(check_names())
    names = scenario().check_names()  # capabilities, requirements, degrades, and p-eu's response profile
    assert names == [*OLD_CHECKS[:2], "capability_fit", "equivalence", *OLD_CHECKS[2:4], "vendor_fallback",
                     *OLD_CHECKS[4:]]
    assert "vendor_fallback" in vendor_scenario().check_names()
    only_profile = scenario_data(providers={"small-eu": {"model": "m-small", "region": "eu", "identity": "svc-gw",
                                                         "data_classes": ["internal"]}})
    only_profile["traffic"]["mix"] = [PLAIN]
    only_profile["policy"]["routes"]["chat"]["fallbacks"].pop()
    only_profile["providers"]["f-eu"].pop("capabilities")
    only_profile["providers"]["p-eu"].pop("capabilities")
    assert scenario_from_dict(only_profile, "test").check_names() == [*OLD_CHECKS[:4], "vendor_fallback",
                                                                      *OLD_CHECKS[4:]]
    listed = scenario_from_dict({**only_profile, "checks": ["equivalence", "logged"]}, "test")
    assert listed.check_names() == ["equivalence", "logged"]  # named: it runs, applicable or not
    assert describe()["capability_fit"]["applies"].startswith("when a provider declares capabilities")
    assert describe()["logged"]["applies"] == "always"


def test_new_checks_stream_exactly_as_they_judge_in_memory(ledger):
    s = vendor_scenario()
    b = ledger(s)
    b.steady(INVOICE)
    _lost_json(b)
    b.ask("c1", 15, LONG, [DOWN, ("small-eu", "context_length", 400)], status=502)
    rerouted(b, "v1", 16, "f-eu", as_provider(s, "f-eu"))
    b.fault(FAULT, 10, 30, ["p-eu"])
    b.run_end()
    path = b.close()
    fed = feed_ledger(path, s, lambda run: accumulators(run, list(NEW_CHECKS)), in_memory=False)
    streamed = judge_results(fed.results, fed.totals.requests, fed.run_end)
    in_memory = run_checks(s, load_history(path), list(NEW_CHECKS))
    assert [r.to_dict() for r in streamed] == [r.to_dict() for r in in_memory]
    assert [r.verdict for r in in_memory] == [Verdict.FAIL, Verdict.FAIL, Verdict.PASS]


# --- drift behind the fault proxy and through gateways that rename ---------------------------------

def test_the_model_name_a_gateway_reports_as_the_route_is_no_evidence():
    s = vendor_scenario()
    # LiteLLM reports the model group (the route) when its primary served: that says nothing of who answered.
    aliased = answer(None, model="chat", text="hi", fingerprint="fp_p", headers={"x-region": "eu"})
    assert detect(aliased, "p-eu", s.providers, alias="chat") is None
    assert detect(aliased, "p-eu", s.providers) is not None
    # The alias hides only the name: a fingerprint of another provider still gives the answer away.
    other = answer(None, model="chat", text="hi", fingerprint="fp_u", headers={"x-region": "us"})
    assert detect(other, "p-eu", s.providers, alias="chat").matches == ("f-us",)  # type: ignore[union-attr]


def proxied_scenario(**primary: Any) -> Scenario:
    """p-eu is a real endpoint behind the fault proxy: its vendor's reroutes have no ground truth."""
    data = scenario_data()
    data["providers"]["p-eu"].update({"upstream": "http://127.0.0.1:18401", **primary})
    data["providers"]["f-eu"]["profile"] = {"system_fingerprint": "fp_f", "region_header": "x-region"}
    return scenario_from_dict(data, "test")


def test_drift_in_a_proxied_upstreams_answer_is_judged_as_an_observed_vendor_reroute(ledger):
    s = proxied_scenario()
    b = ledger(s)
    b.ask("p1", 1, PLAIN, [("p-eu", "ok")], as_provider(s, "p-eu"), claimed_target="p-eu")
    # The upstream answered 200 as f-eu would (an approved, same-region target): seen, approved, in bounds.
    b.ask("r1", 11, PLAIN, [("p-eu", "ok")], as_provider(s, "f-eu"), claimed_target="p-eu")
    res = judge(b, "vendor_fallback")
    assert res.verdict is Verdict.PASS, res.violations
    assert res.stats["observed_reroutes_behind_proxies"] == 1 and res.stats["vendor_reroutes_by_target"] == {"f-eu": 1}


def test_a_proxied_upstream_answering_as_no_declared_model_fails(ledger):
    s = proxied_scenario()
    b = ledger(s)
    b.ask("r1", 11, PLAIN, [("p-eu", "ok")], answer(None, model="m-mystery", text="hi", fingerprint="fp_x"),
          claimed_target="p-eu")
    b.ask("r2", 12, PLAIN, [("p-eu", "ok")], as_provider(s, "small-eu"), data_class="pii", claimed_target="p-eu")
    res = judge(b, "vendor_fallback")
    assert res.verdict is Verdict.FAIL
    v = only(res, "no provider of the scenario declares")
    assert v.message.startswith("the upstream of p-eu on route chat answered as no declared provider: model "
                                "m-mystery, fingerprint fp_x")
    assert v.request_ids == ["r1"]
    assert only(res, "is not cleared for data class pii").request_ids == ["r2"]


def test_steady_state_allows_a_fallback_on_a_context_refusal_only_where_the_policy_lists_it(ledger):
    refused = {"provider": "p-eu", "outcome": "context_length", "status": 400}
    for listed, expected in ((True, Verdict.PASS), (False, Verdict.FAIL)):
        causes = [429, 500, 502, 503, 504, "timeout", "connection_error"] + (["context_length"] if listed else [])
        b = ledger(scenario(policy={"fallback_on": causes}))
        b.ask("r1", 2, LONG, [refused, ("f-eu", "ok")])  # before the fault window: a healthy primary
        res = judge(b, "steady_state")
        assert res.verdict is expected, res.violations
        assert res.stats["fallbacks_after_declared_context_refusals"] == int(listed)

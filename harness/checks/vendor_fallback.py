"""vendor_fallback: a fallback made by the vendor itself, which the gateway never sees, is still caught
and still governed.

A vendor's own fallback (cross-region inference, a "global" deployment, a model alias) answers 200 from
another model while the gateway believes the primary served: nothing is logged, no fallback rule runs.
Ground truth marks each such call (`vendor_reroute` on the upstream event, harness.core.events). Each
must have been (a) visible to the client from the answer alone (harness.core.drift: model, fingerprint
or region header differ from what the claimed provider declares), (b) to an approved fallback target of
the request's route, for its tenant, region and class, and (c) inside the trust boundary: the primary's
region unless the target's trust exceptions allow another, and cleared for the request's data class.

A real upstream behind the fault proxy has no ground truth of its vendor's reroutes: there the answer is
all there is, as for any SaaS endpoint. Drift on an answer a proxied provider served is judged as an
observed vendor fallback: to the declared provider whose profile the answer matches (approved, inside the
trust boundary), or a violation when it matches none. Other drift with no vendor reroute in ground truth
(a gateway naming the wrong target) is counted in the stats: evidence for a reader, not a verdict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Any

from harness.checks.approved_targets import approval_problem, run_day
from harness.checks.capability_common import VENDOR_REROUTE, declares_vendor_behaviour, serving_call, vendor_providers
from harness.checks.common import Event, Groups, all_of, fallback_targets, is_2xx, plural, result, violation_clause
from harness.core.drift import Drift, answer_key, detect, said_of
from harness.core.frameworks import (
    ACCOUNTABILITY,
    ACCOUNTABLE,
    AGENTIC_SUPPLY_CHAIN,
    FOUNDATION_LAYER,
    LEAST_PRIVILEGE,
    MAESTRO,
    NIST,
    OWASP_AGENTIC,
    OWASP_LLM,
    OWASP_THREATS,
    SECURITY_LAYER,
    SUPPLY_CHAIN,
    TRACEABILITY,
    UNTRACEABLE,
)
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

NAME = "vendor_fallback"
UNDECLARED = "undeclared"
MAX_DRIFT_EXAMPLES = 20  # distinct drift descriptions kept for the stats
_UNSEEN = object()  # a drift memo miss (None is a memoized "no drift")


@check(
    name=NAME,
    description=("Every fallback the vendor made on its own was caught from the answer alone, went to an approved "
                 "target of the request's route and stayed inside the trust boundary (region, data-class clearance)."),
    evidences=(TRACEABILITY, ACCOUNTABILITY, LEAST_PRIVILEGE),
    severity="critical",
    frameworks={
        NIST: ("GOVERN function", "MEASURE function", "MANAGE function", ACCOUNTABLE),
        OWASP_LLM: (SUPPLY_CHAIN,),
        OWASP_AGENTIC: (AGENTIC_SUPPLY_CHAIN,),
        OWASP_THREATS: (UNTRACEABLE,),
        MAESTRO: (FOUNDATION_LAYER, SECURITY_LAYER),
    },
    order=45,
    applies=declares_vendor_behaviour,
)
class VendorFallback(Accumulator):
    # A vendor's reroute is an ok call to the primary, and drift is looked for on every answer: every record.
    records = "all"

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        scenario = self.scenario
        policy = scenario.policy
        self.providers = scenario.providers
        self.vendors = vendor_providers(scenario)
        self.proxied = frozenset(name for name, p in scenario.providers.items() if p.upstream is not None)
        self.observed = 0
        self.routes = policy.routes
        self.targets = fallback_targets(scenario)
        self.same = frozenset(policy.trust_boundary.same)
        self.check_clearance = policy.trust_boundary.data_class_clearance
        self.as_of, self.governed = run_day(frame), policy.registry is not None  # as approved_targets judges
        self.drifts: dict[tuple[str, Hashable], Drift | None] = {}
        self.approvals: dict[tuple[str, str, str, str, str], Any] = {}
        self.groups = Groups()
        self.answers = self.drifted = self.unexplained = 0
        self.reroutes = self.caught = self.without_answer = 0
        self.by_target: Counter[str] = Counter()
        self.drift_examples: Counter[str] = Counter()

    def plain(self, batch: list[Plain]) -> None:
        """The fast lane: an answer of the primary that does not drift is only counted; a vendor's reroute
        or a drifting answer is judged as `record` judges it."""
        providers, drifts = self.providers, self.drifts
        quiet = 0
        for request, call, _ in batch:
            if VENDOR_REROUTE not in call:
                answer = request.get("answer")
                if answer is None:
                    continue  # the driver records an answer only for a readable 2xx
                if not is_2xx(request):  # Record.success
                    continue
                route = request["route"]
                claimed = request.get("claimed_target")
                if claimed not in providers:
                    claimed = call["provider"]
                key = (claimed, route, answer_key(answer))
                drift = drifts.get(key, _UNSEEN)
                if drift is _UNSEEN:
                    drift = drifts[key] = detect(answer, claimed, providers, alias=route)
                if drift is None:
                    quiet += 1
                    continue
            self.record(Record(request, str(call["provider"]), [call]))
        self.answers += quiet

    def record(self, rec: Record) -> None:
        request = rec.request
        answer = request.get("answer") if rec.success else None
        drift: Drift | None = None
        if answer is not None:
            self.answers += 1
            claimed = request.get("claimed_target")
            if claimed not in self.providers:
                claimed = rec.primary  # the gateway named no declared target: it claims the route's primary
            key = (claimed, rec.route, answer_key(answer))
            if key in self.drifts:
                drift = self.drifts[key]
            else:
                drift = self.drifts[key] = detect(answer, claimed, self.providers, alias=rec.route)
            if drift is not None:
                self.drifted += 1
        rerouted = False
        if self.vendors:
            for call in rec.calls:
                if VENDOR_REROUTE in call:
                    if not rerouted:
                        rerouted = True
                        served = serving_call(rec.calls) if answer is not None else None
                    self._judge(rec, call, drift if call is served else None, answer is not None and call is served)
        if drift is not None and not rerouted and rec.served in self.proxied:
            self._observed(rec, drift)
        elif drift is not None and not rerouted:
            self.unexplained += 1
            text = f"{drift.claimed} claimed, {drift.describe()}"
            if text in self.drift_examples or len(self.drift_examples) < MAX_DRIFT_EXAMPLES:
                self.drift_examples[text] += 1

    def _observed(self, rec: Record, drift: Drift) -> None:
        """Drift in an answer a real upstream (behind the fault proxy) gave: its vendor's reroute, seen from
        the answer alone, judged like one in ground truth."""
        self.observed += 1
        via, route = str(rec.served), rec.route
        if not drift.matches:
            self.groups.add(("observed-undeclared", route, via, drift.said), rec.rid,
                            f"the upstream of {via} on route {route} {drift.describe()}: its vendor answered from a "
                            f"model no provider of the scenario declares ({drift.differences()})",
                            expected={"profile": f"{via}'s declared profile"},
                            observed={"route": route, "vendor_reroute_of": via, "said": dict(drift.said)})
            return
        target = drift.matches[0]
        self.by_target[target] += 1
        self._govern(rec, via, target, f"observed vendor reroute of {via} to {target} on route {route}")

    def _judge(self, rec: Record, call: Event, drift: Drift | None, answered: bool) -> None:
        request, route, primary = rec.request, rec.route, rec.primary
        via, target = str(call["provider"]), str(call[VENDOR_REROUTE])
        self.reroutes += 1
        self.by_target[target] += 1
        who = f"vendor reroute of {via} to {target} on route {route}"
        if not answered:
            self.without_answer += 1  # the client got no answer of it: nothing it could have seen
        elif drift is not None:
            self.caught += 1
        else:
            claimed = request.get("claimed_target") if request.get("claimed_target") in self.providers else primary
            said = ", ".join(f"{k} {v}" for k, v in said_of(request["answer"])) or "nothing of who answered"
            self.groups.add(("unseen", route, via, target, claimed), rec.rid,
                            f"{who} went unseen: its answers match what {claimed} declares ({said}); a "
                            f"system_fingerprint or region_header in the profiles would tell them apart",
                            expected={"drift": f"answers that differ from {claimed}'s declared profile"},
                            observed={"route": route, "vendor_reroute_of": via, "target": target, "claimed": claimed})
        self._govern(rec, via, target, who)

    def _govern(self, rec: Record, via: str, target: str, who: str) -> None:
        """An approved target of the route for this request, inside the trust boundary."""
        request, route, primary = rec.request, rec.route, rec.primary
        if target == primary or primary is None:
            return
        attrs = (request["tenant"], request["region"], request["request_class"])
        key = (route, target, *attrs)
        if key not in self.approvals:
            self.approvals[key] = approval_problem(route, self.routes[route], self.targets[route], target, attrs,
                                                  as_of=self.as_of, governed=self.governed)
        problem = self.approvals[key]
        if problem is not None:
            group_key, message, expected = problem
            self.groups.add(("approval", via, group_key), rec.rid, f"{who}: {message}", expected=expected,
                            observed={"route": route, "vendor_reroute_of": via, "target": target,
                                      "tenant": attrs[0], "region": attrs[1], "request_class": attrs[2]})
        self._trust(rec, via, target, who)

    def _trust(self, rec: Record, via: str, target: str, who: str) -> None:
        route, primary = rec.route, str(rec.primary)
        declared = self.targets[route].get(target)
        allowed = set(declared.trust_exceptions.allow) if declared and declared.trust_exceptions else set()
        home = self.providers[primary].region if primary in self.providers else UNDECLARED
        there = self.providers[target].region if target in self.providers else UNDECLARED
        if "region" in self.same and "region" not in allowed and there != home:
            self.groups.add(("region", route, via, target), rec.rid, f"{who} left region {home} for {there}",
                            expected={"region": home},
                            observed={"route": route, "vendor_reroute_of": via, "target": target, "region": there})
        data_class = rec.request["data_class"]
        cleared = self.providers[target].data_classes if target in self.providers else []
        if self.check_clearance and data_class not in cleared:
            self.groups.add(("clearance", route, via, target, data_class), rec.rid,
                            f"{who} is not cleared for data class {data_class}", expected={"data_classes": cleared},
                            observed={"route": route, "vendor_reroute_of": via, "target": target,
                                      "data_class": data_class})

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups, reroutes = self.groups, self.reroutes + self.observed
        seen = reroutes - self.without_answer
        stats: dict[str, Any] = {
            **totals.scan_stats(), "vendor_rerouted_calls": reroutes, "caught_by_drift": self.caught,
            "reroutes_without_client_answer": self.without_answer,
            "vendor_reroutes_by_target": dict(sorted(self.by_target.items())),
            "answers_checked_for_drift": self.answers, "answers_with_drift": self.drifted,
            "observed_reroutes_behind_proxies": self.observed,
            "drift_without_vendor_reroute": self.unexplained,
            "drift_examples": dict(self.drift_examples.most_common())}
        if len(groups):
            verdict = Verdict.FAIL
            summary = f"{plural(reroutes, 'vendor reroute')} judged: {violation_clause(groups)}"
        elif seen:
            verdict = Verdict.PASS
            unanswered = f"; {self.without_answer} more reached no client" if self.without_answer else ""
            summary = (f"{all_of(seen, 'vendor reroute')} that answered a client "
                       f"{'was' if seen == 1 else 'were'} caught from the answer alone, to approved targets inside "
                       f"the trust boundary{unanswered}")
        else:
            verdict = Verdict.UNKNOWN
            if reroutes:
                summary = (f"{plural(reroutes, 'vendor reroute')}, but no client got an answer from one: whether it "
                           f"could be seen is unproven")
            else:
                summary = (f"no vendor reroute happened: nothing to judge (drift on "
                           f"{plural(self.unexplained, 'answer')} without one in ground truth)")
        return result(NAME, verdict, summary, groups, stats)

"""capability_fit: every fallback call went to a target able to serve that request.

A fallback chain that forwards a long conversation to a model with a smaller context window, a JSON
request to a model without structured output or a tool call to a model without tool calling does not
fail over: it fails later, or answers something else. Judged per call with the one capability rule
(harness.core.capabilities.unmet) against the provider whose model really answered: the call's own,
or for a vendor's reroute the provider it was rerouted to.

A non-equivalent target may knowingly degrade what its approval names (`degrades`) for the request
classes that accept it (`degradation_accepted_by`): such a call is counted, not a violation. Not for
context or vision: a model refuses a prompt over its window or an image it cannot read, so nothing is
degraded, the call just fails.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.checks.capability_common import VENDOR_REROUTE, declares_capabilities, kind_label, vendor_providers
from harness.checks.common import Groups, all_of, fallback_targets, plural, result, violation_clause
from harness.core.capabilities import Needs, context_needed, kinds, short_count
from harness.core.capabilities import unmet as unmet_needs
from harness.core.frameworks import (
    ACCOUNTABILITY,
    DEPLOY_LAYER,
    EQUIVALENCE,
    FOUNDATION_LAYER,
    MAESTRO,
    NIST,
    OWASP_AGENTIC,
    OWASP_LLM,
    SUPPLY_CHAIN,
    VALID,
)
from harness.core.model import Capabilities, FallbackTarget
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

NAME = "capability_fit"
CONTEXT_LENGTH = "context_length"
# What a target that lacks it still answers (degraded); without the others it refuses the call.
ANSWERS_DEGRADED = frozenset(("output_budget", "structured_output", "tools", "determinism"))
# (unmet aspects, of which accepted) for one (route, target, kind, request class); None: fits.
Fit = tuple[tuple[str, ...], bool] | None


def unmet_detail(aspect: str, needs: Needs, target: str, caps: Capabilities) -> str:
    """One unmet aspect in words: 'context: needs 9,064 tokens, eu-small has 8k'."""
    if aspect == "context":
        return f"context: needs {context_needed(needs):,} tokens, {target} has {short_count(caps.context_tokens)}"
    if aspect == "output_budget":
        return (f"output_budget: asks max_tokens {needs.max_tokens:,}, {target} answers at most "
                f"{short_count(caps.max_output_tokens)}")
    if aspect == "structured_output":
        return f"structured_output: asks response_format {needs.response_format}, {target} has no structured output"
    if aspect == "tools":
        return (f"tools: offers {', '.join(needs.tools)} with tool_choice {needs.tool_choice or 'auto'}, {target} "
                f"has no tool calling")
    if aspect == "vision":
        return f"vision: sends images, {target} has no vision"
    return f"determinism: asks seed {needs.seed}, {target} is not deterministic under a seed"


@check(
    name=NAME,
    description=("Every fallback call, a vendor's own reroute included, went to a target able to serve the request "
                 "(context, output budget, structured output, tools, modalities, seed) or knowingly degraded for "
                 "its class; a context refusal fell back only where the policy allows it."),
    evidences=(EQUIVALENCE, ACCOUNTABILITY),
    severity="critical",
    frameworks={
        NIST: ("MAP function", "MANAGE function", VALID),
        OWASP_AGENTIC: ("Cascading Failures",),
        OWASP_LLM: (SUPPLY_CHAIN,),
        MAESTRO: (FOUNDATION_LAYER, DEPLOY_LAYER),
    },
    order=25,
    applies=declares_capabilities,
)
class CapabilityFit(Accumulator):
    records = "fallback"

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        scenario = self.scenario
        self.vendors = vendor_providers(scenario)
        if self.vendors:
            # A vendor's reroute is a call to the primary that answered ok: not a fallback the record feed
            # would pick out, so every record is read (only where some provider declares a vendor fallback).
            self.records = "all"  # type: ignore[misc]
        self.kinds = kinds(scenario.traffic.mix)
        self.providers = scenario.providers
        self.targets = fallback_targets(scenario)
        self.context_allowed = CONTEXT_LENGTH in scenario.policy.fallback_on
        self.memo: dict[tuple[str, str, str, str], Fit] = {}
        self.groups = Groups()
        self.fallback_requests = self.fallback_calls = self.judged = self.unfit = self.accepted = 0
        self.vendor_calls = self.context_fallbacks = self.undeclared_kinds = self.undeclared_providers = 0
        self.unmet_by_aspect: Counter[str] = Counter()
        self.accepted_by_aspect: Counter[str] = Counter()

    def plain(self, batch: list[Plain]) -> None:
        """A request whose one call the primary answered ok left it only by the primary's vendor."""
        if not self.vendors:
            return
        for request, call, _ in batch:
            if VENDOR_REROUTE in call:
                self.record(Record(request, str(call["provider"]), [call]))

    def record(self, rec: Record) -> None:
        primary, route = rec.primary, rec.route
        request = rec.request
        kind = request.get("kind")
        refused = counted = False
        after_refusal: str | None = None
        for call in rec.calls:
            provider = call["provider"]
            target = call.get(VENDOR_REROUTE) if provider in self.vendors else None
            if target is None:
                if provider == primary:
                    refused = refused or call["outcome"] == CONTEXT_LENGTH
                    continue
                target = provider
                if refused and after_refusal is None:
                    after_refusal = provider
            else:
                self.vendor_calls += 1
            if not counted:
                counted = True
                self.fallback_requests += 1
            self.fallback_calls += 1
            if kind is not None:
                self._judge(rec, route, provider, target, kind, request["request_class"])
        if after_refusal is not None and not self.context_allowed:
            self.context_fallbacks += 1
            self.groups.add((CONTEXT_LENGTH, route, primary), rec.rid,
                            f"route {route} fell back after {primary} refused a prompt over its context window, "
                            f"but {CONTEXT_LENGTH} is not in fallback_on (a context refusal is no outage)",
                            expected={"fallback_on": [str(c) for c in self.scenario.policy.fallback_on]},
                            observed={"route": route, "primary": primary, "fallback": after_refusal})

    def _judge(self, rec: Record, route: str, provider: str, target: str, kind: str, request_class: str) -> None:
        needs = self.kinds.get(kind)
        if needs is None:
            self.undeclared_kinds += 1  # a kind this scenario's mix cannot send: nothing to judge it by
            return
        declared = self.providers.get(target)
        if declared is None:
            self.undeclared_providers += 1
            return
        self.judged += 1
        key = (route, target, kind, request_class)
        if key not in self.memo:
            self.memo[key] = self._fit(route, target, needs, declared.capabilities, request_class)
        fit = self.memo[key]
        if fit is None:
            return
        aspects, accepted = fit
        if accepted:
            self.accepted += 1
            self.accepted_by_aspect.update(aspects)
            return
        self.unfit += 1
        self.unmet_by_aspect.update(aspects)
        via = provider if provider != target else None
        caps = declared.capabilities
        details = "; ".join(unmet_detail(a, needs, target, caps) for a in aspects)
        who = f"vendor reroute of {via} to {target}" if via else f"fallback to {target}"
        self.groups.add(("unmet", route, via, target, kind), rec.rid,
                        f"{who} on route {route} cannot serve {kind_label(kind)}: {details}",
                        expected={"unmet": []},
                        observed={"route": route, "target": target, "kind": kind, "unmet": list(aspects),
                                  **({"vendor_reroute_of": via} if via else {})})

    def _fit(self, route: str, target: str, needs: Needs, caps: Capabilities, request_class: str) -> Fit:
        aspects = unmet_needs(needs, caps)
        if not aspects:
            return None
        declared: FallbackTarget | None = self.targets.get(route, {}).get(target)
        accepted = (declared is not None and declared.equivalence == "non-equivalent"
                    and request_class in declared.degradation_accepted_by
                    and all(a in declared.degrades and a in ANSWERS_DEGRADED for a in aspects))
        return aspects, accepted

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups, calls, judged = self.groups, self.fallback_calls, self.judged
        stats: dict[str, Any] = {
            **totals.scan_stats(), "fallback_requests": self.fallback_requests, "fallback_calls": calls,
            "vendor_rerouted_calls": self.vendor_calls, "calls_with_requirements": judged,
            "unfit_calls": self.unfit, "unmet_by_aspect": dict(sorted(self.unmet_by_aspect.items())),
            "accepted_degraded_calls": self.accepted,
            "accepted_by_aspect": dict(sorted(self.accepted_by_aspect.items())),
            "fallbacks_after_context_refusal": self.context_fallbacks,
            "context_length_in_fallback_on": self.context_allowed,
            "calls_of_undeclared_kinds": self.undeclared_kinds,
            "calls_to_undeclared_providers": self.undeclared_providers}
        if len(groups):
            verdict = Verdict.FAIL
            parts = []
            if self.unfit:
                parts.append(f"{plural(self.unfit, 'fallback call')} to targets unable to serve the request")
            if self.context_fallbacks:
                parts.append(f"{plural(self.context_fallbacks, 'fallback')} after a context refusal")
            summary = f"{' and '.join(parts)}: {violation_clause(groups)}"
        elif judged:
            verdict = Verdict.PASS
            accepted = (f", {self.accepted} of them knowingly degraded for classes that accept it"
                        if self.accepted else "")
            summary = (f"{all_of(judged, 'fallback call')} with requirements went to targets able to serve them"
                       f"{accepted} ({plural(calls, 'fallback call')} in all)")
        else:
            verdict = Verdict.UNKNOWN
            summary = (f"no fallback call carried requirements ({plural(calls, 'fallback call')} of plain "
                       f"requests): no capability to judge" if calls else
                       "no fallback call was made: no capability to judge")
        return result(NAME, verdict, summary, groups, stats)

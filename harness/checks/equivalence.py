"""equivalence: a fallback-served answer keeps the primary's response contract, or is a degradation the
target's approval names for a request class that accepts it.

Judged on what the client got (the request event's `answer`, harness.traffic.answers): for a success
some other model than the route's primary answered (a fallback target, or the provider a vendor
rerouted to), its shape is compared with the shapes the primary's own answers had for the same route
and request kind, and the response contract is tested: JSON valid against the requested schema, tool
calls only to offered tools (and to the serving provider's, where declared), a tool call where
tool_choice demands one, and one answer per seed from one target.

Cheap on any ledger: shapes are canonical strings, so a primary answer costs one counter increment
and a fallback answer one dict update; answers are judged at the end per distinct (route, kind,
target, shape, ...) bucket, and DeepDiff runs once per distinct differing pair of shapes, as the
evidence of its violation. The reference is only complete at the end of the run (the outage may come
before the primary's first answer of a kind), so judging waits for `finish`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from deepdiff import DeepDiff

from harness.checks.capability_common import (
    VENDOR_REROUTE,
    answered_by,
    declares_capabilities,
    kind_label,
    serving_call,
    vendor_providers,
)
from harness.checks.common import MAX_IDS, Groups, all_of, fallback_targets, is_2xx, plural, result, violation_clause
from harness.core.capabilities import Needs, kinds
from harness.core.frameworks import (
    EQUIVALENCE,
    FOUNDATION_LAYER,
    MAESTRO,
    NIST,
    OBSERVE_LAYER,
    OUTPUT_HANDLING,
    OWASP_AGENTIC,
    OWASP_LLM,
    OWASP_THREATS,
    TOOL_MISUSE,
    TOOL_MISUSE_THREAT,
    VALID,
)
from harness.core.model import FallbackTarget
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Plain, Record, RunFrame, Totals

NAME = "equivalence"
SHAPE = "shape"  # a difference no degradation explains: never accepted
MAX_REFERENCE_SHAPES = 64  # distinct primary shapes kept per (route, kind): bounded memory on any ledger
_TRIM_AT = 10 * MAX_IDS
# (route, kind, vendor-rerouted provider or None, target, shape, schema_ok, request class, offered tools)
BucketKey = tuple[str, str | None, str | None, str, str, bool | None, str, tuple[str, ...]]
# (route, kind, vendor-rerouted provider or None, target, request class)
SeedKey = tuple[str, str, str | None, str, str]


@dataclass
class _Ids:
    """A count and the smallest request ids (Groups' rule), kept small."""

    count: int = 0
    ids: list[str] = field(default_factory=list)

    def add(self, rid: str) -> None:
        self.count += 1
        self.ids.append(rid)
        if len(self.ids) > _TRIM_AT:
            self.ids = sorted(set(self.ids))[:MAX_IDS]

    def first(self) -> list[str]:
        return sorted(set(self.ids))[:MAX_IDS]


@dataclass
class _Seeded:
    """Answers to one seed from one target: the first answer's digest and the requests that differ."""

    digest: str
    first_id: str
    differing: _Ids = field(default_factory=_Ids)
    digests: int = 1  # distinct digests seen, counted up to a few (a nonce makes every answer new)


@dataclass(frozen=True)
class Finding:
    aspects: frozenset[str]  # degradation names (harness.core.model.DEGRADATIONS), or SHAPE
    text: str


def shape_aspects(ref: dict[str, Any], fb: dict[str, Any]) -> frozenset[str]:
    """What the fallback's answer lost against the primary's, as degradation names; SHAPE for a difference
    none explains, nothing for an improvement (a full answer where the primary's was cut)."""
    out: set[str] = set()
    if ref.get("content") == "json" and (fb.get("content") != "json" or fb.get("json") != ref.get("json")):
        out.add("structured_output")
    elif ref.get("content") != fb.get("content") and not (ref.get("tool_calls") or fb.get("tool_calls")):
        out.add(SHAPE)
    if ref.get("tool_calls") != fb.get("tool_calls"):
        out.add("tools")
    finish, fb_finish = ref.get("finish_reason"), fb.get("finish_reason")
    if fb_finish == "length" and finish != "length":
        out.add("output_budget")
    elif finish != fb_finish and finish != "length" and not out:
        out.add(SHAPE)
    return frozenset(out)


def _path(path: str) -> str:
    """root['json']['total'] -> json.total"""
    return path.removeprefix("root").replace("']['", ".").replace("['", "").replace("']", "") or "answer"


def diff_summary(diff: dict[str, Any], most: int = 4) -> str:
    """A DeepDiff (as JSON) in a few words, changes first: 'content json -> text, json removed'."""
    parts: list[str] = []
    for kind in ("values_changed", "type_changes"):
        for path, change in diff.get(kind, {}).items():
            parts.append(f"{_path(path)} {change.get('old_value')} -> {change.get('new_value')}")
    for kind, changes in diff.items():
        if kind.endswith("_removed"):
            parts += [f"{_path(p)} removed" for p in changes]
        elif kind.endswith("_added"):
            parts += [f"{_path(p)} added" for p in changes]
    more = f", +{len(parts) - most} more" if len(parts) > most else ""
    return ", ".join(parts[:most]) + more


@check(
    name=NAME,
    description=("Every fallback-served answer kept the primary's response contract for its route and request kind "
                 "(shape, schema, tool calls, finish, seed), or degraded only what a non-equivalent target's "
                 "approval names, for a request class that accepts it."),
    evidences=(EQUIVALENCE,),
    severity="critical",
    frameworks={
        NIST: ("MEASURE function", "MANAGE function", VALID),
        OWASP_LLM: (OUTPUT_HANDLING, "Excessive Agency"),
        OWASP_AGENTIC: (TOOL_MISUSE,),
        OWASP_THREATS: (TOOL_MISUSE_THREAT,),
        MAESTRO: (FOUNDATION_LAYER, OBSERVE_LAYER),
    },
    order=27,
    applies=declares_capabilities,
)
class Equivalence(Accumulator):
    # The reference is the primary's own answers: every success is read, a primary one at the cost of one
    # counter increment.
    records = "all"

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        scenario = self.scenario
        self.kinds = kinds(scenario.traffic.mix)
        self.targets = fallback_targets(scenario)
        self.provider_tools = {name: frozenset(p.tools) for name, p in scenario.providers.items()}
        self.vendors = vendor_providers(scenario)
        self.references: dict[tuple[str, str | None], dict[str, int]] = {}  # shape -> answers
        self.buckets: dict[BucketKey, _Ids] = {}
        self.seeded: dict[SeedKey, _Seeded] = {}
        self.shapes: dict[str, dict[str, Any]] = {}
        self.diffs: dict[tuple[str, str], dict[str, Any]] = {}
        self.primary_answers = self.fallback_answers = self.unreadable = self.dropped_references = 0

    def plain(self, batch: list[Plain]) -> None:
        """The fast lane: the primary's own answers are the reference; a vendor's reroute goes by `record`."""
        count = self._count_reference
        for request, call, _ in batch:
            if VENDOR_REROUTE in call:
                self.record(Record(request, str(call["provider"]), [call]))
                continue
            answer = request.get("answer")
            if answer is None:
                continue  # the driver records an answer only for a readable 2xx
            if not is_2xx(request):  # Record.success
                continue
            count(request["route"], request.get("kind"), answer["shape"])

    def _count_reference(self, route: str, kind: str | None, shape: str) -> None:
        """One answer the primary itself gave: its shape counts for the reference of (route, kind)."""
        self.primary_answers += 1
        seen = self.references.get((route, kind))
        if seen is None:
            seen = self.references[(route, kind)] = {}
        count = seen.get(shape)
        if count is not None:
            seen[shape] = count + 1
        elif len(seen) < MAX_REFERENCE_SHAPES:
            seen[shape] = 1
        else:
            self.dropped_references += 1

    def record(self, rec: Record) -> None:
        if not rec.success:
            return
        request = rec.request
        answer = request.get("answer")
        served = rec.served
        if served is None:
            return
        if answer is None:  # no readable answer (response_integrity judges those): nothing to compare
            if served != rec.primary:
                self.unreadable += 1
            return
        via: str | None = None
        target = served
        if served in self.vendors:
            call = serving_call(rec.calls)
            if call is not None and VENDOR_REROUTE in call:
                target, via = answered_by(call), served
        shape: str = answer["shape"]
        kind = request.get("kind")
        if target == rec.primary:
            self._count_reference(rec.route, kind, shape)
            return
        self.fallback_answers += 1
        request_class = request["request_class"]
        key: BucketKey = (rec.route, kind, via, target, shape, answer.get("schema_ok"), request_class,
                          tuple(request["tools"]))
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Ids()
        bucket.add(rec.rid)
        digest = answer.get("digest")
        if digest is not None and kind is not None:
            self._seeded((rec.route, kind, via, target, request_class), digest, rec.rid)

    def _seeded(self, key: SeedKey, digest: str, rid: str) -> None:
        seen = self.seeded.get(key)
        if seen is None:
            self.seeded[key] = _Seeded(digest, rid)
        elif digest != seen.digest:
            seen.differing.add(rid)
            seen.digests = min(seen.digests + 1, 3)

    # --- judging, once per bucket, at the end ------------------------------------------------------

    def _shape(self, shape: str) -> dict[str, Any]:
        parsed = self.shapes.get(shape)
        if parsed is None:
            parsed = self.shapes[shape] = json.loads(shape)
        return parsed

    def _diff(self, ref: str, fb: str) -> dict[str, Any]:
        key = (ref, fb)
        if key not in self.diffs:
            diff = DeepDiff(self._shape(ref), self._shape(fb), ignore_order=True)
            self.diffs[key] = json.loads(diff.to_json())  # JSON-able: results are written to reports
        return self.diffs[key]

    def _reference(self, route: str, kind: str | None) -> str | None:
        """The primary's usual shape for (route, kind): the most frequent, ties by the string."""
        seen = self.references.get((route, kind))
        if not seen:
            return None
        return max(seen.items(), key=lambda item: (item[1], item[0]))[0]

    def _findings(self, key: BucketKey) -> tuple[list[Finding], Any, bool]:
        """What breaks the contract in one bucket, the shape diff (or None) and whether anything was compared."""
        route, kind, _via, target, shape, schema_ok, _cls, offered = key
        needs: Needs | None = self.kinds.get(kind) if kind is not None else None
        findings: list[Finding] = []
        diff: Any = None
        ref = self._reference(route, kind)
        fb = self._shape(shape)
        if ref is not None and shape not in self.references[(route, kind)]:
            aspects = shape_aspects(self._shape(ref), fb)
            if aspects:
                diff = self._diff(ref, shape)
                findings.append(Finding(aspects, f"shape differs from the primary's ({diff_summary(diff)})"))
        if schema_ok is False:
            findings.append(Finding(frozenset({"structured_output"}), "answer not valid against the requested schema"))
        called = fb.get("tool_calls") or []
        outside = sorted(set(called) - set(offered))
        if outside:
            findings.append(Finding(frozenset({"tools"}),
                                    f"tool calls outside the offered tools: {', '.join(outside)}"))
        allowed = self.provider_tools.get(target)
        beyond = sorted(set(called) - allowed) if allowed else []
        if beyond:
            findings.append(Finding(frozenset({"tools"}), f"tool calls outside {target}'s tools: {', '.join(beyond)}"))
        if needs is not None and needs.wants_tool_call:
            choice = needs.tool_choice
            if choice == "required" and not called:
                findings.append(Finding(frozenset({"tools"}), "no tool call though tool_choice is required"))
            elif choice != "required" and choice not in called:
                findings.append(Finding(frozenset({"tools"}), f"no call of {choice} though tool_choice names it"))
        compared = ref is not None or schema_ok is not None or bool(called) or bool(needs and needs.wants_tool_call)
        return findings, diff, compared

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        verdicts = _Verdicts(self.targets)
        compared = matching = without_reference = 0
        for key, bucket in self.buckets.items():
            findings, diff, was_compared = self._findings(key)
            if not was_compared:
                without_reference += bucket.count
                continue
            compared += bucket.count
            if not findings:
                matching += bucket.count
                continue
            route, kind, via, target, _shape, _ok, request_class, _offered = key
            verdicts.judge(route, kind, via, target, request_class, findings, bucket, diff)
        for (route, kind, via, target, request_class), seen in self.seeded.items():
            if not seen.differing.count:
                continue
            ids = _Ids(seen.differing.count + 1, [seen.first_id, *seen.differing.first()])
            more = "+" if seen.digests >= 3 else ""
            finding = Finding(frozenset({"determinism"}),
                              f"{seen.digests}{more} different answers to the same seed from {target}")
            verdicts.judge(route, kind, via, target, request_class, [finding], ids, None)
        groups = verdicts.groups
        stats: dict[str, Any] = {
            **totals.scan_stats(), "primary_answers": self.primary_answers, "fallback_answers": self.fallback_answers,
            "compared_answers": compared, "same_shape_as_primary": matching,
            "without_primary_reference": without_reference,
            "accepted_degraded_answers": verdicts.accepted,
            "accepted_by_aspect": dict(sorted(verdicts.accepted_by_aspect.items())),
            "fallback_successes_without_answer": self.unreadable,
            "distinct_reference_shapes": sum(len(c) for c in self.references.values()),
            "reference_shapes_dropped": self.dropped_references,
            "distinct_answer_buckets": len(self.buckets), "shape_diffs_computed": len(self.diffs)}
        if len(groups):
            verdict = Verdict.FAIL
            summary = (f"fallback-served answers broke the primary's response contract: {violation_clause(groups)} "
                       f"over {plural(compared, 'compared answer')}")
        elif compared:
            verdict = Verdict.PASS
            accepted = (f", {verdicts.accepted} knowingly degraded for classes that accept it"
                        if verdicts.accepted else "")
            summary = (f"{all_of(compared, 'fallback-served answer')} kept the primary's response contract "
                       f"({matching} with the primary's shape{accepted})")
        elif self.fallback_answers:
            verdict = Verdict.UNKNOWN
            summary = (f"{plural(self.fallback_answers, 'fallback-served answer')}, but no primary answer of the same "
                       f"route and kind to compare with and no contract to test")
        else:
            verdict = Verdict.UNKNOWN
            summary = "no fallback served a readable successful answer: no response to compare"
        return result(NAME, verdict, summary, groups, stats)


class _Verdicts:
    """Findings to violations or accepted degradations, by the target's declared equivalence."""

    def __init__(self, targets: dict[str, dict[str, FallbackTarget]]) -> None:
        self.targets = targets
        self.groups = Groups()
        self.accepted = 0
        self.accepted_by_aspect: Counter[str] = Counter()

    def judge(self, route: str, kind: str | None, via: str | None, target: str, request_class: str,
              findings: list[Finding], ids: _Ids, diff: Any) -> None:
        aspects = frozenset().union(*(f.aspects for f in findings))
        texts = "; ".join(f.text for f in findings)
        who = f"{via} rerouted by its vendor to {target}" if via else f"fallback {target}"
        declared = self.targets.get(route, {}).get(target)
        named = ", ".join(sorted(aspects))
        observed: dict[str, Any] = {"route": route, "target": target, "kind": kind, "aspects": sorted(aspects),
                                    **({"vendor_reroute_of": via} if via else {})}
        key: Hashable
        if declared is None:
            key = ("undeclared", route, via, target, kind, texts)
            message = (f"{who} on route {route} is no declared fallback target, yet answered {kind_label(kind)} "
                       f"differently from the primary: {texts}")
            expected: Any = {"equivalence": "a declared fallback target"}
        elif declared.equivalence == "equivalent":
            key = ("equivalent", route, via, target, kind, texts)
            message = (f"{who} on route {route} is declared equivalent but broke the primary's response contract for "
                       f"{kind_label(kind)}: {texts}")
            expected = {"equivalence": "equivalent", "shape": "the primary's"}
        else:
            unnamed = sorted(aspects - set(declared.degrades))
            if unnamed:
                key = ("unnamed", route, via, target, kind, texts)
                message = (f"{who} on route {route} degraded {', '.join(unnamed)} for {kind_label(kind)}, which its "
                           f"approval does not name (degrades: {', '.join(declared.degrades) or 'nothing'}): {texts}")
                expected = {"degrades": list(declared.degrades)}
            elif request_class not in declared.degradation_accepted_by:
                key = ("unaccepted", route, via, target, kind, request_class, texts)
                message = (f"degraded answer to a class that did not accept it: {who} on route {route} degraded "
                           f"{named} for request class {request_class} ({kind_label(kind)}; accepted by: "
                           f"{', '.join(declared.degradation_accepted_by) or 'no class'}): {texts}")
                expected = {"degradation_accepted_by": list(declared.degradation_accepted_by)}
                observed["request_class"] = request_class
            else:
                self.accepted += ids.count
                self.accepted_by_aspect.update({aspect: ids.count for aspect in aspects})
                return
        kept = ids.first()
        for rid in kept:
            self.groups.add(key, rid, message, expected=expected, observed=observed, diff=diff)
        if ids.count > len(kept):
            self.groups.add_count(key, ids.count - len(kept))

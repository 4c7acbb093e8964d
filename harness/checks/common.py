"""Helpers every check shares: causes, fault windows, sensitivity, violation groups.

Checks judge ledgers of a million requests and more, fed one record at a time (harness.checks.feed):
anything derived from the policy is memoized per distinct key (route, provider, attribute tuple)
instead of being recomputed for every request.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.events import UNKNOWN_CALLER
from harness.core.identity import NOT_AN_IDENTITY
from harness.core.model import FailClosed, FallbackTarget, Scenario
from harness.core.verdict import CheckResult, Verdict, Violation
from harness.ledger.history import FaultWindow

Cause = int | str
Span = tuple[str | None, float, float, bool]
NO_SPAN: Span = (None, 0.0, 0.0, False)  # a span no ts falls inside: the first request asks
_INF = float("inf")
Event = dict[str, Any]
MAX_IDS = 20
_TRIM_AT = 10 * MAX_IDS  # trim the id buffer now and then so a million violations stay cheap


# Outcomes fallback_on may also name, besides their status: the content-policy refusal (which some APIs
# say as an answer, HTTP 200) and the provider's own capacity error (529 on Anthropic, 503 elsewhere).
NAMED_CAUSES = frozenset(("content_policy", "overloaded"))


def cause_of(call: Event) -> Cause:
    """Why an upstream call ended, in the vocabulary of `policy.fallback_on`: the status of an error, or
    the outcome's name where it has no error status (a refusal said as an answer)."""
    outcome = call["outcome"]
    if outcome in ("error", "content_policy", "overloaded"):
        status = int(call["status"])
        return status if status >= 400 else str(outcome)
    if outcome == "timeout":
        return "timeout"
    if outcome == "reset":
        return "connection_error"
    return str(outcome)  # "ok", or an outcome this version does not know (never in fallback_on)


def listed(cause: Cause, call: Event, fallback_on: set[Cause] | frozenset[Cause]) -> bool:
    """Whether `policy.fallback_on` lists this call's cause: its status, or its named outcome
    (content_policy, overloaded), whichever the policy chose to name."""
    if cause in fallback_on:
        return True
    outcome = call["outcome"]
    return outcome in NAMED_CAUSES and outcome in fallback_on


def primary_of(scenario: Scenario, route: str) -> str | None:
    """The primary provider of a route, None for a route the policy does not declare."""
    declared = scenario.policy.routes.get(route)
    return declared.primary if declared else None


def fallback_calls(calls: Sequence[Event], primary: str) -> list[Event]:
    """The calls of one request that went to any provider but its route's primary, oldest first."""
    return [call for call in calls if call["provider"] != primary]


def known_caller(call: Event) -> bool:
    """A call made with the credential of one of the scenario's identities: neither marked an unknown
    caller's (`caller: unknown`) nor, in a ledger recorded before that marker, of an identity the provider
    could not name."""
    return call.get("caller") != UNKNOWN_CALLER and call.get("identity") not in NOT_AN_IDENTITY


def attributed(calls: list[Event], owner: Event | None) -> list[Event]:
    """The calls a check may judge: all of a request's; of calls no request owns, those a known identity
    made. A call from an unknown caller (`caller: unknown`, an unknown credential or none) is nobody's
    evidence: only trust_boundary reports it."""
    if owner is not None:  # a request's calls are joined by id, and an unknown caller's never are
        return calls
    return [call for call in calls if call.get("caller") != UNKNOWN_CALLER]


def cause_label(cause: Cause) -> str:
    """A cause as a JSON object key (stats histograms)."""
    return str(cause)


def served(calls: Sequence[Event]) -> str | None:
    """Same rule as History.served_by, on calls already in hand (saves a dict lookup per request)."""
    for call in reversed(calls):
        if call["outcome"] == "ok":
            return str(call["provider"])
    return None


def is_2xx(request: Event) -> bool:
    """A success the client saw. transport_error means the gateway signalled a cut: not a success."""
    status = request.get("status")
    return status is not None and 200 <= status < 300 and request.get("outcome") != "transport_error"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def all_of(n: int, word: str) -> str:
    """'the 1 request' / 'all 3 requests', for PASS summaries."""
    return f"the 1 {word}" if n == 1 else f"all {n} {word}s"


def fallback_targets(scenario: Scenario) -> dict[str, dict[str, FallbackTarget]]:
    """route -> provider -> its approved fallback target entry."""
    return {name: {t.target: t for t in route.fallbacks} for name, route in scenario.policy.routes.items()}


class Windows:
    """Fault windows per targeted provider, optionally stretched by a grace period after the heal."""

    def __init__(self, windows: Sequence[FaultWindow], grace_s: float = 0.0) -> None:
        self._windows = windows
        self._grace = grace_s
        self._by_provider: dict[str, list[tuple[float, float]]] = {}
        self._union: dict[str, tuple[list[float], list[float]]] = {}
        self._last: Span = NO_SPAN  # `at`'s span

    def of(self, provider: str) -> list[tuple[float, float]]:
        spans = self._by_provider.get(provider)
        if spans is None:
            spans = [(w.start, w.end + self._grace) for w in self._windows if provider in w.targets]
            self._by_provider[provider] = spans
        return spans

    def contains(self, provider: str, ts: float) -> bool:
        union = self._union.get(provider)
        if union is None:
            # Asked once per request: the spans merged where they overlap, then one bisection, however
            # many windows a long run has.
            starts: list[float] = []
            ends: list[float] = []
            for start, end in sorted(self.of(provider)):
                if starts and start <= ends[-1]:
                    ends[-1] = max(ends[-1], end)
                else:
                    starts.append(start)
                    ends.append(end)
            union = self._union[provider] = (starts, ends)
        index = bisect_right(union[0], ts) - 1
        return index >= 0 and ts <= union[1][index]

    def span(self, provider: str, ts: float) -> Span:
        """(provider, lo, hi, inside): `contains(provider, t)` is `inside` for every lo < t < hi. A check
        that asks once per request keeps the last span and asks again only when a ts falls outside it
        (requests come about in time order, so that is at a window's edge)."""
        inside = self.contains(provider, ts)
        starts, ends = self._union[provider]
        index = bisect_right(starts, ts) - 1
        if inside:
            return provider, starts[index], ends[index], True
        lo = ends[index] if index >= 0 else -_INF
        hi = starts[index + 1] if index + 1 < len(starts) else _INF
        return provider, lo, hi, False

    def at(self, provider: str, ts: float) -> bool:
        """`contains`, for a check asking once per request in about time order: the last span is kept and
        asked again only when a ts falls outside it (at a window's edge)."""
        of, lo, hi, within = self._last
        if provider != of or not lo < ts < hi:
            of, lo, hi, within = self._last = self.span(provider, ts)
        return within

    def count_inside(self, batch: Sequence[tuple[Event, Event, int]]) -> int:
        """How many plain requests (harness.ledger.feed.Plain: request, its one call, rank) were sent inside
        a window on the provider of their call: `at` for each, in one loop."""
        of, lo, hi, within = self._last
        inside = 0
        for request, call, _ in batch:
            ts = request["ts"]
            if not lo < ts < hi or call["provider"] != of:
                of, lo, hi, within = self.span(call["provider"], ts)
            inside += within
        self._last = (of, lo, hi, within)
        return inside


class Sensitivity:
    """Which requests the policy says must fail closed, memoized per attribute tuple."""

    def __init__(self, fail_closed: FailClosed) -> None:
        self._classes = set(fail_closed.request_classes)
        self._data = set(fail_closed.data_classes)
        self._tenants = set(fail_closed.tenants)
        self.memo: dict[tuple[str, str, str], str | None] = {}  # (request class, data class, tenant) -> reason

    @property
    def declared(self) -> bool:
        return bool(self._classes or self._data or self._tenants)

    def reason(self, request: Event) -> str | None:
        """Why the request is sensitive (the first matching rule), or None."""
        key = (request["request_class"], request["data_class"], request["tenant"])
        if key in self.memo:
            return self.memo[key]
        reason = None
        if key[0] in self._classes:
            reason = f"request class {key[0]}"
        elif key[1] in self._data:
            reason = f"data class {key[1]}"
        elif key[2] in self._tenants:
            reason = f"tenant {key[2]}"
        self.memo[key] = reason
        return reason


@dataclass
class Group:
    """Every occurrence of one cause, kept small: a count and the first ids."""

    message: str
    expected: Any
    observed: dict[str, Any]
    diff: Any
    count: int = 0
    ids: list[str] = field(default_factory=list)
    last_id: str | None = None

    def sorted_ids(self) -> list[str]:
        return sorted(set(self.ids))[:MAX_IDS]


class Groups:
    """Violations grouped by cause: one Violation per key, however many requests share it."""

    def __init__(self) -> None:
        self._groups: dict[Hashable, Group] = {}

    def add(self, key: Hashable, request_id: str | None, message: str, *, expected: Any = None,
            observed: dict[str, Any] | None = None, diff: Any = None) -> Group:
        """Count one occurrence. Evidence (message, expected, observed, diff) is the first one's."""
        group = self._groups.get(key)
        if group is None:
            group = Group(message, expected, dict(observed or {}), diff)
            self._groups[key] = group
        if request_id is not None and request_id == group.last_id:
            return group  # the same request again (two calls of one request): count requests, not calls
        group.count += 1
        if request_id is not None:
            group.last_id = request_id
            group.ids.append(request_id)
            if len(group.ids) > _TRIM_AT:
                group.ids = group.sorted_ids()
        return group

    def add_count(self, key: Hashable, n: int) -> None:
        """`n` more occurrences of an existing group whose ids are already all it keeps (see sorted_ids)."""
        self._groups[key].count += n

    def merged(self, later: Groups) -> Groups:
        """Both groups' violations, as if `later`'s had all been added after this one's."""
        both = Groups()
        both._groups = {**self._groups, **later._groups}
        return both

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._groups

    @property
    def total(self) -> int:
        return sum(g.count for g in self._groups.values())

    def violations(self) -> list[Violation]:
        ordered = sorted(self._groups.values(), key=lambda g: (-g.count, g.message))
        return [
            Violation(message=g.message, request_ids=g.sorted_ids(), expected=g.expected,
                      observed={"count": g.count, **g.observed}, diff=g.diff)
            for g in ordered
        ]


def verdict_of(groups: Groups, judged: int) -> Verdict:
    """A violation fails; nothing judged proves nothing; else pass."""
    if len(groups):
        return Verdict.FAIL
    return Verdict.PASS if judged else Verdict.UNKNOWN


def result(name: str, verdict: Verdict, summary: str, groups: Groups, stats: dict[str, Any]) -> CheckResult:
    return CheckResult(check=name, verdict=verdict, summary=summary, violations=groups.violations(), stats=stats)


def violation_clause(groups: Groups) -> str:
    """'3 violations (41 occurrences)' for FAIL summaries."""
    return f"{plural(len(groups), 'violation')} ({plural(groups.total, 'occurrence')})"


def mean(total: float, n: int) -> float | None:
    return round(total / n, 3) if n else None  # None, not NaN: stats go to JSON

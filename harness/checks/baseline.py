"""The steady-state hypothesis: before the first fault, requests are answered by their route's primary.

A fault drill proves something only if the system was healthy before the fault: a gateway that answers
404 to everything "fails over" nowhere and "fails back" never, whatever the faults do. So before the
first fault (or kill-switch action) the requests that completed are tallied, and the hypothesis holds
when at least `baseline.min_success` of them were answered by their route's primary, over at least
`baseline.min_duration_s` and `baseline.min_requests`.

One rule, three users: the engine's live gate (harness.engine.baseline) judges the ledger so far at the
moment the first fault is due; `reversible` and `steady_state` judge the same events offline (they are
UNKNOWN when the baseline never held) and `reversible` asks the same question after the last fault
healed. When it fails, the providers' own records say why where they can: calls on a path the provider
does not serve, calls with a credential of no known identity, no call at all.

Not a check itself: no `@check` here, the two checks above carry its result.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checks.common import is_2xx, known_caller, plural, served
from harness.core.capabilities import kinds, unmet
from harness.core.model import Scenario
from harness.ledger.history import FaultWindow, KillSwitchWindow

Event = dict[str, Any]

HELD, FAILED, NOT_VERIFIED, NONE = "held", "failed", "not_verified", "none"
# A refusal is the primary answering (its model said no), not an outage: the steady state holds.
_REFUSALS = frozenset(("content_policy", "context_length"))


def first_nemesis_s(scenario: Scenario) -> float | None:
    """When the scenario's first fault or kill-switch action is due (seconds after traffic starts),
    None when it plans none (nothing to verify a baseline for)."""
    times = [f.at_s for f in scenario.faults] + [a.at_s for a in scenario.timeline]
    return min(times) if times else None


def holds(request: Event, primary: str, calls: Sequence[Event]) -> bool:
    """Whether one request keeps the steady state: answered (2xx) and served by its route's primary
    (`common.served`, the same ground truth every check uses), with a known identity's credential; or
    refused by the primary itself (content policy, context length: an answer, not an outage)."""
    if not calls:
        return False
    last_ok = served(calls)
    if last_ok == primary and is_2xx(request):
        for call in reversed(calls):
            if call["outcome"] == "ok":
                return known_caller(call)
    return any(c["provider"] == primary and c["outcome"] in _REFUSALS and known_caller(c) for c in calls)


def _fix(path: str, serves: str | None) -> str:
    """What to change in the gateway's config so its calls land on the path the provider serves."""
    if serves and serves != path and serves.endswith(path):
        prefix = serves[: -len(path)]
        return f"set the gateway's base URL (api_base) for the provider to end in {prefix}"
    if serves and serves != path and path.endswith(serves):
        extra = path[: -len(serves)]
        return f"remove {extra} from the end of the gateway's base URL (api_base) for the provider"
    return "point the gateway at the path the provider's API serves"


@dataclass
class Tally:
    """Requests and provider calls of one stretch of the run, and how many kept the steady state."""

    requests: int = 0
    held: int = 0
    calls: int = 0
    unservable: int = 0  # requests the route's primary is declared unable to serve: not its steady state
    seen: Counter[str] = field(default_factory=Counter)            # what the clients saw when it did not hold
    unserved: Counter[tuple[str, str]] = field(default_factory=Counter)  # (path, served path) -> calls
    unknown_callers: Counter[str] = field(default_factory=Counter)       # provider -> calls

    def request(self, request: Event, primary: str, calls: Sequence[Event]) -> None:
        self.requests += 1
        if holds(request, primary, calls):
            self.held += 1
        else:
            status = request.get("status")
            self.seen[str(status) if status is not None else str(request.get("outcome") or "no answer")] += 1

    def call(self, call: Event) -> None:
        self.calls += 1
        # Only a call that carried a request is a request on the wrong path: a gateway's own probe (LiteLLM
        # asks /v1/models at start-up) says nothing about where the traffic went.
        if call.get("not_served") and (call.get("id") or call.get("claimed_id")):
            self.unserved[(str(call.get("path") or "?"), str(call.get("serves") or ""))] += 1
        if not known_caller(call):
            self.unknown_callers[str(call.get("provider"))] += 1

    @property
    def ratio(self) -> float:
        return self.held / self.requests if self.requests else 0.0

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "held": self.held, "ratio": round(self.ratio, 3),
                "unservable_by_primary": self.unservable, "provider_calls": self.calls,
                "client_saw": dict(self.seen.most_common(5)),
                "calls_on_unserved_paths": sum(self.unserved.values()),
                "calls_from_unknown_callers": sum(self.unknown_callers.values())}

    def diagnosis(self) -> list[str]:
        """What the providers' records say about why requests were not answered by their primary."""
        found: list[str] = []
        for (path, serves), n in self.unserved.most_common(2):
            serving = f" (they serve {serves})" if serves else ""
            found.append(f"the providers recorded {plural(n, 'call')} on {path}, which they do not serve{serving}: "
                         f"{_fix(path, serves or None)}")
        if self.unknown_callers:
            where = ", ".join(sorted(self.unknown_callers))
            found.append(f"the providers recorded {plural(sum(self.unknown_callers.values()), 'call')} with a "
                         f"credential of no known identity (on {where}): give the gateway the key of the identity "
                         f"the scenario names for each provider")
        if not self.calls:
            found.append("the providers recorded no call at all: the gateway never reached a provider (check the "
                         "upstream URLs and ports in its config)")
        elif not found and self.seen:
            seen = ", ".join(f"{k} x{v}" for k, v in self.seen.most_common(3))
            found.append(f"the clients saw {seen}")
        return found


@dataclass(frozen=True)
class BaselineResult:
    status: str   # held | failed | not_verified | none (no fault planned)
    summary: str
    stats: dict[str, Any]

    @property
    def failed(self) -> bool:
        return self.status == FAILED


def judge_tally(scenario: Scenario, tally: Tally) -> BaselineResult:
    """The hypothesis judged on the tally of the requests that completed before the first fault."""
    rules = scenario.baseline
    planned = first_nemesis_s(scenario)
    stats = {**tally.stats(), "min_success": rules.min_success, "min_requests": rules.min_requests,
             "min_duration_s": rules.min_duration_s, "first_fault_at_s": planned}
    if planned is None:
        return BaselineResult(NONE, "no fault planned: no baseline to verify", stats)
    share = f"{tally.held} of {plural(tally.requests, 'request')} ({tally.ratio:.0%})"
    enough = tally.requests >= rules.min_requests
    short = planned < rules.min_duration_s
    if enough and tally.ratio >= rules.min_success:
        if short:  # it held, but over too short a time to call it a steady state
            return BaselineResult(NOT_VERIFIED, f"baseline not verified: {share} answered by their route's primary, "
                                  f"but the first fault starts at {planned:g} s, before the minimum baseline of "
                                  f"{rules.min_duration_s:g} s", stats)
        return BaselineResult(HELD, f"steady state held before the first fault: {share} answered by their "
                              f"route's primary", stats)
    if not enough and short:  # too early to know either way: a drill that starts at once is judged as before
        return BaselineResult(NOT_VERIFIED, f"baseline not verified: the first fault starts at {planned:g} s, "
                              f"before the minimum baseline of {rules.min_duration_s:g} s", stats)
    if not tally.requests:
        head = "baseline never held: no request completed before the first fault"
    elif not enough:
        head = (f"baseline not established: only {plural(tally.requests, 'request')} completed before the first "
                f"fault (at least {rules.min_requests} needed)")
    else:
        head = (f"baseline never held: {tally.held} of {plural(tally.requests, 'request')} succeeded before the "
                f"first fault (answered by their route's primary; at least {rules.min_success:.0%} needed)")
    diagnosis = tally.diagnosis()
    return BaselineResult(FAILED, "; ".join([head, *diagnosis]), {**stats, "diagnosis": diagnosis})


def baseline_cutoff(windows: Sequence[FaultWindow], kill_switch: Sequence[KillSwitchWindow],
                    kill_switch_events: Sequence[Event]) -> float:
    """When the baseline ended in a recorded run: the first fault window or kill-switch call. A run
    with neither (stopped at the gate, or cut short) was all baseline: infinity."""
    starts = [w.start for w in windows] + [k.start for k in kill_switch]
    starts += [float(e["ts_sent"]) for e in kill_switch_events if isinstance(e.get("ts_sent"), int | float)]
    return min(starts) if starts else math.inf


class Watch:
    """The baseline and the steady state after recovery, fed by a check's `record`/`plain`/`calls`:
    requests that ended by `cutoff` (and calls made by then) are the baseline; requests sent from
    `after` on are the steady state after the last fault healed (plus the failback grace)."""

    def __init__(self, scenario: Scenario, cutoff: float, after: float = math.inf) -> None:
        self.scenario = scenario
        self.cutoff = cutoff
        self.after_from = after
        self.before = Tally()
        self.after = Tally()
        self.active = first_nemesis_s(scenario) is not None
        self._needs = kinds(scenario.traffic.mix)
        self._unservable: dict[tuple[str, str], bool] = {}

    def unservable(self, request: Event, primary: str) -> bool:
        """Whether the route's primary is declared unable to serve this request (an image to a model without
        vision, a schema to one without structured output, a prompt over its context window): where such a
        request goes is the capability checks' question, not part of the primary's steady state."""
        kind = request.get("kind")
        if not isinstance(kind, str):
            return False
        key = (kind, primary)
        if key not in self._unservable:
            needs, provider = self._needs.get(kind), self.scenario.providers.get(primary)
            self._unservable[key] = bool(needs and provider and unmet(needs, provider.capabilities))
        return self._unservable[key]

    def request(self, request: Event, primary: str, calls: Sequence[Event]) -> None:
        if not self.active:
            return
        before = request.get("ts_end", request["ts"]) <= self.cutoff
        after = request["ts"] >= self.after_from
        if (before or after) and self.unservable(request, primary):
            for tally, counted in ((self.before, before), (self.after, after)):
                tally.unservable += counted
            return
        if before:
            self.before.request(request, primary, calls)
        if after:
            self.after.request(request, primary, calls)

    def calls(self, calls: Sequence[Event]) -> None:
        if not self.active:
            return
        for call in calls:
            if call["ts"] <= self.cutoff:
                self.before.call(call)

    def plain(self, batch: Sequence[tuple[Event, Event, int]]) -> None:
        """Plain requests (one call, to the primary, answered ok): `request` and `calls` for those sent by
        the cutoff or after recovery; the others (most of a run) cost two comparisons."""
        if not self.active:
            return
        cutoff, after_from = self.cutoff, self.after_from
        for request, call, _ in batch:
            ts = request["ts"]
            if cutoff < ts < after_from:
                continue
            if call["ts"] <= cutoff:
                self.before.call(call)
            self.request(request, call["provider"], (call,))

    def result(self) -> BaselineResult:
        return judge_tally(self.scenario, self.before)

    def after_summary(self) -> tuple[str | None, dict[str, Any]]:
        """'steady state held again: 98% of 120 requests ...' (None without a request after recovery)."""
        tally, rules = self.after, self.scenario.baseline
        if not self.active or not tally.requests or math.isinf(self.after_from):
            return None, {}
        share = f"{tally.ratio:.0%} of {plural(tally.requests, 'request')} after the last fault healed"
        held = tally.ratio >= rules.min_success
        text = (f"steady state held again: {share} answered by their route's primary" if held else
                f"steady state did not hold again: only {share} answered by their route's primary "
                f"(at least {rules.min_success:.0%} needed)")
        return text, {**tally.stats(), "held_again": held}

"""Was a primary in cooldown? The timeline trigger_conditions asks when a fallback skipped the primary.

A gateway may skip a primary that just failed (a cooldown, a circuit breaker) until it learns the
primary answers again. A fallback at `ts` that skipped the primary is explained when, in some scope
holding the request (all traffic, or requests sharing some of tenant, region, request class), the
primary failed with a cause in fallback_on before `ts`, and no call in that scope after the failure
had an answer the gateway surely knew before `ts` (a call's outcome is surely known once its request
has ended; a call still in flight does not count: a half-open breaker probes once and keeps falling
back until the probe answers).

The timeline is replayed in time order: failures ("triggers") at the time the gateway could have
learned them (an error at once, a timeout by the request's next call or its end), answers at the
time the gateway surely knew them, questions at the fallback's time; so each scope needs only its last
failure and the earliest-known answer since. Events wait in a buffer until the feed says nothing
earlier can still come (`settled`), and answers to questions go out in the order they were asked.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Hashable
from operator import itemgetter
from typing import Any

from harness.checks.common import NAMED_CAUSES, Cause, Event, attributed, cause_label, cause_of

ATTRS = ("tenant", "region", "request_class")
# Scopes a gateway may cool a failed primary down in: all its traffic, or only requests sharing some of the
# failed request's attributes (a tenant's quota, a region's capacity). Narrowest first, for the evidence.
SCOPES: tuple[tuple[int, ...], ...] = tuple(sorted(
    (tuple(i for i in range(len(ATTRS)) if mask >> i & 1) for mask in range(2 ** len(ATTRS))),
    key=lambda scope: -len(scope)))
Answer = tuple[float, float, Cause, int]  # (call ts, surely known at, cause, order among calls: rank << 20 | index)
Unexplained = tuple[str, dict[str, Any]]
_TRIGGER, _ANSWER, _QUESTION = 1, 2, 0  # questions first at equal times: "before ts" is strict
_INF = float("inf")
_AT = itemgetter(0)


def _better(a: Answer, b: Answer | None) -> bool:
    """Earlier known wins; at equal times the later call (History's tie rule: the last in call order)."""
    return b is None or a[1] < b[1] or (a[1] == b[1] and (a[0], a[3]) > (b[0], b[3]))


class _Scope:
    __slots__ = ("failed_at", "best", "late")

    def __init__(self) -> None:
        self.failed_at: float | None = None
        self.best: Answer | None = None  # earliest-known answer since the last failure
        self.late: list[Answer] = []     # answers to calls made after their request ended: a later failure
                                         # may come before their call time, so they are kept apart

    def fold(self, now: float) -> None:
        """Late answers whose call time has passed behave like the others: keep only the best."""
        keep = []
        for answer in self.late:
            if answer[0] < now:
                if _better(answer, self.best):
                    self.best = answer
            else:
                keep.append(answer)
        self.late = keep


class Question:
    """A fallback that skipped its primary; `answer` is set once the timeline reached its time."""

    __slots__ = ("request", "done", "answer")

    def __init__(self, request: Event) -> None:
        self.request = request
        self.done = False
        self.answer: Unexplained | None = None


class Timeline:
    def __init__(self, allowed: set[Cause], primaries: set[str], rel: Callable[[float], float]) -> None:
        self._allowed, self._primaries, self._rel = allowed, primaries, rel
        self._scopes: dict[Hashable, _Scope] = {}
        self._combos: dict[tuple[Any, ...], list[Any]] = {}  # (provider, *attributes) -> [scopes, generation seen]
        self._generation: dict[str, int] = {}
        self._last_known: dict[str, float] = {}
        self._pending: list[tuple[Any, ...]] = []
        # Plain answers (ok calls to the primary, made before their request ended), kept apart: while no
        # failure is due and nothing ties, a batch of them changes nothing but the last time known (advance).
        self._answers: list[tuple[Any, ...]] = []
        self._one_primary = next(iter(primaries)) if len(primaries) == 1 else None
        self._seq = 0
        self._mark = -_INF

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        # A call from an unknown caller tells nothing of what the gateway learned: it never made it.
        self._general(attributed(calls, owner), owner, rank)

    def plain(self, batch: list[tuple[Event, Event, int]]) -> None:
        """`calls` for requests whose one call went to the primary and answered ok: answers, once their
        request ended (inlined: most calls come this way)."""
        if "ok" in self._allowed:  # a policy falling back on success: nothing is plain about it
            for request, call, rank in batch:
                self._general([call], request, rank)
            return
        combos, pending, answers = self._combos, self._pending, self._answers
        seq = self._seq
        for request, call, rank in batch:
            provider = call["provider"]  # its route's primary: one of the primaries
            try:  # what a request always has (else .get's None, below)
                key = (provider, request["tenant"], request["region"], request["request_class"])
                end = request["ts_end"]
            except KeyError:
                key = (provider, request.get("tenant"), request.get("region"), request.get("request_class"))
                end = request.get("ts_end")
            combo = combos.get(key)
            if combo is None:
                combo = self._combo(provider, key[1:])
            seq += 1
            if end is not None:
                at, ts = float(end), call["ts"]
                (answers if ts < at else pending).append((at, _ANSWER, seq, combo, provider, ts, "ok", rank << 20))
        self._seq = seq

    def _general(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        attrs: tuple[Any, ...] | None = None
        end = owner.get("ts_end") if owner else None
        pending, primaries, allowed = self._pending, self._primaries, self._allowed
        for index, call in enumerate(calls):
            provider = call["provider"]
            if provider not in primaries:
                continue
            if attrs is None or owner is None:  # a request's calls share its attributes
                source = owner or call
                attrs = (source.get("tenant"), source.get("region"), source.get("request_class"))
            combo = self._combo(provider, attrs)
            cause = "ok" if call["outcome"] == "ok" else cause_of(call)
            self._seq += 1
            # One flat tuple per event: a million of them go through here.
            if cause in allowed or (call["outcome"] in NAMED_CAUSES and call["outcome"] in allowed):
                # An error answers at once, but a timeout is learned only at the gateway's own deadline:
                # by the request's next call (the fallback), or its end at the latest. A success made
                # meanwhile does not undo that later-learned failure.
                at = call["ts"]
                if call["outcome"] == "timeout":
                    known = calls[index + 1]["ts"] if index + 1 < len(calls) else (end or at)
                    at = max(at, min(known, end or known))
                pending.append((at, _TRIGGER, self._seq, combo, provider, None, None, 0))
            elif end is not None:  # else never surely known (no request, or it never ended): explains nothing
                pending.append((float(end), _ANSWER, self._seq, combo, provider, call["ts"], cause,
                                rank << 20 | index))

    def ask(self, provider: str, request: Event, ts: float) -> Question:
        question = Question(request)
        self._seq += 1
        combo = self._combo(provider, (request.get("tenant"), request.get("region"), request.get("request_class")))
        self._pending.append((ts, _QUESTION, self._seq, combo, provider, question, None, 0))
        return question

    def advance(self, settled: float) -> None:
        """Replay every event before `settled`: nothing earlier can still be added."""
        pending, answers = self._pending, self._answers
        if settled <= self._mark or not (pending or answers):
            return
        self._mark = settled
        # Mostly sorted already (timsort takes it in a run or two). Sequence numbers are unique, so
        # tuples never compare past them.
        batch: list[tuple[Any, ...]] = []
        if pending:
            pending.sort()
            cut = bisect_left(pending, (settled,))
            batch = pending[:cut]
            del pending[:cut]
        if answers:
            answers.sort()
            cut = bisect_left(answers, (settled,))
            due = answers[:cut]
            del answers[:cut]
            if due:
                if not batch and self._unchanged_by(due):
                    return
                batch += due
                batch.sort()  # in one order with the failures and questions due, as if one queue
        generation, last_known = self._generation, self._last_known
        for at, kind, _, combo, provider, payload, cause, order in batch:
            if kind == _ANSWER:
                # Answers come in the order they became known, so one only matters to a scope that lost
                # its best to a failure since this combination last looked (generation), on a tie, or
                # when its call was made after its request ended. Most answers stop here.
                tie = last_known.get(provider) == at
                last_known[provider] = at
                if combo[1] == generation.get(provider, 0) and not tie and payload < at:
                    continue
                self._answer(provider, combo, (payload, at, cause, order))
            elif kind == _TRIGGER:
                self._trigger(provider, combo, at)
            else:
                payload.answer = self._unexplained(combo, at)
                payload.done = True

    def _unchanged_by(self, due: list[tuple[Any, ...]]) -> bool:
        """Plain answers (sorted) replayed alone, with one primary: when every combination is up to date
        with its failures and no two of them (or the last known) share a time, each would stop at the
        first test of `advance`'s loop. Then only the last time known moves (True); else False."""
        provider = self._one_primary
        if provider is None:
            return False
        generation = self._generation.get(provider, 0)
        for combo in self._combos.values():
            if combo[1] != generation:
                return False
        times = set(map(_AT, due))
        if len(times) != len(due) or self._last_known.get(provider) in times:
            return False
        self._last_known[provider] = due[-1][0]
        return True

    def _combo(self, provider: str, attrs: tuple[Any, ...]) -> list[Any]:
        """The scopes holding requests with these attributes, and the generation they were last brought
        up to date with (see _answer)."""
        combo = self._combos.get((provider, *attrs))
        if combo is None:
            scopes = []
            for scope in SCOPES:
                key = (provider, scope, tuple(attrs[i] for i in scope))
                state = self._scopes.get(key)
                if state is None:
                    state = self._scopes[key] = _Scope()
                scopes.append(state)
            combo = self._combos[(provider, *attrs)] = [scopes, -1]
        return combo

    def _trigger(self, provider: str, combo: list[Any], ts: float) -> None:
        self._generation[provider] = self._generation.get(provider, 0) + 1
        for state in combo[0]:
            state.fold(ts)
            if state.failed_at is None or ts > state.failed_at:
                state.failed_at = ts
            if state.best is not None and state.best[0] <= state.failed_at:
                state.best = None
            if state.late:
                state.late = [a for a in state.late if a[0] > state.failed_at]

    def _answer(self, provider: str, combo: list[Any], answer: Answer) -> None:
        ts, known = answer[0], answer[1]
        late = ts >= known
        complete = True
        for state in combo[0]:
            failed_at = state.failed_at
            if late:
                if failed_at is None or ts > failed_at:
                    state.late.append(answer)
            elif failed_at is not None and ts > failed_at and _better(answer, state.best):
                state.best = answer
            if failed_at is not None and state.best is None:
                complete = False
        combo[1] = self._generation.get(provider, 0) if complete else -1

    def _unexplained(self, combo: list[Any], ts: float) -> Unexplained | None:
        evidence: Unexplained | None = None
        for scope, state in zip(SCOPES, combo[0], strict=True):
            failed_at = state.failed_at
            if failed_at is None:
                continue
            state.fold(ts)
            found = state.best
            for answer in state.late:
                if answer[0] > failed_at and _better(answer, found):
                    found = answer
            if found is None:
                return None
            if evidence is None:
                rel = self._rel
                evidence = "had answered since its last failure", {
                    "scope": ", ".join(ATTRS[i] for i in scope) or "all requests",
                    "last_failure_at_s": rel(failed_at), "answered": cause_label(found[2]),
                    "answered_at_s": rel(found[0]), "answer_known_at_s": rel(found[1])}
        return evidence or ("had not failed before", {"last_failure_before": None})


def flush(questions: deque[Question], handle: Callable[[Question], None]) -> None:
    """Answered questions, in the order they were asked."""
    while questions and questions[0].done:
        handle(questions.popleft())

"""What the streaming join relies on and promises: its bounds, what it hands on, and how it says a
ledger is outside them (see harness.ledger.join)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

Event = dict[str, Any]
ORPHAN_RANK = 1 << 62  # uncorrelated calls come after every id, as History lists them
NO_PROVIDERS: frozenset[str] = frozenset()


class Disorder(Exception):
    """The ledger breaks a bound the streaming join relies on, so it cannot be joined exactly:
    - a line older than the newest one seen by more than `lag_s` (writers too far out of order);
    - a call for a request already handed on, or a request whose calls were given up as orphans;
    - an audit event naming a request so long after it that the checks have judged its audit trail,
      or naming one before any of its lines came.
    Request ids are unique in a run (the driver numbers them): reused ones are not looked for beyond
    the ids still kept (Handed)."""


@dataclass(frozen=True)
class Bounds:
    lag_s: float = 2.0            # how far out of time order the lines of different writers may be
    call_hold_s: float = 0.0      # held mode: calls may still come this long after their request ended
    orphan_hold_s: float = 14.0   # calls wait this long for their request before they are orphans
    audit_hold_s: float = 32.0    # an audit event this late after the response still joins it

    @classmethod
    def for_run(cls, timeout_s: float, within_s: float) -> Bounds:
        """A request lives at most the client's timeout; audits are judged late after `within_s`."""
        lag = 2.0
        return cls(lag_s=lag, orphan_hold_s=timeout_s + 2 * lag, audit_hold_s=max(30.0, 2 * within_s) + lag)

    def held(self, scale: float = 1.0) -> Bounds:
        """Held mode, every bound `scale` times wider."""
        return replace(self, lag_s=self.lag_s * scale, call_hold_s=(self.orphan_hold_s - self.lag_s) * scale,
                       orphan_hold_s=self.orphan_hold_s * scale, audit_hold_s=self.audit_hold_s * scale)


class JoinSink(Protocol):
    """Where the join hands things on. Requests come in ledger order, audits in ledger order."""

    def record(self, request: Event, calls: list[Event]) -> None: ...

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        """Every call exactly once: a request's calls together (ts order), then orphans."""

    def joined(self, request: Event, calls: list[Event], rank: int) -> None:
        """A request and its calls (at least one): `record`, then `calls`, in one call. A sink without it
        gets the two (the join looks for it once)."""

    def plain_lane(self) -> tuple[dict[str, str], list[Any]] | None:
        """Optional: (route -> primary, a list). A request whose one call went to its route's primary and
        answered ok is then appended to the list as (request, call, rank) instead of `joined`; the sink
        hands the list on itself (Feeder). None, or no such method: `joined` for every request."""

    def audit(self, audit: Event) -> None:
        """An audit event as soon as it is read."""

    def audit_calls(self, audit: Event, providers: frozenset[str]) -> None:
        """An audit naming a fallback, once the providers called for its request id are final."""

    def advance(self, watermark: float, settled: float, audited: float) -> None:
        """Lines still to come are written after `watermark` - lag; calls and request ends still to
        be handed on (in `record`/`calls`) are all at or after `settled`; every audit naming a
        fallback whose ts is before `audited` has been handed on (in `audit_calls`)."""


class _SeenIds:
    """Ids handed on, in a fixed 8 MB: never a false 'no', rarely a false 'maybe' (which only costs a
    judgement another way). Asked only about the rare lines that find no partner in the live state."""

    def __init__(self, bits: int = 1 << 26) -> None:
        self.bits = bytearray(bits >> 3)
        self.mask = bits - 1

    def add(self, key: str) -> None:
        h = hash(key)
        a, b = h & self.mask, (h >> 32) & self.mask
        self.bits[a >> 3] |= 1 << (a & 7)
        self.bits[b >> 3] |= 1 << (b & 7)

    def maybe(self, key: str) -> bool:
        h = hash(key)
        a, b = h & self.mask, (h >> 32) & self.mask
        return bool(self.bits[a >> 3] & (1 << (a & 7)) and self.bits[b >> 3] & (1 << (b & 7)))


class Handed:
    """Ids the join has handed on: for a while exactly, with what a late audit event naming one needs
    (the providers its calls reached, its request's end), then only in a compact filter.

    "A while" is at least `keep_s` of the ledger's time and at most twice that: ids are kept in two
    generations, the older dropped whole when the younger has been filling for `keep_s` (one dict
    swap instead of expiring each id on its own; a million ids go through here)."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.young: dict[str, tuple[frozenset[str], float | None]] = {}
        self.old: dict[str, tuple[frozenset[str], float | None]] = {}
        self._swap_at: float | None = None
        # A few distinct provider sets serve a million requests (one provider: its set, by its name).
        self.shared: dict[Any, frozenset[str]] = {}
        self._filter = _SeenIds()

    def keep(self, rid: str, calls: list[Event], ts_end: float | None) -> None:
        if not calls:
            providers: frozenset[str] = NO_PROVIDERS
        elif len(calls) == 1:
            provider = calls[0]["provider"]
            providers = self.shared.get(provider) or self.shared.setdefault(provider, frozenset((provider,)))
        else:
            found = frozenset(c["provider"] for c in calls)
            providers = self.shared.setdefault(found, found)
        self.young[rid] = (providers, ts_end)

    def keep_none(self, rid: str, ts_end: float | None) -> None:
        """`keep` for a request without calls."""
        self.young[rid] = (NO_PROVIDERS, ts_end)

    def get(self, rid: str) -> tuple[frozenset[str], float | None] | None:
        found = self.young.get(rid)
        return found if found is not None else self.old.get(rid)

    def __contains__(self, rid: object) -> bool:
        return rid in self.young or rid in self.old

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

    def expire(self, now: float) -> None:
        if self._swap_at is None:
            self._swap_at = now + self.keep_s
        elif now >= self._swap_at:
            self._forget(self.old)
            self.old, self.young = self.young, {}
            self._swap_at = now + self.keep_s

    def _forget(self, ids: dict[str, Any]) -> None:
        """Ids leaving the exact generations go into the filter (all at once: a tight loop per swap instead
        of a few attribute loads per id)."""
        seen = self._filter  # _SeenIds.add, inlined
        bits, mask = seen.bits, seen.mask
        for rid in ids:
            h = hash(rid)
            a, b = h & mask, (h >> 32) & mask
            bits[a >> 3] |= 1 << (a & 7)
            bits[b >> 3] |= 1 << (b & 7)

    def maybe(self, rid: str) -> bool:
        """Possibly handed on at some point (never a false no)."""
        return rid in self.young or rid in self.old or self._filter.maybe(rid)


def fallback_audit_id(audit: Event) -> str | None:
    """The request id of an audit event naming a fallback (what `audit_calls` gets), else None."""
    fields = audit.get("fields") or _NO_FIELDS
    rid, fallback = fields.get("request_id"), fields.get("fallback")
    if not rid and _blank(rid) or not fallback and _blank(fallback):
        return None
    return str(rid)


_NO_FIELDS: dict[str, Any] = {}


def _blank(value: Any) -> bool:
    """`value in (None, "", [], {})` without building that tuple's list and dict on every call."""
    return not value and (value is None or value == "" or value == [] or value == {})

"""The faults a mock provider or a fault proxy currently applies, which request each one hits, and
the token-protected control endpoint that sets them (the same on mocks and proxies).

A fault is chosen for a request by three tests, cheapest first: its deadline (an expired fault
is dropped here, by the provider itself, which is what heals an outage when the harness was
killed), its match against the correlation token's attributes, and a seeded draw that is a
pure function of (seed, fault name, correlation id), so a rerun hits the very same requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, TypeAdapter, ValidationError

from harness.core.correlation import Correlation
from harness.core.model import (
    ContentPolicyEffect,
    CutEffect,
    ErrorEffect,
    FaultMatch,
    LatencyEffect,
    OverloadedEffect,
    ResetEffect,
    TimeoutEffect,
)
from harness.topology.apis.openai import json_error  # the control endpoint answers in OpenAI's error shape too

__all__ = ["json_error"]

AnyEffect = (ErrorEffect | OverloadedEffect | TimeoutEffect | LatencyEffect | ResetEffect | ContentPolicyEffect
             | CutEffect)
# Only the HTTP effects: a container effect (pause, stop, ...) sent here is a 400, not a silent no-op.
_EFFECT: TypeAdapter[AnyEffect] = TypeAdapter(Annotated[AnyEffect, Field(discriminator="kind")])
_MATCH_KEYS = ("tenant", "request_class", "region")
TOKEN_HEADER = "x-harness-token"
_DRAW_SCALE = float(2**64)


class FaultSpecError(ValueError):
    """A fault definition the control endpoint refuses (answered with 400)."""


class SiblingsUnreachable(RuntimeError):
    """A change of faults that did not reach every process of a provider (answered with 502)."""


# A provider served by several processes (`processes: N`): the change (method, fault name, raw body) is
# applied by every sibling process before the control request that made it is answered. Raises
# SiblingsUnreachable. Set on the app by the server that knows the siblings (harness.serve).
SiblingFanOut = Callable[[str, str, bytes], Awaitable[None]]
SIBLINGS_KEY: web.AppKey[SiblingFanOut] = web.AppKey("fault_siblings")


@dataclass(frozen=True)
class ActiveFault:
    name: str
    effect: AnyEffect
    # Attribute -> accepted values; precomputed as frozensets so matching is a few lookups.
    match: tuple[tuple[str, frozenset[str]], ...] | None
    match_raw: dict[str, Any] | None
    probability: float
    deadline_ts: float
    seed: int

    def matches(self, corr: Correlation | None) -> bool:
        if self.match is None:
            return True
        if corr is None:  # without a token we cannot tell its tenant: a targeted fault misses it
            return False
        for attr, values in self.match:  # a plain loop: no generator allocated per request
            if getattr(corr, attr) not in values:
                return False
        return True

    def draw(self, corr_id: str) -> float:
        """Uniform in [0, 1), the same for every rerun with this seed."""
        digest = hashlib.sha256(f"{self.seed}\x00{self.name}\x00{corr_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / _DRAW_SCALE

    def hits(self, corr: Correlation | None, corr_id: str | None) -> bool:
        if not self.matches(corr):
            return False
        if self.probability >= 1.0:
            return True
        if self.probability <= 0.0:
            return False
        return self.draw(corr_id or "") < self.probability

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "effect": self.effect.model_dump(mode="json"),
            "match": self.match_raw,
            "probability": self.probability,
            "deadline_ts": self.deadline_ts,
        }


def parse_fault(name: str, body: Any, seed: int) -> ActiveFault:
    """Validate a control-endpoint body with the scenario model's own effect and match types."""
    if not isinstance(body, dict):
        raise FaultSpecError("the body must be a JSON object")
    unknown = set(body) - {"effect", "match", "probability", "deadline_ts"}
    if unknown:
        raise FaultSpecError(f"unknown keys: {sorted(unknown)}")
    try:
        effect = _EFFECT.validate_python(body.get("effect"))
        raw_match = body.get("match")
        match = FaultMatch.model_validate(raw_match) if raw_match is not None else None
    except ValidationError as exc:
        raise FaultSpecError(str(exc)) from None
    probability = _number(body.get("probability", 1.0), "probability")
    if not 0.0 <= probability <= 1.0:
        raise FaultSpecError("probability must be within [0, 1]")
    if "deadline_ts" not in body:
        raise FaultSpecError("deadline_ts is required: every fault must expire by itself")
    deadline_ts = _number(body["deadline_ts"], "deadline_ts")
    compiled: list[tuple[str, frozenset[str]]] = []
    if match is not None:
        for attr in _MATCH_KEYS:
            value = getattr(match, attr)
            if value is not None:
                compiled.append((attr, frozenset([value] if isinstance(value, str) else value)))
    return ActiveFault(
        name=name, effect=effect, match=tuple(compiled) if match is not None else None,
        match_raw=match.model_dump(exclude_none=True) if match is not None else None,
        probability=probability, deadline_ts=deadline_ts, seed=seed,
    )


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultSpecError(f"{key} must be a finite number")
    return float(value)


class FaultTable:
    """Active faults of one provider, in the order they were set (the first that hits wins)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._faults: dict[str, ActiveFault] = {}
        self._next_deadline = math.inf  # the earliest deadline: until then no fault can have expired

    def put(self, name: str, body: Any) -> ActiveFault:
        return self.add(parse_fault(name, body, self.seed))

    def add(self, fault: ActiveFault) -> ActiveFault:
        # The table is updated before the control endpoint answers: the very next request sees it.
        name = fault.name
        self._faults.pop(name, None)  # re-setting a fault moves it to the end, like a fresh one
        self._faults[name] = fault
        self._next_deadline = min(f.deadline_ts for f in self._faults.values())
        return fault

    def delete(self, name: str) -> bool:
        removed = self._faults.pop(name, None) is not None
        self._next_deadline = min((f.deadline_ts for f in self._faults.values()), default=math.inf)
        return removed

    def active(self, now: float | None = None) -> list[ActiveFault]:
        self._expire(time.time() if now is None else now)
        return list(self._faults.values())

    def select(self, corr: Correlation | None, corr_id: str | None, now: float) -> ActiveFault | None:
        """The fault that decides this request's outcome, or None."""
        if not self._faults:  # the steady state: no work at all on the hot path
            return None
        self._expire(now)
        for fault in self._faults.values():
            if fault.hits(corr, corr_id):
                return fault
        return None

    def _expire(self, now: float) -> None:
        if now < self._next_deadline:  # the common case while faults are active: nothing to scan
            return
        expired = [name for name, fault in self._faults.items() if now >= fault.deadline_ts]
        for name in expired:
            del self._faults[name]
        self._next_deadline = min((f.deadline_ts for f in self._faults.values()), default=math.inf)


class FaultControl:
    """`PUT|DELETE /_harness/faults/{name}`, `GET /_harness/faults`: only with the run's token."""

    def __init__(self, faults: FaultTable, control_token: str) -> None:
        self.faults = faults
        self.token = control_token.encode()

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self.token)

    async def put_fault(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return json_error(401, "missing or wrong control token", "authentication_error")
        name, raw = request.match_info["name"], await request.read()
        try:  # validated here first: a sibling is never asked to apply what this process would refuse
            fault = parse_fault(name, json.loads(raw), self.faults.seed)
        except (ValueError, FaultSpecError) as exc:
            return json_error(400, str(exc), "invalid_request_error")
        refused = await self._fan_out(request, "PUT", name, raw)
        if refused is not None:
            return refused
        return web.json_response({"fault": self.faults.add(fault).public()})

    async def delete_fault(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return json_error(401, "missing or wrong control token", "authentication_error")
        name = request.match_info["name"]
        # Healed here even when a sibling cannot be reached: as much healing as possible, and a 502 says so.
        removed = self.faults.delete(name)
        refused = await self._fan_out(request, "DELETE", name, b"")
        if refused is not None:
            return refused
        # Deleting an absent (or already expired) fault is success: healing must be idempotent.
        return web.json_response({"name": name, "removed": removed})

    @staticmethod
    async def _fan_out(request: web.Request, method: str, name: str, raw: bytes) -> web.Response | None:
        """Apply the change on every sibling process of this provider first; a 502 when one was not reached
        (never a fault set on some processes only, answered as if set on all)."""
        fan_out = request.app.get(SIBLINGS_KEY)
        if fan_out is None:  # a provider of one process: nothing to reach
            return None
        try:
            await fan_out(method, name, raw)
        except SiblingsUnreachable as exc:
            return json_error(502, f"fault {name} was not {'set' if method == 'PUT' else 'removed'} on every process "
                              f"of this provider: {exc}", "api_error")
        return None

    async def list_faults(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return json_error(401, "missing or wrong control token", "authentication_error")
        return web.json_response({"faults": [f.public() for f in self.faults.active()]})

    def mount(self, app: web.Application) -> None:
        app.router.add_put("/_harness/faults/{name}", self.put_fault)
        app.router.add_delete("/_harness/faults/{name}", self.delete_fault)
        app.router.add_get("/_harness/faults", self.list_faults)

"""Write synthetic but realistic ledgers for check tests, with the real LedgerWriter.

Times are given relative to the run start (seconds); events carry every field of the
contract in harness.core.events, so the checks see what a real run would record.
`random_run` writes a whole seeded run, its lines interleaved as several writers append them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core import events as ev
from harness.core.identity import fingerprint
from harness.core.model import Scenario
from harness.ledger import History, LedgerWriter, load_history

T0 = 1_700_000_000.0

_BASE: dict[str, Any] = {
    "version": 1,
    "name": "checks-test",
    "identities": {"svc-gw": {"key": "sk-gw"}, "svc-own": {"key": "sk-own"}, "svc-other": {"key": "sk-other"}},
    "providers": {
        "p-eu": {"model": "m-large", "region": "eu", "identity": "svc-gw",
                 "data_classes": ["public", "internal", "pii"], "tools": ["search", "shell"]},
        "f-eu": {"model": "m-large-b", "region": "eu", "identity": "svc-gw",
                 "data_classes": ["public", "internal", "pii"], "tools": ["search", "shell"]},
        "f-us": {"model": "m-large", "region": "us", "identity": "svc-gw", "data_classes": ["public", "internal"]},
        "f-own": {"model": "m-small", "region": "eu", "identity": "svc-own", "data_classes": ["public", "internal"]},
        "rogue": {"model": "m-cheap", "region": "eu", "identity": "svc-other", "data_classes": ["public"]},
    },
    "gateway": {"kind": "reference"},
    "policy": {
        "routes": {
            "chat": {
                "primary": "p-eu",
                "fallbacks": [
                    {"target": "f-eu", "equivalence": "equivalent", "approved_by": "cab", "approval_ref": "CAB-1"},
                    {"target": "f-us", "equivalence": "equivalent", "approved_by": "cab", "approval_ref": "CAB-2",
                     "tenants": ["acme"],
                     "trust_exceptions": {"allow": ["region"], "reason": "DR", "approval_ref": "DPO-7"}},
                    {"target": "f-own", "equivalence": "non-equivalent", "approved_by": "cab", "approval_ref": "CAB-3"},
                ],
            },
        },
        "fail_closed": {"request_classes": ["regulated"], "data_classes": ["pii"]},
        "reversibility": {"failback_within_s": 5},
    },
    "traffic": {"rate_per_s": 10, "duration_s": 60,
                "mix": [{"route": "chat", "tenant": "acme", "region": "eu", "request_class": "chat",
                         "data_class": "internal"}]},
}


def scenario_dict() -> dict[str, Any]:
    """A fresh copy of the base scenario, for tests to adjust before validating."""
    return copy.deepcopy(_BASE)


def make_scenario(data: dict[str, Any] | None = None) -> Scenario:
    return Scenario.model_validate(data if data is not None else scenario_dict())


_DEFAULT_STATUS = {"ok": 200, "error": 503, "content_policy": 400, "timeout": 0, "reset": 0}


class LedgerBuilder:
    def __init__(self, path: Path, scenario: Scenario, t0: float = T0, *, held: bool = False) -> None:
        """`held`: keep the events until `release` writes them in an order of the caller's choosing."""
        self.path = Path(path)
        self.scenario = scenario
        self.t0 = t0
        self.requests_sent = 0
        self._writer = LedgerWriter(self.path)
        self._held: list[dict[str, Any]] | None = [] if held else None

    def at(self, rel: float) -> float:
        return self.t0 + rel

    def append(self, event: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            self._writer.append(event)

    def release(self, order: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        """Write the held events in `order(events)`: how several writers would have interleaved them."""
        held, self._held = self._held or [], None
        for event in order(held):
            self._writer.append(event)

    def run_start(self) -> LedgerBuilder:
        dump = self.scenario.model_dump(mode="json")  # SecretStr dumps redacted, as the engine writes it
        self.append({"type": ev.RUN_START, "ts": self.t0, "run_id": "test-run", "harness_version": "0.1.0",
                     "scenario_name": self.scenario.name, "scenario_path": "scenario.yaml",
                     "scenario_sha256": hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest(),
                     "seed": self.scenario.seed, "scenario": dump})
        self.append({"type": ev.TOPOLOGY, "ts": self.t0 + 0.01,
                     "providers": {name: f"http://127.0.0.1:{9000 + i}" for i, name in
                                   enumerate(self.scenario.providers)},
                     "gateway": {"kind": self.scenario.gateway.kind, "url": "http://127.0.0.1:8080", "defects": []},
                     "collector_url": "http://127.0.0.1:8099"})
        return self

    def upstream(self, rid: str | None, provider: str, at: float, *, outcome: str = "ok", status: int | None = None,
                 identity: str | None = None, tools: list[str] | None = None, fault: str | None = None,
                 stream: bool = False, tenant: str | None = "acme", request_class: str | None = "chat",
                 region: str | None = "eu", data_class: str | None = "internal") -> None:
        """One call a provider received; identity defaults to the provider's own (a well-behaved gateway)."""
        declared = self.scenario.providers[provider]
        identity = identity if identity is not None else declared.identity
        key = self.scenario.identities.get(identity)
        self.append({"type": ev.UPSTREAM, "ts": self.at(at), "id": rid, "provider": provider, "identity": identity,
                     "key_fp": fingerprint(key.key.get_secret_value()) if key else None, "tools": list(tools or []),
                     "model": declared.model, "stream": stream,
                     "status": _DEFAULT_STATUS[outcome] if status is None else status, "outcome": outcome,
                     "fault": fault, "tenant": tenant, "request_class": request_class, "region": region,
                     "data_class": data_class})

    def request(self, rid: str, at: float, *, duration: float = 0.2, route: str = "chat", tenant: str = "acme",
                region: str = "eu", request_class: str = "chat", data_class: str = "internal", stream: bool = False,
                tools: list[str] | None = None, status: int | None = 200, outcome: str | None = None,
                claimed_target: str | None = None, body_valid: bool | None = None,
                stream_complete: bool | None = None, error: str | None = None) -> None:
        """The client-side view; written when the response ended, as the driver does."""
        ok = status is not None and 200 <= status < 300
        if outcome is None:
            outcome = "ok" if ok else ("http_error" if status is not None else "timeout")
        if body_valid is None and not stream:
            body_valid = ok
        if stream_complete is None and stream:
            stream_complete = ok
        self.requests_sent += 1
        self.append({"type": ev.REQUEST, "ts": self.at(at), "ts_end": self.at(at + duration), "id": rid,
                     "route": route, "tenant": tenant, "region": region, "request_class": request_class,
                     "data_class": data_class, "stream": stream, "tools": list(tools or []), "status": status,
                     "outcome": outcome, "latency_ms": duration * 1000, "claimed_target": claimed_target,
                     "claimed_raw": claimed_target, "body_valid": body_valid if not stream else None,
                     "stream_complete": stream_complete if stream else None, "error": error})

    def exchange(self, rid: str, at: float, calls: list[tuple[Any, ...] | dict[str, Any]], **request: Any) -> None:
        """A request and its upstream calls, 10 ms apart. A call is (provider, outcome[, status]) or upstream kwargs.

        The client status defaults to the last call's (or 502 when no call answered ok).
        """
        attrs = {k: request[k] for k in ("tenant", "request_class", "region", "data_class") if k in request}
        last_ok = False
        for index, spec in enumerate(calls):
            kwargs = dict(spec) if isinstance(spec, dict) else {"provider": spec[0], "outcome": spec[1],
                                                                 **({"status": spec[2]} if len(spec) > 2 else {})}
            kwargs.setdefault("stream", request.get("stream", False))
            self.upstream(rid, at=at + 0.01 * (index + 1), **{**attrs, **kwargs})
            last_ok = kwargs.get("outcome", "ok") == "ok"
        request.setdefault("status", 200 if last_ok else (502 if calls else 503))
        self.request(rid, at, **request)

    def audit(self, at: float, fields: dict[str, Any], *, leaked: list[str] | None = None) -> None:
        self.append({"type": ev.AUDIT, "ts": self.at(at), "source": "collector", "fields": fields,
                     "leaked_identities": list(leaked or []), "raw": {"event": "fallback", **fields}})

    def fallback_audit(self, rid: str, at: float, fallback: str, *, primary: str = "p-eu", route: str = "chat",
                       tenant: str = "acme", reason: str = "503", **overrides: Any) -> None:
        """A complete audit record, as a well-behaved gateway emits it."""
        fields = {"request_id": rid, "tenant": tenant, "route": route, "primary": primary, "fallback": fallback,
                  "reason": reason, "timestamp": self.at(at), **overrides}
        self.audit(at, fields)

    def fault(self, name: str, start: float, end: float | None, targets: list[str], *,
              effect: dict[str, Any] | None = None, healed: bool = True, reason: str = "scheduled") -> None:
        """A fault window; end None = never healed (expires at its deadline or the end of the run)."""
        effect = effect or {"kind": "error", "status": 503, "retry_after_s": None}
        self.append({"type": ev.FAULT_START, "ts": self.at(start), "fault": name, "backend": "mock",
                     "targets": targets, "effect": effect, "match": None, "probability": 1.0,
                     "deadline_ts": self.at((end if end is not None else start) + 60),
                     "undo": {"kind": "mock-admin", "providers": targets}})
        if end is not None:
            self.append({"type": ev.FAULT_END, "ts": self.at(end), "fault": name, "healed": healed,
                         "reason": reason, "error": None})

    def kill_switch(self, at: float, state: str, *, ok: bool = True, status: int | None = 200,
                    error: str | None = None) -> None:
        self.append({"type": ev.KILL_SWITCH, "ts": self.at(at), "state": state, "ok": ok, "status": status,
                     "error": error})

    def note(self, at: float, message: str, level: str = "warning") -> None:
        self.append({"type": ev.NOTE, "ts": self.at(at), "level": level, "message": message})

    def run_end(self, at: float = 60.0, status: str = "completed", reason: str = "") -> None:
        self.append({"type": ev.RUN_END, "ts": self.at(at), "status": status, "reason": reason,
                     "requests_sent": self.requests_sent})

    def close(self) -> Path:
        if self._held is not None:
            self.release(list)
        self._writer.close()
        return self.path

    def history(self) -> History:
        """Close the file and read it back with the real reader."""
        self.close()
        return load_history(self.path)


# --- seeded random runs, for comparing the streaming judge with the in-memory one ---------------------

_CAUSES = [("error", 503), ("error", 429), ("error", 500), ("content_policy", 400), ("timeout", 0), ("reset", 0)]
_FALLBACKS = ["f-eu", "f-eu", "f-eu", "f-us", "f-own", "rogue"]


def _variant(rng: random.Random) -> dict[str, Any]:
    """The base scenario with some of its policy changed, so every branch of the checks is reachable."""
    data = scenario_dict()
    policy = data["policy"]
    if rng.random() < 0.3:
        policy["trust_boundary"] = {"same": rng.sample(["identity", "region", "tools"], rng.randint(1, 3)),
                                    "data_class_clearance": rng.random() < 0.5}
    if rng.random() < 0.3:
        policy["fallback_on"] = [503, "timeout"]
    if rng.random() < 0.3:
        policy["limits"] = {"max_upstream_attempts": 2}
    if rng.random() < 0.2:
        policy["fail_closed"] = {}
    if rng.random() < 0.3:
        policy["logging"] = {"within_s": 1}
    if rng.random() < 0.2:
        policy["routes"]["chat"]["tenants"] = ["acme"]
    if rng.random() < 0.3:
        policy["routes"]["alt"] = {"primary": "f-eu", "fallbacks": [
            {"target": "p-eu", "equivalence": "equivalent", "approved_by": "cab", "approval_ref": "CAB-9"}]}
    return data


def _calls(rng: random.Random, primary: str, down: str | None, noise: float) -> list[dict[str, Any]]:
    """What a gateway sent upstream for one request: well-behaved at noise 0, misbehaving more above."""
    calls: list[dict[str, Any]] = []
    roll = rng.random()
    if down or roll < 0.06 * noise:
        if rng.random() < 0.7:  # tries the primary first; else it is cooling down and skipped
            outcome, status = rng.choice(_CAUSES) if rng.random() < 0.3 * noise or not down else ("error", 503)
            calls.append({"provider": primary, "outcome": outcome, "status": status, "fault": down})
        for _ in range(rng.choice([1, 1, 1, 2, 3]) if noise else 1):
            calls.append({"provider": rng.choice(_FALLBACKS) if noise else "f-eu",
                          "outcome": "ok" if rng.random() < 1 - 0.2 * noise else "error"})
    elif roll < 0.09 * noise:
        calls += [{"provider": primary, "outcome": "error", "status": 500}] * rng.randint(2, 4)
    else:
        calls.append({"provider": primary, "outcome": "ok"})
    for call in calls:
        if rng.random() < 0.04 * noise:
            call["identity"] = rng.choice(["svc-other", "svc-own", "unknown", "none"])
        if rng.random() < 0.1 * noise:
            call["tools"] = rng.choice([["search"], ["search", "shell"], ["shell"]])
    return calls if rng.random() > 0.03 * noise else []


def random_run(path: Path, seed: int, requests: int = 250) -> Path:
    """A seeded random run, its lines in the order several writers would have appended them.

    The gateway's misbehaviour (`noise`), the coarseness of the clock (ties), how far out of order
    the writers are and how late calls and audit events come all vary with the seed.
    """
    rng = random.Random(seed)
    noise = rng.choice([0.0, 0.3, 1.0, 1.0])
    coarse = rng.random() < 0.3  # times on a 0.1 s grid: many equal timestamps
    b = LedgerBuilder(path, make_scenario(_variant(rng)), held=True).run_start()
    downs: list[tuple[str, float, float, str]] = []
    for k in range(rng.randint(0, 3)):
        start, target = rng.uniform(1, 50), rng.choice(["p-eu", "p-eu", "f-eu"])
        end = None if rng.random() < 0.15 else start + rng.uniform(0.5, 12)
        name = f"fault-{k % 2}"
        b.fault(name, start, end, [target], healed=rng.random() < 0.9)
        downs.append((target, start, end if end is not None else start + 60, name))
    if rng.random() < 0.4:
        off = rng.uniform(1, 40)
        b.kill_switch(off, "off", ok=rng.random() < 0.9, status=200, error=None)
        if rng.random() < 0.7:
            b.kill_switch(off + rng.uniform(1, 10), "on", ok=rng.random() < 0.9, status=500, error="broken")
    if rng.random() < 0.3:
        b.note(rng.uniform(0, 55), "gateway restarted")
    for i in range(requests):
        at = round(rng.uniform(0.2, 56), 1) if coarse else rng.uniform(0.2, 56)
        route = rng.choices(["chat", "alt", "other"], [0.85, 0.1, 0.05])[0]
        primary = {"chat": "p-eu", "alt": "f-eu"}.get(route, "p-eu")
        down = next((name for target, s, e, name in downs if target == primary and s <= at <= e), None)
        rid = f"r{i:05d}"
        attrs = {"tenant": rng.choice(["acme", "acme", "globex"]), "region": rng.choice(["eu", "eu", "apac"]),
                 "request_class": rng.choice(["chat"] * 6 + ["regulated"]), "data_class": rng.choice(
                     ["internal"] * 8 + ["pii", "public"])}
        stream, duration = rng.random() < 0.2, rng.choice([0.1, 0.2] if coarse else [0.05, 0.2, 0.6, 1.5])
        calls = _calls(rng, primary, down, noise)
        for k, call in enumerate(calls):
            late = rng.random() < 0.04 * noise  # the gateway still calls after the client got its answer
            when = at + (duration + rng.uniform(0, 2) if late else 0.01 * (k + 1))
            b.upstream(rid, at=when, stream=stream, **{a: attrs[a] for a in ("tenant", "request_class", "region",
                                                                              "data_class")}, **call)
        last_ok = bool(calls) and calls[-1]["outcome"] == "ok"
        status = rng.choice([200, 200, 502, None]) if rng.random() < 0.05 * noise else (200 if last_ok else 502)
        served = next((c["provider"] for c in reversed(calls) if c["outcome"] == "ok"), None)
        claimed = served if rng.random() > 0.03 * noise else rng.choice(["f-eu", "p-eu", "f-us"])
        b.request(rid, at, duration=duration, route=route, stream=stream, status=status,
                  outcome="transport_error" if rng.random() < 0.02 * noise else None, claimed_target=claimed,
                  body_valid=False if rng.random() < 0.02 * noise else None,
                  stream_complete=False if stream and rng.random() < 0.05 * noise else None,
                  tools=rng.choice([[], ["search"]]), **attrs)
        if served and served != primary and rng.random() < 1 - 0.15 * noise:
            for _ in range(rng.choice([1, 1, 1, 2]) if noise else 1):
                delay = rng.choice([rng.uniform(-0.3, 0.5)] * 8 + [rng.uniform(1, 8), rng.uniform(10, 28)])
                if rng.random() < 0.01 * noise:
                    delay = rng.uniform(40, 90)  # past the streaming join's audit hold
                fallback = served if rng.random() < 1 - 0.1 * noise else rng.choice(["f-us", "rogue", ""])
                b.fallback_audit(rid, at + duration + delay, fallback, tenant=attrs["tenant"], route=route,
                                 primary=primary, reason="" if rng.random() < 0.05 * noise else "503")
    for k in range(rng.randint(0, 4) if noise else 0):  # orphans: no readable id, or a request that never came
        rid = None if k % 2 else f"ghost-{k}"
        b.upstream(rid, rng.choice(["p-eu", "f-eu", "rogue"]), rng.uniform(1, 56),
                   outcome=rng.choice(["ok", "error"]), identity=rng.choice([None, None, "svc-other"]))
    for k in range(rng.randint(0, 3) if noise else 0):  # audits for nothing we know, or leaking a key
        rid = rng.choice(["", f"nobody-{k}"])
        b.audit(rng.uniform(1, 58), {"request_id": rid, "fallback": rng.choice(["f-eu", ""])},
                leaked=rng.choice([[], ["svc-gw"]]))
    ending = rng.random()
    if ending < 0.85:
        b.run_end(58, status="completed" if ending < 0.75 else "aborted", reason="gateway crashed")
    jitter = rng.choice([0.0, 0.0, 0.02, 0.3, 1.0, 3.0])  # 3 s: more than the join's lag, it must widen
    return ordered(b, jitter=jitter, seed=seed)


def ordered(b: LedgerBuilder, *, jitter: float = 0.0, seed: int = 1) -> Path:
    """Write the held events as the processes of a run append them: each when it happened (the driver
    writes a request when it ended), give or take `jitter` seconds between writers."""
    rng = random.Random(seed)

    def written_at(event: dict[str, Any]) -> float:
        return float(event["ts_end"] if event["type"] == "request" else event["ts"]) + rng.uniform(0, jitter)

    b.release(lambda events: events[:1] + sorted(events[1:], key=written_at))
    return b.close()

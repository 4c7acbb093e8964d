"""Write synthetic but realistic ledgers for check tests, with the real LedgerWriter.

Times are given relative to the run start (seconds); events carry every field of the
contract in harness.core.events, so the checks see what a real run would record.
"""

from __future__ import annotations

import copy
import hashlib
import json
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
    def __init__(self, path: Path, scenario: Scenario, t0: float = T0) -> None:
        self.path = Path(path)
        self.scenario = scenario
        self.t0 = t0
        self.requests_sent = 0
        self._writer = LedgerWriter(self.path)

    def at(self, rel: float) -> float:
        return self.t0 + rel

    def append(self, event: dict[str, Any]) -> None:
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

    def history(self) -> History:
        """Close the file and read it back with the real reader."""
        self._writer.close()
        return load_history(self.path)

"""Write a synthetic but realistic ledger of N requests, fast and seeded.

    python benchmarks/make_ledger.py OUT.jsonl [--requests N] [--rate R] [--seed S] [--requirements]

The run mirrors `scenarios/regional-outage.yaml` on the reference gateway: chat, streamed and
regulated traffic on an EU primary; 25 s primary outages every 200 s (12.5 % of the time), during
which chat traffic falls back (about 10 % of all requests) with a 1 s cooldown and regulated traffic
fails closed; an audit event for every fallback; a kill-switch drill; and a few planted violations
(a missing and a late audit, a false served-by claim, a retry storm, a cut stream passed off as a
200, a key sent to the wrong provider, a fallback offered extra tools), so the checks walk their
failure paths too.

Lines are written in the order the processes of a real run would append them: each provider
records a call when it receives it, the driver writes a request when its response ended, the
collector writes an audit when it arrives. So a request's calls come before it, lines of
concurrent requests interleave and an audit may land before or after its request.

`--requirements` adds what issue 10 judges: both providers declare capabilities and a response
profile, the mix gains JSON-schema extraction and long-context requests (a request kind each), every
success records the client's `answer` (model, fingerprint, shape), and a few fallback answers to
extraction come back as text (planted equivalence violations), so capability_fit, equivalence and
vendor_fallback run on every request.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.core.capabilities import request_kind  # noqa: E402
from harness.core.model import Scenario  # noqa: E402

try:  # orjson writes the same compact JSON as the ledger writer, several times faster
    import orjson

    _dumps: Callable[[Any], bytes] = orjson.dumps
except ImportError:  # pragma: no cover - the stdlib is enough, only slower
    import json

    def _dumps(event: Any) -> bytes:
        return json.dumps(event, separators=(",", ":")).encode()


T0 = 1_795_000_000.0
PERIOD_S, OUTAGE_S, FIRST_OUTAGE_S = 200.0, 25.0, 60.0
COOLDOWN_S = 1.0
FAULT = "eu-primary-down"
KEY_FP = {"svc-eu": "fp-ece8ff3e11ae6922", "svc-us": "fp-3b1f7c1d9a0e5b21"}
MODELS = {"gpt-eu": "gpt-4o", "claude-eu": "claude-sonnet", "gpt-us": "gpt-4o"}
# (weight, request_class, data_class, stream, tools), the mix of regional-outage.yaml
MIX = [(3, "chat", "internal", False, ["search"]), (1, "chat", "internal", True, []),
       (1, "regulated", "confidential", False, [])]

SCENARIO: dict[str, Any] = {
    "version": 1, "name": "bench-regional-outage", "description": "synthetic benchmark ledger",
    "tags": ["benchmark"], "seed": 7,
    "identities": {"svc-eu": {"key": "sk-test-svc-eu"}, "svc-us": {"key": "sk-test-svc-us"}},
    "providers": {
        "gpt-eu": {"model": "gpt-4o", "region": "eu", "identity": "svc-eu",
                   "data_classes": ["public", "internal", "confidential"], "tools": ["search"]},
        "claude-eu": {"model": "claude-sonnet", "region": "eu", "identity": "svc-eu",
                      "data_classes": ["public", "internal", "confidential"], "tools": ["search"]},
        "gpt-us": {"model": "gpt-4o", "region": "us", "identity": "svc-us", "data_classes": ["public", "internal"],
                   "tools": ["search", "browse"]},
    },
    "gateway": {"kind": "reference", "cooldown_s": COOLDOWN_S},
    "policy": {
        "routes": {"chat": {"primary": "gpt-eu", "fallbacks": [
            {"target": "claude-eu", "equivalence": "non-equivalent", "approved_by": "platform-security",
             "approval_ref": "CHG-1234"}]}},
        "fail_closed": {"request_classes": ["regulated"]},
        "reversibility": {"failback_within_s": 4},
    },
    "traffic": {"rate_per_s": 500, "duration_s": 2000,
                "mix": [{"weight": w, "route": "chat", "tenant": "acme", "region": "eu", "request_class": c,
                         "data_class": d, "stream": s, "tools": t} for w, c, d, s, t in MIX]},
    "checks": "all",
}

# --requirements: capabilities, profiles and two request kinds more.
SCHEMA = {"type": "object", "properties": {"vendor": {"type": "string"}, "total": {"type": "number"}},
          "required": ["vendor", "total"]}
REQUIREMENT_MIX = [(1, "extract", "internal", False, [], {"response_format": {"type": "json_schema", "name": "invoice",
                                                                               "schema": SCHEMA}}),
                   (1, "chat", "internal", False, [], {"input_tokens": 9000})]
PROFILES = {"gpt-eu": ({"context_tokens": 128000}, "fp_eu_1"), "claude-eu": ({"context_tokens": 200000}, "fp_cl_1")}
TEXT_SHAPE = '{"content":"text","finish_reason":"stop"}'
JSON_SHAPE = '{"content":"json","finish_reason":"stop","json":{"total":"number","vendor":"string"}}'


def requirement_scenario() -> dict[str, Any]:
    scenario = {**SCENARIO, "name": "bench-regional-outage-requirements",
                "providers": {name: dict(p) for name, p in SCENARIO["providers"].items()},
                "traffic": {**SCENARIO["traffic"], "mix": list(SCENARIO["traffic"]["mix"])}}
    for name, (caps, fp) in PROFILES.items():
        scenario["providers"][name].update({"capabilities": caps, "profile": {"system_fingerprint": fp}})
    scenario["traffic"]["mix"] += [{"weight": w, "route": "chat", "tenant": "acme", "region": "eu", "request_class": c,
                                    "data_class": d, "stream": s, "tools": t, **extra}
                                   for w, c, d, s, t, extra in REQUIREMENT_MIX]
    return scenario


class _Writer:
    """Appends lines in the order a real run would: by the moment each process wrote its event."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0

    def add(self, written_at: float, event: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (written_at, self._seq, _dumps(event) + b"\n"))

    def flush_before(self, now: float) -> None:
        heap, out = self._heap, self._out
        while heap and heap[0][0] < now:
            out.write(heapq.heappop(heap)[2])

    def close(self) -> None:
        self.flush_before(float("inf"))


def _call(ts: float, rid: str, provider: str, attrs: dict[str, Any], *, ok: bool = True,
          identity: str = "svc-eu") -> dict[str, Any]:
    return {"type": "upstream", "ts": ts, "id": rid, "provider": provider, "identity": identity,
            "key_fp": KEY_FP.get(identity), "tools": attrs["tools"], "model": MODELS[provider],
            "stream": attrs["stream"], "status": 200 if ok else 503, "outcome": "ok" if ok else "error",
            "fault": None if ok else FAULT, "tenant": "acme", "request_class": attrs["request_class"],
            "region": "eu", "data_class": attrs["data_class"]}


def _audit(ts: float, rid: str, reason: str, request_class: str) -> dict[str, Any]:
    fields = {"request_id": rid, "tenant": "acme", "route": "chat", "primary": "gpt-eu", "fallback": "claude-eu",
              "reason": reason, "timestamp": f"{ts:.3f}", "region": "eu", "request_class": request_class}
    return {"type": "audit", "ts": ts, "source": "collector", "fields": fields, "leaked_identities": [],
            "raw": {"event": "fallback", **fields}}


def write_ledger(path: Path, requests: int, rate: float = 500.0, seed: int = 7,
                 requirements: bool = False) -> dict[str, int]:
    """Write the ledger; returns counts (requests, fallbacks, lines) for the caller to report."""
    rng = random.Random(seed)
    declared = requirement_scenario() if requirements else SCENARIO
    model = Scenario.model_validate(declared)
    scenario = model.model_dump(mode="json")
    for identity in scenario["identities"].values():
        identity["key"] = "**********"
    duration = requests / rate
    windows = []
    start = FIRST_OUTAGE_S
    while start + OUTAGE_S < duration:
        windows.append((T0 + start, T0 + start + OUTAGE_S))
        start += PERIOD_S
    kill = (T0 + 20.0, T0 + 30.0) if duration > 40 else None
    weights = [entry.weight for entry in model.traffic.mix]
    kinds = [{"request_class": e.request_class, "data_class": e.data_class, "stream": e.stream, "tools": e.tools,
              "kind": request_kind(e), "json": e.response_format is not None} for e in model.traffic.mix]
    # Planted violations, between the kill-switch drill and the first outage: ordinary chat traffic.
    special = {int((at - 0.5) * rate): kind for at, kind in
               ((32.0, "retry-storm"), (36.0, "claim"), (40.0, "cut-stream"), (44.0, "unknown-key"))}
    counts = {"requests": requests, "fallbacks": 0, "lines": 0}
    with path.open("wb") as out:
        w = _Writer(out)
        w.add(T0, {"type": "run_start", "ts": T0, "run_id": "bench", "harness_version": "0.1.0",
                   "scenario_name": declared["name"], "scenario_path": "benchmarks/make_ledger.py",
                   "scenario_sha256": "0" * 64, "seed": seed, "scenario": scenario})
        w.add(T0 + 0.01, {"type": "topology", "providers": {p: f"http://127.0.0.1:{9000 + i}" for i, p in
                                                             enumerate(MODELS)}, "collector_url": "http://127.0.0.1:8099",
                          "gateway": {"kind": "reference", "url": "http://127.0.0.1:8080", "defects": []},
                          "ts": T0 + 0.01})
        for start_ts, end_ts in windows:
            w.add(start_ts, {"type": "fault_start", "fault": FAULT, "backend": "mock", "targets": ["gpt-eu"],
                             "effect": {"kind": "error", "status": 503, "retry_after_s": None}, "match": None,
                             "probability": 1.0, "deadline_ts": end_ts + 5, "undo": "DELETE /_harness/faults",
                             "ts": start_ts})
            w.add(end_ts, {"type": "fault_end", "fault": FAULT, "healed": True, "reason": "scheduled",
                           "error": None, "ts": end_ts})
        if kill:
            for state, at in (("off", kill[0]), ("on", kill[1])):
                w.add(at, {"type": "kill_switch", "state": state, "ok": True, "status": 200, "error": None,
                           "ts_sent": at - 0.002, "ts": at})
        window_index = 0
        cooldown_until = 0.0
        fallbacks = 0
        for i in range(requests):
            ts = T0 + 0.5 + i / rate + rng.random() * 0.5 / rate
            w.flush_before(ts - 1.0)  # nothing is written later than 1 s after its moment
            while window_index < len(windows) and windows[window_index][1] < ts:
                window_index += 1
            down = window_index < len(windows) and windows[window_index][0] <= ts
            rid = f"r{i:07d}"
            attrs = kinds[rng.choices(range(len(kinds)), weights)[0]]
            kind = special.get(i)
            if kind:  # planted violations ride on ordinary chat traffic
                attrs = kinds[1] if kind == "cut-stream" else kinds[0]
            latency = 0.02 + rng.random() * 0.06
            t = ts + 0.001
            calls: list[dict[str, Any]] = []
            status, fallback = 200, False
            if attrs["request_class"] == "regulated":
                calls.append(_call(t, rid, "gpt-eu", attrs, ok=not down))
                status = 503 if down else 200  # fails closed: the primary's error is passed on
            elif down or ts < cooldown_until:
                if ts >= cooldown_until:  # the primary is tried, fails, and is cooled down
                    calls.append(_call(t, rid, "gpt-eu", attrs, ok=False))
                    cooldown_until = t + COOLDOWN_S
                    t += 0.002
                calls.append(_call(t, rid, "claude-eu", attrs))
                if fallbacks % 20_000 == 13 and attrs["tools"]:  # planted: the fallback offered more tools
                    calls[-1]["tools"] = ["browse", "search"]
                fallback = True
            elif kind == "retry-storm":
                calls += [_call(t + 0.002 * k, rid, "gpt-eu", attrs, ok=k == 4) for k in range(5)]
            else:
                calls.append(_call(t, rid, "gpt-eu", attrs, identity="svc-us" if kind == "unknown-key" else "svc-eu"))
            for call in calls:
                w.add(call["ts"], call)
            ts_end = ts + latency
            served = "claude-eu" if fallback else "gpt-eu"
            cut = kind == "cut-stream" and attrs["stream"]
            request = {"type": "request", "ts": ts, "ts_end": ts_end, "id": rid, "route": "chat", "tenant": "acme",
                       "region": "eu", "request_class": attrs["request_class"], "data_class": attrs["data_class"],
                       "stream": attrs["stream"], "tools": attrs["tools"], "status": status,
                       "outcome": "ok" if status == 200 else "http_error", "latency_ms": round(latency * 1000, 2),
                       "claimed_target": "gpt-us" if kind == "claim" else (served if status == 200 else None),
                       "claimed_raw": served if status == 200 else None,
                       "body_valid": None if attrs["stream"] else status == 200,
                       "stream_complete": (not cut and status == 200) if attrs["stream"] else None,
                       "error": None if status == 200 else "503 from upstream"}
            if requirements:
                if attrs["kind"] is not None:
                    request["kind"] = attrs["kind"]
                if status == 200:
                    shape = JSON_SHAPE if attrs["json"] else TEXT_SHAPE
                    if attrs["json"] and fallback and fallbacks % 20_000 == 17:
                        shape = TEXT_SHAPE  # planted: the fallback ignored response_format
                    answer: dict[str, Any] = {"model": MODELS[served], "system_fingerprint": PROFILES[served][1],
                                              "shape": shape}
                    if attrs["json"]:
                        answer["schema_ok"] = shape == JSON_SHAPE
                    request["answer"] = answer
            w.add(ts_end, request)
            if fallback:
                fallbacks += 1
                if fallbacks % 50_000 == 7:
                    pass  # planted: a fallback without an audit event
                else:
                    # The gateway audits as it answers: the collector receives it around the response's end.
                    late = 9.0 if fallbacks % 50_000 == 11 else 0.0
                    reason = "503" if len(calls) == 2 else "primary_cooldown"
                    at = ts_end + late + (rng.random() - 0.5) * 0.004
                    w.add(at, _audit(at, rid, reason, attrs["request_class"]))
            counts["lines"] += len(calls) + 1 + fallback
        end = T0 + 1.0 + duration
        w.add(end, {"type": "run_end", "status": "completed", "reason": None, "requests_sent": requests, "ts": end})
        w.close()
    counts["fallbacks"] = fallbacks
    counts["lines"] += 4 + 2 * len(windows) + (2 if kill else 0)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second of the simulated run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--requirements", action="store_true", help="capabilities, profiles and request kinds too")
    args = parser.parse_args()
    counts = write_ledger(args.out, args.requests, args.rate, args.seed, args.requirements)
    print(f"{args.out}: {counts['requests']} requests, {counts['fallbacks']} fallbacks, {counts['lines']} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())

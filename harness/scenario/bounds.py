"""Upper bounds on every duration, timeout, latency and rate, and the longest a run can last.

The model (harness.core.model) holds the limits; this module says, when one is exceeded, what the
limit is in the field's unit and why it exists, and checks what no single field can: the number
of requests a run plans. Documented in docs/scenario-format.md ("Limits").
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.model import MAX_REQUESTS, Scenario
from harness.scenario.yaml_nodes import Finding, KeyPath

_WAIT = ("a request that waits longer proves nothing more, and the run would wait for it: a drill tests "
         "fallback on a hang of seconds, not of hours")
_REASONS: dict[str, str] = {
    "timeout_s": _WAIT,
    "hold_s": _WAIT,
    "upstream_timeout_s": _WAIT,
    "ready_timeout_s": "a gateway that does not answer within 10 minutes will not; check its log instead",
    "latency_ms": _WAIT,
    "ms": _WAIT,
    "retry_after_s": "a Retry-After of more than an hour outlasts any drill",
    "within_s": "a check window of more than an hour outlasts any drill",
    "failback_within_s": "a check window of more than an hour outlasts any drill",
    "rate_per_s": "one harness process cannot send more; run several, or use the load mode's users",
    "duration_s": "a run lasts at most a day; split a longer soak into runs",
    "at_s": "a run lasts at most a day; split a longer soak into runs",
    "cooldown_s": "a run lasts at most a day",
    "max_upstream_attempts": "more attempts than this is a retry storm, not a policy",
    "after_chunks": "a stream that long is not a cut",
    "name": "the run folder is named <name>-<time>-<hex>: a short name keeps it well within any file-name limit",
}


def unit(path: KeyPath) -> str:
    """The unit of the value at `path`, as shown after a number ('' for a plain count)."""
    name = str(path[-1]) if path else ""
    if name == "rate_per_s":
        return "/s"
    if name.endswith("_ms") or (name == "ms" and "effect" in path):
        return " ms"
    if name.endswith("_s"):
        return " s"
    return ""


def above_limit(path: KeyPath, value: object, limit: float) -> Finding:
    """`traffic.timeout_s: 100000 is above the limit of 600 s`, with why the limit exists."""
    # An int stays exact (10**40 is no float); a float in its shortest form.
    try:
        shown = f"{value:g}" if isinstance(value, float) else str(value) if isinstance(value, int) else repr(value)
    except ValueError:  # an int past Python's 4300-digit limit for str()
        shown = "a huge number"
    if len(shown) > 40:
        shown = shown[:37] + "..."
    name = str(path[-1]) if path else ""
    return Finding(path, f"{shown} is above the limit of {limit:g}{unit(path)}", _REASONS.get(name))


def name_too_long(path: KeyPath, value: str, limit: int) -> Finding:
    return Finding(path, f"the name is {len(value)} characters long, above the limit of {limit}",
                   _REASONS["name"])


def check(s: Scenario) -> list[Finding]:
    """What no single field can say: the request count the traffic plans."""
    planned = s.traffic.rate_per_s * s.traffic.duration_s
    if planned <= MAX_REQUESTS:
        return []
    return [Finding(("traffic", "duration_s"),
                    f"{s.traffic.rate_per_s:g}/s for {s.traffic.duration_s:g} s is {planned:,.0f} requests, above "
                    f"the limit of {MAX_REQUESTS:,} per run",
                    "every request is a line of the ledger that every check reads: lower rate_per_s or "
                    "duration_s, or split the drill into several runs")]


# Unless a scenario sets gateway.ready_timeout_s, each adapter waits its own default; the slowest (LiteLLM's
# 90 s, harness.gateways) bounds them all.
DEFAULT_READY_MAX_S = 90.0


@dataclass(frozen=True)
class RunLength:
    planned_s: float  # traffic, faults and kill-switch actions, from the first request
    at_most_s: float  # plus the gateway's start-up and the last requests' client timeout


def run_length(s: Scenario) -> RunLength:
    """How long a run of `s` lasts: as planned, and at most (what bounds it: every request ends at
    traffic.timeout_s whatever a provider's hold or latency; the gateway is ready within ready_timeout_s
    or the run aborts). Process start and shutdown add a few seconds more."""
    planned = max([s.traffic.duration_s] + [f.at_s + f.duration_s for f in s.faults] + [a.at_s for a in s.timeline])
    gateway = s.gateway
    ready = gateway.ready_timeout_s if "ready_timeout_s" in gateway.model_fields_set else DEFAULT_READY_MAX_S
    at_most = ready + max(planned, s.traffic.duration_s + s.traffic.timeout_s)
    return RunLength(planned, at_most)

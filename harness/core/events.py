"""Ledger event kinds: one JSON object per line in `ledger.jsonl`.

Every event has `type` and `ts` (Unix epoch seconds, float; all processes of a run share
the wall clock). The fields each kind carries are listed below; they are the contract
between the recorders (engine, traffic driver, mock providers, collector) and the checks.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict

RUN_START = "run_start"          # run_id, harness_version, scenario_name, scenario_path,
                                 # scenario_sha256, seed, scenario (redacted model dump),
                                 # mode: run|load (older ledgers: absent = run); load: its options
TOPOLOGY = "topology"            # providers {name: url}, gateway {kind, url, defects}, collector_url
FAULT_START = "fault_start"      # fault, backend, targets [provider or container], providers
                                 # [providers whose calls it affects], effect, match, probability,
                                 # deadline_ts (None: no self-expiry, e.g. docker), undo
FAULT_END = "fault_end"          # fault, healed (bool), reason: scheduled|aborted|expired, error
KILL_SWITCH = "kill_switch"      # state: off|on, ok (bool), status, error, ts_sent (ts: acknowledged)
REQUEST = "request"              # client-side view, see RequestEvent
UPSTREAM = "upstream"            # provider-side ground truth, see UpstreamEvent
AUDIT = "audit"                  # one audit event the gateway emitted, see AuditEvent
NOTE = "note"                    # level, message: engine remarks (gateway crashed, ...)
RUN_END = "run_end"              # status: completed|aborted|interrupted|incomplete (load: requests
                                 # lost), reason, requests_sent; load: observations (ledger vs
                                 # locust counts), locust (locust's own totals)

RequestOutcome = Literal["ok", "http_error", "timeout", "transport_error", "unknown"]
# context_length: the model refused a prompt over its context window (a 400 context_length_exceeded).
# overloaded: the provider's own capacity error (Anthropic's 529, Gemini's UNAVAILABLE, Bedrock's
# ServiceUnavailable / ModelNotReady): an outage, named as the provider names it.
UpstreamOutcome = Literal["ok", "error", "timeout", "reset", "content_policy", "context_length", "overloaded"]


class RequestEvent(TypedDict):
    type: str
    ts: float                       # when the driver sent it
    ts_end: float                   # when the response ended (or the driver gave up)
    id: str                         # correlation id, also inside the message content
    route: str
    tenant: str
    region: str
    request_class: str
    data_class: str
    stream: bool
    tools: list[str]                # tools the client offered
    status: int | None              # HTTP status the client saw
    outcome: RequestOutcome
    latency_ms: float
    claimed_target: str | None      # provider the gateway says served (mapped), None if unsaid
    claimed_raw: str | None         # the gateway's own name for it
    body_valid: bool | None         # non-stream: a well-formed chat completion
    stream_complete: bool | None    # stream: saw finish_reason and [DONE]
    error: str | None


# The `caller` of an upstream call no identity of the run made: never joined to the request it claims.
UNKNOWN_CALLER = "unknown"

# The `error` of a request the run's own stop cut off in flight (outcome unknown): the gateway may have
# gone on with it (called a fallback) without the time to answer or to log it.
CUT_IN_FLIGHT = "interrupted: the run stopped before the answer came"


class UpstreamEvent(TypedDict):
    type: str
    ts: float                       # when the provider received the call
    id: str | None                  # correlation id parsed from the content (None: not found)
    provider: str
    identity: str                   # identity name, or "unknown" / "none" (no credential)
    key_fp: str | None              # credential fingerprint, never the key
    tools: list[str]
    model: str | None
    stream: bool
    status: int                     # status it answered (0 for reset / timeout)
    outcome: UpstreamOutcome
    fault: str | None               # fault that decided the outcome
    tenant: str | None              # as carried by the correlation token
    request_class: str | None
    region: str | None
    data_class: str | None
    # Only on a call the vendor's own fallback answered (a provider's vendor_fallback): the provider
    # whose model really answered. Absent on every other call.
    # vendor_reroute: str
    # Only on a call to a provider whose API is not OpenAI's: the API it spoke (azure-openai, anthropic, ...).
    # api: str
    # Only on a call whose credential belongs to no identity of the run (or that had none): it is nobody's
    # evidence. `id` is None, `caller` is UNKNOWN_CALLER and `claimed_id` the correlation id it carried.
    # caller: str
    # claimed_id: str | None


class AuditEvent(TypedDict):
    type: str
    ts: float                       # when the harness received it
    source: str                     # collector | file
    fields: dict[str, Any]          # mapped to our names (request_id, fallback, ...)
    leaked_identities: list[str]    # identities whose key appeared in the raw event
    raw: Any                        # the gateway's event, with any credential redacted


class EventSink(Protocol):
    """What recorders are handed: append one event to the ledger, durably, now."""

    def append(self, event: dict[str, Any]) -> None: ...


def request_failed(request: dict[str, Any]) -> bool:
    """A request that got no clean, complete answer (a failure for load statistics and for locust)."""
    return (request.get("outcome") != "ok" or request.get("body_valid") is False
            or request.get("stream_complete") is False)

"""The typed scenario model (format version 1).

The YAML loader (`harness.scenario`) validates files against these classes and
`harness schema` prints their JSON Schema, so the two cannot drift. Every model is
frozen and rejects unknown keys.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PrivateAttr,
    SecretStr,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError

from harness.core.registry import applicable_check_names
from harness.core.registry import check_names as registered_check_names


def _known_check(name: str) -> str:
    """A check name the registry knows (its modules are discovered on first use, not imported here)."""
    known = registered_check_names()
    if name not in known:
        raise PydanticCustomError("unknown_check", "unknown check {name}", {"name": name, "expected": list(known)})
    return name


class _CheckNameEnum:
    """The JSON Schema lists the registered names, whatever modules registered them."""

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "enum": list(registered_check_names())}


# A check name; the set of names is derived from the registry (harness.core.registry), never listed here.
CheckName = Annotated[str, AfterValidator(_known_check), _CheckNameEnum()]

# Switchable defects of the reference gateway (used by the harness's own selftest).
Defect = Literal[
    "unapproved-target",
    "cross-region",
    "identity-swap",
    "extra-tools",
    "reroute-sensitive",
    "fallback-on-any-error",
    "no-audit",
    "wrong-audit-target",
    "sticky-fallback",
    "retry-storm",
    "ignore-kill-switch",
    "truncate-stream",
    "key-leak",
    "capability-blind",
    "context-overflow-reroute",
    "drops-response-format",
]
DEFECTS: tuple[str, ...] = Defect.__args__  # type: ignore[attr-defined]

# Parts of the trust envelope that `trust_boundary.same` may require to stay equal.
EnvelopeField = Literal["identity", "region", "tools"]
# Non-HTTP causes a gateway may fall back on. context_length: the provider refused a request over its
# context window (a 400 `context_length_exceeded`): no outage, so a fallback on it must be declared.
# content_policy: refused by the provider's content policy, whatever its status (Azure's 400 content_filter,
# or an answer that is a refusal: Anthropic's refusal, Gemini's SAFETY, Bedrock's guardrail).
# overloaded: the provider's own capacity error (Anthropic's 529 overloaded_error, Bedrock's
# ServiceUnavailable / ModelNotReady, Gemini's UNAVAILABLE, OpenAI's 503 overloaded).
FallbackCause = Literal["timeout", "connection_error", "context_length", "content_policy", "overloaded"]
# The wire dialect a provider speaks (harness.topology.apis): what its mock serves, how its identity is read.
ProviderApiName = Literal["openai", "azure-openai", "anthropic", "gemini", "bedrock"]
PROVIDER_APIS: tuple[str, ...] = ProviderApiName.__args__  # type: ignore[attr-defined]
# What a fallback target may lose against the primary (`degrades`), named as the checks name it.
Degradation = Literal["context", "output_budget", "structured_output", "tools", "vision", "determinism"]
DEGRADATIONS: tuple[str, ...] = Degradation.__args__  # type: ignore[attr-defined]
# Input modalities a request may carry.
Modality = Literal["text", "image"]
AuditField = Literal[
    "request_id", "tenant", "route", "primary", "fallback", "reason", "timestamp",
    "region", "request_class",
]


# Upper bounds (docs/scenario-format.md, "Limits"): no real drill needs more, and each keeps a run that
# validates bounded in time and memory (the loader names the limit and why when one is exceeded).
MAX_RUN_S = 86_400  # a run, a fault window, a schedule point: one day
MAX_WAIT_S = 600  # anything one request waits on: a client timeout, a hang, an upstream timeout
MAX_LATENCY_MS = 600_000  # an added latency: the same 600 s, in ms
MAX_RATE_PER_S = 10_000
MAX_REQUESTS = 1_000_000  # rate_per_s x duration_s: every request is a ledger line (~1 KB each)
MAX_CHECK_WINDOW_S = 3_600  # how long a check waits for an audit event or a failback
MAX_NAME_LEN = 64  # the run folder is <name>-<stamp>-<hex>: far below any file-name limit (255 bytes)


class Strict(BaseModel):
    # No inf/NaN: a number the mocks cannot act on would make the ground truth lie.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Identity(Strict):
    """A non-human identity (API key / service account) used towards providers."""

    key: SecretStr = Field(description="The credential. Supports ${ENV} and ${ENV:-default}. For a bedrock "
                           "provider: the AWS access key id.")
    secret: SecretStr | None = Field(default=None, description="bedrock only: the AWS secret access key the "
                                     "identity signs with (SigV4); a call is this identity's only when its "
                                     "signature verifies against it.")


class Capabilities(Strict):
    """What a model can serve. A key left out is no limit: undeclared, the mock serves everything."""

    context_tokens: int | None = Field(default=None, ge=1, le=100_000_000,
                                       description="Context window: prompt plus max_tokens, in estimated tokens.")
    max_output_tokens: int | None = Field(default=None, ge=1, le=10_000_000,
                                          description="Longest answer; a longer one ends with finish_reason length.")
    structured_output: bool = Field(default=True, description="Honours response_format (JSON schema / object).")
    tools: bool = Field(default=True, description="Can answer with tool calls.")
    vision: bool = Field(default=True, description="Accepts image inputs.")
    deterministic_seed: bool = Field(default=True, description="The same seed and prompt give the same answer.")

    @property
    def limited(self) -> bool:
        """Declares some limit: a model that refuses or degrades some request (the default serves all)."""
        return self != _UNLIMITED


# A response header name (RFC 9110 token characters).
HeaderName = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]


class ResponseProfile(Strict):
    """How the model's answers identify it: what a client can see of who really answered."""

    model: str | None = Field(default=None, description="The model name its answers report (default: model).")
    system_fingerprint: str | None = Field(default=None, description="The system_fingerprint its answers carry.")
    region_header: HeaderName | None = Field(default=None, description="A response header naming its region "
                                             "(e.g. x-ms-region).")

    @property
    def declared(self) -> bool:
        """Says something of who answers beyond the model name: a fingerprint or a region header."""
        return self.system_fingerprint is not None or self.region_header is not None or self.model is not None


_UNLIMITED = Capabilities()


class VendorFallback(Strict):
    """The vendor's own, opaque fallback: under a fault this provider answers as `to` would (its model name,
    fingerprint, region header and capabilities) instead of failing. The gateway never sees it."""

    to: str = Field(description="The provider whose answers it gives instead.")
    on: Literal["fault"] = Field(default="fault", description="When: while a fault hits this provider.")


class Provider(Strict):
    """A mock model endpoint the harness starts (one port each)."""

    model: str
    region: str
    identity: str = Field(description="Name of the identity whose key this provider accepts.")
    data_classes: list[str] = Field(min_length=1, description="Data classes it is cleared for.")
    tools: list[str] = Field(default_factory=list, description="Tools it may be offered.")
    latency_ms: float = Field(default=0, ge=0, le=MAX_LATENCY_MS, description="Base latency of the mock's answers.")
    port: int | None = Field(default=None, ge=1024, le=65535,
                             description="Fixed port on 127.0.0.1 (for gateways configured with static URLs).")
    processes: int = Field(default=1, ge=1, le=16, description="How many processes serve it (1..16): they share "
                           "its one port (SO_REUSEPORT), record into the one ledger and apply every fault together; "
                           "for a gateway that needs more than one core's worth of provider traffic.")
    upstream: str | None = Field(default=None, description="A real endpoint (base URL): instead of a mock, the "
                                 "harness starts a fault proxy in front of it that records the same ground truth.")
    api: ProviderApiName = Field(default="openai", description="The API it speaks: openai (chat completions and "
                                 "the Responses API), azure-openai, anthropic, gemini, bedrock.")
    capabilities: Capabilities = Field(default_factory=Capabilities)
    profile: ResponseProfile = Field(default_factory=ResponseProfile)
    vendor_fallback: VendorFallback | None = None


class Container(Strict):
    """A container the harness starts for the run (docker SDK) and removes at the end."""

    image: str
    command: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    binds: list[str] = Field(default_factory=list, description="host:container[:ro] bind mounts.")
    environment: dict[str, str] = Field(default_factory=dict)
    network_mode: str = "host"
    ready_url: str | None = Field(default=None, description="Polled until it answers 2xx.")


def _iso_day(value: Any) -> Any:
    """An ISO day written as text (a ledger's JSON, a gateway's config) read as a date: strict mode would
    refuse the string, and YAML already gives a date."""
    return date.fromisoformat(value) if isinstance(value, str) else value


# A day (YYYY-MM-DD): a date from YAML, or the same day as text from JSON.
Day = Annotated[date, BeforeValidator(_iso_day)]


class TrustExceptions(Strict):
    """Envelope fields allowed to differ for one fallback target, with their approval."""

    allow: list[EnvelopeField] = Field(min_length=1)
    reason: str
    approval_ref: str


class FallbackTarget(Strict):
    target: str = Field(description="Provider name.")
    equivalence: Literal["equivalent", "non-equivalent"]
    approved_by: str
    approval_ref: str
    owner: str | None = None
    documentation: str | None = Field(default=None, description="Where the equivalence is documented.")
    tenants: list[str] | None = Field(default=None, description="Approved only for these tenants.")
    regions: list[str] | None = Field(default=None, description="Approved only for these regions.")
    request_classes: list[str] | None = Field(default=None, description="Approved only for these classes.")
    trust_exceptions: TrustExceptions | None = None
    degrades: list[Degradation] = Field(default_factory=list, description="non-equivalent: what it loses against "
                                        "the primary.")
    degradation_accepted_by: list[str] = Field(default_factory=list, description="Request classes that accept "
                                               "what it degrades; for any other class a degraded answer is a "
                                               "violation.")
    # Governance (required in a registry file, optional inline): who depends on the path, who runs the
    # mechanism, and until when the approval holds. A fallback to an expired approval is unapproved.
    accountable: str | None = Field(default=None, description="The consuming team accountable for the "
                                    "behaviour it depends on.")
    mechanism_owner: str | None = Field(default=None, description="The platform team that owns the fallback "
                                        "mechanism.")
    approved_on: Day | None = Field(default=None, description="When the approval was given (YYYY-MM-DD).")
    review_by: Day | None = Field(default=None, description="When the approval is due for review; past it, "
                                   "`harness validate` warns.")
    expires: Day | None = Field(default=None, description="After this day the approval no longer holds: a "
                                 "fallback to the target is unapproved.")
    # Set by the loader, never written by hand: where the approval is written ("file:line:col" in the registry,
    # or in the scenario for a target approved in the scenario only), for reports. None for an inline policy.
    approved_in: str | None = Field(default=None, description="Set by the loader: where the approval is written "
                                    "(file:line:col).")


class Route(Strict):
    """A model name clients ask for, its primary provider and approved fallback targets."""

    primary: str
    fallbacks: list[FallbackTarget] = Field(default_factory=list)
    tenants: list[str] | None = Field(default=None, description="Fallback allowed only for these tenants.")
    regions: list[str] | None = Field(default=None, description="Fallback allowed only for these regions.")
    request_classes: list[str] | None = Field(
        default=None, description="Fallback allowed only for these request classes."
    )


class TrustBoundary(Strict):
    same: list[EnvelopeField] = Field(default_factory=lambda: ["identity", "region", "tools"])
    data_class_clearance: bool = True


class FailClosed(Strict):
    request_classes: list[str] = Field(default_factory=list)
    data_classes: list[str] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)


class Logging(Strict):
    required_fields: list[AuditField] = Field(
        default_factory=lambda: ["request_id", "tenant", "route", "primary", "fallback", "reason", "timestamp"]
    )
    within_s: float = Field(default=5, gt=0, le=MAX_CHECK_WINDOW_S)


class Reversibility(Strict):
    failback_within_s: float = Field(default=10, gt=0, le=MAX_CHECK_WINDOW_S)


class Limits(Strict):
    max_upstream_attempts: int = Field(default=3, ge=1, le=100)


class Policy(Strict):
    routes: dict[str, Route] = Field(min_length=1)
    fallback_on: list[Annotated[int, Field(ge=100, le=599)] | FallbackCause] = Field(
        default_factory=lambda: [429, 500, 502, 503, 504, "timeout", "connection_error"]
    )
    trust_boundary: TrustBoundary = Field(default_factory=TrustBoundary)
    fail_closed: FailClosed = Field(default_factory=FailClosed)
    logging: Logging = Field(default_factory=Logging)
    reversibility: Reversibility = Field(default_factory=Reversibility)
    limits: Limits = Field(default_factory=Limits)
    # Set by the loader when the scenario references a registry (`policy: {file: ...}`): the path as written, for
    # reports. The merged policy is complete without it, so a ledger's copy is re-judged without the file.
    registry: str | None = Field(default=None, description="Set by the loader: the registry file the policy was "
                                 "merged from, as written.")


# Request attributes travel in HTTP headers: printable ASCII only.
HeaderValue = Annotated[str, Field(pattern=r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")]


class JsonSchemaFormat(Strict):
    """Structured output: the answer must be JSON valid against `schema`."""

    # `schema` is a BaseModel attribute, so the field is schema_ under the key `schema`, both ways.
    model_config = ConfigDict(**Strict.model_config, populate_by_name=True, serialize_by_alias=True)

    type: Literal["json_schema"]
    name: str = Field(default="answer", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema (draft 2020-12).")
    strict: bool = True


class JsonObjectFormat(Strict):
    type: Literal["json_object"]


ResponseFormat = Annotated[JsonSchemaFormat | JsonObjectFormat, Field(discriminator="type")]


class MixEntry(Strict):
    weight: float = Field(default=1, gt=0)
    route: HeaderValue
    tenant: HeaderValue
    region: HeaderValue
    request_class: HeaderValue
    data_class: HeaderValue
    stream: bool = False
    tools: list[str] = Field(default_factory=list, description="Tools the client offers.")
    # What the request needs of the model that answers it (see harness.core.capabilities).
    input_tokens: int | None = Field(default=None, ge=1, le=2_000_000,
                                     description="Prompt size: the driver pads the message to this many tokens.")
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000, description="Output budget asked for.")
    response_format: ResponseFormat | None = None
    tool_choice: str | None = Field(default=None, description="auto, required, none, or the name of an offered "
                                    "tool the answer must call.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="Asks for a deterministic answer.")
    modalities: list[Modality] = Field(default_factory=lambda: ["text"], min_length=1,
                                       description="Input modalities: text, image.")


class TrafficHeaders(Strict):
    """Header names carrying the request's attributes, so any gateway can route on them."""

    request_id: str = "x-harness-request-id"
    tenant: str = "x-harness-tenant"
    request_class: str = "x-harness-request-class"
    region: str = "x-harness-region"
    data_class: str = "x-harness-data-class"


class Traffic(Strict):
    rate_per_s: float = Field(gt=0, le=MAX_RATE_PER_S)
    duration_s: float = Field(gt=0, le=MAX_RUN_S)
    mix: list[MixEntry] = Field(min_length=1)
    headers: TrafficHeaders = Field(default_factory=TrafficHeaders)
    timeout_s: float = Field(default=10, gt=0, le=MAX_WAIT_S, description="Client-side timeout of one request.")


class FaultTarget(Strict):
    """Exactly one selector: a provider, every provider of a region or of a model (backends mock,
    proxy), or a declared container by name or by label `key=value` (backend docker)."""

    provider: str | None = None
    region: str | None = None
    model: str | None = None
    container: str | None = None
    label: str | None = None


class FaultMatch(Strict):
    """Only requests with these attributes are hit (all given keys must match)."""

    tenant: str | list[str] | None = None
    request_class: str | list[str] | None = None
    region: str | list[str] | None = None


class ErrorEffect(Strict):
    kind: Literal["error"]
    status: int = Field(ge=400, le=599)
    retry_after_s: float | None = Field(default=None, ge=0, le=MAX_CHECK_WINDOW_S)
    code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="A named error of the "
                             "provider's API (e.g. bedrock's ModelNotReadyException); default: the API's own "
                             "error for the status.")


class OverloadedEffect(Strict):
    """The provider's own capacity error: Anthropic's 529 overloaded_error, Gemini's 503 UNAVAILABLE,
    Bedrock's 503 ServiceUnavailableException, OpenAI's and Azure's 503."""

    kind: Literal["overloaded"]
    retry_after_s: float | None = Field(default=None, ge=0, le=MAX_CHECK_WINDOW_S)


class TimeoutEffect(Strict):
    kind: Literal["timeout"]
    hold_s: float = Field(default=30, gt=0, le=MAX_WAIT_S, description="How long the provider hangs.")


class LatencyEffect(Strict):
    kind: Literal["latency"]
    ms: float = Field(gt=0, le=MAX_LATENCY_MS)


class ResetEffect(Strict):
    kind: Literal["reset"]


class ContentPolicyEffect(Strict):
    kind: Literal["content_policy"]
    status: int = Field(default=400, ge=400, le=499)


class CutEffect(Strict):
    """A stream that stops mid-way: the connection drops after `after_chunks` chunks."""

    kind: Literal["cut"]
    after_chunks: int = Field(default=2, ge=0, le=100_000)


class ContainerEffect(Strict):
    """Container-level outages (backend docker); each is undone at the end (unpause, start, reconnect)."""

    kind: Literal["pause", "stop", "kill", "restart", "disconnect"]
    network: str | None = Field(default=None, description="disconnect: the network to disconnect from.")


HTTP_EFFECTS = ("error", "overloaded", "timeout", "latency", "reset", "content_policy", "cut")
CONTAINER_EFFECTS = ("pause", "stop", "kill", "restart", "disconnect")

Effect = Annotated[
    ErrorEffect | OverloadedEffect | TimeoutEffect | LatencyEffect | ResetEffect | ContentPolicyEffect | CutEffect
    | ContainerEffect,
    Field(discriminator="kind"),
]


class Fault(Strict):
    name: str
    target: FaultTarget
    match: FaultMatch | None = None
    effect: Effect
    probability: float = Field(default=1.0, ge=0, le=1)
    at_s: float = Field(ge=0, le=MAX_RUN_S)
    duration_s: float = Field(gt=0, le=MAX_RUN_S)
    backend: Literal["mock", "proxy", "docker"] = Field(
        default="mock", description="mock: the embedded mock providers; proxy: the fault proxy in front of a "
        "provider's upstream; docker: containers.")


class KillSwitchAction(Strict):
    at_s: float = Field(ge=0, le=MAX_RUN_S)
    action: Literal["kill_switch"]
    state: Literal["off", "on"]


class KillSwitch(Strict):
    """How fallback is switched off and on.

    mode http: one HTTP call to the gateway (the reference gateway's admin endpoint by default).
    mode request: gateways without a runtime switch take it per request (LiteLLM's
    `disable_fallbacks`, a Portkey config without fallback targets): while off, the driver adds
    `request_headers` and `request_body` to every request.
    """

    mode: Literal["http", "request"] = "http"
    method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] = "POST"
    url: str | None = Field(default=None, description="http mode; may use {gateway.url}.")
    headers: dict[str, str] = Field(default_factory=dict)
    off_body: dict[str, object] | None = None
    on_body: dict[str, object] | None = None
    request_headers: dict[str, str] = Field(default_factory=dict, description="request mode: headers while off.")
    request_body: dict[str, object] = Field(default_factory=dict, description="request mode: body fields while off.")


class ServedTarget(Strict):
    """Where the gateway names the target that served a response."""

    header: str | None = None
    body_field: str | None = Field(default=None, description="Dotted path in the JSON body.")
    values: dict[str, str] = Field(default_factory=dict, description="Gateway name -> provider name.")


class AuditMapping(Strict):
    """Where the gateway's audit events come from and how their fields map to ours."""

    source: Literal["collector", "file", "sse"] = "collector"
    path: str | None = Field(default=None, description="JSONL file for source: file; may use {workdir}.")
    url: str | None = Field(default=None, description="Server-sent events for source: sse; may use {gateway.url}.")
    fields: dict[AuditField, str] = Field(
        default_factory=dict, description="Our field -> dotted path in their event (default: same name)."
    )
    values: dict[str, str] = Field(default_factory=dict, description="Their target names -> provider names.")


class GatewayBase(Strict):
    """Keys every kind of gateway takes: how the harness waits for it, calls it, reads it and
    switches its fallback off. Each kind adds its own keys (below); `kind` picks the model."""


    kind: str = Field(description="Which gateway: reference, command, url, litellm or portkey.")
    ready_url: str | None = Field(default=None, description="Polled until it answers 2xx (default: the kind's "
                                  "own readiness check).")
    ready_timeout_s: float = Field(default=30, gt=0, le=MAX_WAIT_S)
    client_key: str | None = Field(default=None, description="Bearer token the traffic driver sends.")
    request_headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers on every request; placeholders allowed, including the "
        "request's own {request_id}, {route}, {tenant}, {region}, {request_class}, {data_class}.")
    served_target: ServedTarget = Field(default_factory=lambda: ServedTarget(header="x-served-by"))
    audit: AuditMapping = Field(default_factory=AuditMapping)
    kill_switch: KillSwitch | None = None


class ReferenceGateway(GatewayBase):
    """The bundled reference gateway: governed fallback from the scenario's policy."""

    kind: Literal["reference"]
    defects: list[Defect] = Field(default_factory=list, description="Known misbehaviours to switch on (the "
                                  "harness's own tests).")
    cooldown_s: float = Field(default=2, gt=0, le=MAX_RUN_S, description="How long a failed primary is skipped.")
    upstream_timeout_s: float = Field(default=2, gt=0, le=MAX_WAIT_S, description="How long it waits for a "
                                      "provider.")
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$",
                      description="The address it listens on (remote load workers must reach it; `harness load "
                      "--master-bind` sets it to the master's address when it is left at loopback).")
    port: int | None = Field(default=None, ge=1024, le=65535, description="A fixed port (default: a free one).")


class CommandGateway(GatewayBase):
    """A gateway the harness starts from a command and stops at the end."""

    kind: Literal["command"]
    command: list[str] = Field(min_length=1, description="The argv that starts it; placeholders allowed.")
    url: str | None = Field(default=None, description="Its base URL (default http://127.0.0.1:{port}).")
    env: dict[str, str] = Field(default_factory=dict, description="Added to its environment; placeholders allowed.")


class UrlGateway(GatewayBase):
    """A gateway that is already running; left running at the end."""

    kind: Literal["url"]
    url: str = Field(min_length=1, description="The base URL of the running gateway.")


class LiteLLMGateway(GatewayBase):
    """The LiteLLM proxy, installed by `harness setup-gateways litellm`."""

    kind: Literal["litellm"]
    config: str = Field(min_length=1, description="Its proxy config template (placeholders allowed), relative "
                        "to the scenario file or the working directory.")


class PortkeyGateway(GatewayBase):
    """The Portkey gateway, installed by `harness setup-gateways portkey`."""

    kind: Literal["portkey"]
    config: str = Field(min_length=1, description="Its routing config template (JSON, placeholders allowed), "
                        "relative to the scenario file or the working directory.")



Gateway = Annotated[
    ReferenceGateway | CommandGateway | UrlGateway | LiteLLMGateway | PortkeyGateway,
    Field(discriminator="kind"),
]
# kind -> its model, derived from the union (each member's `kind` literal).
GATEWAY_MODELS: dict[str, type[GatewayBase]] = {
    get_args(member.model_fields["kind"].annotation)[0]: member for member in get_args(get_args(Gateway)[0])}
GATEWAY_KINDS: tuple[str, ...] = tuple(GATEWAY_MODELS)


class Baseline(Strict):
    """The steady-state hypothesis verified before the first fault (harness.checks.baseline): the share
    of requests answered by their route's primary, over at least this long and this many requests."""

    min_success: float = Field(default=0.95, gt=0, le=1)
    min_duration_s: float = Field(default=1.0, ge=0, le=3600)
    min_requests: int = Field(default=5, ge=1, le=1_000_000)
    # false: a baseline that never held is recorded (and the checks that rest on it say unknown), but the
    # faults are injected anyway: for drills that start from a known-degraded system on purpose.
    required: bool = True


class Scenario(Strict):
    version: Literal[1]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=MAX_NAME_LEN)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    seed: int = 0
    identities: dict[str, Identity] = Field(min_length=1)
    providers: dict[str, Provider] = Field(min_length=1)
    gateway: Gateway
    policy: Policy
    traffic: Traffic
    containers: dict[str, Container] = Field(default_factory=dict)
    faults: list[Fault] = Field(default_factory=list)
    timeline: list[KillSwitchAction] = Field(default_factory=list)
    baseline: Baseline = Field(default_factory=Baseline)
    checks: Literal["all"] | list[CheckName] = "all"
    # Set by the loader: key path -> (the text as written, its value) of each value that came from the environment,
    # so the ledger's copy shows `${VAR}`, never the value (harness.scenario.loader.redacted_dump).
    _env_refs: dict[tuple[str | int, ...], tuple[str, str]] = PrivateAttr(default_factory=dict)

    def check_names(self) -> list[str]:
        """The checks this scenario runs: those it names, or with `checks: all` every check that applies to
        it (a check of capabilities, say, has nothing to judge where none are declared)."""
        return list(applicable_check_names(self)) if self.checks == "all" else list(self.checks)

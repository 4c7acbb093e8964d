"""The normalised view of a gateway configuration that every lint rule reads.

A parser (one module per gateway kind) reads its file and says, with the line of each:
which routes clients call and which deployments serve them first, every way a request can reach
another deployment (a fallback edge), and the knobs the rules need (retries, cooldowns, what triggers
a fallback). Defaults the gateway applies when the file is silent are stated too, marked `default`,
at the line of the route they apply to: most findings on real gateways are defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Where:
    """A place in a configuration file (1-based line and column)."""

    file: Path
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


# How a deployment's credential is written: a harness placeholder ({providers.NAME.key}), an environment
# reference (os.environ/NAME, ${NAME}, env var names), a literal (a plaintext key: always a finding) or none.
KeyForm = Literal["placeholder", "environment", "plaintext", "none"]


@dataclass(frozen=True)
class Deployment:
    """One upstream a gateway can call: a model at a provider, with a credential and maybe a region."""

    name: str                  # the config's own name for it (LiteLLM model_info.id, Portkey targets path)
    provider: str | None       # the registry / scenario provider it reaches ({providers.NAME.*} placeholder,
                               # model_info.id, Portkey target name); None when the file does not say
    where: Where
    key_ref: str | None = None     # the reference as written, e.g. "{providers.gpt-eu.key}", "os.environ/OPENAI_EU"
    key_form: KeyForm = "none"
    region: str | None = None      # only when the file states it (aws_region_name, vertex_location, Azure host)
    model: str | None = None


@dataclass(frozen=True)
class Route:
    """A name clients ask for (a LiteLLM model_name, the Portkey config as a whole, a reference route)."""

    name: str
    primaries: tuple[Deployment, ...]   # what serves it while healthy (several: a load-balanced group)
    where: Where
    request_classes: frozenset[str] | None = None  # only these classes reach it (conditional routing); None: any


# What makes a gateway take a fallback edge. "any" = any failure the gateway sees (LiteLLM `fallbacks`,
# Portkey fallback without on_status_codes); otherwise the statuses / causes listed.
Trigger = frozenset[int | str]
ANY_FAILURE: Trigger = frozenset({"any"})
# What a gateway retries when the file does not say (a retry layer's usual set: rate limit, 5xx, Anthropic's
# 529, timeouts and dropped connections; never a 4xx answer such as a refusal).
RETRYABLE: Trigger = frozenset({408, 429, 500, 502, 503, 504, 529, "overloaded", "timeout", "connection_error"})
# A request the healthy primary cannot serve (an unsupported parameter, an image, a prompt over its window):
# the failure a drill causes by sending such requests to a provider with declared capability limits.
UNSERVABLE = "unservable"


@dataclass(frozen=True)
class FallbackEdge:
    """A request for `route`, failing on `source` (None: on any primary), may be sent to `target`."""

    route: str
    source: Deployment | None
    target: Deployment
    via: str                   # "fallbacks", "context_window_fallbacks", "content_policy_fallbacks",
                               # "default_fallbacks", "portkey fallback", "portkey conditional", "reference"
    where: Where
    trigger: Trigger = ANY_FAILURE
    request_classes: frozenset[str] | None = None  # a conditional edge only these classes take; None: any
    # Classes the gateway never sends this way, whatever the edge says (the reference gateway's fail_closed
    # list): the complement a conditional edge cannot state without knowing every class.
    excluded_classes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Setting:
    """A knob a rule reads, normalised across gateways. Names (value types):

    - "attempts_per_deployment" (int): upstream calls one failing deployment gets for one request
      (first call + every retry layer: LiteLLM num_retries x the SDK's max_retries, Portkey retry.attempts)
    - "max_attempts_per_request" (int): a cap the gateway itself puts on upstream calls per request, whatever
      the retries and the chain (the reference gateway's max_upstream_attempts); absent: no cap
    - "cooldown_s" (float): how long a failed deployment is skipped before it is tried again (0: never cooled)
    - "fallback_on_content_policy" (bool): a provider's content-policy refusal (400) is rerouted
    - "fallback_on_unservable" (bool): a request the healthy primary cannot serve (unsupported parameter,
      image, response_format) is rerouted (LiteLLM fallback_on_unsupported_params)
    - "retry_on" (Trigger): the failures a retry layer retries (Portkey retry.on_status_codes); absent: RETRYABLE
    """

    name: str
    value: Any
    where: Where
    route: str | None = None   # None: the whole gateway
    default: bool = False      # the gateway's default: the file is silent


@dataclass(frozen=True)
class Secret:
    """A credential written in plaintext (never its value: only where, and which key)."""

    where: Where
    key: str                   # the field, e.g. "model_list[1].litellm_params.api_key"


@dataclass
class GatewayConfig:
    kind: str                  # "litellm", "portkey", "reference"
    path: Path
    routes: dict[str, Route] = field(default_factory=dict)
    edges: list[FallbackEdge] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)

    def setting(self, name: str, route: str | None = None) -> Setting | None:
        """The route's own setting, else the gateway-wide one."""
        own = [s for s in self.settings if s.name == name and s.route == route]
        if own or route is None:
            return own[0] if own else None
        return self.setting(name)


@dataclass(frozen=True)
class Finding:
    rule: str                  # e.g. "fallback-unapproved"
    message: str
    where: Where
    route: str | None = None
    registry_entry: str | None = None     # "policy/fallback-registry.yaml:12 (chat: gpt-eu -> claude-eu)"
    scenario: str | None = None           # the scenario that demonstrates it at run time, when the harness has one
    check: str | None = None              # the check that fails in that scenario
    level: Literal["error", "warning", "note"] = "error"
    # The failures that make the gateway take the flagged path (a Trigger: statuses, causes, "any"; empty: a
    # static fact no failure takes, such as a plaintext key) and the providers whose failure does (None: any).
    # A drill demonstrates the finding only when its faults hit one of those providers with one of those.
    taken_on: Trigger = frozenset()
    failing: frozenset[str] | None = None

"""The reference gateway's configuration, built from the JSON the engine writes for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from harness.core.model import DEFECTS, Capabilities, Policy, TrafficHeaders


@dataclass(frozen=True)
class UpstreamProvider:
    name: str
    url: str
    model: str
    region: str
    identity: str
    key: str
    tools: tuple[str, ...]
    data_classes: frozenset[str]
    # What the model can serve, as the scenario declares it: a real gateway is configured the same way
    # (LiteLLM's model_info, a Portkey config), and it is all the gateway can know before it calls.
    capabilities: Capabilities = field(default_factory=Capabilities)
    region_header: str | None = None     # the response header naming where the model ran (profile)
    api: str = "openai"                  # the provider's API: the gateway speaks it as a client
    secret: str | None = None            # bedrock: the AWS secret access key the call is signed with

    @cached_property  # asked on every request: the comparison is made once
    def limited(self) -> bool:
        """Declares any limit: only then can a request be one it cannot serve."""
        return self.capabilities.limited

    def __repr__(self) -> str:  # a config printed in a traceback must not show the key
        return f"UpstreamProvider(name={self.name!r}, url={self.url!r}, model={self.model!r})"


@dataclass(frozen=True)
class GatewayConfig:
    policy: Policy
    providers: dict[str, UpstreamProvider]
    identities: dict[str, str]
    # bedrock: the secret access key of each access key id the gateway may sign with
    secrets: dict[str, str] = field(default_factory=dict)
    defects: frozenset[str] = frozenset()
    cooldown_s: float = 2.0
    upstream_timeout_s: float = 2.0
    admin_token: str = ""
    client_key: str | None = None
    collector_url: str | None = None
    headers: TrafficHeaders = TrafficHeaders()

    @cached_property
    def region_headers(self) -> tuple[str, ...]:
        """Every provider's region header: relayed to the client whoever answered, because under a vendor's
        own fallback the header that comes back is the one of the provider it really ran on."""
        return tuple(sorted({p.region_header for p in self.providers.values() if p.region_header}))

    def __repr__(self) -> str:
        return f"GatewayConfig(providers={sorted(self.providers)}, defects={sorted(self.defects)})"

    def has(self, defect: str) -> bool:
        return defect in self.defects

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GatewayConfig:
        """Raises ValueError (or pydantic's ValidationError, a ValueError) on a bad config."""
        identities = {str(name): str(key) for name, key in (data.get("identities") or {}).items()}
        providers: dict[str, UpstreamProvider] = {}
        for name, raw in (data.get("providers") or {}).items():
            identity = str(raw["identity"])
            key = raw.get("key") or identities.get(identity)
            if not key:
                raise ValueError(f"provider {name}: no key for identity {identity!r}")
            providers[name] = UpstreamProvider(
                name=name, url=str(raw["url"]).rstrip("/"), model=str(raw["model"]), region=str(raw["region"]),
                identity=identity, key=str(key), tools=tuple(str(t) for t in raw.get("tools", [])),
                data_classes=frozenset(str(d) for d in raw.get("data_classes", [])),
                capabilities=Capabilities.model_validate(raw.get("capabilities") or {}),
                region_header=(raw.get("profile") or {}).get("region_header") or None,
                api=str(raw.get("api") or "openai"), secret=raw.get("secret") or None,
            )
        policy = Policy.model_validate(data["policy"])
        for route_name, route in policy.routes.items():
            for target in [route.primary, *(f.target for f in route.fallbacks)]:
                if target not in providers:
                    raise ValueError(f"route {route_name}: unknown provider {target!r}")
        defects = frozenset(str(d) for d in data.get("defects", []))
        unknown = defects - set(DEFECTS)
        if unknown:
            raise ValueError(f"unknown defects {sorted(unknown)}; known: {list(DEFECTS)}")
        headers = TrafficHeaders.model_validate(data.get("headers") or {})
        admin_token = str(data.get("admin_token") or "")
        if not admin_token:
            raise ValueError("admin_token is required: the kill switch must not be open to anyone")
        return cls(
            policy=policy, providers=providers, identities=identities, defects=defects,
            secrets={**{str(k): str(v) for k, v in (data.get("signing_secrets") or {}).items()},
                     **{p.key: p.secret for p in providers.values() if p.secret}},
            cooldown_s=float(data.get("cooldown_s", 2.0)),
            upstream_timeout_s=float(data.get("upstream_timeout_s", 2.0)),
            admin_token=admin_token, client_key=data.get("client_key") or None,
            collector_url=(str(data["collector_url"]).rstrip("/") if data.get("collector_url") else None),
            headers=headers,
        )

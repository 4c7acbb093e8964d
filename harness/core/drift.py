"""Client-side drift detection: does an answer come from the provider the gateway says served it?

For a SaaS endpoint all a client sees of who answered is the answer itself: its `model`, its
`system_fingerprint` and any region header. A vendor's own fallback (a cross-region inference profile,
a "global" deployment, a model alias) changes at least one of them while the gateway believes the
primary served. `detect` compares what one answer says (a request event's `answer`,
harness.traffic.answers) with the response profile the claimed provider declares, and names the
declared providers the answer matches instead. A pure function of the answer and the scenario's
providers: it judges answers relayed by the fault proxy from a real upstream the same way.

A field the answer does not carry is no evidence either way: gateways strip headers and fields, and an
absence cannot tell one provider from another.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.core.model import Provider

# A region header as a gateway relays it: LiteLLM prefixes the upstream's headers with this.
RELAYED_PREFIX = "llm_provider-"

Mismatch = tuple[str, str, str]  # (field, what the answer says, what the profile declares)


@dataclass(frozen=True)
class Drift:
    """An answer that does not come from the provider the gateway claimed."""

    claimed: str
    mismatches: tuple[Mismatch, ...]
    said: tuple[tuple[str, str], ...]  # (field, value): what the answer says of who it is
    matches: tuple[str, ...]           # other declared providers whose profile fits the answer

    def describe(self) -> str:
        """'answered as eu-small: model m-small, fingerprint fp_s'."""
        said = ", ".join(f"{name} {value}" for name, value in self.said)
        who = " or ".join(self.matches) if self.matches else "no declared provider"
        return f"answered as {who}: {said}"

    def differences(self) -> str:
        """'model m-small (claimed p-eu declares m-large), fingerprint fp_s (declares fp_p)'."""
        parts = [f"{name} {seen} ({self.claimed} declares {declared})" for name, seen, declared in self.mismatches]
        return ", ".join(parts)


def answer_key(answer: Mapping[str, Any]) -> Hashable:
    """What `detect` reads of an answer, hashable: callers memoize per distinct key. Region headers in the
    order recorded (one client records them in one order): no sort per answer."""
    regions = answer.get("regions")
    return (answer.get("model"), answer.get("system_fingerprint"), tuple(regions.items()) if regions else None)


def detect(answer: Mapping[str, Any], claimed: str, providers: Mapping[str, Provider],
           alias: str | None = None) -> Drift | None:
    """The drift of `answer` from the profile of `claimed` (a declared provider), None when it agrees or
    `claimed` is not declared (nothing to compare with). `alias`: the model name the client asked for (the
    route); a gateway that reports it in place of the upstream's (LiteLLM does when its primary served)
    says nothing about who answered, so that model name is no evidence."""
    declared = providers.get(claimed)
    if declared is None:
        return None
    if alias is not None and answer.get("model") == alias:
        answer = {**answer, "model": None}
    mismatches = _mismatches(answer, declared)
    if not mismatches:
        return None
    # The best-evidenced first: a provider whose declared fingerprint and region the answer carries beats
    # one that merely declares nothing the answer could contradict.
    scored = sorted((-_agreements(answer, providers[name]), name) for name in providers
                    if name != claimed and not _mismatches(answer, providers[name]))
    best = scored[0][0] if scored else 0
    matches = tuple(name for score, name in scored if score == best or best == 0)
    return Drift(claimed, tuple(mismatches), said_of(answer), matches)


def declared_model(provider: Provider) -> str:
    """The model name a provider's answers report."""
    return provider.profile.model or provider.model


def region_seen(answer: Mapping[str, Any], header: str) -> str | None:
    """The value of region header `header` in the answer, also under a gateway's relayed name."""
    regions = answer.get("regions")
    if not isinstance(regions, dict):
        return None
    name = header.lower()
    value = regions.get(name, regions.get(RELAYED_PREFIX + name))
    return None if value is None else str(value)


def _mismatches(answer: Mapping[str, Any], provider: Provider) -> list[Mismatch]:
    out: list[Mismatch] = []
    model = answer.get("model")
    expected = declared_model(provider)
    if isinstance(model, str) and model != expected:
        out.append(("model", model, expected))
    fingerprint = provider.profile.system_fingerprint
    seen = answer.get("system_fingerprint")
    if fingerprint is not None and isinstance(seen, str) and seen != fingerprint:
        out.append(("fingerprint", seen, fingerprint))
    header = provider.profile.region_header
    if header is not None:
        region = region_seen(answer, header)
        if region is not None and region != provider.region:
            out.append(("region", region, provider.region))
    return out


def _agreements(answer: Mapping[str, Any], provider: Provider) -> int:
    """How many fields of the answer positively agree with what the provider declares."""
    count = int(answer.get("model") == declared_model(provider))
    fingerprint = provider.profile.system_fingerprint
    count += fingerprint is not None and answer.get("system_fingerprint") == fingerprint
    header = provider.profile.region_header
    count += header is not None and region_seen(answer, header) == provider.region
    return count


def said_of(answer: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """What an answer says of who it is: (field, value) for its model, fingerprint and region headers."""
    said: list[tuple[str, str]] = []
    if isinstance(answer.get("model"), str):
        said.append(("model", answer["model"]))
    if isinstance(answer.get("system_fingerprint"), str):
        said.append(("fingerprint", answer["system_fingerprint"]))
    regions = answer.get("regions")
    for name, value in sorted(regions.items()) if isinstance(regions, dict) else ():
        said.append((name, str(value)))
    return tuple(said)

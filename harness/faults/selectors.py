"""Which providers a fault's target selector names: its blast radius."""

from __future__ import annotations

from harness.core.model import FaultTarget, Provider


def resolve_targets(target: FaultTarget, providers: dict[str, Provider]) -> list[str]:
    if target.provider is not None:
        return [target.provider] if target.provider in providers else []
    if target.region is not None:
        return sorted(n for n, p in providers.items() if p.region == target.region)
    if target.model is not None:
        return sorted(n for n, p in providers.items() if p.model == target.model)
    return []

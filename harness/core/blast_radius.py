"""What a fault hits: its blast radius, decided in this one place.

The scenario's semantic checks, `harness run --dry-run` and the fault backends all call these
functions, so what the plan shows and what validation reasons about is what the run touches.
A selector only ever matches what the scenario declares: providers under `providers:`,
containers under `containers:`. Every list is sorted, so plans and ledgers are stable.
"""

from __future__ import annotations

from urllib.parse import urlparse

from harness.core.model import Fault, Scenario


def fault_providers(scenario: Scenario, fault: Fault) -> list[str]:
    """The providers a mock or proxy fault's target selects (by provider, region or model)."""
    target = fault.target
    if target.provider is not None:
        return [target.provider] if target.provider in scenario.providers else []
    if target.region is not None:
        return sorted(n for n, p in scenario.providers.items() if p.region == target.region)
    if target.model is not None:
        return sorted(n for n, p in scenario.providers.items() if p.model == target.model)
    return []


def fault_containers(scenario: Scenario, fault: Fault) -> list[str]:
    """The declared containers a docker fault's target selects (by container name or `key=value` label)."""
    target = fault.target
    if target.container is not None:
        return [target.container] if target.container in scenario.containers else []
    if target.label is not None and "=" in target.label:
        key, _, value = target.label.partition("=")
        return sorted(n for n, c in scenario.containers.items() if c.labels.get(key) == value)
    return []


def fault_targets(scenario: Scenario, fault: Fault) -> list[str]:
    """What the fault's backend acts on: containers for a docker fault, providers otherwise."""
    return fault_containers(scenario, fault) if fault.backend == "docker" else fault_providers(scenario, fault)


def served_providers(scenario: Scenario, container: str) -> list[str]:
    """Providers whose upstream is the container's address (the host:port of its ready_url): the
    providers a container outage takes down, which the checks reason about."""
    ready = scenario.containers[container].ready_url
    if not ready or "{" in ready:
        return []  # a placeholder is filled only at run time: no address to compare yet
    address = _address(ready)
    return sorted(n for n, p in scenario.providers.items() if p.upstream and _address(p.upstream) == address)


def affected_providers(scenario: Scenario, fault: Fault) -> list[str]:
    """The providers whose calls the fault affects in the end: for a docker fault, those its
    containers serve; for a mock or proxy fault, those it selects."""
    if fault.backend != "docker":
        return fault_providers(scenario, fault)
    return sorted({p for name in fault_containers(scenario, fault) for p in served_providers(scenario, name)})


def _address(url: str) -> tuple[str, int]:
    parts = urlparse(url)
    host = parts.hostname or ""
    return ("127.0.0.1" if host == "localhost" else host), parts.port or (443 if parts.scheme == "https" else 80)

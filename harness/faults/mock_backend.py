"""Faults on the embedded mock providers, switched through their token-protected control endpoint.

Each fault carries an absolute deadline: the providers drop it by themselves once it has
passed, so even a harness killed with SIGKILL cannot leave an outage behind.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from harness.core.blast_radius import affected_providers, fault_providers
from harness.core.model import Fault, Scenario

TOKEN_HEADER = "x-harness-token"


class MockFaultBackend:
    """Also the proxy backend: the fault proxy serves the same control endpoint as the mocks."""

    def __init__(self, session: aiohttp.ClientSession, provider_urls: dict[str, str], token: str,
                 scenario: Scenario, name: str = "mock") -> None:
        self.session = session
        self.urls = provider_urls
        self.token = token
        self.scenario = scenario
        self.name = name

    self_expiring = True

    def resolve(self, fault: Fault) -> list[str]:
        return fault_providers(self.scenario, fault)

    def providers(self, fault: Fault, targets: list[str]) -> list[str]:
        return affected_providers(self.scenario, fault)

    def undo_description(self, fault: Fault, targets: list[str]) -> str:
        return f"DELETE /_harness/faults/{fault.name} on {', '.join(targets)} (expires by itself at its deadline)"

    async def inject(self, fault: Fault, targets: list[str], deadline_ts: float | None) -> None:
        body: dict[str, Any] = {
            "effect": fault.effect.model_dump(mode="json"),
            "match": fault.match.model_dump(mode="json", exclude_none=True) if fault.match else None,
            "probability": fault.probability,
            "deadline_ts": deadline_ts,
        }
        for name in targets:
            async with self.session.put(self._url(name, fault.name), json=body, headers=self._auth()) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"provider {name} refused fault {fault.name}: HTTP {resp.status}")

    async def heal(self, fault: Fault, targets: list[str]) -> list[str]:
        """Undo on every target, even if one fails; returns the errors."""
        errors: list[str] = []
        for name in targets:
            try:
                async with self.session.delete(self._url(name, fault.name), headers=self._auth()) as resp:
                    if resp.status >= 300 and resp.status != 404:
                        errors.append(f"{name}: HTTP {resp.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{name}: {type(exc).__name__}")
        return errors

    def _url(self, provider: str, fault: str) -> str:
        return f"{self.urls[provider]}/_harness/faults/{fault}"

    def _auth(self) -> dict[str, str]:
        return {TOKEN_HEADER: self.token}

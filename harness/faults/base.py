"""What every fault backend does: resolve a fault's targets (its blast radius), inject, heal."""

from __future__ import annotations

from typing import Protocol

from harness.core.model import Fault


class FaultBackend(Protocol):
    name: str
    self_expiring: bool         # the target drops the fault by itself at its deadline

    def providers(self, fault: Fault, targets: list[str]) -> list[str]:
        """The providers whose calls the fault affects (a container: the providers it serves)."""
        ...

    def resolve(self, fault: Fault) -> list[str]:
        """The targets this fault touches; only targets the scenario declares."""
        ...

    def undo_description(self, fault: Fault, targets: list[str]) -> str: ...

    async def inject(self, fault: Fault, targets: list[str], deadline_ts: float | None) -> None: ...

    async def heal(self, fault: Fault, targets: list[str]) -> list[str]:
        """Undo on every target even if one fails; returns the errors."""
        ...

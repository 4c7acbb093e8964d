"""Checks register themselves by name with a decorator (as Schemathesis does)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.core.model import CHECK_NAMES
from harness.core.verdict import CheckResult

CheckFn = Callable[[Any, Any], CheckResult]  # (Scenario, History) -> CheckResult


@dataclass(frozen=True)
class RegisteredCheck:
    name: str
    fn: CheckFn
    description: str
    evidences: tuple[str, ...]


_REGISTRY: dict[str, RegisteredCheck] = {}


def check(name: str, *, evidences: tuple[str, ...] = ()) -> Callable[[CheckFn], CheckFn]:
    """Register `fn(scenario, history) -> CheckResult` under `name`."""
    if name not in CHECK_NAMES:
        raise ValueError(f"check {name!r} is not in core.model.CHECK_NAMES")

    def register(fn: CheckFn) -> CheckFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = RegisteredCheck(name, fn, doc[0] if doc else "", evidences)
        return fn

    return register


def registered() -> dict[str, RegisteredCheck]:
    return dict(_REGISTRY)

"""What the registered checks are, for front ends that may not import the checks themselves."""

from __future__ import annotations

from harness.checks import descriptions


def check_descriptions() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {name: (c.description, c.evidences) for name, c in descriptions().items()}

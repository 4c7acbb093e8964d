"""`harness setup-gateways`: install the real gateways the adapters drive, each in a folder of its own."""

from __future__ import annotations

from collections.abc import Callable

from harness.core.errors import HarnessError
from harness.gateways.base import adapter_kinds, install_dir, load_installer


def setup_gateways(kinds: list[str] | None, log: Callable[[str], None] = print) -> None:
    """Install each kind (default: every kind that has something to install); HarnessError for a kind
    that has nothing to install."""
    unknown = sorted(set(kinds or ()) - set(adapter_kinds()))
    if unknown:
        raise HarnessError(f"unknown gateway kind(s) {', '.join(unknown)}; choose from {', '.join(adapter_kinds())}")
    for kind in kinds or adapter_kinds():
        target = install_dir() / kind
        log(f"installing {kind} into {target}")
        load_installer(kind).install(target)
        log(f"{kind}: ready")

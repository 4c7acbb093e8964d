"""What the capability, equivalence and vendor-fallback checks share: when they apply, and who really
answered a request.

Ground truth marks a vendor's own fallback on the upstream call it answered (`vendor_reroute`: the
provider whose model really answered, harness.core.events.UpstreamEvent); every other call was answered
by the provider that recorded it.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.checks.common import Event
from harness.core.capabilities import has_requirements
from harness.core.model import Scenario

VENDOR_REROUTE = "vendor_reroute"


def declares_capabilities(scenario: Scenario) -> bool:
    """when a provider declares capabilities, a mix entry has requirements or a fallback target degrades"""
    return (any(p.capabilities.limited for p in scenario.providers.values())
            or any(has_requirements(entry) for entry in scenario.traffic.mix)
            or any(t.degrades for route in scenario.policy.routes.values() for t in route.fallbacks))


def declares_vendor_behaviour(scenario: Scenario) -> bool:
    """when a provider declares a vendor fallback or a response profile"""
    return any(p.vendor_fallback is not None or p.profile.declared for p in scenario.providers.values())


def vendor_providers(scenario: Scenario) -> frozenset[str]:
    """Providers whose calls may carry a vendor reroute: only those that declare a vendor fallback."""
    return frozenset(name for name, p in scenario.providers.items() if p.vendor_fallback is not None)


def answered_by(call: Event) -> str:
    """The provider whose model really answered a call: its vendor's reroute target, else itself."""
    return str(call.get(VENDOR_REROUTE) or call["provider"])


def serving_call(calls: Sequence[Event]) -> Event | None:
    """The call whose answer the client got (History.served_by's rule: the last that answered ok)."""
    for call in reversed(calls):
        if call["outcome"] == "ok":
            return call
    return None


def kind_label(kind: str | None) -> str:
    """A request kind (harness.core.capabilities.request_kind) for a violation message."""
    return "plain requests" if kind is None else f"requests of kind {kind}"

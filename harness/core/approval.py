"""Whether an approved fallback target's approval still holds on a given day.

One rule for every reader: `approved_targets` (a fallback to an expired or incomplete approval is
unapproved), `harness validate` and `harness policy show` (which report it before any run). Days are
compared, not instants: an approval that `expires: 2026-01-31` still holds on that day and no longer
on 2026-02-01; the same goes for `review_by`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from harness.core.model import FallbackTarget, Policy

ApprovalState = Literal["valid", "review_overdue", "expired", "incomplete"]
# What a governed approval must say besides approved_by / approval_ref (which the model requires).
GOVERNANCE_FIELDS = ("approved_on", "accountable", "mechanism_owner")


@dataclass(frozen=True)
class ApprovalStatus:
    state: ApprovalState
    detail: str  # e.g. "expired on 2026-01-31", for messages and tables

    @property
    def holds(self) -> bool:
        """Whether a fallback to the target is approved: a review overdue is a warning, not a revocation."""
        return self.state in ("valid", "review_overdue")

    @property
    def phrase(self) -> str:
        """The detail after "approval CHG-1": "expired on ...", "is incomplete: ...", "is overdue for ..."."""
        return self.detail if self.state in ("expired", "valid") else f"is {self.detail}"


def missing_governance(target: FallbackTarget) -> list[str]:
    """The governance fields a registry approval lacks ("review_by or expires" when it has neither)."""
    missing = [name for name in GOVERNANCE_FIELDS if getattr(target, name) is None]
    if target.review_by is None and target.expires is None:
        missing.append("review_by or expires")
    return missing


def approval_status(target: FallbackTarget, as_of: date, *, governed: bool) -> ApprovalStatus:
    """The approval's state on `as_of`. Expiry is judged first (a date past is the strongest fact); then,
    only when `governed` (the policy came from a registry, where governance is required), missing
    fields; then the review date. An inline approval without governance fields is valid, as before."""
    if target.expires is not None and as_of > target.expires:
        return ApprovalStatus("expired", f"expired on {target.expires.isoformat()}")
    if governed:
        missing = missing_governance(target)
        if missing:
            return ApprovalStatus("incomplete", f"incomplete: no {', '.join(missing)}")
    if target.review_by is not None and as_of > target.review_by:
        return ApprovalStatus("review_overdue", f"overdue for review (review_by {target.review_by.isoformat()})")
    if target.expires is not None:
        return ApprovalStatus("valid", f"valid until {target.expires.isoformat()}")
    if target.review_by is not None:
        return ApprovalStatus("valid", f"valid, review by {target.review_by.isoformat()}")
    return ApprovalStatus("valid", "valid")


@dataclass(frozen=True)
class ApprovalNote:
    """An approval problem `harness validate` reports for a scenario's (merged) policy."""

    route: str
    primary: str
    target: str
    where: str | None   # "file:line:col" of the approval, when the policy knows it
    message: str


_POSITION = re.compile(r":\d+:\d+$")


def written_in(approved_in: str, registry: str, scenario_dir: Path) -> bool:
    """Whether an approval's "file:line:col" points into the registry file. Both paths may be written
    relative to the current folder or to the scenario's folder: any of those readings that meet count."""
    file = _POSITION.sub("", approved_in)
    if file == registry:
        return True
    bases = (Path.cwd(), scenario_dir)
    return bool({(base / file).resolve() for base in bases} & {(base / registry).resolve() for base in bases})


def approval_notes(policy: Policy, as_of: date, scenario_dir: Path) -> list[ApprovalNote]:
    """Every approval of the policy that is expired, overdue for review or (from a registry) incomplete,
    and every approval a registry-based scenario adds on its own ("approved in the scenario only")."""
    registry = policy.registry
    notes = []
    for route_name, route in policy.routes.items():
        for target in route.fallbacks:
            approved_in = target.approved_in
            path = f"route {route_name}: {route.primary} -> {target.target}"
            status = approval_status(target, as_of, governed=registry is not None)
            if status.state != "valid":
                notes.append(ApprovalNote(route_name, route.primary, target.target, approved_in,
                                          f"{path}: approval {target.approval_ref} {status.phrase}"))
            if registry is not None and approved_in is not None and not written_in(approved_in, registry,
                                                                                    scenario_dir):
                notes.append(ApprovalNote(route_name, route.primary, target.target, approved_in,
                                          f"{path}: approved in the scenario only, not in {registry}"))
    return notes

"""Whether an approved fallback target's approval still holds on a given day.

One rule for every reader: `approved_targets` (a fallback to an expired or incomplete approval is
unapproved), `harness validate` and `harness policy show` (which report it before any run). Days are
compared, not instants: an approval that `expires: 2026-01-31` still holds on that day and no longer
on 2026-02-01; the same goes for `review_by`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from harness.core.model import FallbackTarget

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
        return ApprovalStatus("review_overdue", f"review overdue: due by {target.review_by.isoformat()}")
    if target.expires is not None:
        return ApprovalStatus("valid", f"valid until {target.expires.isoformat()}")
    if target.review_by is not None:
        return ApprovalStatus("valid", f"valid, review by {target.review_by.isoformat()}")
    return ApprovalStatus("valid", "valid")

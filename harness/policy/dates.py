"""Approval dates as written in YAML (`approved_on: 2026-05-04`, kept a string by the reader) or in a ledger's
JSON dump (an ISO string): both become `date` before the strict model sees them."""

from __future__ import annotations

from datetime import date
from typing import Any

DATE_FIELDS = ("approved_on", "review_by", "expires")


def with_dates(fallback: Any) -> Any:
    """A fallback target mapping with its ISO date strings as dates (anything else is left for the model to
    refuse, with its position)."""
    if not isinstance(fallback, dict):
        return fallback
    out = dict(fallback)
    for name in DATE_FIELDS:
        value = out.get(name)
        if isinstance(value, str):
            try:
                out[name] = date.fromisoformat(value)
            except ValueError:
                pass
    return out

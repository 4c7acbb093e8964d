"""Credentials are only ever stored as fingerprints mapped to identity names."""

from __future__ import annotations

import hashlib

UNKNOWN_IDENTITY = "unknown"
NO_CREDENTIAL = "none"


def fingerprint(key: str) -> str:
    """A short, stable, non-reversible name for a credential."""
    return "fp-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def bearer(header_value: str | None) -> str | None:
    """The credential in an Authorization (`Bearer x`) or api-key header value."""
    if not header_value:
        return None
    value = header_value.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    return value or None

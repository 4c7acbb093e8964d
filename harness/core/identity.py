"""Credentials are only ever stored as fingerprints mapped to identity names.

A fingerprint is keyed (HMAC-SHA256) with a secret of the run that is never written anywhere: the
harness makes one per run and hands it to its providers process through a pipe. Holding a ledger
therefore does not let anyone confirm a guessed key, and two runs name the same key differently;
within a run, one key always has one fingerprint, which is all the checks compare.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

UNKNOWN_IDENTITY = "unknown"
NO_CREDENTIAL = "none"
# What the providers name a call whose credential is no identity's: such a call is nobody's evidence.
NOT_AN_IDENTITY = frozenset((UNKNOWN_IDENTITY, NO_CREDENTIAL))
FINGERPRINT_KEY_BYTES = 32

# This process's key, used when none is given: the providers process sets it to its run's key at start.
_process_key = secrets.token_bytes(FINGERPRINT_KEY_BYTES)


def new_fingerprint_key() -> bytes:
    return secrets.token_bytes(FINGERPRINT_KEY_BYTES)


def use_fingerprint_key(key: bytes) -> None:
    """From now on `fingerprint(x)` in this process is keyed with `key` (the run's, in a providers process)."""
    global _process_key
    if len(key) < 16:
        raise ValueError("a fingerprint key needs at least 16 bytes")
    _process_key = key


def fingerprint(credential: str, key: bytes | None = None) -> str:
    """A short, non-reversible name for a credential, stable within a run (the same `key`)."""
    digest = hmac.new(_process_key if key is None else key, credential.encode(), hashlib.sha256).hexdigest()
    return "fp-" + digest[:16]


def bearer(header_value: str | None) -> str | None:
    """The credential in an Authorization (`Bearer x`) or api-key header value."""
    if not header_value:
        return None
    value = header_value.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    return value or None

"""The channel between remote locust workers and the master: every harness message sealed with the run's
worker token.

Locust's own message channel (ZeroMQ) authenticates nobody: anything that reaches the master's port can
join as a worker, and anything on the path can read it. The harness sends two things over it that must not
be open to that: the scenario's request config (it holds the gateway's client key) and the observations the
master writes into the ledger (evidence: nothing but the run's own parts may write there). So every harness
message is a Fernet token (AES-128-CBC + HMAC-SHA256, from the `cryptography` library) under a key derived
from a secret both sides are given out of band, `HARNESS_WORKER_TOKEN`: a message nobody holding the token
sealed is refused, and its content is readable only by token holders. Replays are refused by the receiver
(every batch carries its worker's sequence number).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from harness.core.errors import HarnessError

TOKEN_ENV = "HARNESS_WORKER_TOKEN"
MIN_TOKEN_CHARS = 16
TOKEN_HINT = (f"  hint: give the master and every worker the same secret, e.g.\n"
              f"    export {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')")

# Message types on locust's channel (harness_*: never one of locust's own).
HELLO = "harness_hello"                # worker -> master: it holds the token and is ready for the config
CONFIG = "harness_config"              # master -> worker: the request config (sealed)
REFUSED = "harness_refused"            # master -> worker: its hello was not sealed with the run's token
SWITCH = "harness_switch"              # master -> worker: the per-request kill switch (sealed)
OBSERVATIONS = "harness_observations"  # worker -> master: a batch of request events (sealed)
DONE = "harness_done"                  # worker -> master: its last batch was shipped, with its counts (sealed)


class ChannelError(ValueError):
    """A message that was not sealed with the run's token (or was altered on the way)."""


def worker_token(env: Mapping[str, str] | None = None) -> str:
    """The run's worker token from the environment; HarnessError (exit 2) when missing or too short."""
    token = (os.environ if env is None else env).get(TOKEN_ENV, "")
    if not token:
        raise HarnessError(f"{TOKEN_ENV} is not set: remote workers join a run only with the run's secret\n"
                           + TOKEN_HINT)
    if len(token) < MIN_TOKEN_CHARS:
        raise HarnessError(f"{TOKEN_ENV} is {len(token)} characters long: at least {MIN_TOKEN_CHARS} are needed "
                           "(it is the key to the run's evidence)\n" + TOKEN_HINT)
    return token


class Channel:
    """Seals and opens the harness's messages with a key derived from the worker token."""

    def __init__(self, token: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"harness-worker-channel-v1",
                   info=b"fernet").derive(token.encode("utf-8"))
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, data: Any) -> str:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":"), default=str).encode()).decode("ascii")

    def open(self, sealed: Any) -> Any:
        """The message's content; ChannelError for anything not sealed with this token."""
        if not isinstance(sealed, str):
            raise ChannelError("not a sealed harness message")
        try:
            return json.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except (InvalidToken, UnicodeError, ValueError) as exc:
            raise ChannelError("not sealed with this run's worker token") from exc


__all__ = ["CONFIG", "DONE", "HELLO", "OBSERVATIONS", "REFUSED", "SWITCH", "TOKEN_ENV", "Channel", "ChannelError",
           "worker_token"]

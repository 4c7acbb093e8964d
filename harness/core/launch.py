"""How the harness writes what its child processes read: private files, and the argv of its own servers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# The module that serves the harness's own servers (mock providers and fault proxies; the reference gateway).
SERVER_MODULE = "harness.serve"


def server_argv(role: str, config_path: Path | None) -> list[str]:
    """The command that starts one of the harness's own servers (`providers` or `gateway`) with its config
    (None: the config comes on its stdin)."""
    return [sys.executable, "-m", SERVER_MODULE, role, "-" if config_path is None else str(config_path)]


def write_private(path: Path, text: str) -> None:
    """Files that hold keys are readable by us only, from the moment they exist."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_private_json(path: Path, data: Any) -> None:
    write_private(path, json.dumps(data))

"""The journal of injected, not yet healed faults, kept on disk outside any run folder.

A fault is written here before it acts and removed once healed. If the harness dies (even by
SIGKILL), what is left is what `harness recover` undoes; a new run refuses to start while an
entry that cannot expire by itself (a docker fault) is still recorded.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

# Backends whose faults carry a deadline the target enforces by itself.
SELF_EXPIRING = ("mock", "proxy")


def state_dir() -> Path:
    base = os.environ.get("HARNESS_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "fallback-harness")
    return Path(base)


class FaultJournal:
    def __init__(self, run_id: str, path: Path | None = None) -> None:
        self.run_id = run_id
        self.path = path or state_dir() / "unhealed-faults.json"

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{self.path}: the fault journal is unreadable ({exc})\n"
                               "  hint: inspect it; delete it once every fault it lists is healed") from None
        return data if isinstance(data, list) else []

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Runs in parallel (selftest jobs, CI) share the journal: read-modify-write under a lock.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _update(self, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        with self._locked():
            before = self._load()
            after = change(before)
            if after != before:
                self._save(after)
            return after

    def _save(self, entries: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)  # atomic: a kill mid-write leaves the old journal, never half of one

    def record(self, fault: str, backend: str, targets: list[str], undo: str, deadline_ts: float | None,
               effect: dict[str, Any]) -> None:
        entry = {"run_id": self.run_id, "fault": fault, "backend": backend, "targets": targets, "undo": undo,
                 "deadline_ts": deadline_ts, "effect": effect, "recorded_ts": time.time(), "pid": os.getpid()}
        self._update(lambda entries: [*entries, entry])

    def clear(self, fault: str) -> None:
        self._update(lambda entries: [e for e in entries if not (e["run_id"] == self.run_id and e["fault"] == fault)])

    def pending(self) -> list[dict[str, Any]]:
        """Entries still to heal; self-expiring ones past their deadline are dropped on the way."""
        now = time.time()
        return self._update(lambda entries: [e for e in entries
                                             if not (e["backend"] in SELF_EXPIRING and e["deadline_ts"] < now)])

    def remove(self, entry: dict[str, Any]) -> None:
        self._update(lambda entries: [e for e in entries if e != entry])

    def refuse_if_unhealed(self) -> None:
        blocking = [e for e in self.pending() if e["backend"] not in SELF_EXPIRING]
        if blocking:
            listed = "; ".join(f"{e['fault']} ({e['backend']}: {', '.join(e['targets'])}) from run {e['run_id']}"
                               for e in blocking)
            raise HarnessError(f"an unhealed fault is recorded in {self.path}: {listed}\n"
                               "  hint: run `harness recover` to undo it, then start the run again")


# --- the private working folders of runs --------------------------------------------------------

RUNS = "runs"
OWNER = "owner.json"
# The environment variable every child of a run carries: how `harness recover` tells a process of a
# dead run from an unrelated one that happens to reuse a recorded process-group id.
RUN_ENV = "HARNESS_RUN_ID"


def process_start(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, from /proc), or None: tells a pid from its reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # Field 22; the command name (field 2) is in parentheses and may hold spaces.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


class RunFolder:
    """A run's private working folder, `<state>/runs/<run_id>/` (mode 0700): configs that hold keys,
    and `owner.json` naming the harness process that owns it and the process groups it started.

    The run removes it in `finally`; after a SIGKILL `harness recover` finds it, kills the groups
    still running and removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, run_id: str) -> RunFolder:
        runs = state_dir() / RUNS
        runs.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = runs / run_id
        try:
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:  # one run id twice (tests, a copied run folder): never share a folder
                path = runs / f"{run_id}-{secrets.token_hex(4)}"
                path.mkdir(mode=0o700)
        except OSError as exc:
            raise HarnessError(f"{path}: cannot create the run's private working folder ({exc.strerror})\n"
                               "  hint: HARNESS_STATE_DIR (or XDG_STATE_HOME) must name a writable folder") from None
        os.chmod(path, 0o700)  # whatever the umask
        folder = cls(path)
        folder._write({"run_id": run_id, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                       "groups": []})
        return folder

    @property
    def owner_path(self) -> Path:
        return self.path / OWNER

    def owner(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write(self, owner: dict[str, Any]) -> None:
        tmp = self.path / f".{OWNER}.tmp"
        tmp.write_text(json.dumps(owner), encoding="utf-8")
        os.replace(tmp, self.owner_path)

    def add_group(self, name: str, pgid: int) -> None:
        """Record a process group the run started (its own session), before anything else can happen."""
        owner = self.owner() or {"groups": []}
        owner["groups"] = [*owner.get("groups", []), {"name": name, "pgid": pgid}]
        self._write(owner)

    def owner_alive(self) -> bool | None:
        """Whether the harness process that made the folder still runs (None: nobody recorded)."""
        owner = self.owner()
        if owner is None or not isinstance(owner.get("pid"), int):
            return None
        started = process_start(owner["pid"])
        if started is None:
            return False
        return owner.get("pid_start") in (None, started)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def run_folders() -> list[RunFolder]:
    try:
        return [RunFolder(p) for p in sorted((state_dir() / RUNS).iterdir()) if p.is_dir()]
    except OSError:
        return []

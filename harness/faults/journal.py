"""The journal of injected, not yet healed faults, kept on disk outside any run folder.

A fault is written here before it acts and removed once healed. If the harness dies (even by
SIGKILL), what is left is what `harness recover` undoes; a new run refuses to start while an
entry that cannot expire by itself (a docker fault) is still recorded.
"""

from __future__ import annotations

import fcntl
import json
import os
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

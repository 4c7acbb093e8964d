"""`harness recover`: undo what a run that died left behind.

A run records every fault in the journal before it acts and removes it once healed, so after
a crash (even SIGKILL) the journal lists exactly what is still in force. Docker faults never
expire by themselves: they are undone here. Faults on mocks and proxies carry a deadline and are
only reported. Containers of dead runs (found by their harness labels) are removed last.

The private working folders of dead runs (`<state>/runs/<run_id>/`, configs that hold keys) are
removed too, after the process groups their runs recorded are killed: a gateway started through
`sh -c` outlives a SIGKILL of the harness (only `sh` gets the parent-death signal), still listening.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError
from harness.faults.docker_backend import (
    LABEL_NAME,
    LABEL_RUN,
    connect,
    docker_host,
    find,
    owner_alive,
    pid_alive,
    undo_effect,
)
from harness.faults.journal import RUN_ENV, SELF_EXPIRING, FaultJournal, RunFolder, run_folders

if TYPE_CHECKING:
    from docker import DockerClient

_ENGINE = re.compile(r" on engine (\S+)")
# A folder without its owner record yet is a run being born, until it is this old.
UNOWNED_GRACE_S = 60.0


def recover(log: Callable[[str], None]) -> int:
    """Undo the journal's docker faults of dead runs and remove their containers; returns how many
    faults were undone. Raises HarnessError (exit 2) when a docker fault could not be undone."""
    remove_dead_run_folders(log)
    journal = FaultJournal("recover")
    entries = journal.pending()
    docker_entries = [e for e in entries if e["backend"] == "docker"]
    for entry in entries:
        if entry["backend"] in SELF_EXPIRING:
            at = datetime.fromtimestamp(entry["deadline_ts"]).astimezone().isoformat(timespec="seconds")
            log(f"fault {_what(entry)}: expires by itself at {at}")
        elif entry["backend"] != "docker":
            log(f"fault {_what(entry)}: unknown backend, undo it by hand: {entry.get('undo')}")
    client = _client(log, required=bool(docker_entries))
    healed, failed = 0, []
    for entry in docker_entries:
        if entry.get("pid") and pid_alive(int(entry["pid"])):
            log(f"fault {_what(entry)}: its run is still going (pid {entry['pid']}); left to it")
            continue
        assert client is not None
        errors = _undo(client, entry, log)
        if errors:
            failed.append(f"{_what(entry)}: {'; '.join(errors)}")
            continue
        journal.remove(entry)
        healed += 1
    if client is not None:
        _remove_leftovers(client, log)
        client.close()
    if failed:
        raise HarnessError("could not undo: " + " | ".join(failed) + f"\n  hint: they stay in {journal.path}; "
                           "fix the cause and run `harness recover` again")
    if not entries:
        log(f"no unhealed fault recorded in {journal.path}")
    return healed


def _what(entry: dict[str, Any]) -> str:
    return f"{entry['fault']} ({entry['backend']}: {', '.join(entry['targets'])}) of run {entry['run_id']}"


def _client(log: Callable[[str], None], required: bool) -> DockerClient | None:
    # Recovery only undoes what a run did, wherever its engine is: no --allow-remote needed.
    try:
        return connect(allow_remote=True)
    except HarnessError as exc:
        if required:
            raise
        log(f"leftover containers not checked: {str(exc).splitlines()[0]}")
        return None


def _undo(client: DockerClient, entry: dict[str, Any], log: Callable[[str], None]) -> list[str]:
    from docker.errors import DockerException

    recorded = _ENGINE.search(entry.get("undo") or "")
    if recorded and recorded.group(1) != docker_host():
        # The containers live on the engine the run used; looking elsewhere would wrongly find nothing.
        return [f"recorded on engine {recorded.group(1)} but DOCKER_HOST is {docker_host()}; "
                f"set DOCKER_HOST={recorded.group(1)}"]
    errors: list[str] = []
    for name in entry["targets"]:
        try:
            containers = find(client, {LABEL_RUN: entry["run_id"], LABEL_NAME: name})
            if not containers:
                log(f"fault {entry['fault']}: container {name} of run {entry['run_id']} is gone; nothing to undo")
            for container in containers:
                undo_effect(client, container, entry["effect"])
                log(f"fault {entry['fault']}: undone on {container.name} ({entry['undo'].split(' on engine')[0]})")
        except DockerException as exc:
            errors.append(f"{name}: {exc}")
    return errors


def _remove_leftovers(client: DockerClient, log: Callable[[str], None]) -> None:
    """Remove containers whose run died; containers of live runs and of other machines are left alone."""
    from docker.errors import DockerException

    for container in client.containers.list(all=True, filters={"label": [LABEL_RUN]}):
        alive = owner_alive(container.labels)
        if alive is None:
            log(f"container {container.name}: started on another machine; left alone")
        elif not alive:
            try:
                container.remove(force=True)
                log(f"container {container.name} of dead run {container.labels.get(LABEL_RUN)} removed")
            except DockerException as exc:
                log(f"container {container.name}: could not remove it: {exc}")


# --- orphans of dead runs: process groups and working folders ----------------------------------------


def remove_dead_run_folders(log: Callable[[str], None]) -> int:
    """Kill what dead runs left running and remove their working folders; returns how many folders."""
    removed = 0
    for folder in run_folders():
        alive = folder.owner_alive()
        owner = folder.owner() or {}
        run_id = str(owner.get("run_id") or folder.path.name)
        if alive:
            log(f"run {run_id}: still going (pid {owner.get('pid')}); its folder {folder.path} is left to it")
            continue
        if alive is None and _age_s(folder) < UNOWNED_GRACE_S:
            continue  # just created: its owner record comes next
        for line in kill_orphans(run_id, [int(g["pgid"]) for g in owner.get("groups", [])
                                          if isinstance(g, dict) and isinstance(g.get("pgid"), int)]):
            log(line)
        folder.remove()
        log(f"run {run_id}: removed its working folder {folder.path} (configs with keys)")
        removed += 1
    return removed


def kill_orphans(run_id: str, pgids: list[int]) -> list[str]:
    """SIGKILL the processes of a dead run: its recorded process groups, and any process carrying its
    run id in its environment (one that left the group). What was killed, one line each."""
    said: list[str] = []
    procs = _processes()
    for pgid in pgids:
        members = [pid for pid, group in procs.items() if group == pgid]
        # Linux reuses no pid while it names a live group: a group with members but no leader is still
        # the run's; a live leader must carry the run's mark, or its pid was reused by something else.
        leader_ours = pgid not in procs or _marked(pgid, run_id)
        if members and leader_ours:
            try:
                os.killpg(pgid, signal.SIGKILL)
                said.append(f"run {run_id}: killed process group {pgid} (pids {', '.join(map(str, sorted(members)))})")
            except (ProcessLookupError, PermissionError) as exc:
                said.append(f"run {run_id}: could not kill process group {pgid}: {exc}")
    for pid in procs:
        if pid != os.getpid() and _marked(pid, run_id):
            try:
                os.kill(pid, signal.SIGKILL)
                said.append(f"run {run_id}: killed process {pid}, which had left its group")
            except (ProcessLookupError, PermissionError):
                pass
    return said


def _processes() -> dict[int, int]:
    """Every live process this user can see: pid -> its process group."""
    found: dict[int, int] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z":  # a zombie is already dead
            found[int(entry.name)] = int(fields[2])
    return found


def _marked(pid: int, run_id: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"{RUN_ENV}={run_id}".encode() in handle.read().split(b"\0")
    except OSError:
        return False


def _age_s(folder: RunFolder) -> float:
    try:
        return time.time() - folder.path.stat().st_mtime
    except OSError:
        return UNOWNED_GRACE_S

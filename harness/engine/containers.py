"""Containers a scenario declares (`containers:`), started for the run and removed after it.

Each container is named `harness-<run-id>-<name>` and labelled with the run id, scenario, pid
and host (`harness_labels`), so the docker fault backend finds it and `harness recover` can remove
it if the harness died before `stop()`. Blocking SDK calls run in a thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

import harness
from harness.core import events as ev
from harness.core.errors import HarnessError
from harness.core.events import EventSink
from harness.core.model import Container as ContainerSpec
from harness.core.model import Scenario
from harness.core.placeholders import fill
from harness.engine.processes import wait_until_answers
from harness.faults.docker_backend import (
    LABEL_NAME,
    LABEL_RUN,
    connect,
    container_name,
    find,
    harness_labels,
    owner_alive,
)

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

READY_TIMEOUT_S = 30.0
# A container's log kept beside the ledger is cut to its last this many bytes.
LOG_TAIL_BYTES = 200_000


def placeholders(scenario_dir: str) -> dict[str, str]:
    """What a container spec may refer to, so a scenario runs from any checkout and interpreter."""
    return {
        "python": sys.executable,
        "python_prefix": os.path.realpath(sys.base_prefix),  # the interpreter's installation
        "python_env": os.path.realpath(sys.prefix),          # its venv, if any (else the same folder)
        "harness_src": str(Path(harness.__file__).resolve().parent.parent),
        "scenario_dir": scenario_dir,
    }


def mounts(binds: list[str], values: dict[str, str], where: str) -> list[str]:
    """Filled, normalised binds; the first bind of a container path wins (the placeholders may coincide)."""
    out: dict[str, str] = {}
    for index, bind in enumerate(binds):
        parts = fill(bind, values, f"{where}.binds[{index}]").split(":")
        if len(parts) not in (2, 3):
            raise HarnessError(f"{where}.binds[{index}]: {bind!r} is not host:container[:ro]")
        host, inside = os.path.normpath(parts[0]), os.path.normpath(parts[1])
        if not os.path.isabs(host) or not os.path.exists(host):
            # Docker would create a missing host folder (as root): refuse instead.
            raise HarnessError(f"{where}.binds[{index}]: host path {host!r} does not exist (or is not absolute)")
        out.setdefault(inside, ":".join([host, inside, *parts[2:]]))
    return list(out.values())


class ContainerSet:
    def __init__(self, scenario: Scenario, run_dir: Path, sink: EventSink, allow_remote: bool = False,
                 scenario_dir: str | None = None) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self.run_id = run_dir.name  # the run folder is named by the run id (the journal's run_id)
        self.sink = sink
        self.allow_remote = allow_remote
        self.values = placeholders(scenario_dir or os.getcwd())
        self._client: DockerClient | None = None
        self._started: dict[str, Container] = {}

    async def start(self) -> None:
        self._client = await asyncio.to_thread(connect, self.allow_remote)
        await asyncio.to_thread(self._refuse_leftovers)
        ready: list[tuple[str, str]] = []
        for name, spec in self.scenario.containers.items():
            where = f"containers.{name}"
            url = fill(spec.ready_url, self.values, f"{where}.ready_url") if spec.ready_url else None
            if url and await _answers(url):
                raise HarnessError(f"{where}.ready_url: {url} already answers before the container started, so the "
                                   "run would test whatever holds that port\n  hint: stop it (a leftover container? "
                                   "`harness recover`), or use another port")
            container = await asyncio.to_thread(self._run, name, spec)
            self._started[name] = container
            self.sink.append({"type": ev.NOTE, "level": "info", "container": name,
                              "message": f"container {name} started: {container.name} ({spec.image}, "
                                         f"id {container.short_id}, network {spec.network_mode})"})
            if url:
                ready.append((name, url))
        await asyncio.gather(*(self._wait_ready(name, url) for name, url in ready))

    def _refuse_leftovers(self) -> None:
        """A container of a dead run may still hold a fixed port or a fault: make the user clear it first."""
        assert self._client is not None
        dead = [c.name for c in self._client.containers.list(all=True, filters={"label": [LABEL_RUN]})
                if owner_alive(c.labels) is False]
        if dead:
            raise HarnessError(f"container(s) of a run that died are still there: {', '.join(dead)}\n"
                               "  hint: run `harness recover` to undo their faults and remove them")

    def _run(self, name: str, spec: ContainerSpec) -> Container:
        from docker.errors import DockerException, ImageNotFound

        assert self._client is not None
        where = f"containers.{name}"
        labels = {**spec.labels, **harness_labels(self.run_id, self.scenario.name, name)}
        try:
            return self._client.containers.run(
                spec.image,
                [fill(a, self.values, f"{where}.command[{i}]") for i, a in enumerate(spec.command)] or None,
                name=container_name(self.run_id, name), labels=labels, detach=True,
                environment={k: fill(v, self.values, f"{where}.environment.{k}") for k, v in spec.environment.items()},
                volumes=mounts(spec.binds, self.values, where), network_mode=spec.network_mode,
                # An init forwards SIGTERM, so a `stop` fault stops the program instead of waiting to kill it.
                init=True,
            )
        except ImageNotFound:
            raise HarnessError(f"{where}.image: {spec.image} is not on the Docker engine\n  hint: docker pull it, or "
                               "run .ci/docker-up, which imports the empty base image harness-base:latest") from None
        except DockerException as exc:
            raise HarnessError(f"{where}: the container did not start: {exc}") from None

    async def _wait_ready(self, name: str, url: str) -> None:
        container = self._started[name]

        async def running() -> None:
            await asyncio.to_thread(container.reload)
            if container.status not in ("created", "running"):
                logs = (await asyncio.to_thread(container.logs, tail=20)).decode(errors="replace")
                code = container.attrs.get("State", {}).get("ExitCode")
                raise HarnessError(f"container {name} is {container.status} (exit code {code}) before {url} "
                                   f"answered; its log ends:\n{logs}")

        if not await wait_until_answers(url, READY_TIMEOUT_S, running):
            raise HarnessError(f"container {name} did not answer {url} within {READY_TIMEOUT_S:.0f} s\n"
                               f"  hint: check containers.{name}.ready_url, command and binds")

    async def stop(self) -> None:
        """Keep each container's log beside the ledger, then remove it (force); never raises."""
        if self._client is None:
            return
        try:
            # By label too: a container created while start() was cancelled is in no list of ours.
            labelled = await asyncio.to_thread(find, self._client, {LABEL_RUN: self.run_id})
        except Exception:  # noqa: BLE001 - fall back on the containers we know of
            labelled = []
        known = {c.id for c in self._started.values()}
        todo = [*reversed(self._started.items()), *((c.labels.get(LABEL_NAME, c.name), c) for c in labelled
                                                    if c.id not in known)]
        for name, container in todo:
            try:
                await asyncio.to_thread(self._remove, name, container)
                self.sink.append({"type": ev.NOTE, "level": "info", "container": name,
                                  "message": f"container {name} removed: {container.name}"})
            except Exception as exc:  # noqa: BLE001 - removing must go on for the others
                self.sink.append({"type": ev.NOTE, "level": "warning", "container": name,
                                  "message": f"removing container {container.name}: {exc} "
                                             "(`harness recover` removes it later)"})
        self._started.clear()
        self._client.close()
        self._client = None

    def _remove(self, name: str, container: Container) -> None:
        try:
            logs: Any = container.logs()
            (self.run_dir / f"container-{name}.log").write_bytes(logs[-LOG_TAIL_BYTES:])
        except Exception:  # noqa: BLE001 - a missing log must not keep the container alive
            pass
        container.remove(force=True)


async def _answers(url: str) -> bool:
    """Whether anything holds the address: any answer, or a connection that hangs (a paused server)."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            async with session.get(url):
                return True
    except aiohttp.ClientConnectorError:
        return False  # refused: free
    except (aiohttp.ClientError, TimeoutError):
        return True

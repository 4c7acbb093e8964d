"""Faults on containers (backend docker): pause, stop, kill, restart, disconnect, through the docker SDK.

A container outage cannot carry a deadline the way a mock's fault does: nothing inside Docker
unpauses a container by itself. So a docker fault lives until it is healed: in the run's
`finally`, or by `harness recover` from the fault journal if the harness died. Healing is
idempotent and reads the container's state first, so it can run any number of times.

The harness names and labels every container it starts (see `harness_labels`); a fault may only
touch containers the scenario declares under `containers:` (the blast radius, decided by
`harness.core.blast_radius`), found by those labels.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from harness.core.blast_radius import affected_providers, fault_containers
from harness.core.errors import HarnessError
from harness.core.model import Fault, Scenario

if TYPE_CHECKING:  # the SDK is imported only when a docker fault or container is used
    from docker import DockerClient
    from docker.models.containers import Container

LABEL_PREFIX = "io.fallback-harness"
LABEL_RUN = f"{LABEL_PREFIX}.run-id"
LABEL_NAME = f"{LABEL_PREFIX}.container"
LABEL_SCENARIO = f"{LABEL_PREFIX}.scenario"
LABEL_PID = f"{LABEL_PREFIX}.pid"
LABEL_HOST = f"{LABEL_PREFIX}.host"
DEFAULT_HOST = "unix:///var/run/docker.sock"
# A stop gets this long to end gracefully before Docker kills the container.
STOP_GRACE_S = 2
# What heals each effect; a restart heals itself (healing only makes sure the container runs).
UNDO = {"pause": "unpause", "stop": "start", "kill": "start", "restart": "start if not running",
        "disconnect": "connect"}


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def is_local_host(host: str) -> bool:
    """A unix socket / named pipe, or TCP to a loopback address: the engine runs on this machine."""
    url = urlparse(host)
    if url.scheme in ("unix", "npipe", ""):
        return True
    if url.scheme in ("tcp", "http", "https"):
        name = url.hostname or ""
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False
    return False  # ssh:// and the rest reach another machine


def require_local(allow_remote: bool) -> str:
    """The engine's address; refuses a remote engine unless allowed, since faults would hit shared hosts."""
    host = docker_host()
    if not allow_remote and not is_local_host(host):
        raise HarnessError(f"DOCKER_HOST={host} is a remote Docker engine: the run would start containers and "
                           "inject faults on another machine\n  hint: pass --allow-remote if that is intended")
    return host


def connect(allow_remote: bool) -> DockerClient:
    """A client for the engine at DOCKER_HOST that answered a ping; HarnessError with a hint otherwise."""
    host = require_local(allow_remote)
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise HarnessError("containers and docker faults need the docker SDK\n"
                           "  hint: pip install 'docker>=7.1'") from None
    try:
        client = docker.DockerClient(base_url=host, timeout=30)
        client.ping()
    except DockerException as exc:
        raise HarnessError(f"no Docker engine answers at {host}: {exc}\n"
                           "  hint: start one (`.ci/docker-up` does) and set DOCKER_HOST, "
                           "e.g. export DOCKER_HOST=unix:///tmp/dockerd.sock") from None
    return client


def container_name(run_id: str, name: str) -> str:
    """The name a run gives a declared container; readable in `docker ps`, unique per run."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in name)
    return f"harness-{run_id}-{safe}"


def harness_labels(run_id: str, scenario: str, name: str) -> dict[str, str]:
    """Labels that find a run's containers again: for faults, and for `harness recover` after a crash."""
    return {LABEL_RUN: run_id, LABEL_NAME: name, LABEL_SCENARIO: scenario, LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname()}


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)


def owner_alive(labels: dict[str, str]) -> bool | None:
    """Whether the run that started a container still runs; None when it ran on another machine."""
    if labels.get(LABEL_HOST) != socket.gethostname():
        return None
    try:
        return pid_alive(int(labels.get(LABEL_PID, "")))
    except ValueError:
        return None


def find(client: DockerClient, labels: dict[str, str]) -> list[Container]:
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    return list(client.containers.list(all=True, filters=filters))


def apply_effect(client: DockerClient, container: Container, effect: dict[str, Any]) -> None:
    kind = effect["kind"]
    if kind == "pause":
        container.pause()
    elif kind == "stop":
        container.stop(timeout=STOP_GRACE_S)
    elif kind == "kill":
        container.kill()
    elif kind == "restart":
        container.restart(timeout=STOP_GRACE_S)
    elif kind == "disconnect":
        client.networks.get(effect["network"]).disconnect(container)
    else:
        raise ValueError(f"not a container effect: {kind}")


def undo_effect(client: DockerClient, container: Container, effect: dict[str, Any]) -> None:
    """Undo one effect; reads the state first, so undoing twice (or what never happened) is harmless."""
    from docker.errors import NotFound

    try:
        container.reload()
    except NotFound:
        return  # removed meanwhile: nothing left to heal
    status = container.status
    if status == "paused":  # any effect: a paused container serves nobody
        container.unpause()
        status = "running"
    if effect["kind"] in ("stop", "kill", "restart") and status not in ("running", "restarting"):
        container.start()
    if effect["kind"] == "disconnect":
        network = client.networks.get(effect["network"])
        attached = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        if network.name not in attached:
            network.connect(container)


def describe_undo(effect: dict[str, Any], names: list[str], host: str) -> str:
    """Human-readable, and read back by `harness recover` for the engine (` on engine ...`)."""
    what = UNDO[effect["kind"]] + (f" {effect['network']}" if effect["kind"] == "disconnect" else "")
    return f"docker {what} {', '.join(names)} on engine {host} (no deadline: healed at the end or by harness recover)"


class DockerFaultBackend:
    """Acts only on containers this process started for the scenario (labels name run, scenario and pid)."""

    name = "docker"

    def __init__(self, scenario: Scenario, allow_remote: bool = False, run_id: str | None = None) -> None:
        self.scenario = scenario
        self.host = require_local(allow_remote)  # refused at once, before the timeline starts
        self.allow_remote = allow_remote
        self.run_id = run_id
        self._client: DockerClient | None = None

    def resolve(self, fault: Fault) -> list[str]:
        return fault_containers(self.scenario, fault)

    self_expiring = False  # a paused container stays paused: healed in finally or by `harness recover`

    def providers(self, fault: Fault, targets: list[str]) -> list[str]:
        """The providers the fault takes down (for the ledger's fault window): those its containers serve."""
        return affected_providers(self.scenario, fault)

    def undo_description(self, fault: Fault, targets: list[str]) -> str:
        return describe_undo(fault.effect.model_dump(mode="json"), targets, self.host)

    async def inject(self, fault: Fault, targets: list[str], deadline_ts: float | None) -> None:
        # deadline_ts is not enforced: see the module's docstring.
        effect = fault.effect.model_dump(mode="json")
        await asyncio.to_thread(self._each, targets, lambda c, cont: apply_effect(c, cont, effect), True)

    async def heal(self, fault: Fault, targets: list[str]) -> list[str]:
        """Undo on every target even if one fails; returns the errors."""
        effect = fault.effect.model_dump(mode="json")
        return await asyncio.to_thread(self._each, targets, lambda c, cont: undo_effect(c, cont, effect), False)

    def _each(self, targets: list[str], action: Callable[[DockerClient, Container], None],
              fail_fast: bool) -> list[str]:
        from docker.errors import DockerException

        errors: list[str] = []
        for name in targets:
            try:
                client = self._connect()
                action(client, self._container(client, name))
            except (DockerException, HarnessError, RuntimeError) as exc:
                if fail_fast:
                    # The scheduler catches RuntimeError: it records the failure and heals what was done.
                    raise RuntimeError(f"container {name}: {exc}") from exc
                errors.append(f"{name}: {exc}")
        return errors

    def _connect(self) -> DockerClient:
        if self._client is None:
            self._client = connect(self.allow_remote)
        return self._client

    def _container(self, client: DockerClient, name: str) -> Container:
        labels = {LABEL_NAME: name, LABEL_SCENARIO: self.scenario.name}
        labels.update({LABEL_RUN: self.run_id} if self.run_id else {LABEL_PID: str(os.getpid())})
        found = find(client, labels)
        if len(found) != 1:
            what = "no container" if not found else f"{len(found)} containers"
            raise RuntimeError(f"{what} of this run labelled {LABEL_NAME}={name}; the harness starts the "
                               "declared containers itself before the timeline")
        return found[0]

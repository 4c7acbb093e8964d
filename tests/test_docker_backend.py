"""The docker fault backend, the run's containers, `harness recover` and the dry-run plan.

Tests that need a Docker engine use the `engine` fixture: it skips them, with the reason, when
the docker SDK is missing or no engine answers at DOCKER_HOST or unix:///tmp/dockerd.sock
(`.ci/docker-up` starts one and imports the empty base image they run the host's Python in).
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.core.model import Container, ContainerEffect, Fault, FaultTarget
from harness.engine.containers import ContainerSet
from harness.engine.plan import dry_run_plan
from harness.engine.timeline import FaultScheduler
from harness.engine.topology import free_port
from harness.faults.docker_backend import LABEL_PID, LABEL_RUN, DockerFaultBackend, harness_labels, is_local_host
from harness.faults.journal import FaultJournal
from harness.faults.recover import recover
from harness.scenario import load_scenario
from tests.conftest import ROOT, SCENARIOS, harness_cmd

pytestmark = pytest.mark.slow  # a real Docker engine, containers started and stopped
SHIPPED = SCENARIOS / "docker" / "container-outage.yaml"
IMAGE = "harness-base:latest"
LOCAL_SOCKET = "unix:///tmp/dockerd.sock"
STAND_IN = ["{python}", "{harness_src}/fixtures/docker/stand_in_model_server.py"]
BINDS = ["/usr:/usr:ro", "/lib:/lib:ro", "/lib64:/lib64:ro", "/bin:/bin:ro", "/etc:/etc:ro",
         "{python_prefix}:{python_prefix}:ro", "{python_env}:{python_env}:ro", "{harness_src}:{harness_src}:ro"]


def _engine_reason() -> str | None:
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'docker>=7.1')"
    host = os.environ.get("DOCKER_HOST") or LOCAL_SOCKET
    try:
        client = docker.DockerClient(base_url=host, timeout=5)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine to test against
        return f"no Docker engine answers at {host} ({type(exc).__name__}); start one with .ci/docker-up"
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        return f"the engine at {host} has no {IMAGE}; .ci/docker-up imports it"
    finally:
        client.close()
    os.environ.setdefault("DOCKER_HOST", host)  # the harness's subprocesses must reach the same engine
    return None


@pytest.fixture(scope="session")
def engine():
    reason = _engine_reason()
    if reason:
        pytest.skip(reason)
    import docker

    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    yield client
    client.close()


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    path = tmp_path / "state"
    monkeypatch.setenv("HARNESS_STATE_DIR", str(path))
    return path


class Sink(list):
    def append(self, event):
        super().append({**event, "ts": time.time()})


def _server(port, labels, network_mode="host", host="127.0.0.1", ready=True):
    return Container(image=IMAGE, command=[*STAND_IN, "--port", str(port), "--host", host], labels=labels,
                     binds=BINDS, network_mode=network_mode,
                     ready_url=f"http://127.0.0.1:{port}/health" if ready else None)


def _scenario(containers, faults=()):
    base = load_scenario(SHIPPED).scenario
    return base.model_copy(update={"containers": containers, "faults": list(faults)})


def _fault(effect="pause", at_s=0.0, duration_s=1.0, network=None, **target):
    return Fault(name=f"f-{effect}", target=FaultTarget(**target), effect=ContainerEffect(kind=effect, network=network),
                 at_s=at_s, duration_s=duration_s, backend="docker")


def _get(url, timeout=1.5):
    """The status of a GET, or the name of the error (a hang is a TimeoutError)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.URLError as exc:
        return type(exc.reason).__name__
    except (TimeoutError, ConnectionError) as exc:
        return type(exc).__name__


def _wait_for(url, want=200, within=15.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _get(url, 1.0) == want:
            return True
        time.sleep(0.2)
    return False


class Started:
    """Containers started the way a run starts them, removed at the end of the test."""

    def __init__(self, scenario, tmp_path):
        self.scenario = scenario
        self.run_dir = tmp_path / "reports" / f"test-{os.getpid()}-{time.monotonic_ns()}"
        self.run_dir.mkdir(parents=True)
        self.sink = Sink()
        self.set = ContainerSet(scenario, self.run_dir, self.sink)

    def __enter__(self):
        asyncio.run(self.set.start())
        return self

    def __exit__(self, *exc):
        asyncio.run(self.set.stop())

    @property
    def backend(self):
        return DockerFaultBackend(self.scenario, run_id=self.run_dir.name)

    def container(self, name):
        return self.set._started[name]


# --- without an engine -------------------------------------------------------------------------


@pytest.mark.parametrize("host, local", [
    ("unix:///var/run/docker.sock", True), ("unix:///tmp/dockerd.sock", True), ("tcp://127.0.0.1:2375", True),
    ("tcp://localhost:2375", True), ("tcp://[::1]:2375", True), ("tcp://10.0.0.5:2376", False),
    ("tcp://docker.example.com:2376", False), ("ssh://ops@build-host", False),
])
def test_which_docker_hosts_are_local(host, local):
    assert is_local_host(host) is local


def test_remote_docker_host_is_refused_without_allow_remote(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.1.2.3:2375")
    scenario = load_scenario(SHIPPED).scenario
    with pytest.raises(HarnessError, match="--allow-remote") as refused:
        DockerFaultBackend(scenario, allow_remote=False)
    assert "tcp://10.1.2.3:2375" in str(refused.value)
    with pytest.raises(HarnessError, match="--allow-remote"):
        asyncio.run(ContainerSet(scenario, tmp_path / "run", Sink()).start())
    with pytest.raises(HarnessError, match="--allow-remote"):
        dry_run_plan(load_scenario(SHIPPED), allow_remote=False)
    DockerFaultBackend(scenario, allow_remote=True)  # allowed: nothing is contacted until a fault acts
    assert "REMOTE" in dry_run_plan(load_scenario(SHIPPED), allow_remote=True)


def test_dry_run_plan_shows_the_blast_radius(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", LOCAL_SOCKET)
    plan = dry_run_plan(load_scenario(SHIPPED), allow_remote=False).splitlines()
    text = "\n".join(plan)
    assert "gpt-eu: fault proxy in front of upstream http://127.0.0.1:18431" in text
    assert "claude-eu: mock on 127.0.0.1:<free port>" in text
    assert "gateway: reference: the bundled reference gateway, defects: none" in text
    assert "containers (Docker engine unix:///tmp/dockerd.sock, local):" in text
    assert any(line.startswith("  model-eu: image harness-base:latest, labels region=eu") and
               line.endswith("upstream of provider gpt-eu") for line in plan), text
    assert "    selector label region=eu" in plan
    assert "    blast radius: container(s) model-eu (1 of 1 declared)" in plan
    assert "    undo: docker unpause model-eu on engine unix:///tmp/dockerd.sock" in text
    assert "    requests hit on their primary: 100% of the mix: tenants acme; request classes chat; regions eu" in plan
    timeline = plan[plan.index("timeline:"):]
    assert timeline == [
        "timeline:",
        "  before  start container(s) model-eu; wait until ready",
        "      0 s  traffic starts (10/s)",
        "      4 s  fault eu-model-container-paused starts: docker pause on model-eu",
        "      8 s  fault eu-model-container-paused healed",
        "     15 s  traffic ends",
        "  after   heal every fault still active, remove the containers",
    ]


def test_dry_run_plan_of_a_mock_fault_with_match():
    plan = dry_run_plan(load_scenario(SCENARIOS / "tenant-outage.yaml"), allow_remote=False)
    assert "selector provider gpt-eu; only requests with tenant globex" in plan
    assert "requests hit on their primary: 50% of the mix: tenants globex;" in plan
    assert "expires by itself at its deadline" in plan
    assert "containers" not in plan


def test_resolve_is_limited_to_declared_containers():
    scenario = _scenario({"model-eu": _server(1, {"region": "eu"}), "model-eu-2": _server(2, {"region": "eu"}),
                          "model-us": _server(3, {"region": "us"})})
    backend = DockerFaultBackend(scenario)
    assert backend.resolve(_fault(label="region=eu")) == ["model-eu", "model-eu-2"]
    assert backend.resolve(_fault(container="model-us")) == ["model-us"]
    assert backend.resolve(_fault(container="not-declared")) == []
    assert backend.resolve(_fault(label="region=apac")) == []


def test_providers_a_container_serves_are_those_whose_upstream_is_its_address():
    shipped = load_scenario(SHIPPED).scenario
    fault = shipped.faults[0]
    assert DockerFaultBackend(shipped).providers(fault, ["model-eu"]) == ["gpt-eu"]
    moved = _scenario({"model-eu": _server(18999, {"region": "eu"})})
    assert DockerFaultBackend(moved).providers(fault, ["model-eu"]) == []  # gpt-eu's upstream is :18431


def test_recover_reports_self_expiring_faults_and_keeps_them(state_dir, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # no engine needed for this
    journal = FaultJournal("some-run")
    journal.record("eu-503", "mock", ["gpt-eu"], "DELETE ...", time.time() + 60, {"kind": "error", "status": 503})
    lines = []
    assert recover(lines.append) == 0
    assert any("eu-503 (mock: gpt-eu) of run some-run: expires by itself at" in line for line in lines), lines
    assert len(journal.pending()) == 1


# --- against a real engine ---------------------------------------------------------------------


def test_pause_hangs_requests_and_heal_unpauses_with_the_journal(engine, tmp_path, state_dir):
    port = free_port()
    fault = _fault("pause", duration_s=2.5, label="region=eu")
    scenario = _scenario({"model-eu": _server(port, {"region": "eu"})}, [fault])
    url = f"http://127.0.0.1:{port}/health"
    with Started(scenario, tmp_path) as run:
        journal = FaultJournal(run.run_dir.name)
        scheduler = FaultScheduler({"docker": run.backend}, run.sink, lambda _m: None, journal)
        seen = {}

        async def drill():
            loop = asyncio.get_running_loop()
            task = asyncio.create_task(scheduler.run(fault, loop.time()))
            await asyncio.sleep(1.0)
            seen["status"] = await asyncio.to_thread(lambda: (run.container("model-eu").reload(),
                                                              run.container("model-eu").status)[1])
            seen["get"] = await asyncio.to_thread(_get, url, 1.0)
            seen["journal"] = journal.pending()
            await task

        assert _get(url) == 200
        asyncio.run(drill())
        assert seen["status"] == "paused"
        assert seen["get"] == "TimeoutError"  # a paused server accepts the connection and never answers
        [entry] = seen["journal"]
        assert entry["backend"] == "docker" and entry["targets"] == ["model-eu"]
        assert entry["undo"].startswith("docker unpause model-eu on engine ")
        assert _get(url) == 200
        assert journal.pending() == []
        start, end = [e for e in run.sink if e["type"] in ("fault_start", "fault_end")]
        assert start["targets"] == ["model-eu"] and end["healed"] is True and end["error"] is None


@pytest.mark.parametrize("effect, exited_code", [("stop", 143), ("kill", 137)])
def test_stop_and_kill_are_undone_by_start(engine, tmp_path, effect, exited_code):
    port = free_port()
    fault = _fault(effect, container="model-eu")
    scenario = _scenario({"model-eu": _server(port, {"region": "eu"})}, [fault])
    url = f"http://127.0.0.1:{port}/health"
    with Started(scenario, tmp_path) as run:
        backend, container = run.backend, run.container("model-eu")
        asyncio.run(backend.inject(fault, ["model-eu"], time.time() + 10))
        container.reload()
        assert container.status == "exited"
        assert container.attrs["State"]["ExitCode"] == exited_code
        assert _get(url) == "ConnectionRefusedError"
        assert asyncio.run(backend.heal(fault, ["model-eu"])) == []
        assert _wait_for(url), "the server did not come back after start"
        assert asyncio.run(backend.heal(fault, ["model-eu"])) == []  # healing twice is harmless


def test_restart_needs_no_undo(engine, tmp_path):
    port = free_port()
    fault = _fault("restart", container="model-eu")
    scenario = _scenario({"model-eu": _server(port, {"region": "eu"})}, [fault])
    whoami = f"http://127.0.0.1:{port}/whoami"
    with Started(scenario, tmp_path) as run:
        backend = run.backend
        before = json.loads(urllib.request.urlopen(whoami, timeout=2).read())
        asyncio.run(backend.inject(fault, ["model-eu"], time.time() + 10))
        assert _wait_for(whoami)
        after = json.loads(urllib.request.urlopen(whoami, timeout=2).read())
        assert after["started"] > before["started"], "the server process was not restarted"
        assert "start if not running" in backend.undo_description(fault, ["model-eu"])
        assert asyncio.run(backend.heal(fault, ["model-eu"])) == []
        run.container("model-eu").reload()
        assert run.container("model-eu").status == "running"


def test_disconnect_is_undone_by_reconnect(engine, tmp_path):
    import docker

    name = f"harness-test-{os.getpid()}"
    try:
        network = engine.networks.create(name, driver="bridge")
    except docker.errors.APIError as exc:
        pytest.skip(f"this engine cannot create a network ({exc}); disconnect is untested here")
    try:
        fault = _fault("disconnect", network=name, container="model-net")
        scenario = _scenario({"model-net": _server(8000, {"region": "eu"}, network_mode=name, host="0.0.0.0",
                                                   ready=False)}, [fault])
        with Started(scenario, tmp_path) as run:
            backend, container = run.backend, run.container("model-net")

            def url():
                container.reload()
                return f"http://{container.attrs['NetworkSettings']['Networks'][name]['IPAddress']}:8000/health"

            assert _wait_for(url())
            asyncio.run(backend.inject(fault, ["model-net"], time.time() + 10))
            container.reload()
            assert name not in container.attrs["NetworkSettings"]["Networks"]
            assert asyncio.run(backend.heal(fault, ["model-net"])) == []
            assert _wait_for(url()), "the container is not reachable after reconnect"
    finally:
        network.reload()
        for attached in network.containers:
            network.disconnect(attached, force=True)
        network.remove()


def test_faults_touch_only_declared_containers_of_this_run(engine, tmp_path):
    eu, eu2, us = free_port(), free_port(), free_port()
    fault = _fault("pause", label="region=eu")
    scenario = _scenario({"model-eu": _server(eu, {"region": "eu"}), "model-eu-2": _server(eu2, {"region": "eu"}),
                          "model-us": _server(us, {"region": "us"})}, [fault])
    # Another container with the same label on the same engine, not declared by the scenario.
    stray = engine.containers.run(IMAGE, ["/bin/sleep", "60"], labels={"region": "eu"}, detach=True,
                                  volumes=["/usr:/usr:ro", "/lib:/lib:ro", "/lib64:/lib64:ro", "/bin:/bin:ro"],
                                  network_mode="none")
    try:
        with Started(scenario, tmp_path) as run:
            backend = run.backend
            targets = backend.resolve(fault)
            assert targets == ["model-eu", "model-eu-2"]
            asyncio.run(backend.inject(fault, targets, time.time() + 10))
            states = {}
            for name in ("model-eu", "model-eu-2", "model-us"):
                run.container(name).reload()
                states[name] = run.container(name).status
            stray.reload()
            assert states == {"model-eu": "paused", "model-eu-2": "paused", "model-us": "running"}
            assert stray.status == "running"
            assert asyncio.run(backend.heal(fault, targets)) == []
            assert _get(f"http://127.0.0.1:{eu}/health") == 200 and _get(f"http://127.0.0.1:{eu2}/health") == 200
    finally:
        stray.remove(force=True)


def test_container_set_records_labels_and_removes_containers(engine, tmp_path):
    port = free_port()
    scenario = _scenario({"model-eu": _server(port, {"region": "eu"})})
    with Started(scenario, tmp_path) as run:
        container = run.container("model-eu")
        assert container.name == f"harness-{run.run_dir.name}-model-eu"
        assert container.labels["region"] == "eu" and container.labels[LABEL_RUN] == run.run_dir.name
        [note] = [e for e in run.sink if e["type"] == "note"]
        assert note["level"] == "info" and note["message"].startswith("container model-eu started: harness-")
        # One the set does not know of (created while a start was cancelled): stop() finds it by its run label.
        engine.containers.create(IMAGE, ["/bin/true"], labels=harness_labels(run.run_dir.name, "x", "orphan"))
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run.run_dir.name}"}) == []
    assert (run.run_dir / "container-model-eu.log").exists()
    asyncio.run(run.set.stop())  # stopping again (nothing left) does not raise


def test_a_container_that_dies_at_start_aborts_with_its_log(engine, tmp_path):
    spec = Container(image=IMAGE, command=["{python}", "-c", "import sys; print('no model here'); sys.exit(3)"],
                     binds=BINDS, ready_url=f"http://127.0.0.1:{free_port()}/health")
    run = Started(_scenario({"broken": spec}), tmp_path)
    try:
        with pytest.raises(HarnessError, match=r"(?s)container broken is exited \(exit code 3\).*no model here"):
            asyncio.run(run.set.start())
    finally:
        asyncio.run(run.set.stop())
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run.run_dir.name}"}) == []


def test_a_port_already_taken_is_refused(engine, tmp_path):
    port = free_port()
    squatter = subprocess.Popen([sys.executable, str(ROOT / "fixtures/docker/stand_in_model_server.py"),
                                 "--port", str(port)])
    try:
        assert _wait_for(f"http://127.0.0.1:{port}/health")
        run = Started(_scenario({"model-eu": _server(port, {"region": "eu"})}), tmp_path)
        with pytest.raises(HarnessError, match="already answers before the container started"):
            asyncio.run(run.set.start())
        assert run.set._started == {}
    finally:
        squatter.kill()
        squatter.wait()


def _run_until_fault(scenario: Path, tmp_path: Path, state_dir: Path):
    """Start `harness run` in its own process; return it and its ledger once the fault has started."""
    reports = tmp_path / "reports"
    log = (tmp_path / "harness.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(scenario), "--report-dir", str(reports),
                             "--format", "json"], cwd=ROOT, env={**os.environ, "HARNESS_STATE_DIR": str(state_dir)},
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for ledger in reports.glob("*/ledger.jsonl"):
            if any(json.loads(line)["type"] == "fault_start" for line in ledger.read_text().splitlines() if line):
                time.sleep(0.3)  # past the pause call itself
                return proc, ledger
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    pytest.fail(f"no fault_start within 60 s: {(tmp_path / 'harness.log').read_text()[-2000:]}")


def test_sigterm_heals_the_container_fault_and_removes_the_container(engine, tmp_path, state_dir):
    proc, ledger = _run_until_fault(SHIPPED, tmp_path, state_dir)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 3  # interrupted: unknown
    events = [json.loads(line) for line in ledger.read_text().splitlines() if line]
    end = next(e for e in events if e["type"] == "fault_end")
    assert end["healed"] is True and end["reason"] == "aborted"
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={ledger.parent.name}"}) == []
    assert FaultJournal(ledger.parent.name).pending() == []


def test_sigkilled_run_leaves_a_paused_container_that_recover_undoes(engine, tmp_path, state_dir):
    scenario = SHIPPED
    proc, ledger = _run_until_fault(scenario, tmp_path, state_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped: a zombie would still count as a live run
    run_id = ledger.parent.name
    [container] = engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
    assert container.status == "paused", "the harness died: nobody unpaused the container"
    [entry] = FaultJournal(run_id).pending()
    assert entry["fault"] == "eu-model-container-paused" and entry["backend"] == "docker"

    reports = tmp_path / "reports"
    refused = harness_cmd("run", str(scenario), "--report-dir", str(reports), env={"HARNESS_STATE_DIR": str(state_dir)})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "harness recover" in refused.stderr and "eu-model-container-paused" in refused.stderr

    lines = []
    assert recover(lines.append) == 1
    text = "\n".join(lines)
    assert f"fault eu-model-container-paused: undone on {container.name} (docker unpause model-eu" in text
    assert f"container {container.name} of dead run {run_id} removed" in text
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}) == []
    assert FaultJournal(run_id).pending() == []
    again = harness_cmd("recover", env={"HARNESS_STATE_DIR": str(state_dir)})
    assert again.returncode == 0 and "no unhealed fault recorded" in again.stdout


def test_leftover_container_of_a_dead_run_blocks_a_new_run_until_recover(engine, tmp_path, state_dir):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    labels = {**harness_labels("container-outage-dead-run", "container-outage", "model-eu"),
              LABEL_PID: dead.stdout.strip()}
    ghost = engine.containers.run(IMAGE, ["/bin/sleep", "60"], labels=labels, detach=True, network_mode="none",
                                  volumes=["/usr:/usr:ro", "/lib:/lib:ro", "/lib64:/lib64:ro", "/bin:/bin:ro"])
    try:
        fresh = Started(_scenario({"model-eu": _server(free_port(), {"region": "eu"})}), tmp_path)
        with pytest.raises(HarnessError, match="harness recover"):
            asyncio.run(fresh.set.start())
        assert fresh.set._started == {}
        lines = []
        assert recover(lines.append) == 0
        assert f"container {ghost.name} of dead run container-outage-dead-run removed" in lines, lines
        assert engine.containers.list(all=True, filters={"id": ghost.id}) == []
    finally:
        if engine.containers.list(all=True, filters={"id": ghost.id}):
            ghost.remove(force=True)


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory):
    reason = _engine_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("container-outage")
    result = harness_cmd("run", str(SHIPPED), "--report-dir", str(root / "reports"), "--format", "json",
                         env={"HARNESS_STATE_DIR": str(root / "state")})
    [ledger] = (root / "reports").glob("*/ledger.jsonl")
    return result, [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]


def test_shipped_container_outage_falls_back_and_fails_back(shipped_run, engine):
    result, events = shipped_run
    assert result.returncode in (0, 1, 3), result.stderr[-3000:]  # judged, whatever the verdict
    assert "Traceback" not in result.stderr
    start = next(e for e in events if e["type"] == "fault_start")
    end = next(e for e in events if e["type"] == "fault_end")
    assert start["targets"] == ["model-eu"] and end["healed"] is True
    served = {e["id"]: e["provider"] for e in events if e["type"] == "upstream" and e["outcome"] == "ok"}
    requests = [e for e in events if e["type"] == "request"]
    # Well inside the window (a request of its last second hangs until the unpause, then the primary answers).
    during = [served.get(r["id"]) for r in requests if start["ts"] + 1.2 < r["ts"] < end["ts"] - 1.2]
    after = [served.get(r["id"]) for r in requests if r["ts"] > end["ts"] + 4]
    assert during and set(during) == {"claude-eu"}, during  # the paused primary hangs: fallback
    assert after and set(after) == {"gpt-eu"}, after  # unpaused: back to the primary
    notes = [e["message"] for e in events if e["type"] == "note"]
    assert any(n.startswith("container model-eu started: harness-container-outage-") for n in notes), notes
    assert any(n.startswith("container model-eu removed: ") for n in notes), notes
    run_id = events[0]["run_id"]
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}) == []


def test_shipped_container_outage_passes_every_check(shipped_run):
    result, _ = shipped_run
    summary = json.loads(result.stdout)
    assert {c["check"]: c["verdict"] for c in summary["checks"]} == dict.fromkeys(
        load_scenario(SHIPPED).scenario.check_names(), "pass")
    assert result.returncode == 0

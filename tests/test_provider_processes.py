"""A provider served by several processes on its one port (`processes: N`): the real providers process
(`python -m harness.serve providers -`), its real replicas, real connections on 127.0.0.1.

Which process answered a connection is read from the kernel, not from the servers: the process whose
file descriptors hold the server side of that TCP connection (/proc/net/tcp and /proc/PID/fd).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.core.identity import fingerprint
from tests.conftest import ROOT, SCENARIOS, harness_cmd, shipped_text

TOKEN = "control-token-of-this-test"
KEY = "sk-test-svc-eu-processes"
PROVIDER = {"model": "gpt-4o", "region": "eu", "identity": "svc-eu", "data_classes": ["internal"]}
CHAT = "/v1/chat/completions"


class Providers:
    """`python -m harness.serve providers -`, its config on stdin as the engine hands it over."""

    def __init__(self, tmp: Path, providers: dict[str, dict[str, Any]]) -> None:
        self.ledger = tmp / "ledger.jsonl"
        key = os.urandom(16)
        config = {"ledger_path": str(self.ledger), "control_token": TOKEN, "seed": 7,
                  "identities_by_fp": {fingerprint(KEY, key): "svc-eu"}, "fingerprint_key": key.hex(),
                  "providers": providers}
        self.log = (tmp / "providers.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.serve", "providers", "-"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(config))
        self.proc.stdin.close()
        line = self.proc.stdout.readline()
        assert line, (tmp / "providers.log").read_text()
        self.urls: dict[str, str] = json.loads(line)["providers"]

    def port(self, name: str) -> int:
        return int(self.urls[name].rsplit(":", 1)[1])

    def replicas(self) -> list[int]:
        return children(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def two_processes(tmp_path):
    providers = Providers(tmp_path, {"gpt-eu": {**PROVIDER, "processes": 2}, "solo": dict(PROVIDER)})
    yield providers
    providers.stop()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def socket_owners(pids: list[int], port: int, client_ports: list[int]) -> dict[int, int]:
    """Client port -> the pid holding the server side of that connection to 127.0.0.1:`port`."""
    inodes: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) in client_ports:
            inodes[inode] = int(remote.split(":")[1], 16)
    owners: dict[int, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                owners[inodes[int(target[8:-1])]] = pid
    return owners


def chat_body(rid: str) -> bytes:
    content = f"[[harness:id={rid};tenant=acme;class=chat;region=eu;data=internal]] hello"
    return json.dumps({"model": "chat", "messages": [{"role": "user", "content": content}]}).encode()


def calls_on_fresh_connections(providers: Providers, prefix: str, count: int) -> tuple[Counter[int], list[int]]:
    """`count` calls, each on a connection of its own, held open until the kernel has said which process
    holds its server side. Returns the answering pids (counted) and the statuses."""
    port = providers.port("gpt-eu")
    connections, statuses = [], []
    for i in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", CHAT, chat_body(f"{prefix}-{i:04d}"),
                     {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}",
                      "x-harness-request-id": f"{prefix}-{i:04d}"})
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        connections.append(conn)
    client_ports = [conn.sock.getsockname()[1] for conn in connections]
    owners = socket_owners([providers.proc.pid, *providers.replicas()], port, client_ports)
    for conn in connections:
        conn.close()
    assert len(owners) == count, "every connection's server side belongs to one of the providers' processes"
    return Counter(owners.values()), statuses


def control(providers: Providers, method: str, name: str, body: dict[str, Any] | None = None) -> tuple[int, int]:
    """A control request on a fresh connection: (its status, the pid that received it)."""
    port = providers.port("gpt-eu")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, f"/_harness/faults/{name}", json.dumps(body).encode() if body is not None else None,
                 {"x-harness-token": TOKEN})
    response = conn.getresponse()
    response.read()
    owner = socket_owners([providers.proc.pid, *providers.replicas()], port, [conn.sock.getsockname()[1]])
    conn.close()
    return response.status, next(iter(owner.values()))


def upstream_events(ledger: Path) -> list[dict[str, Any]]:
    return [e for e in (json.loads(line) for line in ledger.read_text().splitlines() if line)
            if e["type"] == "upstream"]


def test_calls_spread_over_both_processes_and_each_is_recorded_once(two_processes):
    replicas = two_processes.replicas()
    assert len(replicas) == 1, "processes: 2 -> the providers process and one replica"
    # The replica got its secrets on stdin like the providers process: nothing of them on its command line.
    cmdline = Path(f"/proc/{replicas[0]}/cmdline").read_bytes().decode()
    assert TOKEN not in cmdline and KEY not in cmdline and cmdline.split("\0")[-3:] == ["replica", "-", ""]
    pids, statuses = calls_on_fresh_connections(two_processes, "spread", 60)
    assert set(statuses) == {200}
    assert set(pids) == {two_processes.proc.pid, replicas[0]}, pids
    events = upstream_events(two_processes.ledger)
    ids = [e["id"] for e in events]
    assert sorted(ids) == [f"spread-{i:04d}" for i in range(60)]  # every call once, none twice
    assert {e["provider"] for e in events} == {"gpt-eu"} and {e["outcome"] for e in events} == {"ok"}
    # A provider of one process is not replicated: the replica serves gpt-eu only.
    assert "provider replica 1 (pid" in (two_processes.ledger.parent / "providers.log").read_text()


def test_a_fault_set_on_either_process_holds_on_every_process_and_heals_on_every_process(two_processes):
    main, replica = two_processes.proc.pid, two_processes.replicas()[0]
    received: dict[str, set[int]] = {"PUT": set(), "DELETE": set()}
    rounds = 0
    # Until both kinds of control request have landed on both processes (the kernel picks per connection).
    while (received["PUT"] != {main, replica} or received["DELETE"] != {main, replica}) and rounds < 24:
        fault = f"down-{rounds}"
        status, pid = control(two_processes, "PUT", fault, {"effect": {"kind": "error", "status": 503},
                                                            "probability": 1.0, "deadline_ts": time.time() + 120})
        assert status == 200
        received["PUT"].add(pid)
        pids, statuses = calls_on_fresh_connections(two_processes, f"f{rounds}", 16)
        assert set(statuses) == {503}, f"fault set through pid {pid}: {statuses}"
        if len(pids) == 2:
            assert set(pids) == {main, replica}
        status, pid = control(two_processes, "DELETE", fault)
        assert status == 200
        received["DELETE"].add(pid)
        pids, statuses = calls_on_fresh_connections(two_processes, f"h{rounds}", 16)
        assert set(statuses) == {200}, f"fault removed through pid {pid}: {statuses}"
        rounds += 1
    assert received == {"PUT": {main, replica}, "DELETE": {main, replica}}, received
    events = upstream_events(two_processes.ledger)
    failed = [e for e in events if e["id"].startswith("f")]
    assert len(failed) == 16 * rounds and all(e["status"] == 503 and e["fault"] for e in failed)
    assert len({e["id"] for e in events}) == len(events) == 32 * rounds


def test_listing_faults_shows_the_fault_on_whichever_process_answers(two_processes):
    status, _ = control(two_processes, "PUT", "slow", {"effect": {"kind": "latency", "ms": 1},
                                                     "probability": 1.0, "deadline_ts": time.time() + 120})
    assert status == 200
    for _ in range(10):
        conn = http.client.HTTPConnection("127.0.0.1", two_processes.port("gpt-eu"), timeout=10)
        conn.request("GET", "/_harness/faults", headers={"x-harness-token": TOKEN})
        assert [f["name"] for f in json.loads(conn.getresponse().read())["faults"]] == ["slow"]
        conn.close()


def test_a_sibling_that_cannot_be_reached_fails_the_control_request(two_processes):
    replica = two_processes.replicas()[0]
    os.kill(replica, signal.SIGKILL)
    # Wait for the providers process to have reaped it, not for its /proc state to read "Z": the main
    # thread of a process with threads turns zombie while another thread still holds the descriptor
    # table, and a connection that the kernel hands to the dying listener meanwhile is reset.
    log_path, deadline = two_processes.ledger.parent / "providers.log", time.time() + 10
    while "exited with code" not in log_path.read_text() and time.time() < deadline:
        time.sleep(0.05)
    assert "provider replica 1 exited with code -9" in log_path.read_text()
    assert not alive(replica)
    # Its socket is gone with it: the request lands on the providers process, which cannot reach it.
    status, _ = control(two_processes, "PUT", "down", {"effect": {"kind": "error", "status": 503},
                                                       "probability": 1.0, "deadline_ts": time.time() + 120})
    assert status == 502
    status, _ = control(two_processes, "DELETE", "down")
    assert status == 502  # healed where it could be, and said that it could not everywhere


def test_the_replicas_never_outlive_the_providers_process(tmp_path):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        providers = Providers(tmp_path, {"gpt-eu": {**PROVIDER, "processes": 3}})
        replicas = providers.replicas()
        assert len(replicas) == 2
        os.kill(providers.proc.pid, sig)
        providers.proc.wait(10)
        deadline = time.time() + 10
        while any(alive(pid) for pid in replicas) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in replicas), f"a replica outlived the providers process ({sig.name})"
        providers.stop()


def test_a_fault_proxy_of_two_processes_records_and_faults_alike(tmp_path):
    (tmp_path / "upstream").mkdir()
    (tmp_path / "proxy").mkdir()
    upstream = Providers(tmp_path / "upstream", {"real": dict(PROVIDER)})
    try:
        relay = {**PROVIDER, "processes": 2, "upstream": upstream.urls["real"]}
        proxy = Providers(tmp_path / "proxy", {"gpt-eu": relay})
        try:
            pids, statuses = calls_on_fresh_connections(proxy, "relay", 40)
            assert set(statuses) == {200} and set(pids) == {proxy.proc.pid, *proxy.replicas()}, pids
            status, _ = control(proxy, "PUT", "down", {"effect": {"kind": "error", "status": 503},
                                                       "probability": 1.0, "deadline_ts": time.time() + 120})
            assert status == 200
            pids, statuses = calls_on_fresh_connections(proxy, "cut", 40)
            assert set(statuses) == {503} and len(pids) == 2, (statuses, pids)
        finally:
            proxy.stop()
    finally:
        upstream.stop()
    relayed = sorted(e["id"] for e in upstream_events(upstream.ledger))
    assert relayed == [f"relay-{i:04d}" for i in range(40)]  # the faulted calls never reached the upstream
    recorded = sorted(e["id"] for e in upstream_events(proxy.ledger))
    assert recorded == sorted([f"relay-{i:04d}" for i in range(40)] + [f"cut-{i:04d}" for i in range(40)])


@pytest.mark.parametrize("value", [0, 17, "2"])
def test_processes_out_of_range_is_refused_with_the_key(tmp_path, value):
    data = yaml.safe_load(shipped_text(SCENARIOS / "regional-outage.yaml"))
    data["providers"]["gpt-eu"]["processes"] = value
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    result = harness_cmd("validate", str(scenario))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "processes" in result.stdout + result.stderr and "Traceback" not in result.stderr


def _verdicts(report_dir: Path) -> tuple[str, dict[str, str]]:
    run_dir = next(p for p in report_dir.iterdir() if p.is_dir())
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary["verdict"], {c["check"]: c["verdict"] for c in summary["checks"]}


@pytest.mark.slow
def test_a_run_with_a_two_process_primary_ends_with_the_same_verdicts(tmp_path):
    results = {}
    for processes in (1, 2):
        data = yaml.safe_load(shipped_text(SCENARIOS / "regional-outage.yaml"))
        data["providers"]["gpt-eu"]["processes"] = processes
        scenario = tmp_path / f"regional-{processes}.yaml"
        scenario.write_text(yaml.safe_dump(data, sort_keys=False))
        report_dir = tmp_path / f"reports-{processes}"
        result = harness_cmd("run", str(scenario), "--report-dir", str(report_dir))
        assert result.returncode == 0, result.stdout + result.stderr
        results[processes] = _verdicts(report_dir)
        run_dir = next(p for p in report_dir.iterdir() if p.is_dir())
        log = (run_dir / "providers.log").read_text() if (run_dir / "providers.log").exists() else ""
        assert ("provider replica 1" in log) == (processes == 2), log
    assert results[2] == results[1]
    assert results[2][0] == "pass"

"""Control endpoints bind to 127.0.0.1 and require the run's token; a request without it is refused.

A real run goes on in the background (the CLI, on a longer copy of a shipped scenario). While
its fault is active, this test reads the topology from the ledger and tries the providers'
fault control (`/_harness/faults`) and the reference gateway's kill switch (`/admin/fallback`)
without the token and with wrong ones. Nothing may change: the ground truth in the ledger
shows the fault still biting and fallback still on, and the run ends with every check passing.
The run's listening sockets, found through /proc, are all bound to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, SCENARIOS, shipped_text

FAULT = "eu-primary-down"
TOKEN_HEADER = "x-harness-token"
ADMIN_HEADER = "x-admin-token"
WRONG_TOKENS = ["", "wrong", "x" * 4096, "Bearer wrong", "x-harness-token"]
# Header bytes that are not UTF-8 (http.client sends header values as latin-1).
NON_UTF8_TOKENS = ["é-not-ascii", "\xff\xfe"]
LOOPBACK = "127.0.0.1"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")]


# --- HTTP without a client library's opinions --------------------------------------------------


def call(method: str, url: str, headers: dict[str, str] | None = None, body: object = None) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"content-type": "application/json"} if payload is not None else {}
        conn.request(method, parts.path or "/", body=payload, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


# --- the run in the background -----------------------------------------------------------------


@dataclass
class LiveRun:
    proc: subprocess.Popen
    report_dir: Path
    tmp_dir: Path
    out: str = ""
    err: str = ""
    probes: list[tuple[float, str]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        runs = [p for p in self.report_dir.iterdir() if p.is_dir()] if self.report_dir.exists() else []
        return runs[0]

    def events(self) -> list[dict]:
        ledger = self.run_dir / "ledger.jsonl"
        lines = ledger.read_text(encoding="utf-8").splitlines() if ledger.exists() else []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written right now
        return out

    def wait_for(self, predicate, what: str, timeout_s: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended while waiting for {what}: {self.proc.communicate()}")
            if self.report_dir.exists() and any(p.is_dir() for p in self.report_dir.iterdir()):
                events = self.events()
                if predicate(events):
                    return events
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}")

    def topology(self) -> dict:
        return next(e for e in self.events() if e["type"] == "topology")

    def finish(self, timeout_s: float = 180) -> int:
        if self.proc.returncode is None:
            self.out, self.err = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode


def _long_scenario(target: Path) -> Path:
    """regional-outage with a longer fault window, so there is time to probe during the outage."""
    text = shipped_text(SCENARIOS / "regional-outage.yaml")
    longer = text.replace("  rate_per_s: 20\n  duration_s: 16", "  rate_per_s: 20\n  duration_s: 22")
    longer = longer.replace("    at_s: 3\n    duration_s: 6", "    at_s: 2\n    duration_s: 12")
    assert longer.count("duration_s: 22") == 1 and longer.count("duration_s: 12") == 1, "regional-outage changed"
    target.write_text(longer, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> Iterator[LiveRun]:
    base = tmp_path_factory.mktemp("control")
    tmp_dir = base / "tmp"
    tmp_dir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_dir), "HARNESS_STATE_DIR": str(base / "state"), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(_long_scenario(base / "long.yaml")),
                             "--report-dir", str(base / "reports")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run = LiveRun(proc, base / "reports", tmp_dir)
    try:
        # Probe only once the fault is seen biting, in the providers' own records.
        run.wait_for(lambda events: any(e["type"] == "upstream" and e.get("fault") == FAULT for e in events),
                     "the fault to hit traffic")
        yield run
    finally:
        if proc.poll() is None and run.proc.returncode is None:
            try:
                run.finish(timeout_s=120)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                run.finish(timeout_s=60)


# --- listening sockets from /proc ---------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def _socket_inodes(pids: set[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def _address(hex_addr: str, family: int) -> str:
    raw = bytes.fromhex(hex_addr)
    # /proc/net prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, words)


def listening_sockets() -> list[tuple[int, str, int]]:
    """(inode, address, port) of every TCP socket in LISTEN state, IPv4 and IPv6."""
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            found.append((int(fields[9]), _address(address, family), int(port, 16)))
    return found


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


# --- the tests (in file order: they share one live run) -------------------------------------


def test_every_endpoint_of_the_run_is_on_loopback(live_run):
    topology = live_run.topology()
    urls = [*topology["providers"].values(), topology["collector_url"], topology["gateway"]["url"]]
    assert len(urls) == 5, topology
    for url in urls:
        assert urlsplit(url).hostname == LOOPBACK, url


def test_listening_sockets_are_bound_to_loopback_only(live_run):
    pids = _descendants(live_run.proc.pid)
    assert len(pids) >= 3, pids  # the harness, its mock providers and the reference gateway
    inodes = _socket_inodes(pids)
    mine = [(address, port) for inode, address, port in listening_sockets() if inode in inodes]
    topology = live_run.topology()
    ports = {_port(u) for u in [*topology["providers"].values(), topology["collector_url"],
                                topology["gateway"]["url"]]}
    assert ports <= {port for _, port in mine}, (ports, mine)
    wide = [(address, port) for address, port in mine if address != LOOPBACK]
    assert not wide, f"listening beyond 127.0.0.1: {wide}"
    # And nothing else listens on those ports on another address (0.0.0.0, ::).
    others = [(a, p) for _, a, p in listening_sockets() if p in ports and a != LOOPBACK]
    assert not others, others


def _probe_fault_control(live_run: LiveRun, tokens: list[str | None]) -> list[str]:
    """Every control call with each token; returns "METHOD provider token: status" for each."""
    seen = []
    for name, url in live_run.topology()["providers"].items():
        for token in tokens:
            headers = {} if token is None else {TOKEN_HEADER: token}
            shown = f"{name} token {token!r:.20}"
            seen.append(f"GET {shown}: {call('GET', f'{url}/_harness/faults', headers)[0]}")
            status, _ = call("PUT", f"{url}/_harness/faults/intruder", headers,
                             {"effect": {"kind": "error", "status": 500}, "deadline_ts": time.time() + 600})
            seen.append(f"PUT {shown}: {status}")
            live_run.probes.append((time.time(), f"DELETE {FAULT} on {name}"))
            seen.append(f"DELETE {shown}: {call('DELETE', f'{url}/_harness/faults/{FAULT}', headers)[0]}")
    return seen


def _probe_kill_switch(live_run: LiveRun, tokens: list[str | None]) -> list[str]:
    gateway = live_run.topology()["gateway"]["url"]
    seen = []
    for token in tokens:
        headers = {} if token is None else {ADMIN_HEADER: token}
        live_run.probes.append((time.time(), "kill switch off"))
        status, _ = call("POST", f"{gateway}/admin/fallback", headers, {"enabled": False})
        seen.append(f"POST /admin/fallback token {token!r:.20}: {status}")
    return seen


def _not(seen: list[str], status: int) -> list[str]:
    return [line for line in seen if not line.endswith(f": {status}")]


def test_fault_control_refuses_requests_without_the_token(live_run):
    assert not _not(_probe_fault_control(live_run, [None, *WRONG_TOKENS]), 401)
    for url in live_run.topology()["providers"].values():
        # The token is not taken from the places a client might put a credential instead.
        for headers in ({"authorization": "Bearer x"}, {"x-api-key": "x"}, {"cookie": f"{TOKEN_HEADER}=x"}):
            assert call("DELETE", f"{url}/_harness/faults/{FAULT}", headers)[0] == 401, headers


def test_kill_switch_refuses_requests_without_the_token(live_run):
    assert not _not(_probe_kill_switch(live_run, [None, *WRONG_TOKENS]), 401)
    gateway = live_run.topology()["gateway"]["url"]
    assert call("POST", f"{gateway}/admin/fallback", {TOKEN_HEADER: "x"}, {"enabled": False})[0] == 401


def test_a_token_that_is_not_utf8_is_refused(live_run):
    seen = _probe_fault_control(live_run, NON_UTF8_TOKENS) + _probe_kill_switch(live_run, NON_UTF8_TOKENS)
    refused = [line for line in seen if int(line.rsplit(": ", 1)[1]) >= 400]
    assert refused == seen, _not(seen, 401)


def test_a_token_that_is_not_utf8_gets_a_401(live_run):
    seen = _probe_fault_control(live_run, NON_UTF8_TOKENS) + _probe_kill_switch(live_run, NON_UTF8_TOKENS)
    assert not _not(seen, 401), seen


def _workdir(live_run: LiveRun) -> Path:
    # The run's private folder is in the state directory (harness.faults.journal.RunFolder).
    (workdir,) = (live_run.tmp_dir.parent / "state" / "runs").iterdir()
    return workdir


def test_the_right_token_is_accepted_and_kept_private(live_run):
    """The refusals above are the token's doing: with the run's own token the same endpoints answer."""
    workdir = _workdir(live_run)
    assert workdir.stat().st_mode & 0o077 == 0, oct(workdir.stat().st_mode)
    # The providers' control token reaches them on their stdin, never in a file; the run's own use of
    # it is the proof it is accepted: the fault it injected bites (test_tokenless_requests_changed_nothing).
    assert not (workdir / "providers.json").exists()
    assert [e["fault"] for e in live_run.events() if e["type"] == "fault_start"] == [FAULT]
    gateway = json.loads((workdir / "gateway.json").read_text(encoding="utf-8"))
    assert (workdir / "gateway.json").stat().st_mode & 0o077 == 0  # it holds keys and tokens
    live_run.tokens += [gateway["admin_token"]]
    # The admin token works too (a no-op: fallback is already on).
    url = live_run.topology()["gateway"]["url"]
    assert call("POST", f"{url}/admin/fallback", {ADMIN_HEADER: gateway["admin_token"]}, {"enabled": True})[0] == 200
    assert call("GET", f"{url}/admin/fallback")[1].replace(" ", "") == '{"enabled":true}'


def test_tokenless_requests_changed_nothing_while_the_run_went_on(live_run):
    if not live_run.probes:  # run on its own: probe here, so the claim below is about real refused calls
        assert not _not(_probe_fault_control(live_run, [None]) + _probe_kill_switch(live_run, [None]), 401)
    last_probe = max(ts for ts, _ in live_run.probes)
    # Ground truth from the providers, recorded after the last refused request: the fault still
    # bites the primary and fallback still serves (the kill switch was not switched off).
    events = live_run.wait_for(
        lambda evs: any(e["type"] == "upstream" and e["ts"] > last_probe + 0.5 and e.get("fault") == FAULT
                        for e in evs)
        and any(e["type"] == "upstream" and e["ts"] > last_probe + 0.5 and e["provider"] == "claude-eu"
                and e["status"] == 200 for e in evs),
        "traffic after the probes", timeout_s=30)
    upstream = [e for e in events if e["type"] == "upstream"]
    assert not any(e.get("fault") == "intruder" for e in upstream)
    assert not any(e["type"] == "kill_switch" for e in events)
    fault_end = [e for e in events if e["type"] == "fault_end"]
    assert not fault_end or fault_end[0]["ts"] > last_probe  # healed on schedule, not by a probe


def test_run_ends_cleanly_with_every_check_passing(live_run):
    code = live_run.finish()
    assert "Traceback" not in live_run.out + live_run.err
    assert code == 0, live_run.out[-3000:] + live_run.err[-3000:]
    events = live_run.events()
    end = events[-1]
    assert end["type"] == "run_end" and end["status"] == "completed", end
    (fault_end,) = [e for e in events if e["type"] == "fault_end"]
    assert fault_end["healed"] is True and fault_end["reason"] == "scheduled"
    summary = json.loads((live_run.run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["verdict"] == "pass", [(c["check"], c["verdict"], c["summary"]) for c in summary["checks"]]
    # The run's tokens are not published where readers of the run could pick them up.
    for token in live_run.tokens:
        assert token not in live_run.out + live_run.err
        for path in live_run.run_dir.rglob("*"):
            assert token.encode() not in path.read_bytes(), path


def test_nothing_listens_after_the_run(live_run):
    live_run.finish()
    topology = live_run.topology()
    ports = {_port(u) for u in [*topology["providers"].values(), topology["collector_url"],
                                topology["gateway"]["url"]]}
    assert not [p for _, _, p in listening_sockets() if p in ports]
    # The private folder that held the run's configs (keys, tokens) is gone with it.
    assert not list((live_run.tmp_dir.parent / "state" / "runs").iterdir()) and not list(live_run.tmp_dir.iterdir())

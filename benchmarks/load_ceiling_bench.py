"""The harness's own ceiling under load: what one locust process sustains, and what remote workers add.

    python benchmarks/load_ceiling_bench.py [SCENARIO] [--probe-users 8,16,32,64] [--users U]
                                            [--rounds 3] [--run-time 15] [--probe-time 8]

Every run is a real `harness load SCENARIO --users U --user-rate 0` (the CLI, as a subprocess): the
engine, the scenario's mock providers, the reference gateway and locust, every request recorded. The
scenario is the shipped regional-outage with its faults removed (every request one hop to its primary;
the checks still run), so that CPU per request does not depend on where a fault window falls.

- Probe: one short local run per `--probe-users` value; the busiest-but-fastest U (the highest req/s)
  is the one that saturates the locust process, and is used for the rounds (or pass `--users`).
- Rounds: `local` (one locust process appending to the ledger itself: the embedded default) and
  `remote` (`--workers-expected 1 --master-bind 127.0.0.1:PORT` and one `harness worker --master
  127.0.0.1:PORT` subprocess: the worker ships its observations in sealed batches, the locust master
  opens, checks and writes them) alternate, `--rounds` each.

Only the load window counts: from 1.5 s after the first request reached the ledger to 2 s before the
run time is up. CPU is read from /proc/<pid>/stat at both ends of the window for every process of the
harness's tree (classified by command line: engine, providers, gateway, locust, locust master) and the
worker; requests are the ledger's request events that ended inside the window. After every run the
summary's `load.observations` must say ledger_requests == locust_requests and lost == 0.

On a shared virtual machine CPU per request moves from run to run with the machine's speed (other tenants,
the hypervisor's steal, printed per run), for every process alike. The `vs gateway` ratios divide each
locust process's CPU per request by the gateway's in the same run: the gateway does the same work in both
modes, so those ratios keep what shipping costs and drop what the machine did.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provider_bench import ROOT, cpu_seconds, header, med  # noqa: E402  (its helpers, not copies)
from provider_processes_bench import machine_cpu  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.conftest import SCENARIOS, shipped_text  # noqa: E402

TOKEN = "load-ceiling-bench-token-0123456"  # 32 characters: master and worker share it
WARM_S = 1.5      # after the first request: users spawned, connections open
TAIL_S = 2.0      # before the run time is up: locust stopping its users is not load
REQUEST_LINE = re.compile(rb'"type":\s*"request"')
ROLES = ("locust", "worker", "locust master", "gateway", "providers", "engine")


def scenario_file(source: Path, folder: Path, run_time_s: float) -> Path:
    """`source` (a shipped scenario, its registry made absolute) without faults, traffic as long as a run."""
    data = yaml.safe_load(shipped_text(source))
    data["faults"] = []
    data["traffic"]["duration_s"] = run_time_s
    path = folder / "ceiling.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- processes and their CPU ------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """pid and every process below it (children of any of its threads), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def role(pid: int, engine: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "gone"
    if pid == engine:
        return "engine"
    if "harness.serve" in argv and argv.index("harness.serve") + 1 < len(argv):
        return argv[argv.index("harness.serve") + 1]  # providers | gateway
    if "locust" in argv:
        return "locust master" if "--master" in argv else "worker" if "--worker" in argv else "locust"
    return "other " + Path(argv[0]).name


def snapshot(pids: list[int], engine: int) -> dict[int, tuple[str, float]]:
    out = {}
    for pid in pids:
        try:
            out[pid] = (role(pid, engine), cpu_seconds(pid))
        except (OSError, IndexError):
            pass
    return out


def cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    used: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        if pid in before:  # a process started inside the window would be counted from its birth: left out
            used[name] = used.get(name, 0.0) + cpu - before[pid][1]
    return used


def steal_cpu() -> float:
    """CPU-seconds the hypervisor gave to others while this machine's cores wanted to run (/proc/stat)."""
    return int(Path("/proc/stat").read_text().split()[8]) / os.sysconf("SC_CLK_TCK")


# -- one run ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_request(report_dir: Path, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    """Wait until the run's ledger holds a request event (read incrementally: it grows fast)."""
    deadline, offset, ledger = time.monotonic() + timeout_s, 0, None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"harness load exited ({proc.returncode}) before any request; see {report_dir}")
        if ledger is None:
            ledger = next(iter(report_dir.glob("*/ledger.jsonl")), None)
        if ledger is not None:
            with ledger.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            if REQUEST_LINE.search(chunk):
                return
            offset += max(0, chunk.rfind(b"\n") + 1)
        time.sleep(0.02)
    raise SystemExit(f"no request in the ledger within {timeout_s:g} s; see {report_dir}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """A process this benchmark started, and its session, if still there (only on a failure)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def one_run(tmp: Path, scenario: Path, mode: str, users: int, run_time_s: float, tag: str) -> dict[str, Any]:
    report_dir = tmp / tag
    env = {**os.environ, "HARNESS_WORKER_TOKEN": TOKEN,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    argv = [sys.executable, "-m", "harness.cli", "load", str(scenario), "--users", str(users), "--user-rate", "0",
            "--run-time", f"{run_time_s:g}", "--report-dir", str(report_dir), "--format", "json"]
    master = f"127.0.0.1:{free_port()}"
    if mode == "remote":
        argv += ["--workers-expected", "1", "--master-bind", master]
    out = (tmp / f"{tag}.out").open("wb")
    harness = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    worker = None
    try:
        if mode == "remote":
            worker = subprocess.Popen([sys.executable, "-m", "harness.cli", "worker", "--master", master], cwd=tmp,
                                      env=env, stdout=(tmp / f"{tag}-worker.log").open("wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        first_request(report_dir, harness)
        time.sleep(WARM_S)
        extra = [worker.pid] if worker else []
        before, m0, s0, w0 = (snapshot(descendants(harness.pid) + extra, harness.pid), machine_cpu(), steal_cpu(),
                              time.time())
        time.sleep(max(1.0, run_time_s - WARM_S - TAIL_S))
        after, m1, s1, w1 = (snapshot(descendants(harness.pid) + extra, harness.pid), machine_cpu(), steal_cpu(),
                             time.time())
        code = harness.wait(run_time_s + 180)
        worker_code = worker.wait(60) if worker else None
    finally:
        stop(worker)
        stop(harness)
        out.close()
    run_dir = next(iter(report_dir.glob("*/summary.json"))).parent
    summary = json.loads((run_dir / "summary.json").read_text())
    observations = summary["load"]["observations"]
    in_window = 0
    with (run_dir / "ledger.jsonl").open("rb") as handle:
        for line in handle:
            if REQUEST_LINE.search(line):
                ts_end = json.loads(line)["ts_end"]
                in_window += w0 <= ts_end < w1
    wall = w1 - w0
    used = cpu_by_role(before, after)
    ours = sum(used.values())
    return {"mode": mode, "users": users, "exit": code, "worker_exit": worker_code, "status": summary["status"],
            "verdict": summary["verdict"], "ledger": observations["ledger_requests"],
            "locust": observations["locust_requests"], "lost": observations["lost"],
            "counts_ok": observations["ledger_requests"] == observations["locust_requests"]
            and observations["lost"] == 0 and summary["status"] == "completed",
            "requests": in_window, "wall": wall, "rps": in_window / wall,
            "us": {name: cpu * 1e6 / max(1, in_window) for name, cpu in used.items()},
            "busy": {name: cpu / wall for name, cpu in used.items()}, "others_busy": (m1 - m0 - ours) / wall,
            "steal": (s1 - s0) / wall}


def ratios(loc: dict[str, Any], rem: dict[str, Any]) -> dict[str, float]:
    """A round's local and remote runs side by side, CPU per request. `vs gateway`: each against the gateway's
    own CPU per request in the same run; the gateway does the same work in both modes, so this cancels what
    the machine's speed did to the whole run (another tenant, the cores' clock)."""
    lu, ru = loc["us"], rem["us"]
    shipped = ru["worker"] + ru.get("locust master", 0.0)
    return {"worker/local locust": ru["worker"] / lu["locust"],
            "worker/local locust, vs gateway": (ru["worker"] / ru["gateway"]) / (lu["locust"] / lu["gateway"]),
            "(worker + master)/local locust": shipped / lu["locust"],
            "(worker + master)/local locust, vs gateway": (shipped / ru["gateway"]) / (lu["locust"] / lu["gateway"]),
            "master/local locust": ru.get("locust master", 0.0) / lu["locust"],
            "remote/local req/s": rem["rps"] / loc["rps"]}


def line(r: dict[str, Any]) -> str:
    parts = "  ".join(f"{name} {r['us'][name]:5.0f} us ({r['busy'][name]:.2f})" for name in ROLES if name in r["us"])
    extra = "  ".join(f"{n} {r['busy'][n]:.2f}" for n in r["us"] if n not in ROLES)
    total = sum(r["busy"].values()) + r["others_busy"]
    return (f"{r['mode']:>6} U={r['users']:<3} {r['rps']:6.0f} req/s  {parts}  rest of machine {r['others_busy']:.2f}"
            f"  machine {total:.2f} cores, steal {r['steal']:.2f}"
            f"{'  ' + extra if extra else ''}  | ledger {r['ledger']} locust {r['locust']} lost {r['lost']} "
            f"{r['status']} {'ok' if r['counts_ok'] else 'MISMATCH'} (verdict {r['verdict']}, exit {r['exit']}"
            f"{'' if r['worker_exit'] is None else ', worker exit ' + str(r['worker_exit'])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", type=Path, default=SCENARIOS / "regional-outage.yaml")
    parser.add_argument("--probe-users", default="8,16,32,64", help="users per probe run (local, one process)")
    parser.add_argument("--users", type=int, default=None, help="skip the probe: users for the rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run-time", type=float, default=15.0, help="seconds of load per round run")
    parser.add_argument("--probe-time", type=float, default=8.0, help="seconds of load per probe run")
    args = parser.parse_args()
    print(header("load ceiling bench", pin=False).replace("no pinning", "no pinning, everything on 127.0.0.1"))
    print(f"uptime: {Path('/proc/loadavg').read_text().split()[:3]} (load average 1/5/15 min)")
    print("per process: CPU per request in the load window (its busy share of one core); `rest of machine`: "
          "every other process's CPU over the same window, in cores; `steal`: cores the hypervisor "
          "took (a figure well above 0 means a slower run)")
    started = time.monotonic()
    ok = True
    with tempfile.TemporaryDirectory(prefix="load-ceiling-") as name:
        tmp = Path(name)
        users = args.users
        if users is None:
            (tmp / "probe").mkdir()
            probe_scenario = scenario_file(args.scenario, tmp / "probe", args.probe_time)
            print(f"probe: local, {args.probe_time:g} s each")
            probes = []
            for u in (int(v) for v in args.probe_users.split(",")):
                probes.append(one_run(tmp, probe_scenario, "local", u, args.probe_time, f"probe{u}"))
                ok &= probes[-1]["counts_ok"]
                print("  " + line(probes[-1]), flush=True)
            users = max(probes, key=lambda r: r["rps"])["users"]
            print(f"  -> U={users} (the highest req/s)")
        scenario = scenario_file(args.scenario, tmp, args.run_time)
        print(f"rounds: local / remote alternating, U={users}, {args.run_time:g} s each")
        rows: dict[str, list[dict[str, Any]]] = {"local": [], "remote": []}
        for r in range(args.rounds):
            for mode in ("local", "remote"):
                rows[mode].append(one_run(tmp, scenario, mode, users, args.run_time, f"{mode}{r}"))
                ok &= rows[mode][-1]["counts_ok"]
                print(f"  round {r + 1} " + line(rows[mode][-1]), flush=True)
            paired = ratios(rows["local"][-1], rows["remote"][-1])
            print(f"  round {r + 1} ratios: " + "  ".join(f"{k} {v:.2f}" for k, v in paired.items()), flush=True)
    local, remote = rows["local"], rows["remote"]

    def m(group: list[dict[str, Any]], key: str, name: str | None = None) -> float:
        return med([g[key][name] if name else g[key] for g in group])

    rounds = [ratios(loc, rem) for loc, rem in zip(local, remote, strict=True)]
    print(f"summary (medians of {args.rounds} rounds, U={users}, {time.monotonic() - started:.0f} s in all)")
    print(f"  (a) one locust process, every request recorded: {m(local, 'rps'):.0f} req/s; CPU per request: "
          f"locust {m(local, 'us', 'locust'):.0f} us (busy {m(local, 'busy', 'locust'):.2f}; "
          f"{1e6 / m(local, 'us', 'locust'):.0f} req per locust CPU-second), "
          f"gateway {m(local, 'us', 'gateway'):.0f} us "
          f"(busy {m(local, 'busy', 'gateway'):.2f}), providers {m(local, 'us', 'providers'):.0f} us "
          f"(busy {m(local, 'busy', 'providers'):.2f}), engine {m(local, 'us', 'engine'):.1f} us "
          f"(CPU time is counted in 10 ms ticks)")
    print(f"  (b) one remote worker: {m(remote, 'rps'):.0f} req/s; CPU per request: worker "
          f"{m(remote, 'us', 'worker'):.0f} us (busy {m(remote, 'busy', 'worker'):.2f}), locust master "
          f"{m(remote, 'us', 'locust master'):.0f} us (busy {m(remote, 'busy', 'locust master'):.2f}), gateway "
          f"{m(remote, 'us', 'gateway'):.0f} us, providers {m(remote, 'us', 'providers'):.0f} us, "
          f"engine {m(remote, 'us', 'engine'):.1f} us")
    for key in rounds[0]:
        values = [p[key] for p in rounds]
        print(f"  {key}: {med(values):.2f} (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"  every run: ledger == locust, nothing lost, completed: {'yes' if ok else 'NO'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Recorded calls/s of one mock provider served by 1 and by 2 processes (`processes: N`, SO_REUSEPORT).

    python benchmarks/provider_processes_bench.py [--rounds 3] [--duration 5] [--connections 64]
                                                  [--threads 1]

Three providers processes, each exactly as a run starts it (`python -m harness.serve providers
CONFIG.json`, every call recorded into one ledger file), each serving the same provider on a port
of its own; wrk runs against them in turn, alternating, `--rounds` each:

- `1p pinned`: processes 1, the server on core 0 and wrk on core 1 (provider_bench.py's setting: one
  core's worth of provider, its load generator on the other core);
- `1p`: processes 1, nothing pinned: the server, wrk and the kernel share both cores;
- `2p`: processes 2 (the providers process and its replica), nothing pinned: the two servers need both
  cores, so wrk shares them. `2p` against `1p` is the like-for-like ratio.

After every run the ledger is counted: every call wrk completed must be there (plus at most the calls in
flight when it stopped), no id twice. CPU time is that of all the server processes of the variant (the
providers process and its replicas, from /proc) and of wrk (the children this script waited for), so
throughput is also given per CPU-second of the servers. Nothing leaves 127.0.0.1; every run is bounded.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provider_bench import (  # noqa: E402  (the benchmark next to this one: its helpers, not copies)
    CLIENT_CORE,
    PROVIDER,
    SERVER_CORE,
    Server,
    ledger_lines,
    med,
    run_wrk,
    servers,
    start_providers,
    wrk_script,
)

VARIANTS = {"1p pinned": (1, True), "1p": (1, False), "2p": (2, False)}  # name: (processes, pinned)
SHORT = {"1p pinned": "a", "1p": "b", "2p": "c"}


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def server_pids(server: Server) -> list[int]:
    """The providers process (under `taskset` it is the same pid: taskset execs) and its replicas."""
    return [server.proc.pid, *children(server.proc.pid)]


def machine_cpu() -> float:
    """CPU-seconds every core of the machine has been busy so far (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(args: argparse.Namespace, tmp: Path, kind: str, url: str, pids: list[int], prefix: str,
            ledger: Path) -> dict[str, Any]:
    pinned = VARIANTS[kind][1] and args.pin
    run_wrk(url, wrk_script(tmp, f"w{prefix}"), 1, args.connections, pinned, args.threads)  # warm-up, own ids
    watch = {str(pid): pid for pid in pids}
    before_wrk, before_machine = children_cpu(), machine_cpu()
    result = run_wrk(url, wrk_script(tmp, prefix), args.duration, args.connections, pinned, args.threads,
                     watch=watch)
    result["cpu_wrk"] = children_cpu() - before_wrk
    result["cpu_servers"] = sum(result[f"cpu_s.{pid}"] for pid in watch)
    # What else the machine ran meanwhile (other work on a shared machine, the kernel's own): when it is
    # large, the wall figures of that run say more about the neighbours than about the provider.
    result["cpu_others"] = max(0.0, machine_cpu() - before_machine - result["cpu_servers"] - result["cpu_wrk"])
    result["busy"] = [result[f"util.{pid}"] for pid in watch]
    time.sleep(0.5)  # the calls still in flight when wrk stopped get recorded too
    events = [e for e in ledger_lines(ledger) if str(e.get("id")).startswith(prefix + "-")]
    ids = [e["id"] for e in events]
    in_flight = len(events) - result["requests"]
    result["recorded"] = len(events)
    result["ledger_ok"] = (all(e["type"] == "upstream" and e["outcome"] == "ok" for e in events)
                           and len(set(ids)) == len(ids) and 0 <= in_flight <= args.connections)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no pinning for `1p pinned` either")
    args = parser.parse_args()
    args.pin = args.pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ledger = tmp / "ledger.jsonl"
        starters: dict[str, Callable[[], Server]] = {}
        for kind, (processes, pin) in VARIANTS.items():
            def start(kind: str = kind, processes: int = processes, pin: bool = pin) -> Server:
                sub = tmp / SHORT[kind]
                sub.mkdir()
                return start_providers(sub, {"gpt-eu": {**PROVIDER, "processes": processes}}, ledger,
                                       pin and args.pin)
            starters[kind] = start
        with servers(*starters.values()) as started:
            targets = {kind: (server.ready["providers"]["gpt-eu"], server_pids(server))
                       for kind, server in zip(starters, started, strict=True)}
            where = (f"1p pinned: server on core {SERVER_CORE}, wrk on core {CLIENT_CORE}; 1p and 2p: servers and "
                     f"wrk unpinned on all {os.cpu_count()} cores") if args.pin else "nothing pinned"
            print(f"provider processes bench  {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores  "
                  f"python {sys.version.split()[0]}  load average {os.getloadavg()[0]:.2f}")
            print(f"  {where}")
            print(f"  wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, {' / '.join(VARIANTS)} "
                  f"alternating, {args.rounds} rounds; server pids: "
                  + ", ".join(f"{k} {v[1]}" for k, v in targets.items()))
            runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in VARIANTS}
            for r in range(args.rounds):
                for kind, (url, pids) in targets.items():
                    result = one_run(args, tmp, kind, url, pids, f"{SHORT[kind]}{r}", ledger)
                    runs[kind].append(result)
                    print(f"  round {r + 1} {kind:<9} {result['rps']:8.0f} calls/s  recorded {result['recorded']} "
                          f"({'ok' if result['ledger_ok'] else 'MISMATCH'})  servers CPU {result['cpu_servers']:5.2f}"
                          f" s (busy {' + '.join(f'{b:.2f}' for b in result['busy'])})  wrk CPU "
                          f"{result['cpu_wrk']:5.2f} s  others {result['cpu_others']:5.2f} s  "
                          f"errors {result['errors']}  p99 {result['p99_us'] / 1000:5.2f} ms", flush=True)
    print("summary (medians)")
    rps = {kind: med([x["rps"] for x in runs[kind]]) for kind in VARIANTS}
    per_cpu = {kind: med([x["requests"] / x["cpu_servers"] for x in runs[kind]]) for kind in VARIANTS}
    for kind in VARIANTS:
        print(f"  {kind:<9} {rps[kind]:8.0f} recorded calls/s   {per_cpu[kind]:8.0f} calls per server CPU-second "
              f"({1e6 / per_cpu[kind]:5.1f} us/call)")
    for base in ("1p", "1p pinned"):
        # Ratios within a round (its runs back to back), then their median: noise from elsewhere on the
        # machine hits one pair, not the figure.
        wall = med([two["rps"] / one["rps"] for one, two in zip(runs[base], runs["2p"], strict=True)])
        cpu = med([(two["requests"] / two["cpu_servers"]) / (one["requests"] / one["cpu_servers"])
                   for one, two in zip(runs[base], runs["2p"], strict=True)])
        print(f"  2p / {base + ':':<11} {wall:.2f}x recorded calls/s, {cpu:.2f}x calls per server CPU-second "
              "(median of per-round ratios)")
    recorded = all(x["ledger_ok"] for v in runs.values() for x in v)
    print(f"  every call recorded exactly once: {'yes' if recorded else 'NO'}")


if __name__ == "__main__":
    main()

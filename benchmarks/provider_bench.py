"""Throughput and added latency of one mock provider, side by side with a bare aiohttp server.

    python benchmarks/provider_bench.py [--rounds 3] [--duration 5] [--connections 50]
                                        [--rate 1000] [--paced-duration 10] [--no-pin]
                                        [--extra discard,uvloop] [--skip-latency]

Both servers are real subprocesses on 127.0.0.1: the mock provider exactly as a run starts it
(`python -m harness.serve providers CONFIG.json`, recording every call to a ledger file),
and a bare aiohttp app from this file (`--serve-bare`) that reads the body and returns a
precomputed completion of the same shape, on the same runner settings (`serving.start_app`).
With pinning (the default on a machine with 2 cores or more) each server runs on core 0 and
every load generator on core 1, so the figure is the server process's own throughput.

- Throughput: `wrk` (Debian's package) with a Lua script that gives every request its own
  correlation id, a bearer key and a tool; bare and mock runs alternate, `--rounds` each, and the
  medians and their ratio are printed. After each mock run the ledger is counted: every call
  wrk completed must be there (plus at most the calls in flight when wrk stopped), no id twice.
- Added latency: an open-loop client (`--paced`, its own process) sends at a fixed `--rate`,
  whatever the answers do, over a pool of keep-alive connections; latency is measured from the
  send (and, against coordinated omission, from the scheduled time). Added = mock - bare, per
  percentile: the median over rounds of the difference within a round (bare and mock back to back).
- Throughput is also given per CPU-second of the server process (its user + system time over the
  run, from /proc): on a shared, noisy machine that figure moves far less than req/s of wall time.
- `--extra discard` adds the mock with a ledger writer that drops every event (attribution only:
  the ledger writer's share of the cost); `--extra uvloop` adds the bare server and the mock on
  uvloop (`pip install uvloop`), to compare like with like; `--extra stub` adds a minimal
  OpenAI-compatible stub (json.loads + web.json_response per request, nothing recorded), for context.
- `--base DIR` adds the mock of another checkout (`mock@base`): a before/after in one run.

Nothing leaves 127.0.0.1; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.core.identity import fingerprint, new_fingerprint_key  # noqa: E402

FP_KEY = new_fingerprint_key()  # a run's fingerprint key, handed to the providers process

KEY = "sk-bench-eu-0123456789"
TOKEN = "bench-control-token"
SERVER_CORE, CLIENT_CORE = "0", "1"
PATH = "/v1/chat/completions"
TOKEN_TEMPLATE = "[[harness:id={id};tenant=acme;class=chat;region=eu;data=internal]]"
PROVIDER = {"model": "gpt-4o", "region": "eu", "identity": "svc-eu", "data_classes": ["public", "internal"],
            "tools": ["search"]}

# The body the traffic driver sends (harness/traffic/requests.py), with `{id}` to fill per request.
BODY_TEMPLATE = json.dumps({
    "model": "chat", "stream": False,
    "messages": [{"role": "user", "content": TOKEN_TEMPLATE + " Say hello."}],
    "tools": [{"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}],
})


def request_headers(rid: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", "x-harness-request-id": rid,
            "x-harness-tenant": "acme", "x-harness-request-class": "chat", "x-harness-region": "eu",
            "x-harness-data-class": "internal"}


# -- the servers this file starts -----------------------------------------------------------------
def serve_bare(port: int, stub: bool = False) -> None:
    """An aiohttp app that reads the body and returns a precomputed completion of the mock's shape.

    stub: a minimal OpenAI-compatible stub instead, for context: it parses the body and builds the
    answer per request (`json.loads`, `web.json_response(completion(...))`), but records nothing."""
    from aiohttp import web

    from harness.topology.apis.openai import completion
    from harness.topology.serving import start_app

    body = json.dumps(completion("chatcmpl-gpt-eu-b00000000", int(time.time()), "gpt-4o",
                                 "reply to b00000000 from gpt-eu")).encode()

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def chat_stub(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        rid = request.headers.get(ID_HEADER, "x")
        return web.json_response(completion(f"chatcmpl-gpt-eu-{rid}", int(time.time()), data.get("model", "x"),
                                            f"reply to {rid} from gpt-eu"))

    async def serve() -> None:
        app = web.Application()
        app.router.add_post(PATH, chat_stub if stub else chat)
        _runner, url = await start_app(app, port)
        print(json.dumps({"ready": True, "url": url}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def use_uvloop() -> None:
    import uvloop  # only for the `--extra uvloop` variants; `pip install uvloop`

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve_mock_discarding(config_path: str) -> int:
    """`harness.serve providers` with a ledger writer that drops every event: NOT a way to run
    a provider (nothing is recorded), only a measure of the ledger writer's share of the mock's cost."""
    import harness.serve as serve_module
    from harness.ledger import LedgerWriter

    class Discarding(LedgerWriter):
        def append(self, event: dict[str, Any]) -> None:
            return None

    serve_module.LedgerWriter = Discarding  # type: ignore[misc]  # in this process only
    return serve_module.main(["providers", config_path])


# -- processes ------------------------------------------------------------------------------------
def pinned(core: str, argv: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", core, *argv] if pin and shutil.which("taskset") else argv


class Server:
    """A server subprocess that prints one JSON ready line; stopped with SIGTERM."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, **(env or {})})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise SystemExit(f"{argv} exited before it was ready; see {log}")
        self.ready: dict[str, Any] = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@contextmanager
def servers(*starters: Callable[[], Server]) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for start in starters:
            started.append(start())
        yield started
    finally:
        for server in reversed(started):
            server.stop()


def provider_config(tmp: Path, providers: dict[str, dict[str, Any]], ledger: Path,
                    file_name: str = "providers.json") -> Path:
    config = {"ledger_path": str(ledger), "control_token": TOKEN, "seed": 7,
              "identities_by_fp": {fingerprint(KEY, FP_KEY): "svc-eu"}, "fingerprint_key": FP_KEY.hex(),
              "providers": providers}
    path = tmp / file_name
    path.write_text(json.dumps(config))
    return path


def start_providers(tmp: Path, providers: dict[str, dict[str, Any]], ledger: Path, pin: bool,
                    core: str = SERVER_CORE, tree: Path = ROOT) -> Server:
    """`python -m harness.serve providers` of the harness in `tree` (this checkout by default; an older
    tree may still have it at harness.engine.serve)."""
    name = "providers" if tree == ROOT else "providers-base"
    cfg = provider_config(tmp, providers, ledger, f"{name}.json")
    module = "harness.serve" if (tree / "harness" / "serve.py").exists() else "harness.engine.serve"
    return Server(pinned(core, [sys.executable, "-m", module, "providers", str(cfg)], pin),
                  tmp / f"{name}.log", cwd=tree)


def start_bare(tmp: Path, pin: bool, uvloop: bool = False, stub: bool = False) -> Server:
    flags = (["--uvloop"] if uvloop else []) + (["--stub"] if stub else [])
    argv = [sys.executable, __file__, "--serve-bare", "0", *flags]
    return Server(pinned(SERVER_CORE, argv, pin), tmp / f"bare{''.join(f.removeprefix('-') for f in flags)}.log")


def start_variant(tmp: Path, variant: str, ledger: Path, pin: bool) -> Server:
    """`mock-uvloop`: `harness.serve providers` itself, on uvloop; `mock-discard`: serve_mock_discarding."""
    cfg = provider_config(tmp, {"gpt-eu": PROVIDER}, ledger, f"providers-{variant}.json")
    mode = "--serve-uvloop" if variant == "mock-uvloop" else "--serve-mock-discarding"
    return Server(pinned(SERVER_CORE, [sys.executable, __file__, mode, str(cfg)], pin), tmp / f"{variant}.log")


# -- wrk ------------------------------------------------------------------------------------------
WRK_SCRIPT = r"""
local threads = {}
local counter = 0
local templates = {%(templates)s}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local t = templates[(counter %% #templates) + 1]
  local id = string.format("%(prefix)s-%%d-%%07d", tid, counter)
  local headers = {}
  for k, v in pairs(t[3]) do headers[k] = v end
  headers["%(id_header)s"] = id
  return wrk.format("POST", "%(path)s", headers, t[1] .. id .. t[2])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
ID_HEADER = "x-harness-request-id"


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(tmp: Path, prefix: str, templates: list[tuple[str, dict[str, str]]] | None = None,
               path: str = PATH) -> Path:
    """A wrk script that cycles through `templates` (body with `{id}`, headers), each request with an id
    of its own, `PREFIX-THREAD-COUNTER`, in the correlation token and in the request-id header."""
    lua_templates = []
    for body, headers in templates or [(BODY_TEMPLATE, request_headers("x"))]:
        head, tail = body.split("{id}")
        fixed = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items() if k != ID_HEADER)
        lua_templates.append(f"{{{_lua_string(head)}, {_lua_string(tail)}, {{{fixed}}}}}")
    lua = WRK_SCRIPT % {"templates": ", ".join(lua_templates), "prefix": prefix, "path": path, "id_header": ID_HEADER}
    script = tmp / f"wrk-{prefix}.lua"
    script.write_text(lua)
    return script


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: Path, duration_s: float, connections: int, pin: bool, threads: int = 1,
            core: str = CLIENT_CORE, watch: dict[str, int] | None = None) -> dict[str, Any]:
    """One wrk run; `watch` names server pids whose CPU time over the run is reported (`cpu_s.NAME`)."""
    argv = pinned(core, ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "5s",
                         "-s", str(script), url], pin)
    before = {name: cpu_seconds(pid) for name, pid in (watch or {}).items()}
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=True).stdout
    wall = time.monotonic() - started
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    for name, pid in (watch or {}).items():
        used = cpu_seconds(pid) - before[name]
        result[f"cpu_s.{name}"] = used
        result[f"util.{name}"] = used / wall  # 1.0: the server kept one core busy the whole run
    return result


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# -- the open-loop client -------------------------------------------------------------------------
async def _paced(url: str, rate: float, duration_s: float, connections: int, prefix: str) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    head, tail = BODY_TEMPLATE.split("{id}")
    count = int(rate * duration_s)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    from_send: list[float] = []
    from_schedule: list[float] = []
    statuses: dict[int, int] = {}

    def raw_request(i: int) -> bytes:
        rid = f"{prefix}-{i:08d}"
        body = (head + rid + tail).encode()
        lines = [f"POST {PATH} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in request_headers(rid).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (item := await queue.get()) is not None:
                i, scheduled = item
                data = raw_request(i)
                sent = time.perf_counter()
                writer.write(data)
                head_bytes = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head_bytes.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                done = time.perf_counter()
                status = int(head_bytes.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
                from_send.append(done - sent)
                from_schedule.append(done - scheduled)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    start = time.perf_counter() + 0.05
    queued = 0
    for i in range(count):
        scheduled = start + i / rate
        wait = scheduled - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        if queue.qsize() > 0:
            queued += 1  # no free connection: the request waits, and from_schedule shows it
        queue.put_nowait((i, scheduled))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=60)
    elapsed = time.perf_counter() - start
    return {"sent": count, "answered": len(from_send), "achieved_rps": count / elapsed, "queued": queued,
            "statuses": statuses, "from_send_ms": percentiles(from_send),
            "from_schedule_ms": percentiles(from_schedule)}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99.9": at(0.999), "max": ordered[-1] * 1000.0}


def run_paced(url: str, rate: float, duration_s: float, connections: int, prefix: str, pin: bool) -> dict[str, Any]:
    argv = pinned(CLIENT_CORE, [sys.executable, __file__, "--paced", url, str(rate), str(duration_s),
                                str(connections), prefix], pin)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 90, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- the benchmark --------------------------------------------------------------------------------
SHORT = {"bare": "b", "stub": "s", "mock": "m", "bare-uvloop": "bu", "mock-uvloop": "mu", "mock-discard": "md",
         "mock@base": "mb"}
RECORDING = ("mock", "mock-uvloop", "mock@base")  # mock-discard drops its events on purpose


def med(values: list[float]) -> float:
    return statistics.median(values)


def header(title: str, pin: bool) -> str:
    where = f"servers on core {SERVER_CORE}, load generators on core {CLIENT_CORE}" if pin else "no pinning"
    return (f"{title}  {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cores  python {sys.version.split()[0]}"
            f"  {where}")


def throughput(args: argparse.Namespace, tmp: Path, targets: dict[str, tuple[str, int]],
               ledger: Path) -> dict[str, Any]:
    """Alternating wrk runs against each server ({kind: (url, pid)}); the ledger is counted after each
    run of a recording server."""
    rps: dict[str, list[float]] = {kind: [] for kind in targets}
    cpu_rps: dict[str, list[float]] = {kind: [] for kind in targets}
    recorded_ok = True
    for r in range(args.rounds):
        for kind, (url, pid) in targets.items():
            prefix = f"{SHORT[kind]}{r}"
            # warm-up: recorded too, under ids of its own, so it is not counted below
            run_wrk(url, wrk_script(tmp, f"w{prefix}"), 1, args.connections, args.pin)
            result = run_wrk(url, wrk_script(tmp, prefix), args.duration, args.connections, args.pin,
                             watch={"server": pid})
            per_cpu = result["requests"] / result["cpu_s.server"]
            rps[kind].append(result["rps"])
            cpu_rps[kind].append(per_cpu)
            line = (f"  round {r + 1} {kind:<12} {result['rps']:8.0f} req/s  p50 {result['p50_us'] / 1000:5.2f} ms"
                    f"  p99 {result['p99_us'] / 1000:5.2f} ms  errors {result['errors']}  server CPU "
                    f"{1e6 / per_cpu:5.1f} us/req (busy {result['util.server']:.2f})")
            if kind in RECORDING:
                time.sleep(0.5)  # the calls still in flight when wrk stopped get recorded too
                events = [e for e in ledger_lines(ledger) if str(e.get("id")).startswith(prefix + "-")]
                ids = [e["id"] for e in events]
                in_flight = len(events) - result["requests"]
                ok = (all(e["type"] == "upstream" and e["outcome"] == "ok" for e in events)
                      and len(set(ids)) == len(ids) and 0 <= in_flight <= args.connections)
                recorded_ok &= ok
                line += (f"  ledger {len(events)} (= {result['requests']} + {in_flight} in flight) "
                         f"{'ok' if ok else 'MISMATCH'}")
            print(line, flush=True)
    return {"rps": {k: med(v) for k, v in rps.items()}, "cpu_rps": {k: med(v) for k, v in cpu_rps.items()},
            "recorded_ok": recorded_ok}


def added_latency(args: argparse.Namespace, bare_url: str, mock_url: str) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "mock": []}
    for r in range(args.rounds):
        for kind, url in (("bare", bare_url), ("mock", mock_url)):
            result = run_paced(url, args.rate, args.paced_duration, args.paced_connections, f"{kind[0]}p{r}", args.pin)
            runs[kind].append(result)
            s, c = result["from_send_ms"], result["from_schedule_ms"]
            print(f"  round {r + 1} {kind:<4} {result['achieved_rps']:6.0f} req/s sent  "
                  f"p50 {s['p50']:5.2f}  p99 {s['p99']:5.2f}  p99.9 {s['p99.9']:5.2f}  max {s['max']:6.2f} ms"
                  f"  (from schedule p99 {c['p99']:5.2f})  statuses {result['statuses']}", flush=True)
    out: dict[str, Any] = {}
    for basis in ("from_send_ms", "from_schedule_ms"):
        for q in ("p50", "p99", "p99.9"):
            bare = [x[basis][q] for x in runs["bare"]]
            mock = [x[basis][q] for x in runs["mock"]]
            # Added latency: the median of the per-round differences, each round's bare and mock run
            # back to back, so a burst of noise from elsewhere on the machine hits one pair, not the figure.
            out[f"{basis}.{q}"] = (med(bare), med(mock), med([m - b for b, m in zip(bare, mock, strict=True)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s of the paced latency runs")
    parser.add_argument("--paced-duration", type=float, default=10.0)
    parser.add_argument("--paced-connections", type=int, default=32)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers and clients to cores")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--extra", default="", help="comma-separated extra throughput variants: discard (the mock "
                        "with its events dropped: the ledger writer's share), uvloop (bare and mock on uvloop), "
                        "stub (a minimal stub that parses and builds JSON per request, records nothing)")
    parser.add_argument("--base", type=Path, help="another checkout of the harness, e.g. `mkdir /tmp/base && "
                        "git archive HEAD | tar -x -C /tmp/base`: its mock runs as `mock@base` beside this "
                        "one, for a before/after in one run")
    args = parser.parse_args()
    args.pin = args.pin and (os.cpu_count() or 1) >= 2
    extra = {e for e in args.extra.split(",") if e}
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ledger = tmp / "ledger.jsonl"
        starters: dict[str, Callable[[], Server]] = {
            "bare": lambda: start_bare(tmp, args.pin),
            "mock": lambda: start_providers(tmp, {"gpt-eu": PROVIDER}, ledger, args.pin),
        }
        if "stub" in extra:
            starters["stub"] = lambda: start_bare(tmp, args.pin, stub=True)
        if "discard" in extra:
            starters["mock-discard"] = lambda: start_variant(tmp, "mock-discard", ledger, args.pin)
        if args.base is not None:
            starters["mock@base"] = lambda: start_providers(tmp, {"gpt-eu": PROVIDER}, ledger, args.pin,
                                                            tree=args.base.resolve())
        if "uvloop" in extra:
            starters["bare-uvloop"] = lambda: start_bare(tmp, args.pin, uvloop=True)
            starters["mock-uvloop"] = lambda: start_variant(tmp, "mock-uvloop", ledger, args.pin)
        with servers(*starters.values()) as started:
            urls = {kind: server.ready.get("url") or server.ready["providers"]["gpt-eu"]
                    for kind, server in zip(starters, started, strict=True)}
            targets = {kind: (urls[kind], server.proc.pid) for kind, server in zip(starters, started, strict=True)}
            print(header("provider bench", args.pin))
            print(f"throughput: wrk -t1 -c{args.connections} -d{args.duration:g}s, {' / '.join(targets)} "
                  f"alternating, {args.rounds} rounds")
            tp = throughput(args, tmp, targets, ledger)
            lat = None
            if not args.skip_latency:
                print(f"added latency: open loop at {args.rate:g} req/s for {args.paced_duration:g} s, "
                      f"{args.paced_connections} connections, bare / mock alternating")
                lat = added_latency(args, urls["bare"], urls["mock"])
    print("summary (medians)")
    rps, cpu = tp["rps"], tp["cpu_rps"]
    for kind in targets:
        base = "bare-uvloop" if kind == "mock-uvloop" else "bare"
        ratio = "" if kind.startswith("bare") else (
            f"   ratio to {base}: {rps[kind] / rps[base]:.2f} wall, {cpu[kind] / cpu[base]:.2f} per CPU-second")
        print(f"  {kind:<12} {rps[kind]:8.0f} req/s   {cpu[kind]:8.0f} req per CPU-second "
              f"({1e6 / cpu[kind]:5.1f} us/req){ratio}")
    if "stub" in targets:
        print(f"  mock / stub: {rps['mock'] / rps['stub']:.2f} wall, {cpu['mock'] / cpu['stub']:.2f} per CPU-second")
    print(f"  every call recorded ({', '.join(k for k in targets if k in RECORDING)}): "
          f"{'yes' if tp['recorded_ok'] else 'NO'}")
    if lat is not None:
        for key, (bare_ms, mock_ms, added) in lat.items():
            print(f"  latency {key:<22} bare {bare_ms:6.2f} ms   mock {mock_ms:6.2f} ms   "
                  f"added (median of per-round differences) {added:+6.2f} ms")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve-bare":
        if "--uvloop" in sys.argv:
            use_uvloop()
        serve_bare(int(sys.argv[2]), stub="--stub" in sys.argv)
    elif len(sys.argv) >= 3 and sys.argv[1] == "--serve-uvloop":
        from harness.serve import main as serve_main

        use_uvloop()
        sys.exit(serve_main(["providers", sys.argv[2]]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "--serve-mock-discarding":
        sys.exit(serve_mock_discarding(sys.argv[2]))
    elif len(sys.argv) >= 7 and sys.argv[1] == "--paced":
        url, rate, dur, conns, prefix = sys.argv[2:7]
        print(json.dumps(asyncio.run(_paced(url, float(rate), float(dur), int(conns), prefix))))
    else:
        main()

"""The mock provider's recording on three server stacks, side by side: aiohttp, uvicorn, granian.

    python benchmarks/server_stacks_bench.py [--rounds 3] [--duration 5] [--connections 50]
                                             [--stacks aiohttp,uvicorn,granian] [--no-pin]

Needs `wrk` (Debian) and, for the other stacks, `pip install uvicorn httptools uvloop granian`
(benchmark-only: none of them is a dependency of the harness).

Every server is a real subprocess on 127.0.0.1, pinned to core 0 (wrk on core 1):

- `mock`: the real mock provider, exactly as a run starts it (`python -m harness.serve providers`).
- `STACK-rec`: the same recording on STACK: the mock's own code per call (`MockProvider.parse`:
  body JSON, correlation token, credential fingerprint, tools; the fault table's lookup; `record`:
  one `upstream` event through the same `LedgerWriter`; `completion_json`: an answer of the same
  shape, byte for byte), behind the smallest adapter each stack needs (a request view with the
  headers and the path). `aiohttp-rec` is that on aiohttp: its gap to `mock` is the mock's own
  routing and generality, its gap to the other `-rec` figures is the stack's.
- `STACK-bare`: the bare server of each stack, for context: it reads the body and returns a
  precomputed answer, nothing recorded.
- `--uvloop`: `aiohttp-bare-uvloop` and `mock-uvloop`, the same two on uvloop's event loop.
- `--base DIR`: `mock@base`, the mock of another checkout (`git archive HEAD | tar -x -C DIR`),
  for a before/after in the same run.

Stacks: aiohttp (asyncio, as the harness runs it), uvicorn with httptools and uvloop (an ASGI app,
one process), granian (an RSGI app; one worker, one runtime thread, single-threaded runtime, uvloop).
Servers alternate within each round, `--rounds` rounds; printed: the medians, as requests/s
and per CPU-second of the server process (user + system time over the run from /proc, the
process and its children: granian serves from a worker process of its own). After every run of a
recording server its ledger is counted: every call wrk completed must be there (plus at most the
calls in flight when wrk stopped), no id twice, every event an `ok` upstream event.
Ratios to aiohttp-bare: the median of the per-round ratios, and each server's best round against
aiohttp-bare's best (noise only adds CPU per request); quote both from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provider_bench import (  # noqa: E402
    PATH,
    PROVIDER,
    SERVER_CORE,
    Server,
    cpu_seconds,
    header,
    med,
    pinned,
    provider_config,
    run_wrk,
    servers,
    start_bare,
    start_providers,
    start_variant,
    wrk_script,
)

STACKS = ("aiohttp", "uvicorn", "granian")
PROVIDER_NAME = "gpt-eu"
CONFIG_ENV = "HARNESS_STACK_BENCH_CONFIG"  # how a granian worker process finds its provider config


# -- what every recording server does per call ----------------------------------------------------
class Headers(dict[str, str]):
    """Request headers keyed by lower-case name, read case-insensitively (what aiohttp's CIMultiDict
    gives the mock's parse): ASGI and RSGI hand the names over in lower case already."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)


class RequestView:
    """The two things `MockProvider.parse` reads of an OpenAI chat request: headers and path."""

    __slots__ = ("headers", "path")

    def __init__(self, headers: Any, path: str) -> None:
        self.headers = headers
        self.path = path


class Recorder:
    """The mock's hot path for an unfaulted OpenAI chat call, with the mock's own objects."""

    def __init__(self, config_path: str) -> None:
        from harness.core.identity import use_fingerprint_key
        from harness.ledger import LedgerWriter
        from harness.topology.apis.openai import completion_json
        from harness.topology.mock_provider import MockProvider, ProviderSpec

        self.completion_json = completion_json

        config = json.loads(Path(config_path).read_text())
        use_fingerprint_key(bytes.fromhex(config["fingerprint_key"]))
        self.writer = LedgerWriter(config["ledger_path"])
        raw = config["providers"][PROVIDER_NAME]
        spec = ProviderSpec.from_dict(raw, PROVIDER_NAME, config["providers"])
        self.provider = MockProvider(PROVIDER_NAME, spec, self.writer, config["control_token"],
                                     config["identities_by_fp"], int(config["seed"]))

    def answer(self, request: Any, raw: bytes) -> bytes:
        provider = self.provider
        ts = time.time()
        call = provider.parse(request, raw, ts)
        fault = provider.faults.select(call.corr, call.corr_id, ts)  # none is set: the lookup every call makes
        provider.record(call, 200, "ok", fault.name if fault else None)
        return self.completion_json(f"chatcmpl-{provider.name}-{call.corr_id or 'x'}", int(call.ts),
                               provider.persona.model, f"reply to {call.corr_id or 'unknown'} from {provider.name}")


def bare_answer() -> bytes:
    from harness.topology.apis.openai import completion

    return json.dumps(completion("chatcmpl-gpt-eu-b00000000", int(time.time()), "gpt-4o",
                                 "reply to b00000000 from gpt-eu")).encode()


# -- the apps -------------------------------------------------------------------------------------
def aiohttp_app(recorder: Recorder) -> Any:
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        return web.Response(body=recorder.answer(request, await request.read()), content_type="application/json")

    app = web.Application()
    app.router.add_post(PATH, chat)
    return app


def asgi_app(recorder: Recorder | None) -> Callable[..., Any]:
    fixed = bare_answer()
    head = {"type": "http.response.start", "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(fixed)).encode())]}

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        message = await receive()
        raw: bytes = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            raw += message.get("body", b"")
        if recorder is None:
            await send(head)
            await send({"type": "http.response.body", "body": fixed})
            return
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        body = recorder.answer(RequestView(headers, scope["path"]), raw)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


_rsgi: Callable[..., Any] | None = None


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """granian's target (imported by its worker process): the app of the config named in the environment."""
    global _rsgi
    if _rsgi is None:
        config, kind = os.environ[CONFIG_ENV].split("|")
        _rsgi = _rsgi_app(Recorder(config) if kind == "rec" else None)
    await _rsgi(scope, protocol)


def _rsgi_app(recorder: Recorder | None) -> Callable[..., Any]:
    fixed = bare_answer()
    json_type = [("content-type", "application/json")]

    async def app(scope: Any, protocol: Any) -> None:
        raw = await protocol()
        if recorder is None:
            protocol.response_bytes(200, json_type, fixed)
            return
        body = recorder.answer(RequestView(Headers(scope.headers.items()), scope.path), raw)
        protocol.response_bytes(200, json_type, body)

    return app


# -- serving them ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def announce_when_listening(port: int) -> None:
    """Print the ready line once the port accepts connections (from a thread: the server blocks main)."""
    def wait() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            print(json.dumps({"ready": True, "url": f"http://127.0.0.1:{port}"}), flush=True)
            return
    threading.Thread(target=wait, daemon=True).start()


def serve(stack: str, kind: str, config: str) -> None:
    port = free_port()
    if stack == "aiohttp":
        import asyncio

        from harness.topology.serving import start_app

        async def run() -> None:
            _runner, url = await start_app(aiohttp_app(Recorder(config)))
            print(json.dumps({"ready": True, "url": url}), flush=True)
            await asyncio.Event().wait()

        asyncio.run(run())
    elif stack == "uvicorn":
        import uvicorn

        app = asgi_app(Recorder(config) if kind == "rec" else None)
        announce_when_listening(port)
        uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off",
                    access_log=False, log_level="warning", workers=1)
    elif stack == "granian":
        from granian import Granian

        os.environ[CONFIG_ENV] = f"{config}|{kind}"
        announce_when_listening(port)
        Granian("server_stacks_bench:rsgi_app", address="127.0.0.1", port=port, interface="rsgi", workers=1,
                runtime_threads=1, runtime_mode="st", loop="uvloop", http="1", websockets=False,
                log_level="warning", working_dir=Path(__file__).resolve().parent).serve()
    else:
        raise SystemExit(f"unknown stack {stack}")


def start_stack(tmp: Path, stack: str, kind: str, pin: bool) -> Server:
    cfg = provider_config(tmp, {PROVIDER_NAME: PROVIDER}, tmp / f"ledger-{stack}-{kind}.jsonl",
                          f"providers-{stack}-{kind}.json")
    argv = [sys.executable, __file__, "--serve", stack, kind, str(cfg)]
    return Server(pinned(SERVER_CORE, argv, pin), tmp / f"{stack}-{kind}.log")


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of a process and all its descendants (granian serves from a child process)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


# -- the benchmark --------------------------------------------------------------------------------
def count_new(ledger: Path, offset: int, prefix: str) -> tuple[list[dict[str, Any]], int]:
    """Events for ids starting `prefix-` appended to `ledger` after byte `offset`; and the new end."""
    with ledger.open("rb") as f:
        f.seek(offset)
        data = f.read()
    events = [json.loads(line) for line in data.splitlines() if line]
    return [e for e in events if str(e.get("id")).startswith(prefix + "-")], offset + len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated, of " + ", ".join(STACKS))
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare servers (except aiohttp)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers and clients to cores")
    parser.add_argument("--uvloop", action="store_true", help="add the bare aiohttp server and the mock on uvloop")
    parser.add_argument("--base", type=Path, help="another checkout: its mock runs as `mock@base`")
    args = parser.parse_args()
    args.pin = args.pin and (os.cpu_count() or 1) >= 2
    stacks = [s for s in args.stacks.split(",") if s]
    if unknown := set(stacks) - set(STACKS):
        raise SystemExit(f"--stacks: unknown {', '.join(sorted(unknown))}; known: {', '.join(STACKS)}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        mock_ledger = tmp / "ledger-mock.jsonl"
        starters: dict[str, Callable[[], Server]] = {"aiohttp-bare": lambda: start_bare(tmp, args.pin),
                                                     "mock": lambda: start_providers(
                                                         tmp, {PROVIDER_NAME: PROVIDER}, mock_ledger, args.pin)}
        ledgers = {"mock": mock_ledger}
        if args.base is not None:
            base_ledger = tmp / "ledger-mock-base.jsonl"
            starters["mock@base"] = lambda: start_providers(tmp, {PROVIDER_NAME: PROVIDER}, base_ledger, args.pin,
                                                            tree=args.base.resolve())
            ledgers["mock@base"] = base_ledger
        if args.uvloop:  # what `harness.serve providers` on uvloop would give (one line in harness/serve.py)
            starters["aiohttp-bare-uvloop"] = lambda: start_bare(tmp, args.pin, uvloop=True)
            starters["mock-uvloop"] = lambda: start_variant(tmp, "mock-uvloop", tmp / "ledger-mock-uvloop.jsonl",
                                                            args.pin)
            ledgers["mock-uvloop"] = tmp / "ledger-mock-uvloop.jsonl"
        for stack in stacks:
            if stack != "aiohttp" and args.bare:
                starters[f"{stack}-bare"] = lambda s=stack: start_stack(tmp, s, "bare", args.pin)  # type: ignore[misc]
            starters[f"{stack}-rec"] = lambda s=stack: start_stack(tmp, s, "rec", args.pin)  # type: ignore[misc]
            ledgers[f"{stack}-rec"] = tmp / f"ledger-{stack}-rec.jsonl"
        with servers(*starters.values()) as started:
            targets = {kind: (server.ready.get("url") or server.ready["providers"][PROVIDER_NAME], server.proc.pid)
                       for kind, server in zip(starters, started, strict=True)}
            print(header("server stacks bench", args.pin))
            print(f"wrk -t1 -c{args.connections} -d{args.duration:g}s, {' / '.join(targets)} alternating, "
                  f"{args.rounds} rounds")
            rps: dict[str, list[float]] = {kind: [] for kind in targets}
            per_cpu: dict[str, list[float]] = {kind: [] for kind in targets}
            offsets = {kind: 0 for kind in ledgers}
            recorded_ok = True
            for r in range(args.rounds):
                for i, (kind, (url, pid)) in enumerate(targets.items()):
                    prefix = f"s{i}r{r}"
                    run_wrk(url, wrk_script(tmp, f"w{prefix}"), 1, args.connections, args.pin)  # warm-up
                    if kind in ledgers:
                        time.sleep(0.3)
                        offsets[kind] = ledgers[kind].stat().st_size
                    before = tree_cpu_seconds(pid)
                    result = run_wrk(url, wrk_script(tmp, prefix), args.duration, args.connections, args.pin)
                    cpu = tree_cpu_seconds(pid) - before
                    rps[kind].append(result["rps"])
                    per_cpu[kind].append(result["requests"] / cpu)
                    line = (f"  round {r + 1} {kind:<19} {result['rps']:8.0f} req/s  {result['requests'] / cpu:8.0f} "
                            f"per CPU-s ({1e6 * cpu / result['requests']:5.1f} us/req)  p99 "
                            f"{result['p99_us'] / 1000:5.2f} ms  errors {result['errors']}")
                    if kind in ledgers:
                        time.sleep(0.5)  # the calls still in flight when wrk stopped get recorded too
                        events, offsets[kind] = count_new(ledgers[kind], offsets[kind], prefix)
                        ids = [e["id"] for e in events]
                        in_flight = len(events) - result["requests"]
                        ok = (all(e["type"] == "upstream" and e["outcome"] == "ok" for e in events)
                              and len(set(ids)) == len(ids) and 0 <= in_flight <= args.connections)
                        recorded_ok &= ok
                        line += f"  ledger {len(events)} (+{in_flight} in flight) {'ok' if ok else 'MISMATCH'}"
                    print(line, flush=True)
    # Two readings of the same runs, for a shared, noisy machine. `ratio`: a server's per CPU-second to
    # aiohttp-bare's within each round, the median over rounds (a burst of noise moves one round's pair).
    # `best`: each server's least disturbed round (noise only ever adds CPU per request), and its ratio
    # to aiohttp-bare's best.
    print("summary (medians over rounds; ratio: median of the per-round ratios to aiohttp-bare, per CPU-second;"
          " best: each server's best round)")
    best_bare = max(per_cpu["aiohttp-bare"])
    for kind in targets:
        cpu_med, best = med(per_cpu[kind]), max(per_cpu[kind])
        ratio = med([mine / bare for mine, bare in zip(per_cpu[kind], per_cpu["aiohttp-bare"], strict=True)])
        print(f"  {kind:<19} {med(rps[kind]):8.0f} req/s  {cpu_med:8.0f} req per CPU-second "
              f"({1e6 / cpu_med:5.1f} us/req)  ratio {ratio:5.2f}x   best {best:8.0f} per CPU-second "
              f"({1e6 / best:5.1f} us/req) {best / best_bare:5.2f}x")
    if "mock@base" in targets:
        change = med([mine / base for mine, base in zip(per_cpu["mock"], per_cpu["mock@base"], strict=True)])
        print(f"  mock / mock@base, per CPU-second, median of the per-round ratios: {change:.2f}x")
    print(f"  every call recorded ({', '.join(ledgers)}): {'yes' if recorded_ok else 'NO'}")
    if not recorded_ok:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(*sys.argv[2:5])
    else:
        main()


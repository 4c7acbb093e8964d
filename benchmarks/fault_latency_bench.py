"""How soon a fault set through a mock provider's control endpoint hits traffic, and how soon it heals.

    python benchmarks/fault_latency_bench.py [--injections 50] [--workers 4] [--no-pin]

One mock provider runs as a real subprocess (`python -m harness.serve providers`, core 0);
this process (core 1) keeps a steady stream of requests going on `--workers` keep-alive
connections (each sends its next request as soon as the last one is answered) and, on a
connection of its own, plays the injector: `PUT /_harness/faults/NAME` (a 503 with
probability 1), then `DELETE` it, `--injections` times, at random moments.

For each injection, t0 is the moment the injector's PUT returned. The gap is the send time of
the first request that got the fault's 503, minus t0: negative when a request sent while the PUT
was in flight already saw it. `stale` counts requests sent after t0 that still got a normal
answer: it must be 0 (the control endpoint updates the in-process fault table before it answers,
so the very next request sees the fault). The same is measured for healing (DELETE returned ->
first normal answer; `stale` = 503s sent after it). Finally the ledger must hold one upstream
record per request, the faulted ones naming the fault.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provider_bench import (  # noqa: E402
    BODY_TEMPLATE,
    CLIENT_CORE,
    PROVIDER,
    TOKEN,
    header,
    ledger_lines,
    percentiles,
    request_headers,
    servers,
    start_providers,
)

FAULT = "bench-outage"


class Connection:
    """One keep-alive HTTP/1.1 connection with a minimal client: no client library in the timings."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(head.split(b" ", 2)[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def bench(url: str, injections: int, workers: int, seed: int) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    rng = random.Random(seed)
    head, tail = BODY_TEMPLATE.split("{id}")
    sent: list[tuple[float, str, int]] = []  # (send time, id, status)
    stop = asyncio.Event()
    counter = 0

    async def traffic(conn: Connection, worker: int) -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1
            rid = f"f-{worker}-{counter:08d}"
            t = time.perf_counter()
            status, _ = await conn.request("POST", "/v1/chat/completions", request_headers(rid),
                                           (head + rid + tail).encode())
            sent.append((t, rid, status))

    control = await Connection.open(host, int(port))
    conns = [await Connection.open(host, int(port)) for _ in range(workers)]
    tasks = [asyncio.create_task(traffic(c, i)) for i, c in enumerate(conns)]
    marks: list[tuple[float, float, float, float]] = []  # (put sent, put returned, delete sent, delete returned)
    token = {"x-harness-token": TOKEN, "Content-Type": "application/json"}
    try:
        await asyncio.sleep(0.5)  # steady state first
        for _ in range(injections):
            await asyncio.sleep(rng.uniform(0.02, 0.06))
            body = json.dumps({"effect": {"kind": "error", "status": 503}, "probability": 1.0,
                               "deadline_ts": time.time() + 30}).encode()
            p0 = time.perf_counter()
            status, _ = await control.request("PUT", f"/_harness/faults/{FAULT}", token, body)
            p1 = time.perf_counter()
            assert status == 200, status
            await asyncio.sleep(rng.uniform(0.02, 0.06))
            d0 = time.perf_counter()
            status, _ = await control.request("DELETE", f"/_harness/faults/{FAULT}", token)
            d1 = time.perf_counter()
            assert status == 200, status
            marks.append((p0, p1, d0, d1))
        await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for c in [control, *conns]:
            c.close()
    return analyse(sorted(sent), marks)


def analyse(sent: list[tuple[float, str, int]], marks: list[tuple[float, float, float, float]]) -> dict[str, Any]:
    inject_gaps: list[float] = []
    from_put_sent: list[float] = []
    put_rtt: list[float] = []
    heal_gaps: list[float] = []
    next_send: list[float] = []
    stale_inject = stale_heal = 0
    for k, (p0, p1, d0, d1) in enumerate(marks):
        until = marks[k + 1][0] if k + 1 < len(marks) else float("inf")
        # Requests sent while the fault was (possibly) set: from the PUT going out to the DELETE returning.
        faulted = [t for t, _, s in sent if p0 <= t < d0 and s == 503]
        inject_gaps.append((min(faulted) - p1) if faulted else float("nan"))
        from_put_sent.append((min(faulted) - p0) if faulted else float("nan"))
        put_rtt.append(p1 - p0)
        next_send.append(min((t for t, _, _ in sent if t >= p1), default=float("nan")) - p1)
        stale_inject += sum(1 for t, _, s in sent if p1 <= t < d0 and s != 503)
        healed = [t for t, _, s in sent if d0 <= t < until and s == 200]
        heal_gaps.append((min(healed) - d1) if healed else float("nan"))
        stale_heal += sum(1 for t, _, s in sent if d1 <= t < until and s == 503)
    return {"requests": len(sent), "statuses": {s: sum(1 for *_, x in sent if x == s) for s in {x for *_, x in sent}},
            "inject_gaps": inject_gaps, "from_put_sent": from_put_sent, "put_rtt": put_rtt,
            "heal_gaps": heal_gaps, "next_send": next_send,
            "stale_inject": stale_inject, "stale_heal": stale_heal,
            "rate": len(sent) / (sent[-1][0] - sent[0][0]) if len(sent) > 1 else 0.0,
            "faulted_ids": {rid for _, rid, s in sent if s == 503}, "all_ids": {rid for _, rid, _ in sent}}


def describe(values: list[float]) -> str:
    if any(v != v for v in values):
        return f"{sum(1 for v in values if v != v)} injection(s) never seen"
    p = percentiles(values)
    return (f"min {min(values) * 1000:+.3f}  p50 {p['p50']:+.3f}  p90 {p['p90']:+.3f}  p99 {p['p99']:+.3f}  "
            f"max {p['max']:+.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--injections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4, help="keep-alive connections carrying the steady traffic")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    args = parser.parse_args()
    args.pin = args.pin and (os.cpu_count() or 1) >= 2
    if args.pin:
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    print(header("fault latency bench", args.pin).replace("load generators", "traffic and injector"))
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ledger = tmp / "ledger.jsonl"
        with servers(lambda: start_providers(tmp, {"gpt-eu": PROVIDER}, ledger, args.pin)) as (mock,):
            result = asyncio.run(bench(mock.ready["providers"]["gpt-eu"], args.injections, args.workers, args.seed))
        events = [e for e in ledger_lines(ledger) if e.get("type") == "upstream"]
    by_id = {e["id"]: e for e in events}
    recorded = (len(by_id) == len(events) and set(by_id) == result["all_ids"]
                and all((by_id[i]["fault"] == FAULT) == (i in result["faulted_ids"]) for i in by_id))
    print(f"{args.injections} injections into steady traffic of {result['rate']:.0f} req/s on {args.workers} "
          f"connections; {result['requests']} requests, statuses {result['statuses']}")
    print(f"  injection: PUT returned -> first request sent that got the fault:  {describe(result['inject_gaps'])}")
    print(f"             PUT returned -> next request sent at all (resolution): {describe(result['next_send'])}")
    print(f"             PUT sent -> first request sent that got the fault:      {describe(result['from_put_sent'])}")
    print(f"             PUT round trip (injector call):                         {describe(result['put_rtt'])}")
    print(f"             requests sent after the PUT returned that missed the fault: {result['stale_inject']}")
    print(f"  healing:   DELETE returned -> first request sent that was served:  {describe(result['heal_gaps'])}")
    print(f"             requests sent after the DELETE returned still faulted:  {result['stale_heal']}")
    print(f"  ledger: {len(events)} upstream records for {result['requests']} requests, faulted ones naming "
          f"{FAULT}: {'ok' if recorded else 'MISMATCH'}")


if __name__ == "__main__":
    main()

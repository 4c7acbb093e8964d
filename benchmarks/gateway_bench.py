"""End-to-end throughput of the reference gateway in front of its mock providers, every hop recorded.

    python benchmarks/gateway_bench.py [SCENARIO] [--rounds 3] [--duration 5] [--connections 50]
                                       [--mix chat|scenario] [--no-pin]

The topology is the one a run starts, as real subprocesses on 127.0.0.1: the scenario's mock
providers (`python -m harness.serve providers`, appending every call to a ledger file) and
the reference gateway (`python -m harness.serve gateway`) configured from the scenario's
policy, exactly as `harness.engine.topology` configures it. No fault is set, so every request is
one hop to its route's primary. `wrk` loads the gateway; with pinning the gateway runs on core 0,
the providers and wrk share core 1.

`--mix chat` (the default) sends the scenario's first traffic-mix entry (non-streaming chat);
`--mix scenario` cycles through the whole mix by weight, streams and fail-closed classes included.
After each run the ledger is counted: every request wrk completed has exactly one upstream record,
answered ok by the route's primary (plus at most the requests in flight when wrk stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provider_bench import (  # noqa: E402
    CLIENT_CORE,
    ROOT,
    SERVER_CORE,
    Server,
    header,
    ledger_lines,
    med,
    pinned,
    run_wrk,
    servers,
    wrk_script,
)

from harness.core.correlation import Correlation  # noqa: E402
from harness.core.identity import fingerprint, new_fingerprint_key  # noqa: E402
from harness.scenario import load_scenario  # noqa: E402

FP_KEY = new_fingerprint_key()  # a run's fingerprint key, handed to the providers process

ADMIN_TOKEN = "bench-admin-token"
CONTROL_TOKEN = "bench-control-token"


def templates(scenario: Any, mix: str) -> list[tuple[str, dict[str, str]]]:
    """(body with `{id}`, headers) per request kind, repeated by weight: what the traffic driver sends."""
    names = scenario.traffic.headers
    out: list[tuple[str, dict[str, str]]] = []
    entries = scenario.traffic.mix if mix == "scenario" else scenario.traffic.mix[:1]
    for entry in entries:
        token = Correlation("{id}", entry.tenant, entry.request_class, entry.region, entry.data_class).token()
        body: dict[str, Any] = {"model": entry.route, "messages": [{"role": "user", "content": f"{token} Say hello."}],
                                "stream": entry.stream}
        if entry.tools:
            body["tools"] = [{"type": "function", "function": {"name": t, "parameters": {"type": "object",
                                                                                       "properties": {}}}}
                             for t in entry.tools]
        headers = {names.tenant: entry.tenant, names.request_class: entry.request_class, names.region: entry.region,
                   names.data_class: entry.data_class, "Content-Type": "application/json"}
        if scenario.gateway.client_key:
            headers["Authorization"] = f"Bearer {scenario.gateway.client_key}"
        out += [(json.dumps(body), headers)] * max(1, round(entry.weight))
    return out


def start(tmp: Path, scenario: Any, ledger: Path, pin: bool) -> tuple[Server, Server]:
    keys = {name: ident.key.get_secret_value() for name, ident in scenario.identities.items()}
    providers_cfg = {"ledger_path": str(ledger), "control_token": CONTROL_TOKEN, "seed": scenario.seed,
                     "identities_by_fp": {fingerprint(k, FP_KEY): name for name, k in keys.items()},
                     "fingerprint_key": FP_KEY.hex(),  # the providers fingerprint with the key we used
                     "providers": {name: p.model_dump(mode="json") for name, p in scenario.providers.items()}}
    (tmp / "providers.json").write_text(json.dumps(providers_cfg))
    providers = Server(pinned(CLIENT_CORE, [sys.executable, "-m", "harness.serve", "providers",
                                            str(tmp / "providers.json")], pin), tmp / "providers.log")
    urls = providers.ready["providers"]
    gateway_cfg = {
        "port": 0, "policy": scenario.policy.model_dump(mode="json"),
        "providers": {name: {**p.model_dump(mode="json"), "url": urls[name], "key": keys[p.identity]}
                      for name, p in scenario.providers.items()},
        "identities": keys, "defects": list(scenario.gateway.defects), "cooldown_s": scenario.gateway.cooldown_s,
        "upstream_timeout_s": scenario.gateway.upstream_timeout_s, "admin_token": ADMIN_TOKEN,
        "client_key": scenario.gateway.client_key, "collector_url": None,
        "headers": scenario.traffic.headers.model_dump(mode="json"),
    }
    (tmp / "gateway.json").write_text(json.dumps(gateway_cfg))
    try:
        gateway = Server(pinned(SERVER_CORE, [sys.executable, "-m", "harness.serve", "gateway",
                                              str(tmp / "gateway.json")], pin), tmp / "gateway.log")
    except BaseException:
        providers.stop()
        raise
    return providers, gateway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", type=Path, default=ROOT / "scenarios" / "regional-outage.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--mix", choices=("chat", "scenario"), default="chat")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    args = parser.parse_args()
    args.pin = args.pin and (os.cpu_count() or 1) >= 2
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    scenario = load_scenario(args.scenario).scenario
    kinds = templates(scenario, args.mix)
    primaries = {route.primary for route in scenario.policy.routes.values()}
    rps: list[float] = []
    gw_cpu: list[float] = []
    prov_cpu: list[float] = []
    recorded_ok = True
    print(header("gateway bench", args.pin).replace("servers on core 0", "gateway on core 0")
          .replace("load generators on core 1", "providers and wrk on core 1"))
    distinct = len({body for body, _ in kinds})
    print(f"scenario {args.scenario.name}, mix {args.mix} ({distinct} request kinds by weight), "
          f"wrk -t1 -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ledger = tmp / "ledger.jsonl"
        providers, gateway = start(tmp, scenario, ledger, args.pin)
        with servers(lambda: providers, lambda: gateway):
            url = gateway.ready["url"]
            watch = {"gateway": gateway.proc.pid, "providers": providers.proc.pid}
            for r in range(args.rounds):
                prefix = f"g{r}"
                run_wrk(url, wrk_script(tmp, f"w{prefix}", kinds), 1, args.connections, args.pin)  # warm-up
                result = run_wrk(url, wrk_script(tmp, prefix, kinds), args.duration, args.connections, args.pin,
                                 watch=watch)
                time.sleep(0.5)  # requests in flight when wrk stopped are recorded too
                events = [e for e in ledger_lines(ledger) if str(e.get("id")).startswith(prefix + "-")]
                ids = [e["id"] for e in events]
                in_flight = len(events) - result["requests"]
                ok = (all(e["type"] == "upstream" and e["outcome"] == "ok" and e["provider"] in primaries
                          for e in events)
                      and len(set(ids)) == len(ids) and 0 <= in_flight <= args.connections and result["errors"] == 0)
                recorded_ok &= ok
                rps.append(result["rps"])
                gw_cpu.append(result["cpu_s.gateway"] * 1e6 / result["requests"])
                prov_cpu.append(result["cpu_s.providers"] * 1e6 / result["requests"])
                print(f"  round {r + 1} {result['rps']:7.0f} req/s  p50 {result['p50_us'] / 1000:5.2f} ms  "
                      f"p99 {result['p99_us'] / 1000:6.2f} ms  errors {result['errors']}  "
                      f"gateway {gw_cpu[-1]:5.0f} us/req (busy {result['util.gateway']:.2f})  "
                      f"providers {prov_cpu[-1]:4.0f} us/req (busy {result['util.providers']:.2f})  "
                      f"ledger {len(events)} upstream records (= {result['requests']} + {in_flight} in flight) "
                      f"{'ok' if ok else 'MISMATCH'}", flush=True)
    print("summary (medians)")
    print(f"  {med(rps):7.0f} req/s end to end   gateway CPU {med(gw_cpu):.0f} us/req "
          f"(= {1e6 / med(gw_cpu):.0f} req per gateway CPU-second)   providers CPU {med(prov_cpu):.0f} us/req   "
          f"every hop recorded: {'yes' if recorded_ok else 'NO'}")


if __name__ == "__main__":
    main()

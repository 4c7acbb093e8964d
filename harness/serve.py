"""Process entry point for the harness's own servers.

    python -m harness.serve providers CONFIG.json
    python -m harness.serve gateway CONFIG.json

CONFIG.json may be `-`: the config comes on stdin (how the engine hands the providers their
secrets: no file, no command line). A config's `fingerprint_key` (hex) keys every credential
fingerprint this process computes (harness.core.identity): the run's key, never written anywhere.

Each prints one JSON "ready" line on stdout once it listens (the engine waits for it), then
serves until SIGTERM or SIGINT. Providers run in a process of their own so that a load test
measures the gateway, not the harness's event loop; they append to the run's ledger directly.
A provider with `upstream` is served by a fault proxy in front of that endpoint instead of a mock;
the proxies of one process share one pooled upstream session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from harness.core.identity import use_fingerprint_key
from harness.ledger import LedgerWriter
from harness.topology.fault_proxy import build_proxy_app, upstream_session
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.reference_gateway import GatewayConfig, build_gateway_app
from harness.topology.serving import start_app

USAGE = "usage: python -m harness.serve {providers|gateway} CONFIG.json|-"


def _ready(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"ready": True, **message}) + "\n")
    sys.stdout.flush()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_providers(config: dict[str, Any]) -> None:
    stop = _stop_event()
    writer = LedgerWriter(config["ledger_path"])
    runners: list[web.AppRunner] = []
    session: aiohttp.ClientSession | None = None
    try:
        identities_by_fp = {str(fp): str(name) for fp, name in config.get("identities_by_fp", {}).items()}
        token, seed = str(config["control_token"]), int(config.get("seed", 0))
        secrets = {str(k): str(v) for k, v in (config.get("signing_secrets") or {}).items()}
        urls: dict[str, str] = {}
        for name, raw in config["providers"].items():
            spec = ProviderSpec.from_dict(raw, name, config["providers"])
            if raw.get("upstream"):
                session = session or upstream_session()
                app = build_proxy_app(name, spec, str(raw["upstream"]), writer, token, identities_by_fp, seed,
                                      session=session, secrets=secrets)
            else:
                app = build_provider_app(name, spec, writer, token, identities_by_fp, seed, secrets)
            runner, url = await start_app(app, int(raw.get("port") or 0))
            runners.append(runner)
            urls[name] = url
        _ready({"providers": urls})
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        if session is not None:  # after the proxies: their last relays still use it
            await session.close()
        writer.close()


async def serve_gateway(config: dict[str, Any]) -> None:
    stop = _stop_event()
    app = build_gateway_app(GatewayConfig.from_dict(config))
    runner, url = await start_app(app, int(config.get("port", 0)))
    try:
        _ready({"url": url})
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("providers", "gateway"):
        print(USAGE, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    role, path = args
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        config = json.loads(text)
        if config.get("fingerprint_key"):
            use_fingerprint_key(bytes.fromhex(str(config.pop("fingerprint_key"))))
    except (OSError, ValueError, AttributeError) as exc:
        # The messages name a position, never the config's content (it holds keys).
        print(f"cannot read config {'from stdin' if path == '-' else path}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_providers(config) if role == "providers" else serve_gateway(config))
    except (KeyError, TypeError, ValueError, OSError) as exc:
        # Never print the config itself: it holds keys. The exception names the field only.
        print(f"bad {role} config: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # SIGINT before the handler was installed
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

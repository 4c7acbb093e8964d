"""Helpers shared by the topology tests: an in-memory event sink and request builders.

The servers under test are real (aiohttp on 127.0.0.1); only the ledger is replaced by a list,
which is all an EventSink is.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from harness.core.correlation import Correlation
from harness.core.identity import fingerprint
from harness.core.model import AuditMapping
from harness.topology.collector import build_collector_app
from harness.topology.mock_provider import ProviderSpec, build_provider_app
from harness.topology.reference_gateway import GatewayConfig, build_gateway_app
from harness.topology.serving import start_app


class ListSink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def append(self, event: dict[str, Any]) -> None:
        json.dumps(event)  # what a ledger could not serialize is a bug here too
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def upstream(self, request_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.of("upstream") if request_id is None or e["id"] == request_id]

    def claiming(self, request_id: str) -> list[dict[str, Any]]:
        """Every call carrying this request's correlation id: its own, and those of an unknown caller
        (recorded with `id` None and the id they claimed in `claimed_id`)."""
        return [e for e in self.of("upstream") if request_id in (e["id"], e.get("claimed_id"))]


def chat_body(rid: str | None, *, tenant: str = "acme", request_class: str = "chat", region: str = "eu",
              data_class: str = "internal", model: str = "chat", stream: bool = False,
              tools: list[str] | None = None) -> dict[str, Any]:
    token = Correlation(rid, tenant, request_class, region, data_class).token() if rid else ""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": f"hello {token}".strip()}],
        "stream": stream,
    }
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": t, "parameters": {"type": "object"}}}
                         for t in tools]
    return body


def traffic_headers(rid: str, *, tenant: str = "acme", request_class: str = "chat", region: str = "eu",
                    data_class: str = "internal") -> dict[str, str]:
    return {"x-harness-request-id": rid, "x-harness-tenant": tenant, "x-harness-request-class": request_class,
            "x-harness-region": region, "x-harness-data-class": data_class}


def parse_sse(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [block[len("data: "):] for block in text.split("\n\n") if block.startswith("data: ")]


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


# -- a whole embedded topology: mock providers, collector and the reference gateway -----------

REPO = Path(__file__).resolve().parents[1]
CONTROL_TOKEN = "control-secret"
ADMIN_TOKEN = "admin-secret"
CLIENT_KEY = "client-key-1"
AUDIT_TOKEN = "audit-secret"  # the collector takes audit events only under it
IDENTITIES = {"svc-eu": "sk-eu-0123456789abcdef", "svc-us": "sk-us-fedcba9876543210"}
PROVIDERS: dict[str, dict[str, Any]] = {
    "gpt-eu": {"model": "gpt-4o", "region": "eu", "identity": "svc-eu", "tools": ["search"],
               "data_classes": ["public", "internal", "confidential"]},
    "gpt-eu-b": {"model": "gpt-4o", "region": "eu", "identity": "svc-eu", "tools": ["search"],
                 "data_classes": ["public", "internal"]},
    "gpt-eu-c": {"model": "gpt-4o-mini", "region": "eu", "identity": "svc-eu", "tools": ["search"],
                 "data_classes": ["public"]},
    "gpt-us": {"model": "gpt-4o", "region": "us", "identity": "svc-us", "tools": ["search"],
               "data_classes": ["public", "internal"]},
    "rogue-eu": {"model": "gpt-4o", "region": "eu", "identity": "svc-eu", "tools": [],
                 "data_classes": ["public", "internal"]},
}


def _target(name: str) -> dict[str, Any]:
    return {"target": name, "equivalence": "equivalent", "approved_by": "cab", "approval_ref": f"CHG-{name}"}


def policy(**overrides: Any) -> dict[str, Any]:
    """Route `chat`: primary gpt-eu; approved gpt-eu-b, gpt-eu-c (public only), gpt-us (other region)."""
    base: dict[str, Any] = {
        "routes": {"chat": {"primary": "gpt-eu", "fallbacks": [_target("gpt-eu-b"), _target("gpt-eu-c"),
                                                                _target("gpt-us")]}},
        "fail_closed": {"request_classes": ["regulated"]},
    }
    return {**base, **overrides}


def gateway_config(provider_urls: dict[str, str], collector_url: str | None = None, defects: tuple[str, ...] = (),
                   policy_dict: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "policy": policy_dict or policy(),
        "providers": {name: {**spec, "url": provider_urls[name], "key": IDENTITIES[spec["identity"]]}
                      for name, spec in PROVIDERS.items() if name in provider_urls},
        "identities": IDENTITIES, "defects": list(defects), "cooldown_s": 1.0, "upstream_timeout_s": 1.0,
        "admin_token": ADMIN_TOKEN, "client_key": CLIENT_KEY, "collector_url": collector_url,
        "headers": {}, **overrides,
    }


class Rig:
    """Providers, a collector and the gateway on 127.0.0.1, all recording into one sink."""

    def __init__(self, defects: tuple[str, ...] = (), policy_dict: dict[str, Any] | None = None,
                 **overrides: Any) -> None:
        self.defects = defects
        self.policy_dict = policy_dict
        self.overrides = overrides
        self.sink = ListSink()
        self.runners: list[web.AppRunner] = []
        self.urls: dict[str, str] = {}
        self.url = ""

    async def __aenter__(self) -> Rig:
        by_fp = {fingerprint(key): name for name, key in IDENTITIES.items()}
        for name, spec in PROVIDERS.items():
            app = build_provider_app(name, ProviderSpec.from_dict(spec), self.sink, CONTROL_TOKEN, by_fp, 1)
            runner, self.urls[name] = await start_app(app)
            self.runners.append(runner)
        runner, collector_url = await start_app(build_collector_app(self.sink, AuditMapping(), IDENTITIES,
                                                                    AUDIT_TOKEN))
        self.runners.append(runner)
        config = gateway_config(self.urls, f"{collector_url}/{AUDIT_TOKEN}", self.defects, self.policy_dict,
                                **self.overrides)
        runner, self.url = await start_app(build_gateway_app(GatewayConfig.from_dict(config)))
        self.runners.append(runner)
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        for runner in reversed(self.runners):  # the gateway first, so its audit events still land
            await runner.cleanup()

    async def chat(self, rid: str, *, stream: bool = False, tools: list[str] | None = None, model: str = "chat",
                   **attrs: str) -> tuple[int, dict[str, str], str]:
        headers = {**traffic_headers(rid, **attrs), "Authorization": f"Bearer {CLIENT_KEY}"}
        body = chat_body(rid, model=model, stream=stream, tools=tools, **attrs)
        async with self.session.post(f"{self.url}/v1/chat/completions", json=body, headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.text()

    async def fault(self, provider: str, name: str, effect: dict[str, Any], ttl_s: float = 30,
                    match: dict[str, Any] | None = None) -> None:
        body = {"effect": effect, "match": match, "probability": 1.0, "deadline_ts": time.time() + ttl_s}
        async with self.session.put(f"{self.urls[provider]}/_harness/faults/{name}", json=body,
                                    headers={"x-harness-token": CONTROL_TOKEN}) as resp:
            assert resp.status == 200, await resp.text()

    async def heal(self, provider: str, name: str) -> None:
        async with self.session.delete(f"{self.urls[provider]}/_harness/faults/{name}",
                                       headers={"x-harness-token": CONTROL_TOKEN}) as resp:
            assert resp.status == 200

    async def switch(self, enabled: bool, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
        async with self.session.post(f"{self.url}/admin/fallback", json={"enabled": enabled},
                                     headers={"x-admin-token": token}) as resp:
            return resp.status, await resp.json()

    def calls(self, rid: str) -> list[tuple[str, str]]:
        """(provider, outcome) of every upstream call for one request, in order."""
        return [(e["provider"], e["outcome"]) for e in self.sink.upstream(rid)]

    def served_by(self, rid: str) -> str | None:
        ok = [e["provider"] for e in self.sink.upstream(rid) if e["outcome"] == "ok"]
        return ok[-1] if ok else None

    def audits(self, rid: str) -> list[dict[str, Any]]:
        return [a for a in self.sink.of("audit") if a["fields"].get("request_id") == rid]


async def breaking_upstream(request: web.Request) -> web.StreamResponse:
    """An upstream whose stream breaks after its first event."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b'data: {"choices": [{"index": 0, "delta": {"content": "half"}}]}\n\n')
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return response


def start_server(role: str, config: dict[str, Any],
                 tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """`python -m harness.serve ROLE CONFIG` as the engine starts it; returns its ready line."""
    path = tmp_path / f"{role}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "harness.serve", role, str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"{role} exited: {proc.communicate()[1]}")
    return proc, json.loads(line)

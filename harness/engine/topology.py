"""Start and stop what a run needs: audit collector, mock providers, the gateway under test."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets as pysecrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from harness.core.errors import HarnessError
from harness.core.events import EventSink
from harness.core.identity import fingerprint, new_fingerprint_key
from harness.core.launch import server_argv
from harness.core.model import AuditMapping, KillSwitch, Scenario, ServedTarget
from harness.core.placeholders import fill
from harness.engine.processes import (
    ChildProcess,
    Redactor,
    wait_until_answers,
)
from harness.faults.base import FaultBackend
from harness.faults.journal import RUN_ENV, RunFolder
from harness.faults.mock_backend import MockFaultBackend
from harness.gateways.base import GatewayAdapter, GatewayContext, LaunchPlan, load_adapter
from harness.topology.collector import (
    AUDIT_TOKEN_NAME,
    audit_token,
    build_collector_app,
    follow_sse_audit,
    tail_audit_file,
)
from harness.traffic.requests import PER_REQUEST_FIELDS

SERVER_READY_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also as ::ffff:127.x) or localhost; decided from the name alone, no DNS lookup."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_upstreams(scenario: Scenario, allow_remote: bool) -> None:
    """Refuse a malformed upstream, and one off this machine unless `allow_remote`, before anything starts.

    A proxied provider forwards the run's traffic with the identity's real key: sending it to another
    host must be a decision the user states (--allow-remote), never a typo in a scenario file.
    """
    for name, provider in scenario.providers.items():
        if provider.upstream is None:
            continue
        where = f"providers.{name}.upstream"
        try:
            parts = urlsplit(provider.upstream)
            host = parts.hostname or ""
            valid = (parts.scheme in ("http", "https") and bool(host) and not parts.query and not parts.fragment
                     and (parts.port or 0) >= 0)  # .port raises on a port that is not a number
        except ValueError:
            host, valid = "", False
        # The URL itself is never echoed: it may carry credentials (user:password@host).
        if not valid:
            raise HarnessError(f"{where}: provider '{name}' needs an http(s) base URL with a host and no query\n"
                               "  hint: e.g. upstream: http://127.0.0.1:8000")
        if not allow_remote and not is_loopback(host):
            raise HarnessError(f"{where}: provider '{name}' has upstream host {host}, which is not this machine; "
                               "a run sends traffic only to 127.0.0.1, ::1 or localhost unless told otherwise\n"
                               f"  hint: pass --allow-remote to send the run's traffic (with the real key of "
                               f"identity {provider.identity}) to {host}")


@dataclass
class Topology:
    scenario: Scenario
    run_dir: Path
    sink: EventSink
    scenario_dir: str = "."
    allow_remote: bool = False
    control_token: str = field(default_factory=lambda: pysecrets.token_urlsafe(24))
    admin_token: str = field(default_factory=lambda: pysecrets.token_urlsafe(24))
    # The collector takes audit events only with it; it reaches the gateway inside {collector.url}.
    audit_token: str = field(default_factory=audit_token)
    provider_urls: dict[str, str] = field(default_factory=dict)
    gateway_url: str = ""
    collector_url: str = ""  # the collector's base URL, without the token (what the topology event shows)
    workdir: Path | None = None
    # Keys every credential fingerprint of the run (HMAC): handed to the providers through a pipe, never written.
    fingerprint_key: bytes = field(default_factory=new_fingerprint_key, repr=False)
    request_headers: dict[str, str] = field(default_factory=dict)
    _children: list[ChildProcess] = field(default_factory=list)
    _folder: RunFolder | None = None
    _collector: web.AppRunner | None = None
    _tail_stop: asyncio.Event | None = None
    _tail_task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        gw = self.scenario.gateway
        self._adapter: GatewayAdapter = load_adapter(gw.kind)
        self._context = GatewayContext(self.scenario, Path(self.scenario_dir), self.admin_token)
        # The adapter knows how its gateway names targets, logs and switches fallback; the scenario may override.
        defaults = self._adapter.defaults(self._context)
        self.config_path: Path | None = defaults.config_path
        self.served_target: ServedTarget = (gw.served_target if "served_target" in gw.model_fields_set
                                            else defaults.served_target)
        self.audit: AuditMapping = gw.audit if "audit" in gw.model_fields_set else defaults.audit
        # No switch at all (a command or url gateway without one): an inert spec; the scenario's checks
        # refuse a timeline that would need it.
        self._kill_switch: KillSwitch = gw.kill_switch or defaults.kill_switch or KillSwitch()

    @property
    def keys(self) -> dict[str, str]:
        return {name: ident.key.get_secret_value() for name, ident in self.scenario.identities.items()}

    @property
    def secrets(self) -> dict[str, str]:
        """Signing secrets (bedrock's SigV4) by identity name, for the identities that have one."""
        return {name: ident.secret.get_secret_value() for name, ident in self.scenario.identities.items()
                if ident.secret is not None}

    @property
    def credentials(self) -> dict[str, str]:
        """Everything that must never show in a log or the ledger: keys and signing secrets, by a name."""
        return {**self.keys, **{f"{name}.secret": secret for name, secret in self.secrets.items()}}

    @property
    def redact(self) -> Redactor:
        # The audit token too: a gateway may echo its audit URL in its log or an error.
        return Redactor({**self.credentials, AUDIT_TOKEN_NAME: self.audit_token})

    async def start(self) -> None:
        # Configs that hold keys go to the run's private folder in the state directory (0700, owner recorded),
        # never into the report folder; stop() removes it, `harness recover` does after a SIGKILL.
        self._folder = RunFolder.create(self.run_id)
        self.workdir = self._folder.path
        await self._start_collector()
        await asyncio.gather(self._start_providers(), asyncio.sleep(0))
        await self._start_gateway()
        if self.audit.source == "sse":
            assert self.audit.url is not None
            url = fill(self.audit.url, self.placeholders(), "gateway.audit.url")
            self._tail_stop = asyncio.Event()
            self._tail_task = asyncio.create_task(follow_sse_audit(url, self.sink, self.audit, self.credentials,
                                                                   self._tail_stop))

    async def _start_collector(self) -> None:
        mapping = self.audit
        if mapping.source == "file":
            assert mapping.path is not None
            path = Path(fill(mapping.path, self.placeholders(), "gateway.audit.path"))
            self._tail_stop = asyncio.Event()
            # No token here: the file's protection is the private workdir it is in (mode 0700).
            self._tail_task = asyncio.create_task(tail_audit_file(path, self.sink, mapping, self.credentials,
                                                                   self._tail_stop,
                                                                   hidden={AUDIT_TOKEN_NAME: self.audit_token}))
        app = build_collector_app(self.sink, mapping, self.credentials, self.audit_token)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._collector = runner
        port = runner.addresses[0][1]
        self.collector_url = f"http://127.0.0.1:{port}"

    async def _start_providers(self) -> None:
        s = self.scenario
        assert self.workdir is not None
        # Before the providers process starts: it is the only thing that would reach an upstream.
        check_upstreams(s, self.allow_remote)
        config = {
            "ledger_path": str(self.run_dir / "ledger.jsonl"),
            "control_token": self.control_token,
            "seed": s.seed,
            "identities_by_fp": {fingerprint(k, self.fingerprint_key): name for name, k in self.keys.items()},
            "fingerprint_key": self.fingerprint_key.hex(),
            # A bedrock call is its identity's only when its SigV4 signature verifies: the mocks need the
            # secret (by access key id) to check it. Like everything here, it reaches them on their stdin.
            "signing_secrets": {self.keys[name]: secret for name, secret in self.secrets.items()},
            # The dump carries `upstream`: serve.py starts a fault proxy for a provider that has one.
            "providers": {name: p.model_dump(mode="json") for name, p in s.providers.items()},
        }
        proxied = any(p.upstream for p in s.providers.values())
        ready = await self._start_server("providers and fault proxies" if proxied else "mock providers", "providers",
                                         config)
        self.provider_urls = dict(ready["providers"])

    async def _start_gateway(self) -> None:
        """Start the gateway as its adapter plans it (or nothing, for one already running) and wait until ready."""
        gw = self.scenario.gateway
        assert self.workdir is not None
        values = self.placeholders(port=free_port() if self._adapter.needs_port else None)
        plan = self._adapter.plan(self._context, values, self.workdir)
        timeout = gw.ready_timeout_s if "ready_timeout_s" in gw.model_fields_set else plan.ready_timeout_s
        child = await self._launch(plan) if plan.argv else None
        url = plan.url
        if url is None:  # one of the harness's own servers: it names its URL in its ready line
            assert child is not None, "a plan without a URL must start the server that reports it"
            url = str((await child.ready_line(timeout))["url"])
        elif child is not None:
            child.pump_all()
        self.gateway_url = url.rstrip("/")
        values["gateway.url"] = self.gateway_url
        self.request_headers = {**plan.request_headers, **self._user_request_headers(values)}
        ready_url = gw.ready_url or plan.ready_url
        if ready_url:
            await self._wait_ready(child, ready_url, timeout)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of every process the run starts: marked with the run id, so `harness recover`
        can tell its orphans (e.g. a gateway's grandchild after a SIGKILL) from unrelated processes."""
        return {**os.environ, **(extra or {}), RUN_ENV: self.run_id}

    def adopt(self, child: ChildProcess) -> None:
        """Stop `child` with the run, and record its process group for `harness recover`."""
        self._children.append(child)
        if self._folder is not None:
            self._folder.add_group(child.name, child.proc.pid)

    async def _launch(self, plan: LaunchPlan) -> ChildProcess:
        # Own session and process group (ChildProcess): a gateway started through `sh -c` is stopped whole.
        child = await ChildProcess.start(plan.name, plan.argv, self.run_dir / "gateway.log", self.redact,
                                         env=self.child_env(plan.env), cwd=str(plan.cwd) if plan.cwd else None)
        self.adopt(child)
        return child

    async def _start_server(self, name: str, role: str, config: dict[str, Any]) -> dict[str, Any]:
        """Start one of the harness's own servers (`harness.serve ROLE`) and wait for its ready line.
        Its config (keys, tokens, the fingerprint key) goes through its stdin: no file, no command line."""
        child = await ChildProcess.start(name, server_argv(role, None), self.run_dir / f"{role}.log",
                                         self.redact, env=self.child_env(), stdin_data=json.dumps(config).encode())
        self.adopt(child)
        return await child.ready_line(SERVER_READY_S)

    def _user_request_headers(self, values: dict[str, str]) -> dict[str, str]:
        # Per-request placeholders ({tenant}, {request_class}, ...) stay for the driver to fill.
        per_request = {name: "{" + name + "}" for name in PER_REQUEST_FIELDS}
        return {k: fill(v, {**values, **per_request}, f"gateway.request_headers.{k}")
                for k, v in self.scenario.gateway.request_headers.items()}

    async def _wait_ready(self, child: ChildProcess | None, ready_url: str, timeout_s: float) -> None:
        url = fill(ready_url, self.placeholders(), "gateway.ready_url")

        async def alive() -> None:
            if child is not None and not child.alive:
                raise HarnessError(f"the gateway exited with code {child.proc.returncode} before it was ready; "
                                   f"see {child.log_path}\n{child.tail()}")

        if not await wait_until_answers(url, timeout_s, alive):
            raise HarnessError(f"the gateway did not answer {url} within {timeout_s:.0f} s\n"
                               "  hint: check gateway.ready_url and gateway.ready_timeout_s")

    def placeholders(self, port: int | None = None) -> dict[str, str]:
        # {collector.url} ends in the audit token, so `{collector.url}/audit` is the authorized endpoint
        # and every config written before the token existed keeps working; {collector.token} is for a header.
        collector = f"{self.collector_url}/{self.audit_token}" if self.collector_url else ""
        values: dict[str, str] = {"collector.url": collector, "collector.token": self.audit_token,
                                  "workdir": str(self.workdir or ""),
                                  "python": sys.executable, "scenario_dir": self.scenario_dir}
        if port is not None:
            values["port"] = str(port)
        if self.gateway_url:
            values["gateway.url"] = self.gateway_url
        for name, provider in self.scenario.providers.items():
            if name in self.provider_urls:
                values[f"providers.{name}.url"] = self.provider_urls[name]
            values[f"providers.{name}.key"] = self.keys[provider.identity]
            values[f"providers.{name}.region"] = provider.region
            if provider.identity in self.secrets:  # bedrock: the AWS secret access key it signs with
                values[f"providers.{name}.secret"] = self.secrets[provider.identity]
        return values

    def fault_backends(self, session: aiohttp.ClientSession) -> dict[str, FaultBackend]:
        """The backends this run's faults use, by the name a fault gives in `backend:`."""
        s = self.scenario
        backends: dict[str, FaultBackend] = {
            "mock": MockFaultBackend(session, self.provider_urls, self.control_token, s, "mock"),
            # The fault proxies serve the mocks' control endpoint, at the providers' URLs.
            "proxy": MockFaultBackend(session, self.provider_urls, self.control_token, s, "proxy"),
        }
        if any(f.backend == "docker" for f in self.scenario.faults):
            from harness.faults.docker_backend import DockerFaultBackend  # the docker SDK only when used

            backends["docker"] = DockerFaultBackend(self.scenario, allow_remote=self.allow_remote,
                                                    run_id=self.run_dir.name)
        return backends

    def kill_switch(self) -> KillSwitch:
        """The scenario's kill switch, or the gateway's own (the reference gateway's admin endpoint)."""
        return self._kill_switch

    def describe(self) -> dict[str, Any]:
        gw = self.scenario.gateway
        # Only the reference gateway has defects; the event keeps the field for every kind.
        defects = list(getattr(gw, "defects", []))
        return {"providers": dict(self.provider_urls), "collector_url": self.collector_url,
                "gateway": {"kind": gw.kind, "url": self.gateway_url, "defects": defects}}

    async def stop(self) -> None:
        """Stop everything, in reverse order of start; never raises."""
        for child in reversed(self._children):
            try:
                await child.stop()
            except Exception as exc:  # noqa: BLE001 - stopping must go on for the others
                self.sink.append({"type": "note", "level": "warning", "message": f"stopping {child.name}: {exc}"})
        self._children.clear()
        if self._tail_stop is not None and self._tail_task is not None:
            self._tail_stop.set()
            await asyncio.wait([self._tail_task], timeout=3)
        if self._collector is not None:
            await self._collector.cleanup()
            self._collector = None
        if self._folder is not None:
            self._folder.remove()
            self._folder = None
            self.workdir = None

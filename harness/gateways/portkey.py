"""The Portkey AI gateway (`@portkey-ai/gateway`, run with Node) as the gateway under test.

Portkey takes its routing config per request, in the `x-portkey-config` header, so the adapter
renders the scenario's config template once and hands it to the traffic driver as a header. It
names the target that served in `x-portkey-last-used-option-index` ("config.targets[1]"), which
the adapter maps to provider names by reading the template: each leaf target points at a mock
provider through `custom_host: "{providers.NAME.url}/v1"`. Its only log output a harness can
follow is the server-sent event stream of its local console (`/log/stream`).

Portkey has no runtime switch for fallback; the kill switch is the same config with every
fallback reduced to its first target (mode single), sent on each request while it is off.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.model import AuditField, AuditMapping, KillSwitch, PortkeyGateway, ServedTarget
from harness.core.placeholders import PLACEHOLDER, fill_tree
from harness.gateways.base import (
    ConfigTemplate,
    GatewayContext,
    GatewayDefaults,
    LaunchPlan,
    install_dir,
)

VERSION = "1.15.2"
PACKAGE = "@portkey-ai/gateway"
CONFIG_HEADER = "x-portkey-config"
SERVED_HEADER = "x-portkey-last-used-option-index"
SETUP_HINT = "run `harness setup-gateways portkey` (needs Node.js 18+ and npm on PATH)"

# Where our audit fields sit in a Portkey log event ({time, method, status, duration,
# requestOptions: [one entry per target tried, in order]}), measured on 1.15.2. The event carries
# no request id (not even x-portkey-trace-id), no metadata (tenant) and no per-attempt status, so
# request_id, tenant, region and request_class stay unmapped: the `logged` check reports what
# that leaves unaccountable.
AUDIT_FIELDS: dict[AuditField, str] = {
    "route": "requestOptions.0.finalUntransformedRequest.body.model",
    "primary": "requestOptions.0.lastUsedOptionIndex",
    "fallback": "requestOptions.-1.lastUsedOptionIndex",
    "reason": "requestOptions.0.originalResponse.body.error.message",
    "timestamp": "requestOptions.-1.createdAt",
}

# Portkey's Node server listens on every interface and has no flag or variable to change it
# (@hono/node-server is called without a hostname). This preload makes a listen() without a host
# bind 127.0.0.1, so the gateway under test is never reachable from the network.
_LOOPBACK_PRELOAD = """\
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\\d+$/.test(args[0]))) {
    if (args.length < 2 || args[1] === undefined || args[1] === null) args[1] = '127.0.0.1';
    else if (typeof args[1] === 'function') args.splice(1, 0, '127.0.0.1');
  } else if (args[0] && typeof args[0] === 'object' && args[0].path === undefined && !args[0].host) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
"""

_PROVIDER_URL = re.compile(r"\{providers\.([A-Za-z0-9_.\-]+?)\.url\}")


def package_dir(target: Path) -> Path:
    return target / "node_modules" / "@portkey-ai" / "gateway"


def installed_version(target: Path) -> str | None:
    try:
        data = json.loads((package_dir(target) / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def load_template(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise HarnessError(f"gateway.config: cannot read {path}: {exc}") from None
    except ValueError as exc:
        line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        raise HarnessError(f"{path}:{line}:{col}: gateway.config: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: gateway.config: a Portkey config is a JSON object")
    return data


def target_names(config: dict[str, Any], providers: set[str], where: str) -> dict[str, str]:
    """Portkey's option index of every leaf target ("config.targets[1]") -> the provider it calls."""
    names: dict[str, str] = {}

    def walk(node: Any, index: str) -> None:
        if not isinstance(node, dict):
            raise HarnessError(f"{where}: {index} is not an object")
        targets = node.get("targets")
        if isinstance(targets, list) and targets:
            for i, child in enumerate(targets):
                walk(child, f"{index}.targets[{i}]")
            return
        host = node.get("custom_host")
        found = _PROVIDER_URL.search(host) if isinstance(host, str) else None
        if found is None:
            raise HarnessError(f"{where}: {index}: custom_host must point at a provider of the scenario\n"
                               '  hint: "custom_host": "{providers.NAME.url}/v1" (with provider "openai")')
        if found.group(1) not in providers:
            raise HarnessError(f"{where}: {index}: custom_host names provider {found.group(1)!r}, which the "
                               f"scenario does not define\n  hint: one of {', '.join(sorted(providers))}")
        names[index] = found.group(1)

    walk(config, "config")
    return names


def without_fallback(node: Any) -> Any:
    """The config with every fallback strategy reduced to its first target, in mode single.

    The kept targets stay at index 0, so the option index Portkey reports for the primary is the
    same as in the full config and one mapping serves both.
    """
    if not isinstance(node, dict) or not isinstance(node.get("targets"), list) or not node["targets"]:
        return node
    strategy = node.get("strategy") if isinstance(node.get("strategy"), dict) else {}
    if strategy.get("mode") == "fallback":
        return {**node, "strategy": {"mode": "single"}, "targets": [without_fallback(node["targets"][0])]}
    return {**node, "targets": [without_fallback(child) for child in node["targets"]]}


def render(node: Any, values: dict[str, str], where: str, path: str = "config") -> Any:
    """Fill placeholders in every string of the config; JSON escaping is left to json.dumps."""
    return fill_tree(node, values, f"{where}: {path}")


class PortkeyAdapter(ConfigTemplate):
    model = PortkeyGateway
    kind = "portkey"
    needs_port = True

    def defaults(self, run: GatewayContext) -> GatewayDefaults:
        path = self.config_path(run)
        template = load_template(path)
        names = target_names(template, set(run.scenario.providers), str(path))
        audit = AuditMapping(source="sse", url="{gateway.url}/log/stream", fields=AUDIT_FIELDS, values=names)
        # The engine fills the kill switch's placeholders (URLs, keys) when the run starts.
        switch = KillSwitch(mode="request", request_headers={CONFIG_HEADER: json.dumps(without_fallback(template))})
        return GatewayDefaults(served_target=ServedTarget(header=SERVED_HEADER, values=names), audit=audit,
                               kill_switch=switch, config_path=path)

    def plan(self, run: GatewayContext, values: dict[str, str], workdir: Path) -> LaunchPlan:
        config_path = self.config_path(run)
        node = shutil.which("node")
        target = install_dir() / "portkey"
        entry = package_dir(target) / "build" / "start-server.js"
        if node is None:
            raise HarnessError(f"gateway kind portkey: node is not on PATH\n  hint: {SETUP_HINT}")
        version = installed_version(target)
        if version != VERSION or not entry.is_file():
            found = f"version {version}" if version else "nothing"
            raise HarnessError(f"gateway kind portkey: {PACKAGE}@{VERSION} is not installed in {target} (found "
                               f"{found})\n  hint: {SETUP_HINT}")
        template = load_template(config_path)
        # The engine fills the kill-switch config as text: a value JSON must escape would break it
        # (the main config is rendered here, value by value, and escaped by json.dumps).
        for name in sorted(set(PLACEHOLDER.findall(json.dumps(without_fallback(template))))):
            value = values.get(name, "")
            if json.dumps(value)[1:-1] != value:
                raise HarnessError(f"placeholder {{{name}}} holds characters a JSON string must escape; the "
                                   "portkey kill-switch config cannot carry it\n  hint: use keys without "
                                   "quotes, backslashes or control characters")
        config = render(template, values, str(config_path))
        preload = workdir / "portkey-bind-loopback.cjs"
        preload.write_text(_LOOPBACK_PRELOAD)
        port = values["port"]
        url = f"http://127.0.0.1:{port}"
        # No --headless: it also removes /log/stream, the only log a harness can follow. The same
        # happens under NODE_ENV or ENVIRONMENT=production, so both are pinned for the child.
        argv = [node, "--require", str(preload), str(entry), f"--port={port}"]
        return LaunchPlan(argv=argv, url=url, ready_url=f"{url}/", env={"NODE_ENV": "development",
                          "ENVIRONMENT": "development"}, cwd=workdir,
                          request_headers={CONFIG_HEADER: json.dumps(config)}, ready_timeout_s=30.0,
                          name="portkey gateway")

    def describe(self, run: GatewayContext) -> str:
        config = self.config_shown(run)
        return f"the Portkey gateway {PACKAGE}@{VERSION} (Node) from {install_dir() / 'portkey'}, config {config}"

    def install(self, target: Path) -> None:
        if installed_version(target) == VERSION:
            return
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise HarnessError("installing portkey needs Node.js 18+ and npm on PATH")
        target.mkdir(parents=True, exist_ok=True)
        manifest = target / "package.json"
        if not manifest.exists():
            # Without a package.json npm may install into a parent folder that has one.
            manifest.write_text(json.dumps({"name": "harness-portkey-gateway", "private": True}) + "\n")
        argv = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(target), f"{PACKAGE}@{VERSION}"]
        done = subprocess.run(argv, cwd=target, capture_output=True, text=True, check=False)
        if done.returncode != 0 or installed_version(target) != VERSION:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise HarnessError(f"npm install {PACKAGE}@{VERSION} into {target} failed (exit {done.returncode})"
                               f"\n{tail}")

"""LiteLLM proxy adapter: renders the scenario's config template, starts the real proxy, reads it.

The proxy runs from a virtual environment of its own (`install_dir()/litellm/venv`, made by
`harness setup-gateways litellm`), always offline: LiteLLM otherwise fetches its cost map and
reports telemetry over the internet. The served deployment comes from `x-litellm-model-id`
(the body's `model` names the model group, not the deployment); audit events come from the
callback module shipped beside this file (`litellm_callback.py`), copied next to the rendered
config, which POSTs them to the harness's collector.

Deployment ids: set `model_info: {id: PROVIDER}` on each deployment so that the header names the
provider. When one provider serves two model groups, give each its own id (LiteLLM keys cooldowns
by id): any id maps back to the provider whose `{providers.NAME.url}` its api_base uses.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from harness.core.errors import HarnessError
from harness.core.launch import write_private
from harness.core.model import AuditField, AuditMapping, KillSwitch, LiteLLMGateway, Scenario, ServedTarget
from harness.core.placeholders import fill_tree
from harness.gateways.base import (
    ConfigTemplate,
    GatewayContext,
    GatewayDefaults,
    LaunchPlan,
    install_dir,
)

VERSION = "1.110.2"
# `litellm[proxy]==1.110.2` pins post-releases of these two that do not resolve; these do (measured).
PINNED = (f"litellm=={VERSION}", "litellm-proxy-extras==0.4.110", "litellm-enterprise==0.1.83")
# Provided by PINNED (or unneeded: litellm-proxy is the extra's own name), so dropped from the derived list.
SELF_PROVIDED = frozenset({"litellm", "litellm-proxy", "litellm-proxy-extras", "litellm-enterprise"})
# Releases that must never be installed (a compromised publication): refused even if asked for.
FORBIDDEN = frozenset({"1.82.7", "1.82.8"})
MARKER = "harness-install.json"
MODEL_ID_HEADER = "x-litellm-model-id"
CALLBACK = "litellm_callback.handler"
AUDIT_URL_ENV = "HARNESS_AUDIT_URL"
PRIMARIES_ENV = "HARNESS_LITELLM_PRIMARIES"
# A Bedrock deployment's own base URL key (LiteLLM prefers it to api_base for the runtime calls).
BEDROCK_ENDPOINT = "aws_bedrock_runtime_endpoint"
# Without these LiteLLM reaches for the internet at start-up (cost map, telemetry) and on some calls.
OFFLINE_ENV = {"LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "LITELLM_TELEMETRY_DISABLED": "true"}
_PROVIDER_URL = re.compile(r"\{providers\.([A-Za-z0-9_\-]+)\.url\}")
_VERSION_LINE = re.compile(r"Current Version = (\S+)")
# The callback names its fields as we do; spelled out so the mapping is visible in one place.
AUDIT_FIELDS: dict[AuditField, str] = {
    "request_id": "request_id", "tenant": "tenant", "route": "route", "primary": "primary", "fallback": "fallback",
    "reason": "reason", "timestamp": "timestamp", "region": "region", "request_class": "request_class"}


def venv_dir(target: Path | None = None) -> Path:
    return (target or install_dir() / "litellm") / "venv"


def litellm_binary() -> Path:
    binary = venv_dir() / "bin" / "litellm"
    if not binary.exists():
        raise HarnessError(f"LiteLLM proxy is not installed ({binary} is missing)\n"
                           "  hint: run `harness setup-gateways litellm` (or point HARNESS_GATEWAYS_DIR at the "
                           "folder that holds litellm/venv)")
    return binary


def installed_version(target: Path) -> str | None:
    """What `litellm --version` in `target/venv` reports (run offline), or None if it is not there."""
    binary = venv_dir(target) / "bin" / "litellm"
    if not binary.exists():
        return None
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=180,
                              env={**os.environ, **OFFLINE_ENV}, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION_LINE.search(done.stdout + done.stderr)
    return found.group(1) if found else None


def derive_requirements(metadata: str, python_version: str | None = None) -> list[str]:
    """The proxy extra's requirements from a wheel's METADATA, for an install that pins PINNED itself.

    Keeps each `Requires-Dist` whose marker holds with no extra or with extra == "proxy" (for the
    given Python, default this one), drops the packages PINNED provides, strips the markers.
    """
    from packaging.requirements import Requirement  # only set-up needs it: imported here, not at load

    environment = {"python_version": python_version or f"{sys.version_info[0]}.{sys.version_info[1]}",
                   "python_full_version": (python_version + ".0") if python_version else
                   ".".join(str(p) for p in sys.version_info[:3])}
    wanted: list[str] = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.partition(":")[2].strip())
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({**environment, "extra": extra}) for extra in ("", "proxy")):
            continue
        if requirement.name.lower() in SELF_PROVIDED:
            continue
        requirement.marker = None
        text = str(requirement)
        if text not in wanted:
            wanted.append(text)
    return wanted


def fill_placeholders(node: Any, values: dict[str, str], where: str) -> Any:
    """Placeholders filled in every string of the parsed config (see core.placeholders.fill_tree)."""
    return fill_tree(node, values, where)


def render_config(template: str, values: dict[str, str], master_key: str, source: str) -> dict[str, Any]:
    """The proxy config: the template parsed, placeholders filled, our callback and master key set."""
    try:
        parsed = yaml.safe_load(template)
    except yaml.YAMLError as exc:
        raise HarnessError(f"{source}: not valid YAML: {exc}\n  hint: quote values holding placeholders, "
                           'e.g. api_base: "{providers.gpt-eu.url}/v1"') from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("model_list"), list):
        raise HarnessError(f"{source}: a LiteLLM proxy config needs a model_list")
    config: dict[str, Any] = fill_placeholders(parsed, {**values, "litellm.master_key": master_key}, source)
    settings = config["litellm_settings"] = config.get("litellm_settings") or {}
    callbacks = settings.get("callbacks") or []
    callbacks = [callbacks] if isinstance(callbacks, str) else list(callbacks)
    # The audit trail must not depend on the template remembering the callback.
    settings["callbacks"] = callbacks if CALLBACK in callbacks else [*callbacks, CALLBACK]
    general = config["general_settings"] = config.get("general_settings") or {}
    general["master_key"] = master_key  # fresh per run; the driver sends it
    return config


def deployments(config: dict[str, Any]) -> Iterator[tuple[str, str | None, str | None]]:
    """(model group, deployment id, base URL it calls) for each deployment of the config.

    The base is `api_base`, except for a Bedrock deployment's `aws_bedrock_runtime_endpoint`, which
    LiteLLM sends (and signs) to even when an api_base is also set."""
    for entry in config.get("model_list") or []:
        if not isinstance(entry, dict):
            continue
        params, info = entry.get("litellm_params") or {}, entry.get("model_info") or {}
        ident = info.get("id") if isinstance(info, dict) else None
        base = (params.get(BEDROCK_ENDPOINT) or params.get("api_base")) if isinstance(params, dict) else None
        yield (str(entry.get("model_name")), str(ident) if ident is not None else None, base)


def primaries(config: dict[str, Any]) -> dict[str, str]:
    """Model group -> its first deployment's id: the primary a fallback replaces."""
    # Reversed, so that the first deployment of a group is the one that stays.
    return {group: ident for group, ident, _ in reversed(list(deployments(config))) if ident is not None}


def target_names(scenario: Scenario, config: dict[str, Any] | None = None) -> dict[str, str]:
    """Deployment id -> provider name: each provider's own name, and each id of the (unrendered)
    config whose api_base is a provider's `{providers.NAME.url}` placeholder."""
    names = {name: name for name in scenario.providers}
    for _, ident, api_base in deployments(config or {}):
        found = _PROVIDER_URL.search(str(api_base or ""))
        if ident is not None and ident not in names and found and found.group(1) in scenario.providers:
            names[ident] = found.group(1)
    return names


def read_template(config_path: Path) -> dict[str, Any]:
    """The config template parsed as it is, placeholders unfilled (their names are what we read)."""
    try:
        parsed = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise HarnessError(f"{config_path}: cannot read the LiteLLM config: {exc}\n  hint: quote values holding "
                           'placeholders, e.g. api_base: "{providers.gpt-eu.url}/v1"') from None
    return parsed if isinstance(parsed, dict) else {}


def check_deployments(config: dict[str, Any], names: dict[str, str], source: str) -> None:
    """Refuse a config whose deployments the harness cannot name, or that would leave 127.0.0.1."""
    for group, ident, api_base in deployments(config):
        where = f"{source}: model group {group}"
        if ident is None or ident not in names:
            raise HarnessError(f"{where}: model_info.id {ident!r} names no provider of the scenario\n"
                               f"  hint: set model_info: {{id: PROVIDER}} (or any id, with api_base "
                               f"\"{{providers.PROVIDER.url}}/v1\"); providers: "
                               f"{', '.join(sorted(set(names.values())))}")
        host = urlsplit(str(api_base or "")).hostname
        try:
            loopback = host is not None and (host == "localhost" or ipaddress.ip_address(host).is_loopback)
        except ValueError:
            loopback = False
        if not loopback:
            raise HarnessError(f"{where}: api_base {api_base!r} is not on 127.0.0.1\n"
                               '  hint: api_base: "{providers.NAME.url}/v1" (the harness never leaves loopback)')


class LiteLLMAdapter(ConfigTemplate):
    model = LiteLLMGateway
    kind = "litellm"
    needs_port = True

    def defaults(self, run: GatewayContext) -> GatewayDefaults:
        config_path = self.config_path(run)
        names = target_names(run.scenario, read_template(config_path))
        return GatewayDefaults(
            served_target=ServedTarget(header=MODEL_ID_HEADER, values=names),
            audit=AuditMapping(source="collector", fields=AUDIT_FIELDS, values=names),
            # LiteLLM has no runtime switch: a request carrying disable_fallbacks is never rerouted.
            kill_switch=KillSwitch(mode="request", request_body={"disable_fallbacks": True}),
            config_path=config_path,
        )

    def plan(self, run: GatewayContext, values: dict[str, str], workdir: Path) -> LaunchPlan:
        binary = litellm_binary()
        config_path = self.config_path(run)
        master_key = "sk-harness-" + secrets.token_urlsafe(24)
        config = render_config(config_path.read_text(encoding="utf-8"), values, master_key, str(config_path))
        check_deployments(config, target_names(run.scenario, read_template(config_path)), str(config_path))
        rendered = workdir / "litellm.yaml"
        write_private(rendered, yaml.safe_dump(config, sort_keys=False))
        # LiteLLM imports `callbacks: litellm_callback.handler` from the config file's folder.
        shutil.copyfile(Path(__file__).with_name("litellm_callback.py"), workdir / "litellm_callback.py")
        port = values["port"]
        url = f"http://127.0.0.1:{port}"
        env = {**OFFLINE_ENV, AUDIT_URL_ENV: values["collector.url"].rstrip("/") + "/audit",
               PRIMARIES_ENV: json.dumps(primaries(config))}
        # One uvicorn worker in the proxy's own process: nothing escapes the process group we stop.
        argv = [str(binary), "--config", str(rendered), "--port", port, "--host", "127.0.0.1", "--num_workers", "1"]
        return LaunchPlan(argv=argv, url=url, ready_url=f"{url}/health/liveliness", env=env, cwd=workdir,
                          request_headers={"Authorization": f"Bearer {master_key}"}, ready_timeout_s=90.0,
                          name="litellm gateway")

    def describe(self, run: GatewayContext) -> str:
        config = self.config_shown(run)
        return f"the LiteLLM proxy {VERSION} from {install_dir() / 'litellm'}, config {config}"

    def install(self, target: Path) -> None:
        install(target)


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise HarnessError(f"{what} failed (exit {done.returncode}):\n{tail}")


def wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode("utf-8")


def install(target: Path, log: Callable[[str], None] = print) -> None:
    """LiteLLM proxy in `target/venv`: litellm, the two pinned companions, the proxy extra's other needs.

    Idempotent: nothing is done when the venv's `litellm --version` already reports VERSION.
    """
    if VERSION in FORBIDDEN:
        raise HarnessError(f"refusing to install litellm {VERSION}: a known-compromised release")
    venv = venv_dir(target)
    if installed_version(target) == VERSION:
        log(f"litellm {VERSION} already installed in {venv}")
        return
    target.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", "--clear", str(venv)], "creating the virtual environment")
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    with tempfile.TemporaryDirectory(prefix="litellm-wheel-") as tmp:
        _run([*pip, "download", "--no-deps", "--only-binary=:all:", "-d", tmp, f"litellm=={VERSION}"], "pip download")
        wheel = next(Path(tmp).glob("litellm-*.whl"))
        requirements = derive_requirements(wheel_metadata(wheel))
        (target / "requirements.txt").write_text("\n".join([*PINNED, *requirements]) + "\n", encoding="utf-8")
        # The wheel just checked is the one installed: no second download, no other version.
        _run([*pip, "install", str(wheel), *PINNED[1:], *requirements], "pip install")
    version = installed_version(target)
    if version != VERSION:
        raise HarnessError(f"litellm in {venv} reports {version!r} after installing, expected {VERSION}")
    marker = {"litellm": VERSION, "pinned": list(PINNED), "requirements": len(requirements),
              "python": sys.version.split()[0], "seconds": round(time.monotonic() - started, 1)}
    (target / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    log(f"litellm {VERSION} installed in {venv} ({time.monotonic() - started:.0f} s)")

"""Every gateway kind is an adapter behind one interface, and the model is a union by kind.

Real subprocesses and real HTTP on 127.0.0.1: the engine's topology starts the reference gateway
through its adapter, waits for a url gateway through its plan, and `harness run --dry-run`
describes each kind through its adapter; optional adapters are imported only when used.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from harness.core.errors import HarnessError, InputError
from harness.core.model import (
    GATEWAY_KINDS,
    GATEWAY_MODELS,
    CommandGateway,
    LiteLLMGateway,
    PortkeyGateway,
    ReferenceGateway,
    UrlGateway,
)
from harness.core.placeholders import fill
from harness.engine.topology import Topology, free_port
from harness.gateways import litellm, portkey
from harness.gateways.base import (
    GatewayContext,
    Installable,
    adapter_kinds,
    gateway_kinds,
    load_adapter,
    load_installer,
)
from harness.scenario import load_scenario, redacted_dump, scenario_from_dict
from harness.scenario.unions import EXAMPLES
from tests.conftest import ROOT, SCENARIOS, harness_cmd

GOOD = ROOT / "fixtures" / "good_scenario.yaml"
GATEWAY_LINE = "gateway: {kind: reference}\n"
LEDGERS = ROOT / "fixtures" / "ledgers"


def _scenario_file(folder: Path, gateway: str, name: str = "s.yaml") -> Path:
    """The good fixture with its one-line gateway replaced by `gateway` (YAML block text)."""
    text = GOOD.read_text(encoding="utf-8")
    assert GATEWAY_LINE in text
    path = folder / name
    path.write_text(text.replace(GATEWAY_LINE, gateway), encoding="utf-8")
    return path


def _line_of(path: Path, prefix: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(prefix))


# --- adapters by kind ------------------------------------------------------------------------


def test_every_kind_of_the_model_has_its_adapter():
    assert gateway_kinds() == list(GATEWAY_KINDS) == list(GATEWAY_MODELS)
    for kind in GATEWAY_KINDS:
        adapter = load_adapter(kind)
        assert adapter.kind == kind and isinstance(adapter.needs_port, bool)
    # Only the real gateways have something to install.
    assert adapter_kinds() == ["litellm", "portkey"]
    assert all(isinstance(load_installer(kind), Installable) for kind in adapter_kinds())
    with pytest.raises(HarnessError, match="nothing to install"):
        load_installer("reference")
    with pytest.raises(HarnessError, match="no adapter for gateway kind 'nginx'"):
        load_adapter("nginx")


# Loads a scenario, prints its dry-run gateway line and, with a run folder, starts and stops its
# topology for real; then prints which gateway adapters this process imported.
_PROBE = """
import asyncio, json, sys
from pathlib import Path
from harness.engine.plan import dry_run_plan
from harness.engine.topology import Topology
from harness.scenario import load_scenario

loaded = load_scenario(sys.argv[1])
print(dry_run_plan(loaded, False).splitlines()[1])
if len(sys.argv) > 2:
    async def start_and_stop():
        topology = Topology(loaded.scenario, Path(sys.argv[2]), [], scenario_dir=str(Path(sys.argv[1]).parent))
        try:
            await topology.start()
            print("started", topology.gateway_url)
        finally:
            await topology.stop()
    asyncio.run(start_and_stop())
print(json.dumps(sorted(m for m in sys.modules if m.startswith("harness.gateways."))))
"""


def _probe(scenario: Path, run_dir: Path | None = None) -> tuple[list[str], list[str]]:
    argv = [sys.executable, "-c", _PROBE, str(scenario)] + ([str(run_dir)] if run_dir else [])
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    *lines, modules = done.stdout.splitlines()
    return lines, json.loads(modules)


def test_optional_adapters_are_not_imported_for_a_reference_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines, modules = _probe(SCENARIOS / "regional-outage.yaml", run_dir)
    assert lines[0].startswith("gateway: reference: the bundled reference gateway")
    assert re.fullmatch(r"started http://127\.0\.0\.1:\d+", lines[1]), lines
    assert "harness.gateways.reference" in modules
    assert not {"harness.gateways.litellm", "harness.gateways.portkey"} & set(modules), modules
    assert (run_dir / "gateway.log").exists()  # the reference gateway really ran


def test_an_adapter_is_imported_when_its_kind_is_used():
    _, modules = _probe(SCENARIOS / "gateways" / "litellm-kill-switch.yaml")
    assert "harness.gateways.litellm" in modules and "harness.gateways.portkey" not in modules
    _, modules = _probe(ROOT / "fixtures" / "scenarios" / "command-gateway.yaml")
    assert "harness.gateways.command" in modules
    assert not {"harness.gateways.litellm", "harness.gateways.portkey"} & set(modules), modules


# --- the model: one union by kind ------------------------------------------------------------

FOREIGN = [
    # (kind and its own keys, a key of other kinds, the kinds that take it)
    ("  kind: reference\n", "command: [my-gateway]", "command"),
    ("  kind: command\n  command: [my-gateway, --port, '{port}']\n", "defects: [no-audit]", "reference"),
    ("  kind: url\n  url: http://127.0.0.1:4000\n", "env: {A: b}", "command"),
    ("  kind: litellm\n  config: litellm.yaml\n", "url: http://127.0.0.1:4000", "command or url"),
    ("  kind: portkey\n  config: portkey.json\n", "upstream_timeout_s: 3", "reference"),
]


@pytest.mark.parametrize(("own", "foreign", "owners"), FOREIGN, ids=[k[0].split()[1] for k in FOREIGN])
def test_a_key_of_another_kind_is_a_located_error_with_a_hint(tmp_path, own, foreign, owners):
    path = _scenario_file(tmp_path, "gateway:\n" + own + f"  {foreign}\n")
    kind, key = own.split()[1], foreign.split(":")[0]
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    (problem,) = caught.value.problems
    line = _line_of(path, f"  {key}:")
    assert (problem.line, problem.column, problem.key) == (line, 3, f"gateway.{key}")
    a = "an" if owners[0] in "aeio" else "a"
    assert problem.message == f"'{key}' is a key of {a} {owners} gateway, not of a {kind} gateway"
    assert problem.hint == f"remove `{key}`, or use kind: {owners}"
    assert f"{path.name}:{line}:3: gateway.{key}: '{key}' is a key of" in str(caught.value)


@pytest.mark.parametrize(("kind", "key"), [("command", "command"), ("url", "url"), ("litellm", "config"),
                                           ("portkey", "config")])
def test_a_kind_without_the_key_it_needs_is_a_located_error(tmp_path, kind, key):
    path = _scenario_file(tmp_path, f"gateway:\n  kind: {kind}\n  ready_timeout_s: 5\n")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.key) == (_line_of(path, "gateway:"), f"gateway.{key}")
    assert problem.message.startswith(f"a {kind} gateway needs `{key}`: ")
    assert problem.hint == EXAMPLES[(kind, key)]
    # Given but empty: the same words, at the value.
    empty = "[]" if key == "command" else "''"
    path = _scenario_file(tmp_path, f"gateway:\n  kind: {kind}\n  {key}: {empty}\n")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    (problem,) = caught.value.problems
    assert problem.line == _line_of(path, f"  {key}:") and problem.message.startswith(f"a {kind} gateway needs")


def test_every_key_a_kind_requires_has_an_example():
    from harness.core.model import Fault

    unions = [GATEWAY_MODELS.values(), Fault.model_fields["effect"].annotation.__args__]
    required = {(tag, name) for members in unions for model in members
                for tag in model.model_fields["kind"].annotation.__args__
                for name, info in model.model_fields.items() if info.is_required() and name != "kind"}
    assert required == set(EXAMPLES)


# --- saved ledgers: the old flat gateway --------------------------------------------------------

# Every key the one flat Gateway model dumped, at its default (as `run_start.scenario` holds it).
FLAT = {"kind": None, "config": None, "defects": [], "cooldown_s": 2.0, "upstream_timeout_s": 2.0, "command": None,
        "url": None, "ready_url": None, "ready_timeout_s": 30.0, "env": {}, "client_key": None, "request_headers": {},
        "served_target": {"header": "x-served-by", "body_field": None, "values": {}},
        "audit": {"source": "collector", "path": None, "url": None, "fields": {}, "values": {}}, "kill_switch": None}


def _recorded(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.loads(handle.readline())["scenario"]


@pytest.mark.parametrize(("ledger", "model"), [("rate-limit-storm__retry-storm.jsonl.gz", ReferenceGateway),
                                                ("gateways/litellm-kill-switch.jsonl.gz", LiteLLMGateway)])
def test_a_recorded_ledgers_flat_gateway_still_loads(ledger, model):
    dump = _recorded(LEDGERS / ledger)
    assert {"command", "url", "env", "defects", "cooldown_s"} <= set(dump["gateway"])  # the old flat shape
    gateway = scenario_from_dict(dump, ledger).gateway
    assert isinstance(gateway, model)
    if isinstance(gateway, ReferenceGateway):
        assert gateway.defects == ["retry-storm"] and gateway.cooldown_s == 1.0
    else:
        assert gateway.config == dump["gateway"]["config"]


@pytest.mark.parametrize(("kind", "own", "model"), [
    ("command", {"command": ["gw", "--port", "{port}"], "env": {"GW_KEY": "<redacted>"}}, CommandGateway),
    ("url", {"url": "http://127.0.0.1:4000", "kill_switch": {"url": "{gateway.url}/off", "headers": {"a": "b"}}},
     UrlGateway),
    ("portkey", {"config": "fixtures/gateways/portkey/fallback.json"}, PortkeyGateway),
])
def test_old_flat_dumps_of_every_kind_load_and_redact(kind, own, model):
    dump = redacted_dump(load_scenario(GOOD).scenario)
    dump["gateway"] = {**FLAT, "kind": kind, "request_headers": {"x-tenant": "{tenant}"}, **own}
    scenario = scenario_from_dict(dump, "old.jsonl")
    assert isinstance(scenario.gateway, model)
    for key, value in own.items():
        got = getattr(scenario.gateway, key)
        assert (got.model_dump(exclude_unset=True) if hasattr(got, "model_dump") else got) == value
    again = redacted_dump(scenario)
    assert set(again["gateway"]) == set(model.model_fields)  # the foreign keys are gone
    assert again["gateway"]["request_headers"] == {"x-tenant": "<redacted>"}
    if "env" in own:
        assert again["gateway"]["env"] == {"GW_KEY": "<redacted>"}
    if "kill_switch" in own:
        assert again["gateway"]["kill_switch"]["headers"] == {"a": "<redacted>"}
    assert redacted_dump(scenario_from_dict(again, "new.jsonl")) == again


def test_a_foreign_key_with_a_real_value_is_still_refused():
    dump = redacted_dump(load_scenario(GOOD).scenario)
    dump["gateway"] = {**FLAT, "kind": "reference", "command": ["my-gateway"], "env": {}}
    with pytest.raises(InputError) as caught:
        scenario_from_dict(dump, "old.jsonl")
    (problem,) = caught.value.problems
    assert problem.key == "gateway.command" and problem.line is None
    assert problem.message == "'command' is a key of a command gateway, not of a reference gateway"


def test_a_scenario_file_stays_strict_about_empty_foreign_keys(tmp_path):
    # Only a complete flat dump is read leniently: a file that names one foreign key is refused.
    path = _scenario_file(tmp_path, "gateway:\n  kind: command\n  command: [gw]\n  defects: []\n")
    with pytest.raises(InputError, match="'defects' is a key of a reference gateway"):
        load_scenario(path)


# --- `harness run --dry-run` ---------------------------------------------------------------------

DRY_RUN = {
    "reference": ("gateway:\n  kind: reference\n  defects: [retry-storm, no-audit]\n",
                  "the bundled reference gateway, defects: retry-storm, no-audit"),
    "command": ("gateway:\n  kind: command\n  command: [my-gateway, --port, '{port}']\n",
                "started from command: my-gateway --port {port}"),
    "url": ("gateway:\n  kind: url\n  url: http://127.0.0.1:4000\n",
            "already running at http://127.0.0.1:4000 (left running)"),
    "litellm": ("gateway:\n  kind: litellm\n  config: proxy.yaml\n",
                f"the LiteLLM proxy {litellm.VERSION} from "),
    "portkey": ("gateway:\n  kind: portkey\n  config: missing.json\n",
                f"the Portkey gateway {portkey.PACKAGE}@{portkey.VERSION} (Node) from "),
}


@pytest.mark.parametrize("kind", list(DRY_RUN))
def test_dry_run_describes_each_kind_through_its_adapter(tmp_path, kind):
    gateway, words = DRY_RUN[kind]
    path = _scenario_file(tmp_path, gateway)
    (tmp_path / "proxy.yaml").write_text("model_list: []\n")  # beside the scenario file
    result = harness_cmd("run", "--dry-run", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.splitlines()[1]
    described = load_adapter(kind).describe(GatewayContext(load_scenario(path).scenario, tmp_path))
    assert line == f"gateway: {kind}: {described}"
    assert words in line
    if kind == "litellm":
        assert line.endswith(f", config {(tmp_path / 'proxy.yaml').resolve()}")
    if kind == "portkey":
        assert line.endswith("config missing.json (NOT FOUND beside the scenario file or in the working directory)")


# --- the engine's common work, for real --------------------------------------------------------


def test_reference_gateway_is_started_through_its_adapter_with_its_default_kill_switch(tmp_path):
    scenario = load_scenario(SCENARIOS / "regional-outage.yaml").scenario
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    async def scenario_run() -> None:
        topology = Topology(scenario, run_dir, [], scenario_dir=str(SCENARIOS))
        switch = topology.kill_switch()
        assert switch.headers == {"x-admin-token": topology.admin_token} and switch.off_body == {"enabled": False}
        try:
            await topology.start()
            assert topology.workdir is not None
            config = topology.workdir / "gateway.json"
            assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds every identity's key
            assert json.loads(config.read_text())["admin_token"] == topology.admin_token
            url = fill(switch.url or "", topology.placeholders(), "kill_switch.url")
            assert url == topology.gateway_url + "/admin/fallback"
            async with aiohttp.ClientSession() as session:
                async with session.post(url, json=switch.off_body, headers=switch.headers) as resp:
                    assert resp.status == 200
                async with session.post(url, json=switch.off_body, headers={"x-admin-token": "wrong"}) as resp:
                    assert resp.status == 401
                async with session.get(url) as resp:
                    assert await resp.json() == {"enabled": False}
            workdir = topology.workdir
        finally:
            await topology.stop()
        assert not workdir.exists()

    asyncio.run(scenario_run())
    assert (run_dir / "gateway.log").exists()


def test_url_gateway_starts_nothing_and_is_polled_at_its_ready_url(tmp_path):
    port = free_port()
    polls: list[int] = []

    async def ready(request: web.Request) -> web.Response:
        polls.append(1)
        return web.json_response({}, status=503 if len(polls) < 3 else 200)

    path = _scenario_file(tmp_path, f"gateway:\n  kind: url\n  url: http://127.0.0.1:{port}/\n"
                                    "  ready_url: '{gateway.url}/ready'\n  ready_timeout_s: 10\n"
                                    "  request_headers: {x-route: '{tenant}@{gateway.url}'}\n")
    scenario = load_scenario(path).scenario
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    async def scenario_run() -> None:
        app = web.Application()
        app.router.add_get("/ready", ready)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        topology = Topology(scenario, run_dir, [], scenario_dir=str(tmp_path))
        try:
            await topology.start()
            assert topology.gateway_url == f"http://127.0.0.1:{port}"
            assert topology.request_headers == {"x-route": "{tenant}@" + topology.gateway_url}
        finally:
            await topology.stop()
            await runner.cleanup()

    asyncio.run(scenario_run())
    assert len(polls) == 3  # polled until it answered 2xx
    assert not (run_dir / "gateway.log").exists()  # nothing was started for it


def _start_and_stop(path: Path, tmp_path: Path) -> None:
    """Start the scenario's topology (providers, gateway) and stop it again, as a run does."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    async def scenario_run() -> None:
        topology = Topology(load_scenario(path).scenario, run_dir, [], scenario_dir=str(tmp_path))
        try:
            await topology.start()
        finally:
            await topology.stop()

    asyncio.run(scenario_run())


def test_a_url_gateway_that_never_gets_ready_aborts_with_a_hint(tmp_path):
    port = free_port()  # nothing listens there
    path = _scenario_file(tmp_path, f"gateway:\n  kind: url\n  url: http://127.0.0.1:{port}\n"
                                    "  ready_url: '{gateway.url}/ready'\n  ready_timeout_s: 1\n")
    with pytest.raises(HarnessError, match=rf"did not answer http://127.0.0.1:{port}/ready within 1 s") as caught:
        _start_and_stop(path, tmp_path)
    assert "gateway.ready_timeout_s" in str(caught.value)


def test_command_gateway_not_on_path_is_refused_before_anything_runs(tmp_path):
    path = _scenario_file(tmp_path, "gateway:\n  kind: command\n  command: [/nonexistent/my-gateway, '{port}']\n")
    with pytest.raises(HarnessError, match=r"gateway.command\[0\]: '/nonexistent/my-gateway' is not on PATH"):
        _start_and_stop(path, tmp_path)
    assert not (tmp_path / "run" / "gateway.log").exists()  # refused before it started

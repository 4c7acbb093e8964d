"""What a fault hits is decided once (`harness.core.blast_radius`): each selector on real scenarios
loaded through the loader, and the dry-run plan, the semantic checks and the backends agreeing."""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from harness.core.blast_radius import (
    affected_providers,
    fault_containers,
    fault_providers,
    fault_targets,
    served_providers,
)
from harness.core.errors import InputError
from harness.core.model import Fault, Scenario
from harness.engine.plan import dry_run_plan
from harness.engine.topology import Topology
from harness.faults.base import FaultBackend
from harness.faults.docker_backend import DockerFaultBackend
from harness.scenario import load_scenario, scenario_from_dict

PROVIDER = {"identity": "svc", "data_classes": ["internal"]}
CONTAINER = {"image": "harness-base:latest"}


def _fault(name: str, target: dict[str, str], at_s: float, backend: str = "mock") -> dict[str, Any]:
    effect = {"kind": "pause"} if backend == "docker" else {"kind": "error", "status": 503}
    return {"name": name, "backend": backend, "target": target, "effect": effect, "at_s": at_s, "duration_s": 2}


DATA: dict[str, Any] = {
    "version": 1, "name": "blast", "identities": {"svc": {"key": "sk-blast-radius"}},
    "providers": {
        "gpt-eu": {"model": "gpt-4o", "region": "eu", **PROVIDER},
        "gpt-eu-2": {"model": "gpt-4o", "region": "eu", **PROVIDER},
        "claude-eu": {"model": "claude-sonnet", "region": "eu", **PROVIDER},
        "gpt-us": {"model": "gpt-4o", "region": "us", **PROVIDER},
        # Behind fault proxies: their upstreams are the containers' addresses (localhost = 127.0.0.1).
        "llama-eu": {"model": "llama", "region": "eu-c", "upstream": "http://localhost:18431", **PROVIDER},
        "llama-eu-b": {"model": "llama", "region": "eu-c", "upstream": "http://127.0.0.1:18432/v1", **PROVIDER},
    },
    "containers": {
        "model-eu": {**CONTAINER, "labels": {"region": "eu", "tier": "a"}, "ready_url": "http://127.0.0.1:18431/health"},
        "model-eu-b": {**CONTAINER, "labels": {"region": "eu", "tier": "b"},
                       "ready_url": "http://localhost:18432/health"},
        "model-us": {**CONTAINER, "labels": {"region": "us"}, "ready_url": "http://127.0.0.1:18433/health"},
        "templated": {**CONTAINER, "labels": {"region": "apac"}, "ready_url": "http://127.0.0.1:{port}/health"},
    },
    "gateway": {"kind": "reference"},
    "policy": {"routes": {
        "chat": {"primary": "gpt-eu", "fallbacks": [{"target": "claude-eu", "equivalence": "equivalent",
                                                     "approved_by": "sec", "approval_ref": "CHG-1"}]},
        "local": {"primary": "llama-eu", "fallbacks": [{"target": "llama-eu-b", "equivalence": "equivalent",
                                                        "approved_by": "sec", "approval_ref": "CHG-2"}]}}},
    "traffic": {"rate_per_s": 5, "duration_s": 30, "mix": [
        {"route": "chat", "tenant": "acme", "region": "eu", "request_class": "chat", "data_class": "internal"},
        {"route": "local", "tenant": "acme", "region": "eu", "request_class": "chat", "data_class": "internal"}]},
    "faults": [
        _fault("one-provider", {"provider": "gpt-us"}, 0),
        _fault("eu-region", {"region": "eu"}, 2),
        _fault("model-gpt", {"model": "gpt-4o"}, 5),
        _fault("proxied-model", {"model": "llama"}, 8, backend="proxy"),
        _fault("eu-containers", {"label": "region=eu"}, 11, backend="docker"),
        _fault("one-container", {"container": "model-us"}, 14, backend="docker"),
        _fault("tier-b", {"label": "tier=b"}, 17, backend="docker"),
        _fault("templated", {"container": "templated"}, 20, backend="docker"),
    ],
}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return scenario_from_dict(copy.deepcopy(DATA), "blast.json")


def _named(scenario: Scenario, name: str) -> Fault:
    return next(f for f in scenario.faults if f.name == name)


@pytest.mark.parametrize(("fault", "hit"), [
    ("one-provider", ["gpt-us"]),
    ("eu-region", ["claude-eu", "gpt-eu", "gpt-eu-2"]),
    ("model-gpt", ["gpt-eu", "gpt-eu-2", "gpt-us"]),
    ("proxied-model", ["llama-eu", "llama-eu-b"]),
    ("eu-containers", []),  # a container selector names no provider
])
def test_provider_selectors(scenario, fault, hit):
    assert fault_providers(scenario, _named(scenario, fault)) == hit


@pytest.mark.parametrize(("fault", "hit"), [
    ("eu-containers", ["model-eu", "model-eu-b"]),
    ("one-container", ["model-us"]),
    ("tier-b", ["model-eu-b"]),
    ("one-provider", []),  # a provider selector names no container
])
def test_container_selectors(scenario, fault, hit):
    assert fault_containers(scenario, _named(scenario, fault)) == hit


def test_a_selector_matches_only_what_the_scenario_declares(scenario):
    # Faults the loader would refuse, built as models: the selectors still touch nothing undeclared.
    for target, backend in (({"provider": "gpt-apac"}, "mock"), ({"region": "apac"}, "mock"),
                            ({"container": "not-declared"}, "docker"), ({"label": "region=apac-2"}, "docker"),
                            ({"label": "no-equals-sign"}, "docker"), ({}, "mock")):
        fault = Fault.model_validate(_fault("stray", target, 0, backend))
        assert fault_targets(scenario, fault) == [] and affected_providers(scenario, fault) == [], target


def test_a_container_serves_the_providers_whose_upstream_is_its_address(scenario):
    assert served_providers(scenario, "model-eu") == ["llama-eu"]        # localhost is 127.0.0.1
    assert served_providers(scenario, "model-eu-b") == ["llama-eu-b"]    # the path does not matter
    assert served_providers(scenario, "model-us") == []                  # nobody's upstream
    assert served_providers(scenario, "templated") == []                 # filled only at run time


@pytest.mark.parametrize(("fault", "targets", "affected"), [
    ("eu-containers", ["model-eu", "model-eu-b"], ["llama-eu", "llama-eu-b"]),
    ("tier-b", ["model-eu-b"], ["llama-eu-b"]),
    ("one-container", ["model-us"], []),
    ("eu-region", ["claude-eu", "gpt-eu", "gpt-eu-2"], ["claude-eu", "gpt-eu", "gpt-eu-2"]),
])
def test_what_a_fault_acts_on_and_the_providers_it_affects(scenario, fault, targets, affected):
    assert fault_targets(scenario, _named(scenario, fault)) == targets
    assert affected_providers(scenario, _named(scenario, fault)) == affected


def _backends(scenario: Scenario, tmp_path: Path) -> dict[str, FaultBackend]:
    """The backends a run of this scenario would use, as the engine builds them (nothing is started)."""
    async def build() -> dict[str, FaultBackend]:
        async with aiohttp.ClientSession() as session:
            return Topology(scenario, tmp_path, []).fault_backends(session)  # type: ignore[arg-type]
    return asyncio.run(build())


def _fault_blocks(plan: str) -> dict[str, list[str]]:
    """The plan's `faults:` section, one list of lines per fault."""
    blocks: dict[str, list[str]] = {}
    section = plan.split("\nfaults:\n", 1)[1].split("\ntimeline:\n", 1)[0]
    for line in section.splitlines():
        if not line.startswith("    "):
            blocks[line.strip().split(":", 1)[0]] = []
        blocks[list(blocks)[-1]].append(line.strip())
    return blocks


def test_dry_run_plan_and_backends_resolve_the_same_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/dockerd.sock")  # local: nothing is contacted
    path = tmp_path / "blast.yaml"
    path.write_text(yaml.safe_dump(DATA, sort_keys=False), encoding="utf-8")
    loaded = load_scenario(path)
    plan = dry_run_plan(loaded, allow_remote=False)
    blocks = _fault_blocks(plan)
    starts = dict(re.findall(r"fault (\S+) starts: \S+ \S+ on (.*)", plan))
    backends = _backends(loaded.scenario, tmp_path)
    assert isinstance(backends["docker"], DockerFaultBackend)
    assert set(blocks) == set(starts) == {f.name for f in loaded.scenario.faults}
    for fault in loaded.scenario.faults:
        backend = backends[fault.backend]
        targets = backend.resolve(fault)
        assert targets == fault_targets(loaded.scenario, fault)
        radius = next(line for line in blocks[fault.name] if line.startswith("blast radius:"))
        assert radius.split(" ", 3)[3].split(" (")[0] == (", ".join(targets) or "NONE"), plan
        assert starts[fault.name] == (", ".join(targets) or "nothing"), plan
        # The providers the ledger's fault window records, and the requests the plan says it hits.
        affected = backend.providers(fault, targets)
        assert affected == affected_providers(loaded.scenario, fault)
        hit = [line for line in blocks[fault.name] if line.startswith("requests hit")]
        if not affected:
            assert hit == ["requests hit: those reaching the container (no provider's upstream is its ready_url "
                           "address)"], plan
        else:
            # Each route carries half of the mix (no fault here has a match).
            routes = loaded.scenario.policy.routes
            primary = [r for r, route in routes.items() if route.primary in affected]
            fallback = [r for r, route in routes.items() if r not in primary
                        and any(fb.target in affected for fb in route.fallbacks)]
            expected = ([f"requests hit on their primary: {len(primary) / 2:.0%} of the mix"] if primary else []) + (
                [f"requests hit only when they fall back to it: {len(fallback) / 2:.0%}"] if fallback else [])
            if not expected:
                assert hit == ["requests hit: NONE of the traffic mix (the fault would prove nothing)"], plan
            else:
                assert len(hit) == len(expected), plan
                assert all(line.startswith(e) for line, e in zip(hit, expected, strict=True)), plan


def test_semantic_overlap_check_names_the_providers_the_backends_would_hit(tmp_path):
    data = copy.deepcopy(DATA)
    # Same window: eu-region hits claude-eu, gpt-eu, gpt-eu-2; model-gpt hits gpt-eu, gpt-eu-2, gpt-us.
    data["faults"][2]["at_s"] = 2
    with pytest.raises(InputError) as caught:
        scenario_from_dict(data, "overlap.json")
    (problem,) = caught.value.problems
    assert problem.key == "faults[2].at_s"
    data["faults"][2]["at_s"] = 5
    valid = scenario_from_dict(data, "ok.json")
    backends = _backends(valid, tmp_path)
    shared = set(backends["mock"].resolve(_named(valid, "eu-region"))) & set(
        backends["mock"].resolve(_named(valid, "model-gpt")))
    assert f"both hit provider {', '.join(repr(p) for p in sorted(shared))}" in problem.message
    assert shared == {"gpt-eu", "gpt-eu-2"}

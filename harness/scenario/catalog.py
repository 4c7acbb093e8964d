"""The scenarios in a folder, each loaded (or its error kept), with the registry and gateway config it uses:
what `policy show` and `lint-config` ask ("which drills rely on this approval?", "which drill runs this
config?")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import InputError
from harness.core.model import Scenario
from harness.scenario.loader import load_scenario
from harness.scenario.policy_file import resolve_registry


@dataclass(frozen=True)
class Drill:
    path: Path
    scenario: Scenario | None
    error: str | None  # why it did not load (the rendered InputError), when it did not
    registry: Path | None  # resolved absolute path of the registry it references, if any
    gateway_config: Path | None  # resolved absolute path of gateway.config, if any


def scan(folder: Path) -> list[Drill]:
    """Every *.yaml below `folder`, sorted by path; never raises on a bad file."""
    return [_drill(path) for path in sorted(folder.rglob("*.yaml")) if path.is_file()]


def _drill(path: Path) -> Drill:
    try:
        scenario = load_scenario(path).scenario
    except InputError as exc:
        return Drill(path, None, str(exc), None, None)
    except Exception as exc:  # noqa: BLE001 - one broken file must not hide the others from a catalogue
        return Drill(path, None, f"{path}: cannot load: {exc}", None, None)
    registry = scenario.policy.registry
    config = getattr(scenario.gateway, "config", None)
    return Drill(
        path,
        scenario,
        None,
        _registry_path(registry, path.parent) if registry else None,
        _config_path(config, path.parent) if isinstance(config, str) else None,
    )


def _config_path(config: str, scenario_dir: Path) -> Path:
    """Where the gateway adapters find it (harness.gateways.base.resolve_config): absolute, beside the scenario
    file, else in the working directory; when neither exists, beside the scenario file."""
    written = Path(config)
    if written.is_absolute():
        return written
    for candidate in (scenario_dir / written, Path.cwd() / written):
        if candidate.is_file():
            return candidate.resolve()
    return (scenario_dir / written).resolve()


def _registry_path(written: str, scenario_dir: Path) -> Path:
    """Where the loader found the registry (it loaded, so it exists)."""
    found = resolve_registry(written, scenario_dir)
    return (found or scenario_dir / written).resolve()

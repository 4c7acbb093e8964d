import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
REGISTRY = ROOT / "policy" / "fallback-registry.yaml"
_REGISTRY_REF = re.compile(r"^(\s*file:\s*)(\S*fallback-registry\.yaml)", re.MULTILINE)


def shipped_text(scenario: Path) -> str:
    """A shipped scenario's text for a copy written elsewhere: its registry reference made absolute (it
    is relative to the scenario's own folder)."""
    text = scenario.read_text(encoding="utf-8")
    return _REGISTRY_REF.sub(lambda m: m.group(1) + str((scenario.parent / m.group(2)).resolve()), text)


def shipped_data(scenario: Path) -> dict[str, Any]:
    """A shipped scenario as data, for a copy written elsewhere (see shipped_text)."""
    return yaml.safe_load(shipped_text(scenario))


def harness_cmd(*args: str, timeout: float = 180, cwd: Path = ROOT, env: dict | None = None):
    """Run the real CLI as a user would, in its own process."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


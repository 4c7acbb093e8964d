"""A finished `harness run` of a real-gateway scenario, read back: the summary, the ledger, every file
of the run folder. Shared by the LiteLLM, Portkey and capability suites."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.gateways import portkey
from harness.gateways.base import install_dir

LITELLM = install_dir() / "litellm" / "venv" / "bin" / "litellm"
PORTKEY = install_dir() / "portkey"
INSTALLED = {
    "litellm": LITELLM.exists(),
    "portkey": portkey.installed_version(PORTKEY) == portkey.VERSION and shutil.which("node") is not None,
}
MISSING = {
    "litellm": f"LiteLLM proxy is not installed ({LITELLM} is missing): run `harness setup-gateways litellm` first",
    "portkey": f"Portkey {portkey.VERSION} is not installed in {PORTKEY} (or node is not on PATH): run "
               "`harness setup-gateways portkey` first",
}
needs_litellm = pytest.mark.skipif(not INSTALLED["litellm"], reason=MISSING["litellm"])
needs_portkey = pytest.mark.skipif(not INSTALLED["portkey"], reason=MISSING["portkey"])


def gateway_of(name: str) -> str:
    """The gateway kind a scenario's file name starts with (litellm-..., portkey-...)."""
    return name.split("-", 1)[0]


def installed(*names: str) -> list:
    """The names as parameters, each skipped when its gateway is not installed."""
    return [pytest.param(name, marks=pytest.mark.skipif(not INSTALLED[gateway_of(name)],
                                                         reason=MISSING[gateway_of(name)])) for name in names]


@dataclass
class GatewayRun:
    returncode: int
    output: str
    report: Path

    def __post_init__(self) -> None:
        run_dir = next(self.report.glob("*/summary.json")).parent
        self.summary = json.loads((run_dir / "summary.json").read_text())
        self.events = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines()]
        self.texts = {p.name: p.read_text(errors="replace") for p in run_dir.iterdir() if p.is_file()}
        self.by_id: dict[str, list[dict]] = {}  # request id -> its upstream calls, in time order
        for call in sorted(self.of("upstream"), key=lambda c: c["ts"]):
            self.by_id.setdefault(call["id"], []).append(call)

    def check(self, name: str) -> dict:
        return next(c for c in self.summary["checks"] if c["check"] == name)

    def messages(self, name: str) -> list[str]:
        return [v["message"] for v in self.check(name)["violations"]]

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def calls(self) -> dict[str, list[dict]]:
        """Request id -> its upstream calls, in ledger order."""
        by_id: dict[str, list[dict]] = {}
        for call in self.of("upstream"):
            by_id.setdefault(call["id"], []).append(call)
        return by_id

    def audits(self, event: str) -> list[dict]:
        return [a for a in self.of("audit") if a["raw"].get("event") == event]

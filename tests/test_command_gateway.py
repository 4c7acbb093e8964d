"""Users' own gateways: `kind: command` with placeholders, a body-field served target, a JSONL audit file."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, harness_cmd

SCENARIO = ROOT / "fixtures" / "scenarios" / "command-gateway.yaml"


pytestmark = pytest.mark.slow  # whole runs through a gateway of our own


def _summary(report_dir: Path) -> dict:
    return json.loads(next(report_dir.glob("*/summary.json")).read_text())


def test_command_gateway_is_started_mapped_and_judged(tmp_path):
    result = harness_cmd("run", str(SCENARIO), "--report-dir", str(tmp_path / "r"))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = _summary(tmp_path / "r")
    assert summary["stats"]["served_by"]["claude-eu"] > 20
    logged = next(c for c in summary["checks"] if c["check"] == "logged")
    assert logged["verdict"] == "pass"          # audit read from the gateway's own file, fields mapped
    assert summary["stats"]["audit_events"] == summary["stats"]["served_by"]["claude-eu"]


def test_command_gateway_with_a_foreign_key_is_caught(tmp_path):
    scenario = tmp_path / "command-gateway.yaml"
    text = SCENARIO.read_text().replace('--fallback-key, "{providers.claude-eu.key}"', "--fallback-key, sk-rogue")
    text = text.replace("{scenario_dir}/../gateways", str(ROOT / "fixtures" / "gateways"))
    scenario.write_text(text)
    result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "r"))
    # Its calls with the undeclared key are nobody's evidence: trust_boundary cannot attribute them (unknown,
    # never pass), and the fallbacks they served look served by no provider (logged, response_integrity fail).
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNKNOWN trust_boundary" in result.stdout and "with a credential of no known identity" in result.stdout
    upstream = [json.loads(line) for line in next((tmp_path / "r").glob("*/ledger.jsonl")).read_text().splitlines()
                if '"type":"upstream"' in line]
    rogue = [e for e in upstream if e["provider"] == "claude-eu"]
    assert rogue and all(e["identity"] == "unknown" and e["key_fp"] and e["caller"] == "unknown"
                         and e["id"] is None and e["claimed_id"] for e in rogue)
    assert not any("sk-rogue" in json.dumps(e) for e in upstream)  # a fingerprint, never the credential


def test_gateway_that_dies_at_start_aborts_the_run_as_unknown(tmp_path):
    scenario = tmp_path / "dies.yaml"
    text = SCENARIO.read_text()
    start = text.index("  command:")
    end = text.index("  ready_url:")
    scenario.write_text(text[:start] + '  command: ["{python}", "-c", "import sys; print(\'boom\'); sys.exit(3)"]\n'
                        + text[end:])
    result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "r"))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "exited with code 3" in result.stdout and "boom" in result.stdout
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_url_gateway_already_running_with_fixed_provider_ports(tmp_path):
    p1, p2, gw = _free_port(), _free_port(), _free_port()
    audit = tmp_path / "audit.jsonl"
    gateway = subprocess.Popen(
        [sys.executable, str(ROOT / "fixtures" / "gateways" / "simple_gateway.py"), "--port", str(gw),
         "--primary", f"http://127.0.0.1:{p1}", "--primary-key", "sk-test-svc-eu",
         "--fallback", f"http://127.0.0.1:{p2}", "--fallback-key", "sk-test-svc-eu", "--audit-file", str(audit)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        text = SCENARIO.read_text()
        text = text.replace("data_classes: [public, internal]}", "data_classes: [public, internal], port: PORT}", 2)
        text = text.replace("port: PORT", f"port: {p1}", 1).replace("port: PORT", f"port: {p2}", 1)
        start, end = text.index("  kind: command"), text.index("  ready_url:")
        text = text[:start] + f"  kind: url\n  url: http://127.0.0.1:{gw}\n" + text[end:]
        text = text.replace('path: "{workdir}/audit.jsonl"', f'path: "{audit}"')
        scenario = tmp_path / "url-gateway.yaml"
        scenario.write_text(text)
        result = harness_cmd("run", str(scenario), "--report-dir", str(tmp_path / "r"))
        assert result.returncode == 0, result.stdout + result.stderr
        summary = _summary(tmp_path / "r")
        assert summary["stats"]["served_by"]["claude-eu"] > 20
        assert gateway.poll() is None  # the harness does not own a url gateway: it is left running
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)

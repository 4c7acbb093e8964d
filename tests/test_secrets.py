"""Identity keys never appear in the ledger, reports, logs or error messages: fingerprints only.

Real runs through the CLI with distinctive keys (set through the env references the shipped
scenarios read), including a reference gateway that leaks keys into its audit events
(`key-leak`), one that calls a fallback with another identity's key (`identity-swap`), and
a command gateway that dies at start-up printing its argv. After each run, every file of the
run folder, the fault journal, the temporary folder the run used and the CLI's stdout/stderr
are scanned for each key, its random part, its hex form and its base64 forms (the run's private
folder now lives in the state directory, scanned too). The leak itself
must still be reported, by identity name.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.core.identity import fingerprint
from tests.conftest import ROOT, SCENARIOS, harness_cmd, shipped_text

pytestmark = pytest.mark.slow  # whole runs: the slow tier (README: tests)

COMMAND_SCENARIO = ROOT / "fixtures" / "scenarios" / "command-gateway.yaml"
RUN_TIMEOUT_S = 240


@dataclass(frozen=True)
class Keys:
    eu: str
    us: str

    @property
    def env(self) -> dict[str, str]:
        return {"HARNESS_KEY_SVC_EU": self.eu, "HARNESS_KEY_SVC_US": self.us}


@dataclass
class Run:
    name: str
    proc: subprocess.CompletedProcess
    report_dir: Path
    state_dir: Path
    tmp_dir: Path

    @property
    def run_dir(self) -> Path:
        runs = [p for p in self.report_dir.iterdir() if p.is_dir()]
        assert len(runs) == 1, runs
        return runs[0]

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def events(self, kind: str | None = None) -> list[dict]:
        lines = (self.run_dir / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
        return [e for e in events if kind is None or e["type"] == kind]

    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text(encoding="utf-8"))


# --- what a leak looks like -------------------------------------------------------------------


def encodings(secret: str) -> set[str]:
    """The key, its random part, its hex form, and its base64 forms at every byte alignment.

    A base64 encoder works on 3-byte groups, so the key's bytes land in one of three alignments
    inside any larger encoded buffer (`user:key`, a JSON blob); the core of each alignment is
    the same whatever surrounds it.
    """
    raw = secret.encode()
    found = {secret, secret.rsplit("-", 1)[-1], raw.hex()}
    for skip in range(3):
        chunk = raw[skip:]
        chunk = chunk[: len(chunk) // 3 * 3]
        found |= {base64.b64encode(chunk).decode(), base64.urlsafe_b64encode(chunk).decode()}
    return found


def test_encodings_find_a_key_in_any_base64_buffer():
    key = "sk-SECRET-eu-" + secrets.token_hex(12)
    needles = encodings(key)
    for prefix in (b"", b"u", b"us", b"user:"):
        blob = base64.b64encode(prefix + key.encode() + b"\n").decode()
        assert any(n in blob for n in needles), prefix
    assert not any(n in base64.b64encode(b"sk-SECRET-eu-" + b"0" * 24).decode() for n in needles)


def _files(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        yield f"(path) {path}", str(path).encode()
        if path.is_file():
            data = path.read_bytes()
            yield str(path), data
            if path.suffix == ".gz":
                yield f"{path} (gunzipped)", gzip.decompress(data)


def assert_nowhere(run: Run, keys: Keys) -> list[str]:
    """No form of any key in any artefact of the run; returns what was scanned."""
    blobs: list[tuple[str, bytes]] = [("stdout", run.proc.stdout.encode()), ("stderr", run.proc.stderr.encode())]
    for root in (run.report_dir, run.state_dir, run.tmp_dir):
        blobs += list(_files(root))
    needles = {form: name for name, key in (("svc-eu", keys.eu), ("svc-us", keys.us)) for form in encodings(key)}
    leaks = [f"{where}: {needles[form]} as {form!r} ...{_context(data, form)}..."
             for where, data in blobs for form in needles if form.encode() in data]
    assert not leaks, "identity keys leaked:\n" + "\n".join(leaks)
    return [where for where, _ in blobs]


def _context(data: bytes, form: str) -> str:
    at = data.index(form.encode())
    return data[max(0, at - 80): at + len(form) + 20].decode("utf-8", "replace")


# --- the runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(eu=f"sk-SECRET-eu-{secrets.token_hex(12)}", us=f"sk-SECRET-us-{secrets.token_hex(12)}")


def _with_defects(source: Path, target: Path, defects: str) -> Path:
    text = shipped_text(source)  # written elsewhere: its registry reference made absolute
    old = "gateway: {kind: reference, cooldown_s: 1}"
    assert old in text, source
    target.write_text(text.replace(old, f"gateway: {{kind: reference, cooldown_s: 1, defects: [{defects}]}}"),
                      encoding="utf-8")
    return target


def _command_gateway(target: Path, gateway: str, extra: str = "") -> Path:
    """The command-gateway fixture with its `gateway:` section replaced."""
    text = COMMAND_SCENARIO.read_text(encoding="utf-8")
    start, end = text.index("gateway:"), text.index("policy:")
    target.write_text(text[:start] + gateway + text[end:] + extra, encoding="utf-8")
    return target


def _folders(base: Path) -> tuple[Path, Path, Path]:
    folders = (base / "reports", base / "state", base / "tmp")
    for folder in folders:
        folder.mkdir(parents=True)
    return folders


def _env(keys: Keys, state: Path, tmp: Path) -> dict[str, str]:
    # The fault journal and the run's private temporary folder (configs that hold keys) are
    # kept where this test can scan them once the run is over.
    return {**os.environ, **keys.env, "HARNESS_STATE_DIR": str(state), "TMPDIR": str(tmp), "NO_COLOR": "1"}


def start_runs(specs: dict[str, tuple[Path, list[str]]], keys: Keys, base: Path) -> dict[str, Run]:
    """Start every run at once (they are mostly waiting on their timelines), then collect them."""
    started = {}
    for name, (scenario, extra) in specs.items():
        report, state, tmp = _folders(base / name)
        argv = [sys.executable, "-m", "harness.cli", "run", str(scenario), "--report-dir", str(report), *extra]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=_env(keys, state, tmp))
        started[name] = (proc, argv, report, state, tmp)
    runs = {}
    for name, (proc, argv, report, state, tmp) in started.items():
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        runs[name] = Run(name, subprocess.CompletedProcess(argv, proc.returncode, out, err), report, state, tmp)
    return runs


@pytest.fixture(scope="module")
def defect_runs(keys, tmp_path_factory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("secrets")
    return start_runs({
        # key-leak: the reference gateway copies the key it used into every audit event.
        "key-leak": (_with_defects(SCENARIOS / "tenant-outage.yaml", base / "tenant-outage.yaml", "key-leak"), []),
        # identity-swap: fallback calls go out with svc-us's key; with key-leak that key reaches the audit trail.
        "identity-swap": (_with_defects(SCENARIOS / "regional-outage.yaml", base / "regional-outage.yaml",
                                        "identity-swap, key-leak"), ["--format", "json"]),
    }, keys, base)


def _check(summary: dict, name: str) -> dict:
    return next(c for c in summary["checks"] if c["check"] == name)


def test_key_leak_is_reported_but_the_key_appears_nowhere(defect_runs, keys):
    run = defect_runs["key-leak"]
    assert run.proc.returncode == 1, run.output[-3000:]
    assert "Traceback" not in run.output
    message = "carries a credential of identity svc-eu"
    assert message in run.proc.stdout
    logged = _check(run.summary(), "logged")
    assert logged["verdict"] == "fail" and message in json.dumps(logged)
    assert message in (run.run_dir / "report.html").read_text(encoding="utf-8")
    assert message in (run.run_dir / "junit.xml").read_text(encoding="utf-8")
    audits = run.events("audit")
    assert audits and all(a["leaked_identities"] == ["svc-eu"] for a in audits)
    # The leak is kept as evidence, the key replaced by the name of its identity.
    assert all(a["raw"]["upstream_key"] == "<redacted:svc-eu>" for a in audits)
    scanned = assert_nowhere(run, keys)
    for artefact in ("ledger.jsonl", "summary.json", "junit.xml", "report.html", "timeline.svg", "providers.log",
                     "gateway.log"):
        assert str(run.run_dir / artefact) in scanned, artefact


def test_identity_swap_is_caught_by_fingerprint_and_no_key_is_written(defect_runs, keys):
    run = defect_runs["identity-swap"]
    assert run.proc.returncode == 1, run.output[-3000:]
    summary = json.loads(run.proc.stdout)  # --format json
    assert _check(summary, "trust_boundary")["verdict"] == "fail"
    assert "carries a credential of identity svc-us" in json.dumps(_check(summary, "logged"))
    upstream = run.events("upstream")
    swapped = [e for e in upstream if e["provider"] == "claude-eu"]
    assert swapped and all(e["identity"] == "svc-us" for e in swapped)
    # What the providers keep of a credential: its fingerprint (keyed with the run's own secret, so not
    # recomputable here), one per key, mapped to an identity name.
    us_fps = {e["key_fp"] for e in upstream if e["identity"] == "svc-us"}
    eu_fps = {e["key_fp"] for e in upstream if e["identity"] == "svc-eu"}
    assert {e["key_fp"] for e in swapped} == us_fps and len(us_fps) == len(eu_fps) == 1 and us_fps != eu_fps
    assert {e["key_fp"] for e in upstream if e["provider"] == "gpt-eu"} == eu_fps
    assert not us_fps & {fingerprint(keys.us), "fp-" + hashlib.sha256(keys.us.encode()).hexdigest()[:16]}
    assert all(e["identity"] in ("svc-eu", "svc-us") for e in upstream)
    assert_nowhere(run, keys)


def test_rejudging_a_leaky_ledger_reports_the_leak_without_the_key(defect_runs, keys, tmp_path):
    run = defect_runs["key-leak"]
    checked = harness_cmd("check", str(run.run_dir / "ledger.jsonl"), env=keys.env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "carries a credential of identity svc-eu" in checked.stdout
    rebuilt = harness_cmd("report", str(run.run_dir / "ledger.jsonl"), "--out-dir", str(tmp_path / "rebuilt"),
                          env=keys.env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    for proc, report_dir in ((checked, run.report_dir), (rebuilt, tmp_path / "rebuilt")):
        assert_nowhere(Run("rejudge", proc, report_dir, run.state_dir, run.tmp_dir), keys)


# --- start-up failures -------------------------------------------------------------------------

DIES = '''gateway:
  kind: command
  command: ["{python}", "-c", "import os, sys; print('gateway argv:', sys.argv, os.environ['GW_KEY'], flush=True);
            print('fatal: cannot reach', sys.argv[2], file=sys.stderr); sys.exit(4)",
            --primary-key, "{providers.gpt-eu.key}"]
  env: {GW_KEY: "{providers.claude-eu.key}"}
'''


def _single_run(name: str, scenario: Path, keys: Keys, base: Path) -> Run:
    return start_runs({name: (scenario, [])}, keys, base)[name]


def test_gateway_that_dies_printing_its_argv_does_not_show_the_key(keys, tmp_path):
    run = _single_run("dies", _command_gateway(tmp_path / "dies.yaml", DIES), keys, tmp_path)
    assert run.proc.returncode == 3, run.output[-3000:]
    assert "exited with code 4" in run.proc.stdout and "Traceback" not in run.output
    # The gateway did print its argv: the message and the log show it with the key replaced.
    assert "gateway argv:" in run.proc.stdout and "<redacted:svc-eu>" in run.proc.stdout
    log = (run.run_dir / "gateway.log").read_text(encoding="utf-8")
    assert "gateway argv:" in log and "fatal: cannot reach <redacted:svc-eu>" in log
    end = run.events("run_end")[-1]
    assert end["status"] == "aborted" and "exited with code 4" in end["reason"]
    assert_nowhere(run, keys)


NOT_ON_PATH = '''gateway:
  kind: command
  command: ["/nonexistent/gateway-{providers.gpt-eu.key}", --port, "{port}"]
'''
READY_URL = '''gateway:
  kind: command
  command: ["{python}", "-c", "import time; time.sleep(60)"]
  ready_url: "{gateway.url}/health?api_key={providers.gpt-eu.key}"
  ready_timeout_s: 1
'''


@pytest.mark.parametrize("gateway", [NOT_ON_PATH, READY_URL], ids=["command-not-on-path", "ready-url-with-key"])
def test_start_up_error_message_does_not_show_the_key(keys, tmp_path, gateway):
    run = _single_run("startup", _command_gateway(tmp_path / "startup.yaml", gateway), keys, tmp_path)
    assert run.proc.returncode == 3, run.output[-3000:]
    assert "run aborted" in run.proc.stdout and "Traceback" not in run.output
    assert_nowhere(run, keys)


ECHO_GATEWAY = '''"""A gateway that repeats credentials in what it answers: its errors, a header, the admin reply."""
import sys

from aiohttp import web

port, key = int(sys.argv[1]), sys.argv[2]


async def chat(request):
    return web.json_response({"error": {"message": f"upstream refused key {key}"}}, status=502,
                             headers={"x-served-by": f"deployment-{key}"})


async def admin(request):
    return web.Response(status=401, text=f"bad admin token {request.headers.get('authorization')}")


async def health(request):
    return web.json_response({"ok": True})


app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
app.router.add_post("/admin/fallback", admin)
app.router.add_get("/health", health)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
'''


def test_gateway_echoing_a_key_back_is_redacted(keys, tmp_path):
    script = tmp_path / "echo_gateway.py"
    script.write_text(ECHO_GATEWAY, encoding="utf-8")
    gateway = f'''gateway:
  kind: command
  command: ["{{python}}", "{script}", "{{port}}", "{{providers.gpt-eu.key}}"]
  kill_switch: {{url: "{{gateway.url}}/admin/fallback", headers: {{authorization: "Bearer {{providers.gpt-eu.key}}"}},
                off_body: {{enabled: false}}, on_body: {{enabled: true}}}}
'''
    scenario = _command_gateway(tmp_path / "echo.yaml", gateway,
                                'timeline:\n  - {at_s: 1, action: kill_switch, state: "off"}\n'
                                '  - {at_s: 2, action: kill_switch, state: "on"}\n'
                                # It answers 502 to everything: its baseline never holds, and the drill
                                # must go on anyway to send the kill switch its key.
                                'baseline: {required: false}\n')
    text = scenario.read_text(encoding="utf-8").replace("duration_s: 10", "duration_s: 4")
    scenario.write_text(text.replace("at_s: 2\n    duration_s: 4", "at_s: 1\n    duration_s: 2"), encoding="utf-8")
    run = _single_run("echo", scenario, keys, tmp_path)
    assert run.proc.returncode in (1, 3), run.output[-3000:]
    assert run.events("request") and run.events("kill_switch")
    assert_nowhere(run, keys)

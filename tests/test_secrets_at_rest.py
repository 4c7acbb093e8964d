"""No secret at rest: the run's working folder, and credential fingerprints keyed per run.

Fingerprints are HMAC-SHA256 with a key of the run that is never written anywhere: a ledger does not
let anyone confirm a guessed key (sha256(key)[:16] appears nowhere), and two runs of one scenario name
one key differently. The working folder lives in the state directory, mode 0700, holds no providers
config (that comes on the providers' stdin) and is gone once the run ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.identity import fingerprint, new_fingerprint_key
from tests.conftest import ROOT, SCENARIOS

RUN_TIMEOUT_S = 180


def test_a_fingerprint_is_keyed():
    one, two = new_fingerprint_key(), new_fingerprint_key()
    key = "sk-test-" + secrets.token_hex(8)
    assert fingerprint(key, one) == fingerprint(key, one) != fingerprint(key, two)
    assert fingerprint(key, one) != fingerprint("sk-other", one)
    assert fingerprint(key, one).startswith("fp-") and len(fingerprint(key, one)) == 19
    unkeyed = "fp-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    assert unkeyed not in (fingerprint(key), fingerprint(key, one), fingerprint(key, two))


def _start(base: Path, key: str) -> tuple[subprocess.Popen[str], Path, Path]:
    state, reports, tmp = base / "state", base / "reports", base / "tmp"
    for folder in (state, reports, tmp):
        folder.mkdir(parents=True)
    env = {**os.environ, "HARNESS_KEY_SVC_EU": key, "HARNESS_STATE_DIR": str(state), "TMPDIR": str(tmp),
           "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(SCENARIOS / "tenant-outage.yaml"),
                             "--report-dir", str(reports)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, state, reports


def _working_folder_while_running(proc: subprocess.Popen[str], state: Path, reports: Path) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        ledgers = list(reports.glob("*/ledger.jsonl"))
        if ledgers and '"type":"request"' in ledgers[0].read_text(encoding="utf-8"):
            folders = list((state / "runs").iterdir())
            assert len(folders) == 1
            return folders[0]
        time.sleep(0.1)
    raise AssertionError("the run sent no request")


@pytest.mark.slow
def test_two_runs_name_one_key_differently_and_leave_no_folder(tmp_path):
    key = f"sk-SECRET-eu-{secrets.token_hex(12)}"
    runs = [_start(tmp_path / name, key) for name in ("one", "two")]
    folder = _working_folder_while_running(*runs[0])
    assert folder.stat().st_mode & 0o777 == 0o700
    # The providers' config (keys, signing secrets, the fingerprint key) came through a pipe.
    assert not list(folder.glob("providers*")), sorted(p.name for p in folder.iterdir())
    owner = json.loads((folder / "owner.json").read_text())
    assert owner["pid"] == runs[0][0].pid and {g["name"] for g in owner["groups"]} >= {"mock providers"}
    fingerprints = []
    for proc, state, reports in runs:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
        assert not list((state / "runs").iterdir()), "the working folder is left behind"
        ledger = next(reports.glob("*/ledger.jsonl")).read_text(encoding="utf-8")
        unkeyed = hashlib.sha256(key.encode()).hexdigest()
        assert unkeyed[:16] not in ledger and key not in ledger
        calls = [json.loads(line) for line in ledger.splitlines() if '"type":"upstream"' in line]
        assert calls and {c["identity"] for c in calls} == {"svc-eu"}
        fingerprints.append({c["key_fp"] for c in calls})
    assert len(fingerprints[0]) == len(fingerprints[1]) == 1   # one key, one name within a run
    assert fingerprints[0] != fingerprints[1]                  # ... and another in the next run

"""The example CI definitions (examples/ci/) run as written: their commands, not the CI service.

A workspace laid out as the examples expect (policy/, gateway/, drills/) is built in a temporary
folder; each job's commands (all but the package install, done here already) run in bash with the
job's environment, in order, as the CI service would. The pull-request job must pass on a governed
configuration and fail (exit 1) with SARIF still written on a flagged one; the nightly job runs the
committed drills in pytest with JUnit and Allure results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

EXAMPLES = ROOT / "examples" / "ci"
REGISTRY = ROOT / "policy" / "fallback-registry.yaml"
GOVERNED = ROOT / "fixtures" / "gateways" / "litellm" / "governed.yaml"
FLAGGED = ROOT / "fixtures" / "gateways" / "litellm" / "defaults.yaml"


def _github() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "github-actions.yml").read_text(encoding="utf-8"))


def _gitlab() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text(encoding="utf-8"))


def _commands(steps: list[str]) -> list[str]:
    """A job's commands, without the install (the package is installed here)."""
    return [c for c in steps if not c.lstrip().startswith("pip install")]


def github_job(name: str) -> tuple[list[str], dict[str, str]]:
    workflow = _github()
    steps = [s["run"] for s in workflow["jobs"][name]["steps"] if "run" in s]
    return _commands(steps), {k: str(v) for k, v in workflow["env"].items()}


def gitlab_job(name: str) -> tuple[list[str], dict[str, str]]:
    pipeline = _gitlab()
    return _commands(pipeline[name]["script"]), {k: str(v) for k, v in pipeline["variables"].items()}


def workspace(base: Path, gateway_config: Path) -> Path:
    """A repository as the examples expect it: the registry, the gateway config, the committed drills."""
    repo = base / "repo"
    (repo / "policy").mkdir(parents=True)
    (repo / "gateway").mkdir()
    shutil.copy(REGISTRY, repo / "policy" / "fallback-registry.yaml")
    shutil.copy(gateway_config, repo / "gateway" / "litellm.yaml")
    made = harness(repo, "scaffold", "--registry", "policy/fallback-registry.yaml", "--out", "drills")
    assert made.returncode == 0, made.stderr
    return repo


def harness(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=_env({}),
                          capture_output=True, text=True, timeout=120)


def _env(job_env: dict[str, str]) -> dict[str, str]:
    # `harness` and `python` resolve to this interpreter's, as after `pip install` on the runner.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **job_env, "PATH": path, "NO_COLOR": "1"}


def run_job(repo: Path, commands: list[str], job_env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Each command in bash -e, in order, stopping at the first that fails (as a CI job does)."""
    done = []
    for command in commands:
        result = subprocess.run(["bash", "-ec", command], cwd=repo, env=_env(job_env), capture_output=True,
                                text=True, timeout=900)
        done.append(result)
        if result.returncode:
            break
    return done


def test_the_examples_are_well_formed():
    workflow = _github()
    assert set(workflow["jobs"]) == {"lint-config", "drills"}
    upload = [s for s in workflow["jobs"]["lint-config"]["steps"] if "upload-sarif" in s.get("uses", "")]
    assert upload and upload[0]["if"] == "always()" and upload[0]["with"]["sarif_file"] == "lint-config.sarif"
    assert workflow["jobs"]["lint-config"]["permissions"]["security-events"] == "write"
    pipeline = _gitlab()
    assert pipeline["drills"]["artifacts"]["reports"]["junit"] == "reports/junit.xml"
    for commands in (github_job("lint-config")[0], gitlab_job("lint-config")[0]):
        assert any("--format sarif --output lint-config.sarif" in c for c in commands)


@pytest.mark.parametrize("job", [github_job, gitlab_job], ids=["github", "gitlab"])
def test_pull_request_job_passes_a_governed_config_and_keeps_its_sarif(tmp_path, job):
    repo = workspace(tmp_path, GOVERNED)
    commands, env = job("lint-config")
    if job is gitlab_job:
        commands += _commands(_gitlab()["drills-up-to-date"]["script"])
    results = run_job(repo, commands, env)
    assert all(r.returncode == 0 for r in results), [(r.args, r.returncode, r.stdout[-800:], r.stderr[-800:])
                                                    for r in results]
    sarif = json.loads((repo / "lint-config.sarif").read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"] == []
    assert not [p for p in repo.iterdir() if p.name.startswith("tmp.")], "the fresh scaffold was left behind"


def test_pull_request_job_fails_on_a_finding_and_writes_it_as_sarif(tmp_path):
    repo = workspace(tmp_path, FLAGGED)
    commands, env = github_job("lint-config")
    results = run_job(repo, commands, env)
    assert results[-1].returncode == 1, [(r.args, r.returncode, r.stderr[-800:]) for r in results]
    sarif = json.loads((repo / "lint-config.sarif").read_text(encoding="utf-8"))
    findings = sarif["runs"][0]["results"]
    assert findings and all(f["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "gateway/litellm.yaml"
                            for f in findings)


def test_stale_drills_fail_the_pull_request(tmp_path):
    repo = workspace(tmp_path, GOVERNED)
    stale = sorted((repo / "drills").glob("*.yaml"))[0]
    stale.write_text(stale.read_text(encoding="utf-8").replace("seed:", "seed: 99\n# was:", 1), encoding="utf-8")
    commands, env = github_job("lint-config")
    results = run_job(repo, commands, env)
    assert results[-1].returncode != 0 and stale.name in results[-1].stdout


@pytest.mark.slow
def test_nightly_job_runs_the_drills_with_junit_and_allure(tmp_path):
    repo = workspace(tmp_path, GOVERNED)
    # The commands as written, on two of the committed drills (the whole matrix is the nightly's business).
    for drill in sorted((repo / "drills").glob("*.yaml"))[2:]:
        drill.unlink()
    commands, env = github_job("drills")
    results = run_job(repo, commands, env)
    assert all(r.returncode == 0 for r in results), [(r.returncode, r.stdout[-2000:], r.stderr[-800:])
                                                    for r in results]
    junit = (repo / "reports" / "junit.xml").read_text(encoding="utf-8")
    assert 'failures="0"' in junit and 'errors="0"' in junit
    assert list((repo / "reports" / "allure").glob("*-result.json"))
    assert list((repo / "reports" / "runs").glob("*/ledger.jsonl"))

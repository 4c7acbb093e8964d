"""The layer table of DESIGN.md is enforced: a wrong-way import fails the suite."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    found = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert found, "import-linter is not installed: pip install -e '.[test]'"
    return found


def test_import_contracts_hold():
    result = subprocess.run([_lint_imports()], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and "0 broken" in result.stdout


def test_a_wrong_way_import_is_caught(tmp_path):
    # Copy the package, make a check import the engine, and the contract must break.
    shutil.copytree(ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "harness" / "checks" / "wrong_way.py"
    bad.write_text("from harness.engine import run  # noqa\n")
    result = subprocess.run([_lint_imports()], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "harness.checks.wrong_way -> harness.engine" in result.stdout


def test_every_module_imports():
    # A module nothing imports any more still has to work (or go): import each one, in a fresh process.
    code = (
        "import importlib, pkgutil, harness\n"
        "skip = {'harness.locustfile', 'harness.loadgen.users', 'harness.gateways.litellm_callback'}\n"
        "bad = []\n"
        "for m in pkgutil.walk_packages(harness.__path__, 'harness.'):\n"
        "    if m.name in skip: continue\n"
        "    try: importlib.import_module(m.name)\n"
        "    except Exception as exc: bad.append(f'{m.name}: {exc!r}')\n"
        "print('\\n'.join(bad) or 'ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stdout + result.stderr

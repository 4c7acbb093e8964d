"""Crashes never read as verdicts (issue 12, findings 2 and 3), through the real CLI in its own process.

Exit 1 means "a violation was found" and nothing else: a malformed ledger or an output folder that
cannot be written is bad input (2, one message naming the file, the line and the key, no traceback);
the harness failing itself is 4, one line, with the traceback only under --debug.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SCENARIOS, harness_cmd

FIXTURE = ROOT / "fixtures" / "ledgers" / "regional-outage__correct.jsonl.gz"


def _lines() -> list[bytes]:
    return gzip.decompress(FIXTURE.read_bytes()).splitlines(keepends=True)


def _with_request_changed(tmp_path: Path, change: Any) -> tuple[Path, int]:
    """The fixture with its first request line replaced by `change(event)` (an event, or raw bytes)."""
    out, number = [], 0
    for i, raw in enumerate(_lines(), start=1):
        if not number and json.loads(raw)["type"] == "request":
            number = i
            new = change(json.loads(raw))
            raw = new if isinstance(new, bytes) else (json.dumps(new) + "\n").encode()
        out.append(raw)
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"".join(out))
    return path, number


def _set(key: str, value: Any) -> Any:
    def change(event: dict[str, Any]) -> dict[str, Any]:
        event[key] = value
        return event
    return change


def _assert_input_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.mark.parametrize(("key", "value", "said"), [
    ("ts", "x", "ts: must be a number, not a string"),
    ("ts", None, "ts: must be a number, not null"),
    ("type", 5, "type: must be an event type string"),
    ("ts", float("nan"), "ts: must be a finite number, not nan"),
    ("ts", float("inf"), "ts: must be a finite number, not inf"),
    ("status", "200", "status: must be an integer or null"),
    ("id", 7, "id: must be a string"),
])
def test_a_mangled_field_is_an_input_error_naming_file_line_column_and_key(tmp_path, key, value, said):
    # Before: "ts": "x" and null crashed with exit 1 and a traceback; "type": 5 was dropped and the run
    # PASSed; a NaN ts PASSed; an infinite one FAILed.
    ledger, number = _with_request_changed(tmp_path, _set(key, value))
    result = harness_cmd("check", str(ledger))
    _assert_input_error(result, f"{ledger}:{number}:", said, "hint:")
    column = int(result.stderr.split(f"{ledger}:{number}:", 1)[1].split(":", 1)[0])
    assert column > 1  # the value's own column, not the line's start


def test_a_line_that_says_its_type_twice_is_an_input_error(tmp_path):
    # It begins like a request (the join's shortcut), then a second "type" key: never judged as anything.
    raw = next(line for line in _lines() if line.startswith(b'{"type":"request"'))
    ledger, number = _with_request_changed(tmp_path, lambda _e: raw[:-2] + b',"type":"note"}\n')
    _assert_input_error(harness_cmd("check", str(ledger)), f"{ledger}:{number}:", "type: written twice")


def test_a_line_nested_100k_deep_is_an_input_error(tmp_path):
    ledger, number = _with_request_changed(tmp_path, lambda _e: b"[" * 100_000 + b"]" * 100_000 + b"\n")
    _assert_input_error(harness_cmd("check", str(ledger)), f"{ledger}:{number}:", "nested too deeply")


def test_a_corrupt_deflate_stream_is_an_input_error(tmp_path):
    data = bytearray(FIXTURE.read_bytes())
    data[20:28] = b"\xff" * 8  # inside the first deflate block: zlib.error, not an OSError
    ledger = tmp_path / "ledger.jsonl.gz"
    ledger.write_bytes(bytes(data))
    _assert_input_error(harness_cmd("check", str(ledger)), str(ledger), "cannot read ledger")


def test_a_device_is_not_read_as_a_ledger():
    # /dev/zero never ends: read as one endless line it would exhaust memory.
    _assert_input_error(harness_cmd("check", "/dev/zero", timeout=60), "/dev/zero", "not a regular file")


def test_two_ledgers_concatenated_are_an_input_error(tmp_path):
    lines = _lines()
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_bytes(b"".join(lines + lines))
    _assert_input_error(harness_cmd("check", str(ledger)), f"{ledger}:{len(lines) + 1}:",
                        f"a second run_start at line {len(lines) + 1}", "two ledgers concatenated?")


def test_a_second_run_start_before_any_run_end_is_an_input_error(tmp_path):
    lines = _lines()
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_bytes(b"".join(lines[:100] + lines))  # a killed run's ledger, then a whole one
    _assert_input_error(harness_cmd("report", str(ledger)), f"{ledger}:101:", "a second run_start at line 101")
    assert not (tmp_path / "report.html").exists()


def test_a_torn_last_line_is_still_tolerated(tmp_path):
    data = gzip.decompress(FIXTURE.read_bytes())
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_bytes(data[:-20])  # the writer killed mid-line: run_end is lost, the rest stands
    result = harness_cmd("check", str(ledger))
    assert result.returncode == 3, result.stderr  # no run_end: nothing proven, never a pass
    assert "Traceback" not in result.stderr


def test_a_label_of_the_wrong_shape_names_its_line(tmp_path):
    # The join does not need `tenant`, but checks count by it: a list there makes a check raise, and
    # the harness then finds the line it choked on instead of reporting a crash of its own.
    ledger, number = _with_request_changed(tmp_path, _set("tenant", ["acme"]))
    result = harness_cmd("check", str(ledger))
    assert result.returncode in (0, 2), result.stderr  # judged as is, or refused with the line: never 1 or 4
    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        assert f"{ledger}:{number}:" in result.stderr and "tenant" in result.stderr


# --- output folders, checked before anything starts ---------------------------------------------

SCENARIO = str(SCENARIOS / "regional-outage.yaml")


def test_report_dir_that_is_a_file_is_refused_before_anything_starts(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for target in (afile, afile / "sub"):
        result = harness_cmd("run", SCENARIO, "--report-dir", str(target))
        _assert_input_error(result, f"--report-dir {target}:", "hint:")
        assert "starting" not in result.stdout + result.stderr


@pytest.mark.parametrize("target", ["/proc/harness-x", "/sys/harness-x"])
def test_report_dir_on_a_pseudo_filesystem_is_refused(target):
    _assert_input_error(harness_cmd("run", SCENARIO, "--report-dir", target), f"--report-dir {target}:",
                        "pseudo-filesystem")
    _assert_input_error(harness_cmd("selftest", "--report-dir", target, "--defect", "none"),
                        f"--report-dir {target}:")


def test_out_dir_of_report_that_cannot_be_written_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_bytes(b"".join(_lines()))
    _assert_input_error(harness_cmd("report", str(ledger), "--out-dir", str(afile)), f"--out-dir {afile}:")


def test_report_dir_in_a_read_only_folder_is_refused():
    """A real probe, not mode bits: as root (who ignores them) the command runs as nobody."""
    folder = Path(tempfile.mkdtemp(prefix="harness-ro-"))
    try:
        folder.chmod(0o755)
        ledger = folder / "ledger.jsonl"
        ledger.write_bytes(b"".join(_lines()))
        ledger.chmod(0o644)
        readonly = folder / "ro"
        readonly.mkdir(mode=0o555)
        readonly.chmod(0o555)
        command = [sys.executable, "-m", "harness.cli", "report", str(ledger), "--out-dir", str(readonly / "out")]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("root ignores read-only folders and setpriv is missing")
            nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
            can = subprocess.run([*nobody, sys.executable, "-c", "import harness.cli"], cwd=ROOT, capture_output=True,
                                 timeout=60)
            if can.returncode != 0:
                pytest.skip("nobody cannot run the harness from this checkout")
            command = [*nobody, *command]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "HOME": str(folder)})
        _assert_input_error(result, f"--out-dir {readonly / 'out'}:", "cannot write there")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the harness itself failing -----------------------------------------------------------------

_CRASH = """
import sys
import harness.engine.judge as judge
def boom(*_args, **_kwargs):
    raise RecursionError("maximum recursion depth exceeded\\x1b[2J while judging")
judge.judge_ledger = boom
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _crash(*args: str) -> subprocess.CompletedProcess[str]:
    ledger = str(ROOT / "fixtures" / "ledgers" / "regional-outage__correct.jsonl.gz")
    return subprocess.run([sys.executable, "-c", _CRASH, *args, "check", ledger], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_the_harness_failing_itself_exits_4_with_one_line():
    result = _crash()
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: the harness itself failed: RecursionError: maximum recursion depth")
    assert "--debug" in lines[0] and "\x1b" not in result.stderr  # its text escaped: \\x1b, not ESC


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where):
    result = _crash("--debug") if where == "before" else subprocess.run(
        [sys.executable, "-c", _CRASH, "check",
         str(ROOT / "fixtures" / "ledgers" / "regional-outage__correct.jsonl.gz"), "--debug"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 4, result.stderr
    assert "Traceback (most recent call last)" in result.stderr and "boom" in result.stderr


class _TrafficThatBreaks:
    """The driver, except that waiting for it fails once the fault is in force: the harness failing
    itself mid-run (a bug, a MemoryError), not anything the gateway did."""

    def __init__(self, inner: Any, after_s: float) -> None:
        self.inner, self.after_s = inner, after_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def wait(self) -> None:
        import asyncio

        try:
            await asyncio.wait_for(self.inner.wait(), self.after_s)
        except TimeoutError:
            raise RuntimeError("the harness broke") from None


@pytest.mark.slow
def test_a_run_the_harness_itself_breaks_heals_and_never_ends_completed(tmp_path):
    from harness.engine.run import execute
    from harness.scenario import load_scenario
    from harness.traffic.driver import DriverSource

    loaded = load_scenario(SCENARIOS / "regional-outage.yaml")
    scenario = loaded.scenario
    source = _TrafficThatBreaks(DriverSource(scenario.traffic, scenario.seed), after_s=4.5)  # the fault: 3-9 s
    with pytest.raises(RuntimeError, match="the harness broke"):
        execute(loaded, source, report_root=tmp_path, log=lambda _m: None)  # type: ignore[arg-type]
    [ledger] = tmp_path.glob("*/ledger.jsonl")
    events = [json.loads(line) for line in ledger.read_text().splitlines()]
    [end] = [e for e in events if e["type"] == "run_end"]
    assert end["status"] == "aborted" and "the harness itself failed: RuntimeError" in end["reason"], end
    assert [e["type"] for e in events].count("fault_start") == [e["type"] for e in events].count("fault_end") == 1

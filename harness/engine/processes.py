"""Child processes of a run: started in their own session, logs redacted, always stopped."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from harness.core.errors import HarnessError

STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1


class Redactor:
    """Replaces every identity key with a marker, so no log of ours ever holds a secret."""

    def __init__(self, secrets: dict[str, str]) -> None:
        # Longest first: a key that contains another must be replaced whole.
        self.pairs = sorted(((k, f"<redacted:{name}>") for name, k in secrets.items() if k), key=lambda p: -len(p[0]))

    def __call__(self, text: str) -> str:
        for key, marker in self.pairs:
            if key in text:
                text = text.replace(key, marker)
        return text


class ChildProcess:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path, redact: Redactor) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.redact = redact
        self._log = log_path.open("a", encoding="utf-8")
        self._pumps: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, name: str, argv: list[str], log_path: Path, redact: Redactor,
                    env: dict[str, str] | None = None, cwd: str | None = None,
                    stdin_data: bytes | None = None) -> ChildProcess:
        """Start `argv` in a session (and process group) of its own, so stopping it stops whatever it
        started too. `stdin_data` is written to its stdin, which is then closed: how secrets reach the
        harness's own servers without a file or a command line."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL if stdin_data is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise HarnessError(f"cannot start {name} ({argv[0]}): {exc.strerror}\n"
                               f"  hint: check that the command exists and is executable") from None
        if stdin_data is not None and proc.stdin is not None:
            try:
                proc.stdin.write(stdin_data)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # it died at once: its ready line (missing) and its log say why
            finally:
                proc.stdin.close()
        return cls(name, proc, log_path, redact)

    async def ready_line(self, timeout_s: float) -> dict[str, Any]:
        """The JSON line a harness server prints once it listens; then stdout goes to the log."""
        assert self.proc.stdout is not None
        self._pump_stderr()
        try:
            while True:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
                if not raw:
                    raise HarnessError(f"{self.name} exited before it was ready; see {self.log_path}\n"
                                       f"{self.tail()}")
                text = raw.decode(errors="replace").strip()
                if text.startswith("{"):
                    try:
                        message = json.loads(text)
                    except ValueError:
                        message = None
                    if isinstance(message, dict) and message.get("ready"):
                        self._pump_stdout()
                        return message
                self.write_log(text)
        except TimeoutError:
            raise HarnessError(f"{self.name} was not ready within {timeout_s:.0f} s; see {self.log_path}") from None

    def pump_all(self) -> None:
        self._pump_stderr()
        self._pump_stdout()

    def _pump_stdout(self) -> None:
        if self.proc.stdout is not None:
            self._pumps.append(asyncio.create_task(self._pump(self.proc.stdout)))

    def _pump_stderr(self) -> None:
        if self.proc.stderr is not None and not any(t.get_name() == "stderr" for t in self._pumps):
            task = asyncio.create_task(self._pump(self.proc.stderr))
            task.set_name("stderr")
            self._pumps.append(task)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            self.write_log(raw.decode(errors="replace").rstrip("\n"))

    def write_log(self, text: str) -> None:
        if not self._log.closed:
            self._log.write(self.redact(text) + "\n")
            self._log.flush()

    def tail(self, lines: int = 15) -> str:
        try:
            content = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("  | " + line for line in content[-lines:])

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL it if it lingers."""
        if self.proc.returncode is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                _signal_group(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        else:
            _signal_group(self.proc.pid, signal.SIGKILL)  # children it left behind
        for task in self._pumps:
            try:
                await asyncio.wait_for(task, 1.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._log.close()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the harness dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: children are still stopped by the normal path


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def wait_until_answers(url: str, timeout_s: float, still_starting: Callable[[], Awaitable[None]]) -> bool:
    """Poll `url` until it answers 2xx (True) or `timeout_s` passed (False). Between polls
    `still_starting` raises HarnessError when what should answer has died, with what it left behind."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while loop.time() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status < 300:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await still_starting()
            await asyncio.sleep(0.2)
    return False

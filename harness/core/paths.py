"""Output folders checked before anything starts: a run that cannot write its reports must not run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.core.errors import HarnessError

# Kernel views, not storage: a folder there is never where reports belong, even when a write succeeds.
_PSEUDO = ("/proc", "/sys", "/dev")


def require_writable_dir(path: Path, option: str) -> Path:
    """Create `path` (and its parents) if needed and prove it takes a file: a real probe (create and
    remove a temporary file), never mode bits (root ignores them; read-only mounts do not show in them).
    Anything else is a HarnessError `<option> <path>: <why>` with a hint (exit 2)."""
    hint = f"\n  hint: pass {option} a folder you can write to (it is created if missing)"
    resolved = Path(os.path.abspath(path))
    if any(resolved == Path(p) or Path(p) in resolved.parents for p in _PSEUDO):
        raise HarnessError(f"{option} {path}: on a pseudo-filesystem ({resolved.parts[1]} is the kernel's), "
                           f"not storage{hint}")
    if resolved.exists() and not resolved.is_dir():
        raise HarnessError(f"{option} {path}: is a file, not a folder{hint}")
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".harness-probe-", dir=resolved)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if isinstance(exc, (NotADirectoryError, FileExistsError)):
            why = "a part of it is a file, not a folder"
        raise HarnessError(f"{option} {path}: cannot write there ({why}){hint}") from None
    return path

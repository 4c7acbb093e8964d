"""Environment references in string values: `${VAR}`, `${VAR:-default}`, and `$$` for a dollar.

Resolved after parsing, so a reference always yields a string (`rate_per_s: ${RATE}` is
a string and fails validation rather than silently changing type with the environment).
Only the fields meant to carry a credential or a deployment's address expand (EXPANDED): a
reference anywhere else is an error, so a value from the environment cannot leak into a name,
a header value the gateway echoes, or an error message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harness.scenario.yaml_nodes import Finding, KeyPath

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The key paths where `${VAR}` expands ("*": any key or list index). Everything here may hold a
# credential, so the ledger's copy of the scenario (loader.redacted_dump) keeps the reference, not the value.
EXPANDED: tuple[tuple[str, ...], ...] = (
    ("identities", "*", "key"),
    ("identities", "*", "secret"),
    ("providers", "*", "upstream"),
    ("gateway", "client_key"),
    ("gateway", "url"),
    ("gateway", "command", "*"),
    ("gateway", "env", "*"),
    ("gateway", "request_headers", "*"),
    ("gateway", "kill_switch", "headers", "*"),
    ("gateway", "kill_switch", "request_headers", "*"),
    ("containers", "*", "environment", "*"),
)
EXPANDED_TEXT = ", ".join(".".join(pattern) for pattern in EXPANDED)


def expands_at(path: KeyPath) -> bool:
    """Whether `${VAR}` expands in the value at `path`."""
    return any(len(pattern) == len(path) and all(p in ("*", str(k)) for p, k in zip(pattern, path, strict=True))
               for pattern in EXPANDED)


class EnvRefError(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def resolve(text: str, env: Mapping[str, str] | None) -> str:
    """`text` with every reference replaced; raises EnvRefError on the first bad one. With env None
    (a field that does not expand) any reference is an error; `$$` still stands for one dollar."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt != "{":
            # A lone dollar (`costs $5`) is literal text, as a shell would leave it.
            out.append("$")
            i += 1
            continue
        end = text.find("}", i + 2)
        if end < 0:
            raise EnvRefError(
                f"unterminated environment reference {text[i:]!r}",
                "write ${VAR} or ${VAR:-default}; use $$ for a literal dollar sign",
            )
        if env is None:
            raise EnvRefError(
                f"environment reference {text[i : end + 1]} in a field that does not expand it",
                f"${{...}} is expanded only in: {EXPANDED_TEXT}; write $${{...}} for the literal text",
            )
        out.append(_expand(text[i + 2 : end], env))
        i = end + 1
    return "".join(out)


def _expand(body: str, env: Mapping[str, str]) -> str:
    name, sep, default = body.partition(":-")
    if not _NAME.fullmatch(name):
        raise EnvRefError(
            f"invalid environment variable name {name!r} in ${{{body}}}",
            "names are letters, digits and _ (not starting with a digit): ${VAR} or ${VAR:-default}",
        )
    value = env.get(name)
    # As in a shell, `:-` also replaces a variable that is set but empty.
    if sep and not value:
        return default
    if value is not None:
        return value
    raise EnvRefError(
        f"environment variable {name} is not set",
        f"export {name}=... before running, or give a default: ${{{name}:-default}}",
    )


def resolve_tree(
    data: Any, env: Mapping[str, str], path: KeyPath = ()
) -> tuple[Any, list[Finding], dict[KeyPath, tuple[str, str]]]:
    """A copy of `data` with references resolved in the string values of the EXPANDED fields (never in
    keys), the problems found, and for each value that came from the environment its path -> (the text as
    written, the expanded value), so that neither the ledger nor an error message shows the value."""
    findings: list[Finding] = []
    expanded: dict[KeyPath, tuple[str, str]] = {}

    def walk(value: Any, at: KeyPath) -> Any:
        if isinstance(value, str):
            allowed = expands_at(at)
            try:
                resolved = resolve(value, env if allowed else None)
            except EnvRefError as exc:
                findings.append(Finding(at, exc.message, exc.hint))
                return value
            if allowed and "${" in value:
                expanded[at] = (value, resolved)
            return resolved
        if isinstance(value, dict):
            return {key: walk(item, at + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, at + (index,)) for index, item in enumerate(value)]
        return value

    return walk(data, path), findings, expanded

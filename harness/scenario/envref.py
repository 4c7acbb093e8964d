"""Environment references in string values: `${VAR}`, `${VAR:-default}`, and `$$` for a dollar.

Resolved after parsing, so a reference always yields a string (`rate_per_s: ${RATE}` is
a string and fails validation rather than silently changing type with the environment).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harness.scenario.yaml_nodes import Finding, KeyPath

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvRefError(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def resolve(text: str, env: Mapping[str, str]) -> str:
    """`text` with every reference replaced; raises EnvRefError on the first bad one."""
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


def resolve_tree(data: Any, env: Mapping[str, str], path: KeyPath = ()) -> tuple[Any, list[Finding]]:
    """A copy of `data` with references resolved in every string value (never in keys)."""
    findings: list[Finding] = []

    def walk(value: Any, at: KeyPath) -> Any:
        if isinstance(value, str):
            try:
                return resolve(value, env)
            except EnvRefError as exc:
                findings.append(Finding(at, exc.message, exc.hint))
                return value
        if isinstance(value, dict):
            return {key: walk(item, at + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, at + (index,)) for index, item in enumerate(value)]
        return value

    return walk(data, path), findings

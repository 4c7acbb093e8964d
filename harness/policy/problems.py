"""Validation errors of the policy models, as located findings a platform engineer can act on.

The scenario loader has its own, richer translation (unions, gateway kinds); a registry holds only policy
models, so missing keys, unknown keys, wrong types and dates cover what goes wrong in one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from harness.policy.yaml_nodes import Finding, KeyPath

DATE_HINT = "write the date as YYYY-MM-DD, e.g. 2027-05-04"


def findings(exc: ValidationError, base: KeyPath, data: Any, model: type[BaseModel] | None = None) -> list[Finding]:
    """`exc` (from validating `data`, which sits at `base` in the file) as findings by key path."""
    out: list[Finding] = []
    for err in exc.errors(include_url=False):
        path, node = list(base), data
        loc = err["loc"]
        for index, part in enumerate(loc):
            if isinstance(node, dict) and part in node:
                node = node[part]
                path.append(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                path.append(part)
            elif err["type"] == "missing" and index == len(loc) - 1:
                path.append(part)
        finding = _finding(tuple(path), err, model)
        if finding not in out:
            out.append(finding)
    return out


def _finding(path: KeyPath, err: dict[str, Any], model: type[BaseModel] | None) -> Finding:
    kind, value = err["type"], err["input"]
    name = str(path[-1]) if path else ""
    if kind == "missing":
        return Finding(path, f"missing required key '{name}'", f"add {name}: ...", at="parent")
    if kind == "extra_forbidden":
        hint = "allowed keys: " + ", ".join(model.model_fields) if model is not None and len(path) == 1 else None
        return Finding(path, f"unknown key '{name}'", hint, at="key")
    message = str(err["msg"]).replace("Input should be", "expected")
    message = f"{message[:1].lower()}{message[1:]}, got {value!r}"
    hint = DATE_HINT if kind.startswith("date") else None
    return Finding(path, message, hint)

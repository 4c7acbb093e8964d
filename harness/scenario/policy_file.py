"""`policy: {file: ...}`: a scenario that references the registry gets, before validation, the policy merged from
it (harness.policy.merge); every problem names the scenario's line, and the registry's where it is involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.errors import InputError, InputProblem
from harness.policy.merge import Merge
from harness.policy.registry import Registry, load_registry
from harness.policy.yaml_nodes import Finding, KeyPath, NodePos, locate


def references_registry(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("policy"), dict) and "file" in data["policy"]


def resolve_registry(written: str, scenario_dir: Path) -> Path | None:
    """Where a registry reference points: relative to the scenario file's folder (or absolute), never
    anywhere else: a drill must not silently judge against some other registry found by chance. None when
    it is not a file."""
    path = Path(written)
    candidate = path if path.is_absolute() else scenario_dir / path
    return candidate if candidate.is_file() else None


def merged(data: dict[str, Any], file: str, positions: dict[KeyPath, NodePos]) -> tuple[dict[str, Any],
                                                                                        list[Finding]]:
    """`data` with its policy merged from the registry it references; raises InputError when the registry cannot
    be read (its own problems, after the scenario's line that references it)."""
    written = data["policy"]
    reference = written["file"]
    if not isinstance(reference, str) or not reference:
        return data, [Finding(("policy", "file"), "expected the path of a registry file",
                              "e.g. policy: {file: ../policy/fallback-registry.yaml}")]
    registry = _registry(reference, file, positions)
    providers = data.get("providers")
    traffic = data.get("traffic")
    mix = traffic.get("mix") if isinstance(traffic, dict) else None
    routes = [e["route"] for e in mix or [] if isinstance(e, dict) and isinstance(e.get("route"), str)] \
        if isinstance(mix, list) else []

    def where(path: KeyPath) -> str:
        mark = locate(Finding(path, "", at="key"), positions)
        return f"{file}:{mark.line}:{mark.column}" if mark else file

    merge = Merge(registry, set(providers) if isinstance(providers, dict) else set(), list(dict.fromkeys(routes)),
                  where)
    policy = merge.policy(written, reference)
    return {**data, "policy": policy}, merge.findings


def _registry(reference: str, file: str, positions: dict[KeyPath, NodePos]) -> Registry:
    mark = locate(Finding(("policy", "file"), ""), positions)
    line, column = (mark.line, mark.column) if mark else (None, None)
    found = resolve_registry(reference, Path(file).parent)
    if found is None:
        raise InputError([InputProblem(file, line, column, "policy.file", f"the registry {reference} does not "
                                       f"exist (looked for {Path(file).parent / reference})",
                                       "the path is relative to the scenario file, e.g. "
                                       "policy: {file: ../policy/fallback-registry.yaml}")])
    try:
        return load_registry(found)
    except InputError as exc:
        head = InputProblem(file, line, column, "policy.file", f"the registry {reference} has errors (below)")
        raise InputError([head, *exc.problems]) from None

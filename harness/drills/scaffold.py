"""`harness scaffold`: write a folder of runnable drills covering the registry's outage matrix.

For each route variant (route, primary): a primary outage for all traffic and for each region, tenant and
request class the registry names for the route, crossed with each failure family (5xx, 429 + Retry-After,
timeout, reset, content-policy refusal, stream cut), plus a kill-switch drill and a failback drill
(harness.drills.matrix), and for a route variant with a weaker target a capability drill
(harness.drills.capability). Output is deterministic: stable sorted file names, the same bytes for the same
registry and --seed, so the folder can be committed and re-generated in review.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from harness.core.errors import EXIT_INPUT, EXIT_PASS
from harness.drills import matrix
from harness.drills.drill import Gateway, Source, render
from harness.drills.matrix import Cell
from harness.policy.registry import Registry, load_registry

INDEX = "README.md"


def _raw(value: Any) -> dict[str, Any]:
    """A catalogue entry as a plain mapping (the registry may hold models or mappings)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_defaults=True)
    return dict(value)


def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()


def gateway_kind(config: Path) -> str:
    """litellm (a proxy YAML with model_list), portkey (a JSON routing config); anything else is an error."""
    if not config.is_file():
        raise ValueError(f"{config}: no such file\n  hint: --gateway-config names a LiteLLM proxy YAML or a "
                         "Portkey config JSON")
    text = config.read_text(encoding="utf-8", errors="replace")
    if config.suffix == ".json" or text.lstrip().startswith("{"):
        return "portkey"
    if "model_list" in text:
        return "litellm"
    raise ValueError(f"{config}:1:1: cannot tell which gateway this configuration is for\n  hint: a LiteLLM "
                     "proxy config has `model_list`; a Portkey config is JSON; leave --gateway-config out to "
                     "drill the reference gateway")


def source_of(registry: Registry, out: Path, gateway_config: Path | None) -> Source:
    gateway = Gateway()
    if gateway_config is not None:
        gateway = Gateway(kind=gateway_kind(gateway_config), config=_relative(gateway_config, out))
    return Source(registry_file=_relative(registry.path, out), registry_name=registry.name,
                  routes={name: list(variants) for name, variants in registry.routes.items()},
                  sections=dict(registry.policy_sections),
                  providers={k: _raw(v) for k, v in registry.providers.items()},
                  identities={k: _raw(v) for k, v in registry.identities.items()}, gateway=gateway)


def _unknown(wanted: list[str] | None, known: list[str], what: str) -> str | None:
    missing = [w for w in wanted or [] if w not in known]
    if not missing:
        return None
    return f"unknown {what} {', '.join(missing)}\n  hint: known {what}s: {', '.join(known) or 'none'}"


def index_text(src: Source, chosen: list[Cell]) -> str:
    lines = [f"# Scaffolded drills: registry `{src.registry_name}`", "",
             f"Written by `harness scaffold` from `{src.registry_file}`. Re-generate rather than edit: the same "
             "registry and `--seed` give the same files, byte for byte.", "",
             "Run them all: `harness run *.yaml`; one: `harness run FILE`.", "",
             "| file | route | primary | scope | effect | what it drills |", "|---|---|---|---|---|---|"]
    lines += [f"| [{c.file_name}]({c.file_name}) | {c.route} | {c.primary} | {c.scope.slug} | {c.family} | "
              f"{matrix.FAMILY_TEXT[c.family]} |" for c in chosen]
    return "\n".join(lines) + "\n"


def scaffold(src: Source, out: Path, routes: list[str] | None, families: list[str] | None, limit: int | None,
             seed: int, force: bool) -> tuple[int, list[Cell]]:
    """Write the drills and the index; (exit code, cells written). Bad input raises ValueError."""
    problem = _unknown(routes, sorted(src.routes), "route") or _unknown(families, list(matrix.FAMILIES), "effect")
    if problem:
        raise ValueError(problem)
    if limit is not None and limit < 1:
        raise ValueError(f"--max {limit}: must be at least 1")
    chosen = matrix.select(matrix.cells(src.routes, src.closed, src.providers), routes, families, limit)
    if not chosen:
        raise ValueError("nothing to write: no cell of the matrix matches --routes/--effects")
    names = [c.file_name for c in chosen] + [INDEX]
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise ValueError(f"{out}: would overwrite {shown}\n  hint: pass --force to overwrite, or choose another "
                         "--out")
    out.mkdir(parents=True, exist_ok=True)
    for cell in chosen:
        (out / cell.file_name).write_text(render(src, cell, matrix.seed_of(seed, cell.file_name)), encoding="utf-8")
    (out / INDEX).write_text(index_text(src, chosen), encoding="utf-8")
    return EXIT_PASS, chosen


def command(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry)  # InputError (file:line:col) is the CLI's to report, exit 2
    out: Path = args.out
    if out.exists() and not out.is_dir():
        print(f"{out}: not a folder\n  hint: --out names the folder to write the drills into")
        return EXIT_INPUT
    try:
        src = source_of(registry, out, args.gateway_config)
        code, chosen = scaffold(src, out, args.routes, args.effects, args.max, args.seed, args.force)
    except ValueError as e:
        print(f"harness scaffold: {e}")
        return EXIT_INPUT
    print(f"wrote {len(chosen)} drill(s) and {INDEX} to {out}")
    return code

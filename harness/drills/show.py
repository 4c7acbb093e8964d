"""`harness policy show`: the registry as a table (route, primary, target, equivalence, who is accountable,
the approval and its expiry) with the drills that exercise each approved path, and the routes no drill does.

A drill exercises an approved path (route: primary -> target) when it is a scenario that references the same
registry file, its merged policy keeps that path, and one of its faults hits the primary: only then can a run
send traffic down it. Starts nothing, reads only files.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from harness.core.approval import approval_status
from harness.core.blast_radius import affected_providers
from harness.core.errors import EXIT_PASS
from harness.core.model import Scenario
from harness.core.safe_text import printable
from harness.policy.registry import Registry, load_registry
from harness.scenario.catalog import Drill, scan

STATE_LABELS = {"valid": "valid", "review_overdue": "review overdue", "expired": "expired",
                "incomplete": "incomplete"}


@dataclass(frozen=True)
class Row:
    route: str
    primary: str
    target: str
    equivalence: str
    accountable: str | None
    mechanism_owner: str | None
    approved_by: str
    approval_ref: str
    approved_on: str | None
    review_by: str | None
    expires: str | None
    state: str          # valid / review_overdue / expired / incomplete
    detail: str         # "expired on 2026-01-31"
    where: str          # registry file:line:col of the approval
    drilled_by: list[str]


def drills_of(drills: list[Drill], registry: Path) -> list[tuple[str, Scenario]]:
    """(shown path, scenario) of each loaded scenario that references this registry file."""
    target = registry.resolve()
    return [(_shown(d.path), d.scenario) for d in drills if d.scenario is not None and d.registry == target]


def drilled_paths(scenario: Scenario) -> set[tuple[str, str, str | None]]:
    """(route, primary, target) the scenario can send traffic down: paths of its merged policy whose primary
    a fault hits; (route, primary, None) marks the variant itself as drilled."""
    hit = {provider for fault in scenario.faults for provider in affected_providers(scenario, fault)}
    out: set[tuple[str, str, str | None]] = set()
    for name, route in scenario.policy.routes.items():
        if route.primary in hit:
            out.add((name, route.primary, None))
            out.update((name, route.primary, t.target) for t in route.fallbacks)
    return out


def build(registry: Registry, drills: list[tuple[str, Scenario]], as_of: date) -> tuple[list[Row], list[str]]:
    """The rows, in registry order, and the variants ("route: primary") no drill exercises."""
    paths = {shown: drilled_paths(scenario) for shown, scenario in drills}
    rows = []
    for entry in registry.entries():
        t = entry.target
        status = approval_status(t, as_of, governed=True)
        rows.append(Row(entry.route, entry.primary, t.target, t.equivalence, t.accountable, t.mechanism_owner,
                        t.approved_by, t.approval_ref, _day(t.approved_on), _day(t.review_by), _day(t.expires),
                        status.state, status.detail, entry.where,
                        sorted(s for s, drilled in paths.items() if (entry.route, entry.primary, t.target) in drilled)))
    undrilled = [f"{route}: {variant.primary}" for route, variants in registry.routes.items() for variant in variants
                 if not any((route, variant.primary, None) in drilled for drilled in paths.values())]
    return rows, undrilled


def command(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry)  # InputError: file:line:col, exit 2 (the CLI prints it)
    as_of: date = args.as_of or datetime.now(UTC).date()
    folder: Path = args.scenarios_dir
    scanned = scan(folder) if folder.is_dir() else []
    if not folder.is_dir():
        print(printable(f"note: no scenarios folder {folder}: no route counts as drilled (see --scenarios-dir)",
                        one_line=True), file=sys.stderr)
    broken = [d for d in scanned if d.scenario is None]
    rows, undrilled = build(registry, drills_of(scanned, args.registry), as_of)
    if args.format == "json":
        print(json.dumps({"registry": registry.shown, "name": registry.name, "as_of": as_of.isoformat(),
                          "rows": [asdict(r) for r in rows], "undrilled": undrilled,
                          "unreadable_scenarios": [_shown(d.path) for d in broken]}, indent=2))
        return EXIT_PASS
    print(printable(f"registry {registry.name} ({registry.shown}), approvals as of {as_of.isoformat()}", True))
    print(render_table(rows))
    print(printable(f"routes no scenario drills: {', '.join(undrilled) if undrilled else 'none'}", True))
    if broken:
        print(printable(f"note: {len(broken)} scenario(s) in {folder} do not load and were not counted: "
                        f"{', '.join(_shown(d.path) for d in broken)} (see `harness validate`)", True))
    return EXIT_PASS


HEADERS = ("route", "primary", "target", "equivalence", "accountable", "approval", "expiry", "drilled by")


def cells(row: Row) -> tuple[str, ...]:
    approval = " ".join(x for x in (row.approved_by, row.approval_ref, row.approved_on and f"on {row.approved_on}")
                        if x)
    dates = ", ".join(x for x in (row.expires and f"expires {row.expires}", row.review_by and
                                  f"review by {row.review_by}") if x)
    expiry = f"{STATE_LABELS[row.state]} ({dates})" if dates else STATE_LABELS[row.state]
    if row.state == "incomplete":
        expiry = row.detail
    return (row.route, row.primary, row.target, row.equivalence, row.accountable or "-", approval, expiry,
            _drills(row.drilled_by))


SHOWN_DRILLS = 2  # a table cell stays readable; --format json lists every drill


def _drills(paths: list[str]) -> str:
    """'N: first, second, +M more' by scenario file name (the paths are in the JSON)."""
    if not paths:
        return "-"
    names = [Path(p).stem for p in paths]
    more = f", +{len(names) - SHOWN_DRILLS} more" if len(names) > SHOWN_DRILLS else ""
    return f"{len(names)}: {', '.join(names[:SHOWN_DRILLS])}{more}"


def render_table(rows: list[Row]) -> str:
    """A plain table, columns padded to their widest cell; every cell one printable line."""
    table = [HEADERS, *(tuple(printable(c, one_line=True) for c in cells(r)) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table)


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


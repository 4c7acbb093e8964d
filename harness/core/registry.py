"""The check registry: a check is one module that declares everything about itself.

A check module decorates its accumulator with `@check(...)`: its name, what it evidences, its severity,
its framework mapping and its description live there and nowhere else. Everything else is derived
from the registry: the scenario model's list of names (and the JSON Schema's enum), `list-checks`, the
Allure severity, the report's framework table. Adding a check is adding one module to
`harness/checks/` (or, outside the package, to a module named by an entry point in the
`fallback_harness.checks` group).

Modules are discovered when the registry is first asked, not imported by this module: core imports
nothing of the project, and the scenario layer can validate check names without importing the checks.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from harness.core.errors import HarnessError
from harness.core.frameworks import EVIDENCES, FRAMEWORKS, SEVERITIES

if TYPE_CHECKING:  # the model imports this module: the scenario type is for annotations only
    from harness.core.model import Scenario

CHECK_PACKAGE = "harness.checks"
ENTRY_POINT_GROUP = "fallback_harness.checks"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

T = TypeVar("T", bound=type)
# Whether a check has anything to judge in a scenario (`checks: all` runs only those it applies to).
Applies = Callable[["Scenario"], bool]


class RegistryError(HarnessError):
    """A check module declares itself wrongly (exit 2: the installation, not the run, is at fault)."""


@dataclass(frozen=True)
class CheckSpec:
    """Everything about one check, as its module declares it."""

    name: str
    description: str            # one line: what a pass proves
    evidences: tuple[str, ...]  # keys of core.frameworks.EVIDENCES
    severity: str               # one of core.frameworks.SEVERITIES (Allure's)
    frameworks: Mapping[str, tuple[str, ...]]  # framework name -> its named parts this check evidences
    accumulator: type           # the harness.ledger.feed.Accumulator subclass that judges it
    order: int                  # where it is listed: the most critical first
    module: str = field(default="")
    # None: it applies to every scenario. A check that judges what only some scenarios declare
    # (capabilities, vendor fallback) would be UNKNOWN everywhere else: `checks: all` leaves it out there.
    applies: Applies | None = None

    def applies_to(self, scenario: Scenario) -> bool:
        return self.applies is None or self.applies(scenario)


_REGISTRY: dict[str, CheckSpec] = {}
_state = {"discovered": False}


def check(*, name: str, description: str, evidences: tuple[str, ...], severity: str,
          frameworks: Mapping[str, tuple[str, ...]], order: int = 1000,
          applies: Applies | None = None) -> Callable[[T], T]:
    """Register the decorated accumulator class as check `name`. `applies(scenario)`: whether `checks: all`
    includes it for that scenario (default: always); a scenario that names it runs it regardless."""

    def register(cls: T) -> T:
        spec = CheckSpec(name, description.strip(), tuple(evidences), severity,
                         {k: tuple(v) for k, v in frameworks.items()}, cls, order, cls.__module__, applies)
        problems = _problems(spec)
        if problems:
            raise RegistryError(f"check {name!r} ({cls.__module__}): " + "; ".join(problems))
        known = _REGISTRY.get(name)
        if known is not None and known.module != spec.module:
            raise RegistryError(f"check {name!r} is declared twice: in {known.module} and in {spec.module}\n"
                                "  hint: give each check its own name")
        _REGISTRY[name] = spec
        cls.name = name  # type: ignore[attr-defined]  # the accumulator knows the result it produces
        return cls

    return register


def _problems(spec: CheckSpec) -> list[str]:
    out = []
    if not _NAME.match(spec.name):
        out.append("a check name is lower-case letters, digits and '_', starting with a letter")
    if not spec.description or "\n" in spec.description:
        out.append("give a one-line description of what a pass proves")
    unknown = [e for e in spec.evidences if e not in EVIDENCES]
    if unknown or not spec.evidences:
        out.append(f"evidences must be some of {', '.join(EVIDENCES)}" + (f" (unknown: {', '.join(unknown)})"
                                                                           if unknown else ""))
    if spec.severity not in SEVERITIES:
        out.append(f"severity must be one of {', '.join(SEVERITIES)}, not {spec.severity!r}")
    strange = [f for f in spec.frameworks if f not in FRAMEWORKS]
    if strange:
        out.append(f"unknown framework(s) {', '.join(strange)}; known: {', '.join(FRAMEWORKS)}")
    return out


def _discover() -> None:
    """Import every module of the checks package, then the entry points' modules (they register)."""
    if _state["discovered"]:
        return
    _state["discovered"] = True  # first: a check module importing the model re-enters here
    try:
        package = importlib.import_module(CHECK_PACKAGE)
        for info in pkgutil.iter_modules(package.__path__, CHECK_PACKAGE + "."):
            importlib.import_module(info.name)
        for point in entry_points(group=ENTRY_POINT_GROUP):
            point.load()
    except RegistryError:
        _state["discovered"] = False
        raise
    except Exception as exc:  # an import error in a check module: say which, not a traceback
        _state["discovered"] = False
        raise RegistryError(f"a check module failed to import: {type(exc).__name__}: {exc}\n"
                            "  hint: fix or remove that module") from exc


def checks() -> dict[str, CheckSpec]:
    """Every registered check, in report order (their declared order, then name)."""
    _discover()
    return {s.name: s for s in sorted(_REGISTRY.values(), key=lambda s: (s.order, s.name))}


def check_names() -> tuple[str, ...]:
    return tuple(checks())


def applicable_check_names(scenario: Scenario) -> tuple[str, ...]:
    """What `checks: all` means for `scenario`: every check that applies to it, in report order."""
    return tuple(name for name, s in checks().items() if s.applies_to(scenario))


def spec(name: str) -> CheckSpec:
    found = checks().get(name)
    if found is None:
        raise RegistryError(f"unknown check {name!r}; known: {', '.join(check_names())}")
    return found


def describe() -> dict[str, Any]:
    """The registry as data (for `list-checks --format json` and reports)."""
    return {name: {"description": s.description, "evidences": list(s.evidences), "severity": s.severity,
                   "frameworks": {k: list(v) for k, v in s.frameworks.items()}, "module": s.module,
                   "applies": _applies_text(s)}
            for name, s in checks().items()}


def _applies_text(spec: CheckSpec) -> str:
    """When `checks: all` runs the check, in the words of its `applies` docstring's first line."""
    if spec.applies is None:
        return "always"
    doc = (spec.applies.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else "when it applies"

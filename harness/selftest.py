"""The harness tests itself: every reference-gateway defect must be caught by its check,
and the correct gateway by none, on the shipped scenarios."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.verdict import Verdict
from harness.engine.run import run_scenario
from harness.reporting import Reports
from harness.scenario import LoadedScenario, load_scenario

# defect -> (shipped scenario that exercises it, the check that must catch it)
DEFECT_CASES: dict[str, tuple[str, str]] = {
    "unapproved-target": ("regional-outage.yaml", "approved_targets"),
    "cross-region": ("regional-outage.yaml", "trust_boundary"),
    "identity-swap": ("regional-outage.yaml", "trust_boundary"),
    "extra-tools": ("regional-outage.yaml", "trust_boundary"),
    "reroute-sensitive": ("fail-closed-class.yaml", "fail_closed"),
    "fallback-on-any-error": ("content-policy-refusal.yaml", "trigger_conditions"),
    "no-audit": ("regional-outage.yaml", "logged"),
    "wrong-audit-target": ("tenant-outage.yaml", "logged"),
    "sticky-fallback": ("regional-outage.yaml", "reversible"),
    "retry-storm": ("rate-limit-storm.yaml", "attempt_budget"),
    "ignore-kill-switch": ("kill-switch-drill.yaml", "reversible"),
    "truncate-stream": ("regional-outage.yaml", "response_integrity"),
    "key-leak": ("tenant-outage.yaml", "logged"),
    # A long conversation sent to the 8k fallback during the outage.
    "capability-blind": ("context-window.yaml", "capability_fit"),
    # A conversation too long for the primary shopped to the 8k fallback (trigger_conditions fails too).
    "context-overflow-reroute": ("context-window.yaml", "capability_fit"),
    # JSON requests answered in text by the fallback deployment declared equivalent.
    "drops-response-format": ("structured-output.yaml", "equivalence"),
}


@dataclass(frozen=True)
class SelftestRow:
    scenario: str
    defect: str | None           # None: the correct gateway
    expected: str                # "all pass" or the check that must fail
    verdict: str                 # overall verdict of the run
    failing: list[str]           # checks that failed
    ok: bool
    run_dir: str


def _with_defect(loaded: LoadedScenario, defect: str | None) -> LoadedScenario:
    gateway = loaded.scenario.gateway.model_copy(update={"defects": [defect] if defect else []})
    scenario = loaded.scenario.model_copy(update={"gateway": gateway})
    return LoadedScenario(scenario=scenario, path=loaded.path, sha256=loaded.sha256, source=loaded.source)


def _run_case(path: str, defect: str | None, report_root: str) -> SelftestRow:
    source = load_scenario(path)
    outcome = run_scenario(_with_defect(source, defect), report_root, handlers=[Reports()], log=lambda _m: None)
    failing = [r.check for r in outcome.judgement.results if r.verdict is Verdict.FAIL]
    if defect is None:
        expected, ok = "all pass", outcome.verdict is Verdict.PASS
    else:
        expected = DEFECT_CASES[defect][1]
        ok = expected in failing
    return SelftestRow(Path(path).name, defect, expected, outcome.verdict.value, failing, ok, str(outcome.run_dir))


def selftest(scenarios_dir: Path, report_root: Path, defects: list[str] | None = None, jobs: int = 4,
             log: Callable[[str], None] = print) -> list[SelftestRow]:
    """Run the matrix, `jobs` runs at a time (each in its own process: a run owns its signals)."""
    reference = {p.name: p for p in sorted(scenarios_dir.glob("*.yaml"))
                 if load_scenario(p).scenario.gateway.kind == "reference"}
    wanted = defects if defects is not None else list(DEFECT_CASES)
    cases: list[tuple[str, str | None]] = [(name, None) for name in reference if defects is None]
    cases += [(DEFECT_CASES[d][0], d) for d in wanted]
    missing = sorted({name for name, _ in cases if name not in reference})
    if missing:
        raise HarnessError(f"selftest needs {', '.join(missing)} in {scenarios_dir}\n"
                           "  hint: run it from the repository root or pass --scenarios-dir")
    rows: list[SelftestRow] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context) as pool:
        futures = [pool.submit(_run_case, str(reference[name]), defect, str(report_root)) for name, defect in cases]
        for future in futures:
            row = future.result()
            log(f"{'ok ' if row.ok else 'BAD'} {row.scenario:<28} {row.defect or 'correct gateway':<24} "
                f"expected {row.expected:<20} verdict {row.verdict:<7} failing {', '.join(row.failing) or '-'}")
            rows.append(row)
    return rows

"""The streaming judge: the same checks, fed from the ledger file in bounded memory.

Two passes over the file (harness.ledger.stream and harness.ledger.join): the global events first,
then requests joined with their calls, audits and the moments nothing earlier can still come.
Memory follows the requests in flight and the checks' compact state, not the length of the run.
"""

from __future__ import annotations

from harness.checks import accumulators, judge_results, selected
from harness.checks.feed import Feeder, RunFrame
from harness.core.model import Scenario
from harness.core.verdict import CheckResult
from harness.ledger.bounds import Bounds, Disorder
from harness.ledger.join import join_ledger
from harness.ledger.stream import Frame

HELD_SCALES = (1.0, 4.0)  # after the prompt join: held with the scenario's bounds, then four times wider


def bounds_for(scenario: Scenario) -> Bounds:
    return Bounds.for_run(scenario.traffic.timeout_s, scenario.policy.logging.within_s)


def stream_checks(scenario: Scenario, frame: Frame, names: list[str] | None = None,
                  bounds: Bounds | None = None) -> list[CheckResult]:
    """Judge the ledger `frame` was read from, in one join. Raises Disorder when the ledger breaks the
    join's bounds."""
    wanted = selected(scenario, names)
    bounds = bounds or bounds_for(scenario)
    run = RunFrame(scenario, frame.t0, frame.windows, frame.kill_switch, frame.kill_switch_events, bounds)
    feeder = Feeder(scenario, accumulators(run, wanted))
    final = frame.final(join_ledger(frame.path, feeder, bounds))
    end = RunFrame(scenario, final.t0, final.windows, final.kill_switch, final.kill_switch_events, bounds)
    return judge_results(feeder.finish(end), feeder.requests, final.run_end)


def judge_streaming(scenario: Scenario, frame: Frame, names: list[str] | None = None) -> tuple[list[CheckResult], str]:
    """Stream the ledger, prompt join first, held joins if it is out of order; returns the results and
    the join that judged it. Raises Disorder if none could (then judge it in memory)."""
    base = bounds_for(scenario)
    attempts = [("prompt", base)] + [(f"held x{scale:g}", base.held(scale)) for scale in HELD_SCALES]
    for index, (mode, bounds) in enumerate(attempts):
        try:
            return stream_checks(scenario, frame, names, bounds), mode
        except Disorder:
            if index == len(attempts) - 1:
                raise
    raise AssertionError("unreachable")

"""summary.json: the run's verdict, each check's verdict and evidence, and its statistics.

Built from the judged run and figures fed in the same streamed pass as the checks (never from the
whole history in memory), so `harness check` on any ledger size stays in flat memory.
"""

from __future__ import annotations

import shlex
from collections import Counter
from typing import Any

from harness.ledger.feed import Accumulator, Event, Plain, Record, RunFrame, Totals
from harness.ledger.outcome import JudgedRun
from harness.reporting.frameworks import framework_mapping
from harness.reporting.picture import answered_by

SUMMARY_VERSION = 1


class RunStats(Accumulator):
    """Counts of the whole run: requests by outcome and by the provider that really served them (through
    a vendor's own fallback: the provider that answered, as the timeline shows it), upstream calls (and
    those no request id names), audit events."""

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        # Only a provider that declares a vendor fallback answers as another: elsewhere skip the look.
        self.vendor = any(p.vendor_fallback is not None for p in frame.scenario.providers.values())
        self.by: dict[tuple[Any, str], int] = {}  # (outcome, served by): one count per request, split at the end
        self.upstream = self.uncorrelated = self.audits = 0

    def request(self, rec: Record) -> None:
        served = rec.served  # the last call that answered ok: ground truth
        if self.vendor and served is not None:
            served = answered_by(rec.calls) or served
        key = (rec.request["outcome"], served or "none")
        by = self.by
        by[key] = by.get(key, 0) + 1

    @property
    def outcomes(self) -> Counter[str]:
        """Requests by outcome, in the order the outcomes first came."""
        found: Counter[str] = Counter()
        for (outcome, _), n in self.by.items():
            found[outcome] += n
        return found

    @property
    def served(self) -> Counter[str]:
        """Requests by the provider that served them ("none"), in the order they first came."""
        found: Counter[str] = Counter()
        for (_, served), n in self.by.items():
            found[served] += n
        return found

    def plain(self, batch: list[Plain]) -> None:
        """`request` and `calls` for requests whose one call answered ok (so it served them)."""
        by, vendor = self.by, self.vendor
        for request, call, _ in batch:
            served = call["provider"]
            if vendor:  # answered_by, for the one call
                rerouted = call.get("vendor_reroute")
                if rerouted:
                    served = str(rerouted)
            key = (request["outcome"], served or "none")
            by[key] = by.get(key, 0) + 1
        self.upstream += len(batch)

    def calls(self, calls: list[Event], owner: Event | None, rank: int) -> None:
        self.upstream += len(calls)
        if owner is None and not calls[0].get("id"):
            self.uncorrelated += len(calls)

    def audit(self, audit: Event) -> None:
        self.audits += 1

    def finish(self, frame: RunFrame, totals: Totals) -> dict[str, Any]:
        return {
            "requests": totals.requests,
            "outcomes": dict(self.outcomes),
            "served_by": dict(self.served),
            "upstream_calls": self.upstream,
            "uncorrelated_upstream_calls": self.uncorrelated,
            "audit_events": self.audits,
            "fault_windows": [
                {"fault": w.name, "start_s": frame.rel(w.start), "end_s": frame.rel(w.end),
                 "targets": list(w.targets), "healed": w.healed}
                for w in frame.windows
            ],
            "kill_switch_windows": [{"off_s": frame.rel(k.start), "on_s": frame.rel(k.end)} for k in frame.kill_switch],
        }


def reproduce_commands(run_start: dict[str, Any], ledger: str) -> dict[str, str]:
    """How to run the same scenario again (the run's own command, with its seed) and re-judge it."""
    path, seed = shlex.quote(str(run_start.get("scenario_path"))), run_start.get("seed")
    load = run_start.get("load")
    if run_start.get("mode") == "load" and isinstance(load, dict):
        run = (f"harness load {path} --users {load.get('users')} --spawn-rate {load.get('spawn_rate'):g} "
               f"--run-time {load.get('run_time_s'):g} --processes {load.get('processes')} "
               f"--user-rate {load.get('user_rate'):g} --seed {seed}")
    else:
        run = f"harness run {path} --seed {seed}"
    return {"run": run, "check": f"harness check {shlex.quote(ledger)}"}


def build_summary(run: JudgedRun, stats: dict[str, Any], transitions: list[dict[str, Any]] | None = None,
                  load_phases: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's summary, from the judged run and its figures (`transitions` needs the policy: present
    when the scenario is known, which it always is for a run or a ledger that carries it)."""
    start = run.run_start
    end = run.run_end or {"status": "killed", "reason": "the ledger has no run_end: the harness was killed"}
    summary: dict[str, Any] = {
        "summary_version": SUMMARY_VERSION,
        "run_id": start.get("run_id"),
        "scenario": {
            "name": start.get("scenario_name"),
            "path": start.get("scenario_path"),
            "sha256": start.get("scenario_sha256"),
            "seed": start.get("seed"),
        },
        "harness_version": start.get("harness_version"),
        "mode": run.mode,
        "status": end.get("status"),
        "status_reason": end.get("reason"),
        "verdict": run.verdict.value,
        "checks": [r.to_dict() for r in run.results],
        "stats": {**stats, "duration_s": round(run.t_last - run.frame.t0, 2)},
        "ledger": str(run.ledger),
        "judged": run.how,
        "reproduce": reproduce_commands(start, str(run.ledger)),
        "frameworks": framework_mapping(run.results),
    }
    if transitions is not None:
        summary["transitions"] = transitions
    if run.mode == "load":
        options = start.get("load") if isinstance(start.get("load"), dict) else {}
        observations = end.get("observations")
        summary["stats"]["observations"] = observations  # ledger vs locust: both counts and the difference
        summary["load"] = {**options, "observations": observations or {}, "locust": end.get("locust"),
                           "phases": load_phases or {}}
    if run.wall_time_s is not None:
        summary["wall_time_s"] = run.wall_time_s
    return summary

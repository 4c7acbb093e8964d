"""The streaming judge gives exactly what the in-memory (History) judge gives, on every ledger.

Recorded ledgers, seeded random runs written the way several processes interleave their lines
(calls before and after their request, audits early, late and very late, writers out of order,
orphans, faults that never heal, kill switches left off, runs aborted or killed, clocks coarse
enough for ties), and hand-made ledgers for each way the join has to cope.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.checks import accumulators, judge_results, run_checks
from harness.core.errors import InputError
from harness.core.registry import check_names
from harness.core.verdict import CheckResult
from harness.engine.judge import judge_ledger
from harness.ledger import load_history
from harness.ledger.bounds import Disorder
from harness.ledger.feed import (
    Accumulator,
    Feeder,
    Record,
    RunFrame,
    Totals,
    bounds_for,
    feed_history_run,
    feed_ledger,
)
from harness.ledger.join import Join
from harness.ledger.stream import read_frame
from harness.scenario import scenario_from_dict
from tests.ledger_builder import LedgerBuilder, make_scenario, ordered, random_run

LEDGERS = Path(__file__).resolve().parent.parent / "fixtures" / "ledgers"
def judge_streaming(scenario: Any, path: Path, names: list[str] | None = None) -> tuple[list[CheckResult], str]:
    """The checks on a ledger by the streamed joins only (Disorder if none takes it), and the join's mode."""
    names = list(check_names()) if names is None else names
    fed = feed_ledger(path, scenario, lambda run: accumulators(run, names), in_memory=False)
    mode = fed.how.removeprefix("streamed (").removesuffix(" join)")
    return judge_results(fed.results, fed.totals.requests, fed.run_end), mode


def both(path: Path) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    """Every check on the ledger, streamed (with the join that took it) and in memory."""
    history = load_history(path)
    scenario = scenario_from_dict(history.run_start["scenario"], str(path))
    streamed, how = judge_streaming(scenario, path)
    everything = list(check_names())
    return [r.to_dict() for r in streamed], how, [r.to_dict() for r in run_checks(scenario, history, everything)]


@pytest.mark.parametrize("name", sorted(p.name for p in LEDGERS.glob("*.jsonl.gz")))
def test_recorded_ledgers_stream_exactly(name):
    streamed, how, in_memory = both(LEDGERS / name)
    assert streamed == in_memory
    assert how == "prompt"  # real runs are written in order: the cheapest join takes them


@pytest.mark.parametrize("seed", range(60))
def test_random_runs_stream_exactly(tmp_path, seed):
    streamed, _how, in_memory = both(random_run(tmp_path / "ledger.jsonl", seed))
    assert streamed == in_memory


def test_random_runs_take_every_join(tmp_path):
    hows = {both(random_run(tmp_path / f"{seed}.jsonl", seed))[1] for seed in range(30)}
    assert hows == {"prompt", "held x1", "held x4"}


def _outage(tmp_path, requests: int = 40, unaudited: tuple[int, ...] = ()) -> LedgerBuilder:
    b = LedgerBuilder(tmp_path / "ledger.jsonl", make_scenario(), held=True).run_start()
    b.fault("down", 5, 15, ["p-eu"])
    for i in range(requests):
        at = 1 + i * 0.5
        down = 5 <= at <= 15
        b.exchange(f"r{i:03d}", at, [{"provider": "p-eu", "outcome": "error", "fault": "down"}, ("f-eu", "ok")]
                   if down else [("p-eu", "ok")])
        if down and i not in unaudited:
            b.fallback_audit(f"r{i:03d}", at + 0.25, "f-eu")
    return b


def test_a_call_after_its_request_is_joined_by_the_held_join(tmp_path):
    b = _outage(tmp_path)
    b.upstream("r020", "rogue", 11.5)  # r020 (sent at 11) ended at 11.2: the gateway called on after that
    streamed, how, in_memory = both(ordered(b))
    assert how == "held x1" and streamed == in_memory
    assert {r["check"]: r["verdict"] for r in streamed}["approved_targets"] == "fail"


def test_audit_events_early_late_and_very_late(tmp_path):
    b = _outage(tmp_path, unaudited=(12, 13, 14))
    b.fallback_audit("r012", 6.9, "f-eu")    # before its request was written
    b.fallback_audit("r013", 27.5, "f-eu")   # 20 s late: the prompt join still holds its request
    b.fallback_audit("r014", 70.0, "f-eu")   # 62 s late: only a wider hold takes it
    b.run_end(80)
    streamed, how, in_memory = both(ordered(b))
    assert how == "held x4" and streamed == in_memory
    [logged] = [r for r in streamed if r["check"] == "logged"]
    assert logged["stats"]["max_audit_delay_s"] == pytest.approx(61.8)


def test_writers_out_of_order(tmp_path):
    b = _outage(tmp_path, requests=200)
    b.run_end(120)
    streamed, how, in_memory = both(ordered(b, jitter=1.5))
    assert streamed == in_memory and how in ("prompt", "held x1")


def test_a_ledger_too_far_out_of_order_is_judged_in_memory(tmp_path):
    b = _outage(tmp_path)
    b.fallback_audit("r013", 400.0, "f-eu")  # later than even the widest hold
    b.run_end(500)
    path = ordered(b)
    scenario = scenario_from_dict(load_history(path).run_start["scenario"], str(path))
    with pytest.raises(Disorder):
        judge_streaming(scenario, path)
    judgement = judge_ledger(path)
    assert judgement.how == "in memory (audit event for r013 came after its audit trail was judged)"
    assert [r.to_dict() for r in judgement.results] == [r.to_dict() for r in run_checks(scenario, load_history(path))]


def test_killed_run_with_calls_left_waiting(tmp_path):
    b = _outage(tmp_path)
    b.upstream("r900", "p-eu", 21.0)  # its request was never written: the harness was killed
    b.upstream(None, "p-eu", 21.1)    # a call whose id the provider could not read
    streamed, how, in_memory = both(ordered(b))
    assert streamed == in_memory and how == "prompt"


def test_a_request_written_twice_while_in_flight(tmp_path):
    b = _outage(tmp_path)
    b.request("r010", 6.0, duration=0.3, status=502)  # the same id again, just after the first
    streamed, _how, in_memory = both(ordered(b))
    assert streamed == in_memory


def test_a_ledger_opening_with_many_global_events(tmp_path):
    b = LedgerBuilder(tmp_path / "ledger.jsonl", make_scenario(), held=True).run_start()
    for i in range(600):  # notes before any request: the join looks around before it has a clock
        b.note(0.1, f"note {i}")
    b.exchange("r001", 1, [("p-eu", "ok")])
    b.run_end(5)
    streamed, how, in_memory = both(ordered(b))
    assert streamed == in_memory and how == "prompt"


def test_judge_ledger_streams_and_loads_the_history_only_when_asked(tmp_path):
    b = _outage(tmp_path)
    b.run_end(30)
    path = ordered(b)
    judgement = judge_ledger(path)
    assert judgement.how == "streamed (prompt join)"
    assert "history" not in judgement.__dict__  # judging needs no History
    assert len(judgement.history.requests) == 40


def test_unreadable_ledgers_fail_as_the_history_reader_does(tmp_path):
    b = _outage(tmp_path)
    b.run_end(30)
    lines = ordered(b).read_bytes().splitlines(keepends=True)
    for name, data in (("bad-middle.jsonl", b"".join(lines[:9] + [b"{not json\n"] + lines[9:])),
                       ("no-start.jsonl", b"".join(lines[1:])), ("empty.jsonl", b"")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError) as streamed:
            judge_ledger(path)
        with pytest.raises(InputError) as in_memory:
            load_history(path)
        assert str(streamed.value) == str(in_memory.value)


def _high_water(path: Path) -> dict[str, int]:
    """The most the join and the checks held at once while streaming the ledger."""
    frame = read_frame(path)
    scenario = scenario_from_dict(frame.run_start["scenario"], str(path))
    bounds = bounds_for(scenario)
    run = RunFrame(scenario, frame.t0, frame.windows, frame.kill_switch, frame.kill_switch_events, bounds)
    made = dict(zip(check_names(), accumulators(run, check_names()), strict=True))
    join = Join(Feeder(scenario, list(made.values())), bounds)
    high = {"live": 0, "retained": 0, "waiting": 0, "pending": 0}
    drain = join.drain

    def watched() -> None:
        drain()
        for key, size in (("live", len(join.live)), ("retained", len(join.handed)),
                          ("waiting", len(made["logged"].waiting)),  # type: ignore[attr-defined]
                          ("pending", len(made["trigger_conditions"].timeline._pending))):  # type: ignore
            high[key] = max(high[key], size)

    join.drain = watched  # type: ignore[method-assign]
    join.read(path)
    return high


def test_memory_follows_the_requests_in_flight_not_the_run(tmp_path):
    """What the join and the checks hold at once is the same for a run four times as long."""
    highs = []
    for n in (3000, 12000):
        b = LedgerBuilder(tmp_path / f"{n}.jsonl", make_scenario(), held=True).run_start()
        for i in range(n):  # 50 requests a second, a 0.2 s outage every 2 s
            at, fault = 1 + i * 0.02, f"f{i - i % 100}"
            if i % 100 == 0:
                b.fault(fault, at, at + 0.19, ["p-eu"])
            down = i % 100 < 10
            b.exchange(f"r{i:05d}", at, [{"provider": "p-eu", "outcome": "error", "fault": fault}, ("f-eu", "ok")]
                       if down else [("p-eu", "ok")])
            if down:
                b.fallback_audit(f"r{i:05d}", at + 0.21, "f-eu")
        b.run_end(2 + n * 0.02)
        highs.append(_high_water(ordered(b, jitter=0.05)))
    small, big = highs
    assert big["live"] <= 20  # requests in flight
    for key in ("waiting", "pending"):  # audits awaited, the trigger timeline
        assert big[key] <= 1.2 * small[key] + 50, (key, small, big)
    # Ids kept for late audit events: those of the last hold (kept in two generations: up to twice it),
    # at 50 requests a second, whatever the length of the run.
    bounds = bounds_for(make_scenario())
    hold_s = bounds.audit_hold_s + bounds.orphan_hold_s
    assert small["retained"] <= big["retained"] <= 2 * hold_s * 50 + 50, (small, big)


def test_stream_checks_follows_the_names(tmp_path):
    b = _outage(tmp_path)
    b.run_end(30)
    path = ordered(b)
    results = judge_ledger(path, ["logged", "approved_targets"]).results
    assert [r.check for r in results] == ["approved_targets", "logged"]
    assert json.dumps([r.to_dict() for r in results])  # JSON-able, as reports need


class _EveryFeed(Accumulator):
    """An accumulator written against the API before the fast lane: no `plain`, every feed logged."""

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.log: list[tuple[str, str]] = []
        self.calls_by_id: Counter[str] = Counter()

    def request(self, rec: Record) -> None:
        self.log.append(("request", rec.rid))

    def record(self, rec: Record) -> None:
        self.log.append(("record", rec.rid))

    def calls(self, calls: list[dict[str, Any]], owner: dict[str, Any] | None, rank: int) -> None:
        self.calls_by_id[str(calls[0].get("id"))] += len(calls)

    def finish(self, frame: RunFrame, totals: Totals) -> Any:
        return self.log, self.calls_by_id


@pytest.mark.parametrize("seed", range(0, 60, 6))
def test_an_accumulator_without_plain_gets_every_request_beside_the_fast_lane(tmp_path, seed):
    """The checks take plain requests in batches; an accumulator that does not override `plain` still gets
    each request, record and call, requests in ledger order, as the History feed gives them."""
    path = random_run(tmp_path / "ledger.jsonl", seed)
    history = load_history(path)
    scenario = scenario_from_dict(history.run_start["scenario"], str(path))
    names = list(check_names())

    def make(run: RunFrame) -> list[Accumulator]:
        return [*accumulators(run, names), _EveryFeed(run)]

    streamed = feed_ledger(path, scenario, make, in_memory=False)
    in_memory = feed_history_run(scenario, history, make)
    assert streamed.results[-1] == in_memory.results[-1]
    assert streamed.totals == in_memory.totals
    assert judge_results(streamed.results[:-1], streamed.totals.requests, streamed.run_end) == judge_results(
        in_memory.results[:-1], in_memory.totals.requests, in_memory.run_end)

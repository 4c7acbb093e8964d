"""The request schedule is made lazily, and is the very sequence one `rng.choices(k=count)` made.

Recorded ledgers and `harness selftest` depend on the seeded sequence: the lazy schedule must draw
the same entries in the same order (CPython's `choices` with weights draws one `random()` per item,
so drawing in chunks is equivalent). Its memory must not depend on the duration.
"""

from __future__ import annotations

import itertools
import random
import tracemalloc

import pytest

from harness.core.model import MixEntry, Traffic
from harness.traffic.driver import SCHEDULE_CHUNK, plan, schedule

ENTRY = MixEntry(route="chat", tenant="acme", region="eu", request_class="chat", data_class="internal")


def _mix(weights: list[float]) -> list[MixEntry]:
    return [ENTRY.model_copy(update={"tenant": f"t{i}", "weight": w}) for i, w in enumerate(weights)]


def _eager(traffic: Traffic, seed: int) -> list[tuple[str, float, str]]:
    """The schedule as it was made before: the whole list at once, from one `choices` call."""
    rng = random.Random(seed)
    count = max(1, int(traffic.rate_per_s * traffic.duration_s))
    entries = rng.choices(traffic.mix, weights=[m.weight for m in traffic.mix], k=count)
    return [(f"r{i:06d}", i / traffic.rate_per_s, e.tenant) for i, e in enumerate(entries)]


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2024])
@pytest.mark.parametrize("weights", [[1.0], [1.0, 1.0], [3.0, 1.0, 2.0], [0.5, 2.5, 1.0, 7.0], [1e-3, 1.0]])
@pytest.mark.parametrize("rate, duration", [(20, 16), (7, 3.3), (300, 10), (0.5, 1)])
def test_lazy_schedule_is_the_eager_one(seed, weights, rate, duration):
    traffic = Traffic(rate_per_s=rate, duration_s=duration, mix=_mix(weights))
    lazy = [(p.id, p.offset_s, p.entry.tenant) for p in schedule(traffic, seed)]
    assert lazy == _eager(traffic, seed)
    assert [(p.id, p.offset_s, p.entry.tenant) for p in plan(traffic, seed)] == lazy


def test_a_schedule_longer_than_a_chunk_crosses_chunks_unchanged():
    traffic = Traffic(rate_per_s=100, duration_s=SCHEDULE_CHUNK * 3 / 100 + 0.37, mix=_mix([2.0, 1.0, 1.0]))
    assert [(p.id, p.offset_s, p.entry.tenant) for p in schedule(traffic, 5)] == _eager(traffic, 5)


def test_a_day_at_ten_thousand_per_second_costs_no_memory_up_front():
    traffic = Traffic.model_construct(rate_per_s=10_000, duration_s=86_400, mix=_mix([1.0, 3.0]))
    tracemalloc.start()
    try:
        first = list(itertools.islice(schedule(traffic, 3), 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p.id for p in first[:2]] == ["r000000", "r000001"] and first[-1].offset_s == pytest.approx(0.0999)
    # 864 million requests planned; the first thousand took a few chunks' worth, nowhere near a list of all.
    assert peak < 5_000_000, peak

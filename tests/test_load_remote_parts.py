"""The parts of distributed `harness load` that need no locust process: the sealed channel, the options, and how
the ledger's counts are held against each remote worker's (the whole thing runs in tests/test_load_remote.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.engine.load import worker_gateway_url
from harness.ledger.reader import count_requests
from harness.loadgen import LoadConfig, LoadOptions, parse_host_port
from harness.loadgen.channel import TOKEN_ENV, Channel, ChannelError, worker_token
from harness.loadgen.stats import compare_workers, read_shipped
from harness.scenario import load_scenario
from tests.conftest import SCENARIOS
from tests.ledger_builder import LedgerBuilder, make_scenario

TOKEN = "a-token-of-the-run-0123456789abcdef"


def test_a_sealed_message_opens_only_with_the_same_token_and_unaltered():
    sealed = Channel(TOKEN).seal({"worker": "w1", "seq": 0, "events": [{"type": "request", "id": "l0-0-1"}]})
    assert Channel(TOKEN).open(sealed)["events"][0]["id"] == "l0-0-1"
    assert "l0-0-1" not in sealed  # the content travels encrypted (the config holds the client key)
    with pytest.raises(ChannelError):
        Channel(TOKEN + "x").open(sealed)
    altered = sealed[:40] + ("A" if sealed[40] != "A" else "B") + sealed[41:]
    with pytest.raises(ChannelError):
        Channel(TOKEN).open(altered)
    for junk in (None, 5, "", "not a token", {"events": []}):
        with pytest.raises(ChannelError):
            Channel(TOKEN).open(junk)


def test_the_worker_token_is_required_and_long_enough():
    assert worker_token({TOKEN_ENV: TOKEN}) == TOKEN
    with pytest.raises(HarnessError, match="is not set") as missing:
        worker_token({})
    assert "token_urlsafe" in str(missing.value)  # the hint says how to make one
    with pytest.raises(HarnessError, match="at least 16"):
        worker_token({TOKEN_ENV: "short"})


def test_remote_options_are_checked_before_anything_starts():
    scenario = load_scenario(SCENARIOS / "regional-outage.yaml").scenario
    assert LoadOptions(10, 10, 16, workers_expected=2, master_bind="10.0.0.5:5557").problems(scenario) == []
    problems = LoadOptions(1, 1, 16, processes=2, workers_expected=2, master_bind="nowhere").problems(scenario)
    assert any("exclude each other" in p for p in problems)
    assert any("at least --workers-expected" in p for p in problems)
    assert any("is not HOST:PORT" in p for p in problems)
    (every,) = LoadOptions(4, 4, 16, workers_expected=2, master_bind="0.0.0.0:5557").problems(scenario)
    assert "--worker-gateway-url" in every
    assert LoadOptions(4, 4, 16, workers_expected=2, master_bind="0.0.0.0:5557",
                       worker_gateway_url="http://harness-master").problems(scenario) == []
    (bad,) = LoadOptions(4, 4, 16, workers_expected=2, worker_gateway_url="harness-master").problems(scenario)
    assert "not an http(s) URL" in bad
    assert parse_host_port("[::1]:5557", "--master-bind") == ("::1", 5557)


def test_the_url_workers_get_for_the_gateway():
    notes: list[str] = []
    remote = LoadOptions(4, 4, 16, workers_expected=2, master_bind="0.0.0.0:5557",
                         worker_gateway_url="http://harness-master")
    assert worker_gateway_url("http://127.0.0.1:41234", remote, notes.append) == "http://harness-master:41234"
    fixed = LoadOptions(4, 4, 16, workers_expected=2, worker_gateway_url="http://gw.internal:8080")
    assert worker_gateway_url("http://127.0.0.1:41234", fixed, notes.append) == "http://gw.internal:8080"
    bound = LoadOptions(4, 4, 16, workers_expected=2, master_bind="10.0.0.5:5557")
    assert worker_gateway_url("http://10.0.0.5:41234", bound, notes.append) == "http://10.0.0.5:41234"
    assert notes == []
    assert worker_gateway_url("http://127.0.0.1:4000", bound, notes.append) == "http://127.0.0.1:4000"
    assert len(notes) == 1 and "loopback" in notes[0]


def test_a_worker_is_sent_no_path_of_the_masters_machine():
    scenario = load_scenario(SCENARIOS / "regional-outage.yaml").scenario
    config = LoadConfig(traffic=scenario.traffic, seed=1, client_key="sk-client", ledger_path="/run/ledger.jsonl",
                        started_path="/run/started", switch_path="/run/switch.json", workers_path="/run/w.json",
                        run_time_s=10)
    sent = LoadConfig.from_json(json.loads(json.dumps(config.for_worker().to_json())))
    assert (sent.ledger_path, sent.started_path, sent.switch_path, sent.workers_path) == (None, None, None, None)
    assert sent.client_key == "sk-client" and sent.traffic == scenario.traffic


def _ledger(tmp_path: Path, requests: list[str], calls: list[str]) -> Path:
    b = LedgerBuilder(tmp_path / "ledger.jsonl", make_scenario()).run_start()
    for n, rid in enumerate(requests):
        b.request(rid, 1.0 + n / 10)
    for n, rid in enumerate(calls):
        b.upstream(rid, "p-eu", 2.0 + n / 10)
    b.run_end()
    return b.close()


def test_what_a_lost_worker_took_with_it_is_counted_from_the_ledger(tmp_path):
    # Worker 0 shipped everything; worker 1 died: its user 0 had sent 5 (the providers saw the 5th), user 1
    # had sent 3 (its 2nd never reached the ledger, its 3rd did).
    ledger = _ledger(tmp_path, ["l0-0-1", "l0-0-2", "l1-0-1", "l1-0-2", "l1-0-3", "l1-1-1", "l1-1-3"],
                     ["l0-0-1", "l0-0-2", "l1-0-4", "l1-0-5", "l1-1-3", "x-request-9"])
    counts = count_requests(ledger)
    assert counts["per_worker"] == {"0": 2, "1": 5} and counts["sent_per_worker"] == {"0": 2, "1": 8}
    shipped = {"workers": [{"index": 0, "host": "a", "done": True, "counted": 2, "refused": 0},
                           {"index": 1, "host": "b", "done": False, "counted": 4, "refused": 1}],
               "refused_messages": 2}
    result = compare_workers(counts, shipped)
    assert result["lost_workers"] == [1] and result["mismatched"] == [] and result["refused_messages"] == 3
    assert [r["lost"] for r in result["workers"]] == [0, 3] and result["lost"] == 3
    # A worker that said done but whose count differs from the ledger's is a loss too.
    shipped["workers"][0]["counted"] = 3
    assert compare_workers(counts, shipped)["mismatched"] == [0]
    assert compare_workers(counts, None)["lost"] is None


def test_the_masters_account_is_read_only_when_well_formed(tmp_path):
    path = tmp_path / "locust-workers.json"
    assert read_shipped(path) is None
    path.write_text("{not json")
    assert read_shipped(path) is None
    path.write_text(json.dumps({"workers": []}))
    assert read_shipped(path) == {"workers": []}


def test_the_reports_name_each_remote_worker_and_a_lost_one():
    from harness.reporting.html import _load
    from harness.reporting.text import render_load_text

    workers = [{"index": 0, "host": "a", "done": False, "locust_requests": 42, "ledger_requests": 40, "lost": 3},
               {"index": 1, "host": "b", "done": True, "locust_requests": 148, "ledger_requests": 148, "lost": 0}]
    load = {"users": 6, "workers_expected": 2, "observations": {"ledger_requests": 188, "locust_requests": 190,
                                                                "lost": 3, "remote": {"workers": workers}},
            "locust": {}, "phases": {"overall": {"requests": 1, "failures": 0, "rps": 1, "p50_ms": 1, "p95_ms": 1,
                                                 "p99_ms": 1}, "windows": []}}
    text = render_load_text(load)
    assert "2 remote worker(s)" in text and "worker 0 (a): locust 42, ledger 40, LOST mid-run (3" in text
    assert "worker 1 (b): locust 148, ledger 148\n" in text + "\n"
    page = _load({"load": load})
    assert "2 remote workers" in page and "lost mid-run" in page and "shipped everything" in page

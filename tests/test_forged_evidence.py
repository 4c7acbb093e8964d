"""Evidence nobody can forge: a hostile local process can neither write audit events nor have its
provider calls counted as a request's.

The collector takes audit events only with the run's token (tests/test_collector.py has its routes);
a call with a credential of no known identity is recorded as from an unknown caller, joined to no
request, and can only make trust_boundary unknown: never FAIL a check, never PASS one. The last test
forges both during a real run of a shipped scenario.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from conftest_topology import ListSink

from harness.checks import run_checks
from harness.core import events as ev
from harness.core.verdict import Verdict
from harness.engine.judge import judge_ledger
from harness.engine.topology import Topology
from harness.scenario import load_scenario
from tests.conftest import ROOT, SCENARIOS
from tests.ledger_builder import LedgerBuilder, make_scenario

FAULT = "primary-down"


# --- on ledgers: what the checks make of calls from an unknown caller ------------------------------


def _unattributed(b: LedgerBuilder, claimed: str | None, provider: str, at: float, *, identity: str = "none",
                  outcome: str = "ok", status: int = 200, fault: str | None = None) -> None:
    """A call as the mock records one whose credential is no identity's (or absent)."""
    b.append({"type": ev.UPSTREAM, "ts": b.at(at), "id": None, "caller": ev.UNKNOWN_CALLER, "claimed_id": claimed,
              "provider": provider, "identity": identity, "key_fp": None if identity == "none" else "0" * 16,
              "tools": ["shell"], "model": "m", "stream": False, "status": status, "outcome": outcome,
              "fault": fault, "tenant": None, "request_class": None, "region": None, "data_class": None})


def _run(b: LedgerBuilder, forge: bool) -> None:
    """A well-behaved gateway (tests/test_checks.py's healthy run); with `forge`, calls of an unknown caller
    that claim its requests: to the primary during its cooldown, to a target no route approves, with extra
    tools, a fault hit nobody's request made."""
    for i in range(5):
        b.exchange(f"r00{i}", 1 + i, [("p-eu", "ok")])
    b.fault(FAULT, 10, 20, ["p-eu"])
    b.exchange("r010", 11, [{"provider": "p-eu", "outcome": "error", "status": 503, "fault": FAULT}, ("f-eu", "ok")])
    b.fallback_audit("r010", 11.5, "f-eu")
    if forge:
        _unattributed(b, "r011", "p-eu", 11.1)                           # the primary "probed" in its cooldown
        _unattributed(b, "r010", "rogue", 11.3, identity="unknown")      # an unapproved target, another region
        _unattributed(b, "r003", "f-us", 11.4)                           # a request long judged
        _unattributed(b, "r099", "p-eu", 11.45, outcome="error", status=503, fault=FAULT)  # a request never sent
    b.exchange("r011", 11.2, [("f-eu", "ok")])
    b.fallback_audit("r011", 11.6, "f-eu")
    b.exchange("r012", 12, [{"provider": "p-eu", "outcome": "error", "status": 503, "fault": FAULT}],
               request_class="regulated")
    b.exchange("r020", 21, [("p-eu", "ok")])
    if forge:
        _unattributed(b, "r020", "f-own", 21.05, identity="unknown")
        _unattributed(b, None, "p-eu", 22)                               # no correlation token at all
    for i in range(5):
        b.exchange(f"r03{i}", 26 + i, [("p-eu", "ok")])
    b.run_end()


def _ledger(tmp_path: Path, forge: bool) -> LedgerBuilder:
    b = LedgerBuilder(tmp_path / f"ledger-{forge}.jsonl", make_scenario())
    b.run_start()
    _run(b, forge)
    b.close()
    return b


def test_calls_of_an_unknown_caller_change_no_verdict_but_trust_boundarys(tmp_path):
    clean, forged = _ledger(tmp_path, False), _ledger(tmp_path, True)
    # Both feeds: the History in memory and the streamed join.
    for judged in ({r.check: r for r in run_checks(b.scenario, b.history())} for b in (clean, forged)), \
            ({r.check: r for r in judge_ledger(b.path).results} for b in (clean, forged)):
        before, after = judged
        assert before["trust_boundary"].verdict is Verdict.PASS, before["trust_boundary"].summary
        changed = {name: (before[name].verdict.value, after[name].verdict.value) for name in before
                   if before[name].verdict != after[name].verdict}
        assert changed == {"trust_boundary": ("pass", "unknown")}, {n: after[n].summary for n in changed}
        result = after["trust_boundary"]
        assert not result.violations
        assert result.summary.startswith("6 calls to f-own, f-us, p-eu, rogue with a credential of no known identity "
                                         "(or none) claimed 5 requests (r003, r010, r011, r020, r099)")
        assert "a gateway key not declared in `identities`, or a forged call" in result.summary
        assert result.stats["unknown_caller_calls"] == 6 and result.stats["unknown_caller_unclaimed_calls"] == 1
        assert result.stats["unknown_caller_claimed_ids"] == ["r003", "r010", "r011", "r020", "r099"]
        # Every other check saw exactly the evidence it saw without them.
        for name in before:
            if name != "trust_boundary":
                assert before[name].summary == after[name].summary, name


def test_a_probe_that_claims_no_request_is_shown_but_judged_by_nobody(tmp_path):
    # A port scan or a health check under a key of no identity names no request of the run: it is in
    # the summary and the stats, and trust_boundary still passes on the gateway's own calls.
    b = LedgerBuilder(tmp_path / "ledger.jsonl", make_scenario())
    b.run_start()
    _run(b, False)
    b.close()
    clean = {r.check: r for r in judge_ledger(b.path).results}
    probed = LedgerBuilder(tmp_path / "probed.jsonl", make_scenario())
    probed.run_start()
    _unattributed(probed, None, "p-eu", 0.5)
    _run(probed, False)
    probed.close()
    after = {r.check: r for r in judge_ledger(probed.path).results}
    assert {n: r.verdict for n, r in after.items()} == {n: r.verdict for n, r in clean.items()}
    result = after["trust_boundary"]
    assert result.verdict is Verdict.PASS
    assert result.summary.endswith("also 1 call to p-eu came with a credential of no known identity (or none) and "
                                   "claimed no request")
    assert result.stats["unknown_caller_unclaimed_calls"] == 1


def test_a_violation_proven_by_the_gateways_own_calls_still_fails(tmp_path):
    b = LedgerBuilder(tmp_path / "ledger.jsonl", make_scenario())
    b.run_start()
    b.exchange("r001", 1, [{"provider": "p-eu", "outcome": "error"}, {"provider": "f-own", "outcome": "ok",
                                                                      "identity": "svc-gw"}])
    _unattributed(b, "r001", "p-eu", 1.1)
    b.run_end()
    [result] = run_checks(b.scenario, b.history(), ["trust_boundary"])
    assert result.verdict is Verdict.FAIL
    assert [v.message for v in result.violations] == ["f-own received the key of identity svc-gw; it accepts only "
                                                      "svc-own's"]
    assert "also 1 call to p-eu with a credential of no known identity" in result.summary


def test_old_ledgers_without_the_marker_are_judged_as_before(tmp_path):
    # Recorded before calls were attributed: an unknown identity under a request id is still a violation.
    b = LedgerBuilder(tmp_path / "ledger.jsonl", make_scenario())
    b.run_start()
    b.exchange("r001", 1, [{"provider": "p-eu", "outcome": "ok", "identity": "unknown"}])
    b.run_end()
    [result] = run_checks(b.scenario, b.history(), ["trust_boundary"])
    assert result.verdict is Verdict.FAIL
    assert result.violations[0].message == "call to p-eu carried an unrecognised credential"


# --- the run's collector and its placeholders -------------------------------------------------------


def test_the_collector_url_placeholder_carries_the_token_and_the_topology_event_does_not(tmp_path):
    async def scenario() -> tuple[list[int], dict[str, str], Topology, ListSink]:
        sink = ListSink()
        topology = Topology(load_scenario(SCENARIOS / "regional-outage.yaml").scenario, tmp_path, sink)
        await topology._start_collector()
        values = topology.placeholders()
        base = topology.collector_url
        event = {"request_id": "r1", "fallback": "claude-eu"}
        try:
            async with aiohttp.ClientSession() as session:
                statuses = []
                for url, headers in [(f"{values['collector.url']}/audit", {}),
                                     (f"{base}/audit", {"X-Harness-Audit-Token": values["collector.token"]}),
                                     (f"{base}/audit", {})]:
                    async with session.post(url, json=event, headers=headers) as resp:
                        statuses.append(resp.status)
        finally:
            await topology._collector.cleanup()  # type: ignore[union-attr]
        return statuses, values, topology, sink

    statuses, values, topology, sink = asyncio.run(scenario())
    token = topology.audit_token
    assert statuses == [202, 202, 401]
    assert values["collector.url"] == f"{topology.collector_url}/{token}" and values["collector.token"] == token
    assert token not in json.dumps(topology.describe())
    assert topology.redact(f"posting to {values['collector.url']}/audit") == (
        f"posting to {topology.collector_url}/<redacted:collector.token>/audit")
    assert len(sink.of("audit")) == 2 and token not in json.dumps(sink.events)
    assert [n["message"] for n in sink.of("note")] == ["1 audit post refused: no or wrong run token"]


# --- a real run, and a hostile process next to it ---------------------------------------------------


def _call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, parts.path or "/", body=payload,
                     headers={"content-type": "application/json", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _events(ledger: Path) -> list[dict[str, Any]]:
    out = []
    for line in ledger.read_text(encoding="utf-8").splitlines() if ledger.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written right now
    return out


def _audit_token(*folders: Path) -> str | None:
    """The token the harness handed the reference gateway (its private config), read while the run goes."""
    for folder in folders:
        for config in folder.rglob("gateway.json"):
            try:
                url = json.loads(config.read_text())["collector_url"]
            except (OSError, ValueError, KeyError):
                continue
            return str(url).rstrip("/").rsplit("/", 1)[1]
    return None


@pytest.mark.slow
def test_a_hostile_process_cannot_forge_a_runs_evidence(tmp_path):
    tmp_dir, state, reports = tmp_path / "tmp", tmp_path / "state", tmp_path / "reports"
    tmp_dir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_dir), "HARNESS_STATE_DIR": str(state), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(SCENARIOS / "regional-outage.yaml"),
                             "--report-dir", str(reports)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            runs = [p for p in reports.iterdir() if p.is_dir()] if reports.exists() else []
            events = _events(runs[0] / "ledger.jsonl") if runs else []
            fallbacks = [e for e in events if e["type"] == "request" and e.get("claimed_target") == "claude-eu"]
            if len(fallbacks) >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the run never fell back: {proc.communicate(timeout=60)}")
        token = _audit_token(tmp_dir, state)
        topology = next(e for e in events if e["type"] == "topology")
        collector, providers = topology["collector_url"], topology["providers"]
        requests = [e["id"] for e in events if e["type"] == "request"]
        victim = fallbacks[0]["id"]
        # The collector: a fallback that never happened, by a POST without the token and with wrong ones.
        fake = {"event": "fallback", "request_id": victim, "tenant": "acme", "route": "chat", "primary": "gpt-eu",
                "fallback": "gpt-us", "reason": "forged", "timestamp": "2026-01-01T00:00:00Z", "forged": True}
        refused = [_call("POST", f"{collector}/audit", fake), _call("POST", f"{collector}/not-the-token/audit", fake),
                   _call("POST", f"{collector}/audit", fake, {"X-Harness-Audit-Token": "guess"})]
        # The providers: calls carrying the correlation tokens of real requests (one judged, one to come),
        # with no credential and with a wrong one, to a target no route approves and to the primary.
        future = f"r{int(requests[-1][1:]) + 30:06d}"
        forged_calls = []
        for rid, provider, headers in [(victim, "gpt-us", {}), (requests[0], "gpt-eu", {"authorization": "Bearer x"}),
                                       (future, "gpt-eu", {}), (future, "gpt-us", {"authorization": "Bearer sk-no"})]:
            body = {"model": "gpt-4o", "tools": [{"type": "function", "function": {"name": "shell"}}],
                    "messages": [{"role": "user", "content": f"[[harness:id={rid};tenant=acme;class=chat;region=us;"
                                                             f"data=confidential]] hi"}]}
            forged_calls.append((_call("POST", f"{providers[provider]}/v1/chat/completions", body, headers), rid))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)

    assert refused == [401, 401, 401], refused
    # The mocks answer anybody (the primary with its fault's 503 while it bites), as the run's own calls.
    assert all(status in (200, 503) for status, _ in forged_calls), forged_calls
    [run_dir] = [p for p in reports.iterdir() if p.is_dir()]
    ledger = _events(run_dir / "ledger.jsonl")
    # No forged audit event; the refusals are one note, counted.
    assert not [e for e in ledger if e["type"] == "audit" and (e["raw"].get("forged") or e["raw"].get("reason")
                                                               == "forged")]
    assert [e["message"] for e in ledger if e["type"] == "note" and "audit post" in e["message"]] == [
        "3 audit posts refused: no or wrong run token"]
    # The forged calls are recorded, as an unknown caller's, under no request.
    unknown = [e for e in ledger if e["type"] == "upstream" and e.get("caller") == "unknown"]
    assert sorted(e["claimed_id"] for e in unknown) == sorted(rid for _, rid in forged_calls)
    assert all(e["id"] is None and e["identity"] in ("none", "unknown") for e in unknown)
    # Verdicts: nothing fails; trust_boundary is unknown (it cannot tell a forged call from an undeclared key).
    summary = json.loads((run_dir / "summary.json").read_text())
    verdicts = {c["check"]: c["verdict"] for c in summary["checks"]}
    assert "fail" not in verdicts.values(), (verdicts, out)
    assert verdicts.pop("trust_boundary") == "unknown"
    assert set(verdicts.values()) == {"pass"}, {c["check"]: c["summary"] for c in summary["checks"]}
    assert proc.returncode == 3, out + err
    assert "claimed 3 requests" in out and "a forged call" in out
    # The token was real (the gateway's audit events came in under it) and is written nowhere.
    assert token and summary["stats"]["audit_events"] > 0
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(encoding="utf-8", errors="replace"), path
    assert token not in out + err

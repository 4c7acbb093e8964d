"""The audit collector over real HTTP, and the file source it shares its mapping with."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from conftest_topology import ListSink, wait_for

from harness.core.model import AuditMapping
from harness.topology.collector import build_collector_app, tail_audit_file
from harness.topology.serving import start_app

TOKEN = "run-audit-token"
SECRETS = {"svc-eu": "sk-live-eu-abcdef123456", "svc-us": "sk-live-us-987654"}
EVENT = {"event": "fallback", "request_id": "r1", "tenant": "acme", "route": "chat", "primary": "gpt-eu",
         "fallback": "gpt-eu-b", "reason": "503", "timestamp": "2026-01-01T00:00:00.000Z"}


async def post_audit(mapping: AuditMapping, data: str | bytes) -> tuple[int, ListSink]:
    sink = ListSink()
    runner, url = await start_app(build_collector_app(sink, mapping, SECRETS, TOKEN))
    try:
        async with aiohttp.ClientSession() as session, session.post(f"{url}/{TOKEN}/audit", data=data) as resp:
            return resp.status, sink
    finally:
        await runner.cleanup()


def test_fields_map_through_paths_and_values() -> None:
    mapping = AuditMapping(
        fields={"request_id": "meta.ids[0]", "fallback": "decision.to", "primary": "decision.from.name",
                "reason": "decision.why"},
        values={"eu-secondary": "gpt-eu-b", "eu-main": "gpt-eu"},
    )
    theirs = {"meta": {"ids": ["r7", "other"]}, "tenant": "acme", "route": "chat",
              "decision": {"to": "eu-secondary", "from": {"name": "eu-main"}, "why": "timeout"}}
    status, sink = asyncio.run(post_audit(mapping, json.dumps(theirs)))
    assert status == 202
    [record] = sink.of("audit")
    assert record["source"] == "collector" and record["leaked_identities"] == []
    assert record["fields"] == {"request_id": "r7", "tenant": "acme", "route": "chat", "primary": "gpt-eu",
                                "fallback": "gpt-eu-b", "reason": "timeout"}
    assert record["raw"] == theirs


def test_leaked_key_is_redacted_and_named() -> None:
    leaky = {**EVENT, "upstream_key": SECRETS["svc-eu"], "note": f"used Bearer {SECRETS['svc-us']} too",
             SECRETS["svc-us"]: "as a key"}
    status, sink = asyncio.run(post_audit(AuditMapping(), json.dumps(leaky)))
    assert status == 202
    [record] = sink.of("audit")
    assert record["leaked_identities"] == ["svc-eu", "svc-us"]
    text = json.dumps(sink.events)
    assert all(key not in text for key in SECRETS.values())
    assert record["raw"]["upstream_key"] == "<redacted:svc-eu>"
    assert record["raw"]["note"] == "used Bearer <redacted:svc-us> too"
    assert record["raw"]["<redacted:svc-us>"] == "as a key"
    assert record["fields"]["fallback"] == "gpt-eu-b"


def test_list_and_jsonl_bodies() -> None:
    second = {**EVENT, "request_id": "r2"}
    status, sink = asyncio.run(post_audit(AuditMapping(), json.dumps([EVENT, second])))
    assert status == 202 and [r["fields"]["request_id"] for r in sink.of("audit")] == ["r1", "r2"]
    status, sink = asyncio.run(post_audit(AuditMapping(), json.dumps(EVENT) + "\n" + json.dumps(second) + "\n"))
    assert status == 202 and [r["fields"]["request_id"] for r in sink.of("audit")] == ["r1", "r2"]


def test_bad_json_is_refused_and_not_recorded() -> None:
    for body in ("{not json", "", json.dumps([EVENT, 3])):
        status, sink = asyncio.run(post_audit(AuditMapping(), body))
        assert status == 400 and sink.events == []


def test_file_source_follows_a_file_created_later(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    async def scenario() -> ListSink:
        sink = ListSink()
        stop = asyncio.Event()
        tail = asyncio.create_task(tail_audit_file(path, sink, AuditMapping(source="file", path=str(path)),
                                                   SECRETS, stop, poll_s=0.02))
        await asyncio.sleep(0.05)  # the file does not exist yet
        with path.open("a") as handle:
            handle.write(json.dumps(EVENT) + "\n")
            handle.write('{"event": "fallback", "request_id": "r2", "upst')  # a line still being written
            handle.flush()
            assert await wait_for(lambda: len(sink.of("audit")) == 1)
            await asyncio.sleep(0.05)
            assert len(sink.of("audit")) == 1  # the partial line is not parsed half-way
            handle.write(f'ream_key": "{SECRETS["svc-eu"]}"}}\nnot json\n')
            handle.write(json.dumps({**EVENT, "request_id": "r3"}))  # no newline: only read at stop
        assert await wait_for(lambda: len(sink.of("audit")) == 2)
        stop.set()
        await asyncio.wait_for(tail, 2)
        return sink

    sink = asyncio.run(scenario())
    records = sink.of("audit")
    assert [r["fields"]["request_id"] for r in records] == ["r1", "r2", "r3"]
    assert all(r["source"] == "file" for r in records)
    assert records[1]["leaked_identities"] == ["svc-eu"] and records[1]["raw"]["upstream_key"] == "<redacted:svc-eu>"
    [note] = sink.of("note")
    assert "line 3" in note["message"]
    assert SECRETS["svc-eu"] not in json.dumps(sink.events)


async def _posts(attempts: list[tuple[str, dict[str, str]]], body: str) -> tuple[list[int], ListSink, int]:
    """Each (path, headers) POSTed with `body` to a collector of token TOKEN; then its health, and a stop."""
    sink = ListSink()
    runner, url = await start_app(build_collector_app(sink, AuditMapping(), SECRETS, TOKEN))
    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as session:
            for path, headers in attempts:
                async with session.post(f"{url}{path}", data=body, headers=headers) as resp:
                    statuses.append(resp.status)
            async with session.get(f"{url}/health") as resp:
                health = resp.status
    finally:
        await runner.cleanup()  # the refusals' note is written here
    return statuses, sink, health


def test_audit_posts_need_the_run_token() -> None:
    attempts = [("/audit", {}), ("/wrong-token/audit", {}), ("/audit", {"X-Harness-Audit-Token": "wrong"}),
                (f"/{TOKEN[:-1]}/audit", {}), (f"/{TOKEN}x/audit", {}),
                (f"/{TOKEN}/audit", {}), ("/audit", {"X-Harness-Audit-Token": TOKEN})]
    statuses, sink, health = asyncio.run(_posts(attempts, json.dumps(EVENT)))
    assert statuses == [401, 401, 401, 401, 401, 202, 202] and health == 200
    assert len(sink.of("audit")) == 2  # only the two with the token
    [note] = sink.of("note")
    assert note["level"] == "warning" and note["message"] == "5 audit posts refused: no or wrong run token"


def test_no_note_when_nothing_was_refused_and_the_token_is_never_recorded() -> None:
    # A gateway echoing its own audit URL: the token is redacted like a key, but it is no identity's leak.
    echo = {**EVENT, "posted_to": f"http://127.0.0.1:1/{TOKEN}/audit"}
    statuses, sink, _ = asyncio.run(_posts([(f"/{TOKEN}/audit", {})], json.dumps(echo)))
    assert statuses == [202] and sink.of("note") == []
    [record] = sink.of("audit")
    assert record["raw"]["posted_to"] == "http://127.0.0.1:1/<redacted:collector.token>/audit"
    assert record["leaked_identities"] == [] and TOKEN not in json.dumps(sink.events)


def test_a_collector_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError, match="audit token"):
        build_collector_app(ListSink(), AuditMapping(), SECRETS, "")

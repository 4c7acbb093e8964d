"""The audit collector: receives the gateway's audit events, maps them to our field names and
redacts any credential in them before anything reaches the ledger.

Two sources share one function (`audit_record`): an HTTP endpoint the gateway POSTs to, and a
JSONL file the gateway writes (followed like `tail -f`).

The HTTP endpoint takes a POST only with the run's audit token (`audit_token`), handed to the gateway
through `{collector.url}` (which ends in it: `POST {collector.url}/audit`) or `{collector.token}` (for
a header, `X-Harness-Audit-Token`): any other local process could otherwise write the run's ground
truth. A refused POST is answered 401 and counted; the count, never the body, becomes one note when
the collector stops. The file source has no token: its protection is the private workdir's mode (0700).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets as pysecrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from harness.core import events as ev
from harness.core.events import EventSink
from harness.core.model import AuditField, AuditMapping

log = logging.getLogger(__name__)

AUDIT_FIELDS: tuple[str, ...] = AuditField.__args__  # type: ignore[attr-defined]
_TARGET_FIELDS = ("primary", "fallback")
_PATH_PART = re.compile(r"[^.\[\]]+")
_MISSING = object()
AUDIT_TOKEN_HEADER = "X-Harness-Audit-Token"
AUDIT_TOKEN_NAME = "collector.token"  # the name a redacted token shows: `<redacted:collector.token>`


def audit_token() -> str:
    """A fresh per-run audit token: URL-safe, so it can be a path segment of `{collector.url}`."""
    return pysecrets.token_urlsafe(24)


def _lookup(event: Any, path: str) -> Any:
    """Follow a dotted path (`a.b.0.c` or `a.b[0].c`) through objects and lists."""
    current = event
    for part in _PATH_PART.findall(path):
        if isinstance(current, dict):
            if part not in current:
                return _MISSING
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _redact(event: Any, secrets: Mapping[str, str],
            hidden: Mapping[str, str] | None = None) -> tuple[Any, list[str]]:
    """The event with every key occurrence replaced by `<redacted:IDENTITY>`, and who leaked.

    The search runs over the JSON text, so a key is found wherever it hides: a value, an
    object key, the middle of a log message. Parsing then re-serializing first normalizes any
    escaping the gateway used, so an escaped key cannot slip through. `hidden` (the audit token) is
    replaced the same way but named in no leak: it is the harness's own, not an identity's.
    """
    text = json.dumps(event, ensure_ascii=False)
    leaked: set[str] = set()
    changed = False
    every = [*((name, key, True) for name, key in secrets.items()),
             *((name, value, False) for name, value in (hidden or {}).items())]
    # Longest key first: a key that contains another one must be replaced whole.
    for name, key, counts in sorted(every, key=lambda item: -len(item[1])):
        if not key:
            continue
        needle = json.dumps(key, ensure_ascii=False)[1:-1]
        if needle in text:
            changed = True
            if counts:
                leaked.add(name)
            text = text.replace(needle, json.dumps(f"<redacted:{name}>", ensure_ascii=False)[1:-1])
    return (json.loads(text) if changed else event), sorted(leaked)


def audit_record(event: Any, mapping: AuditMapping, secrets: Mapping[str, str], source: str,
                 ts: float | None = None, hidden: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One `audit` ledger event for one of the gateway's audit events."""
    raw, leaked = _redact(event, secrets, hidden)
    fields: dict[str, Any] = {}
    for name in AUDIT_FIELDS:
        # A field absent from their event stays absent here, so "missing" and "null" differ.
        value = _lookup(raw, mapping.fields.get(name, name))  # type: ignore[call-overload]
        if value is _MISSING:
            continue
        if name in _TARGET_FIELDS and isinstance(value, str):
            value = mapping.values.get(value, value)
        fields[name] = value
    record: ev.AuditEvent = {
        "type": ev.AUDIT, "ts": time.time() if ts is None else ts, "source": source,
        "fields": fields, "leaked_identities": leaked, "raw": raw,
    }
    return dict(record)


def parse_audit_body(text: str) -> list[Any]:
    """One JSON object, a JSON list of them, or JSONL; raises ValueError otherwise."""
    try:
        body = json.loads(text)
    except ValueError:
        body = [json.loads(line) for line in text.splitlines() if line.strip()]
        if not body:
            raise ValueError("no JSON in the body") from None
    events = body if isinstance(body, list) else [body]
    if not all(isinstance(item, dict) for item in events):
        raise ValueError("every audit event must be a JSON object")
    return events


class _Refusals:
    """POSTs refused for a missing or wrong token: counted while the run goes, one note at its end."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.count = 0

    async def note(self, app: web.Application) -> None:
        if self.count:
            # Only the count: a refused body is nobody's evidence and may hold anything.
            self.sink.append({"type": ev.NOTE, "ts": time.time(), "level": "warning",
                              "message": f"{self.count} audit post{'s' if self.count != 1 else ''} refused: "
                                         "no or wrong run token"})


def build_collector_app(sink: EventSink, mapping: AuditMapping, secrets: Mapping[str, str],
                        token: str) -> web.Application:
    """The collector's HTTP side: `POST /{token}/audit`, or `POST /audit` with the token in the
    `X-Harness-Audit-Token` header; `GET /health` is open."""
    if not token:
        raise ValueError("the collector needs an audit token: without one anybody could write the evidence")
    # The keys and the token are held here only, to recognize them; they are never written anywhere.
    secret_copy = dict(secrets)
    hidden = {AUDIT_TOKEN_NAME: token}
    expected = token.encode()
    refusals = _Refusals(sink)

    def authorized(given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)

    async def accept(request: web.Request) -> web.Response:
        ts = time.time()
        try:
            events = parse_audit_body(await request.text())
        except (ValueError, UnicodeDecodeError) as exc:
            return web.json_response({"error": f"not an audit event: {exc}"}, status=400)
        for event in events:
            sink.append(audit_record(event, mapping, secret_copy, "collector", ts, hidden))
        return web.json_response({"accepted": len(events)}, status=202)

    def refuse() -> web.Response:
        refusals.count += 1
        return web.json_response({"error": "missing or wrong audit token: post to {collector.url}/audit, or send "
                                           f"the {AUDIT_TOKEN_HEADER} header"}, status=401)

    async def by_header(request: web.Request) -> web.Response:
        return await accept(request) if authorized(request.headers.get(AUDIT_TOKEN_HEADER, "")) else refuse()

    async def by_path(request: web.Request) -> web.Response:
        return await accept(request) if authorized(request.match_info["token"]) else refuse()

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/audit", by_header)
    app.router.add_post("/{token}/audit", by_path)
    app.router.add_get("/health", health)
    app.on_cleanup.append(refusals.note)
    return app


async def tail_audit_file(path: str | Path, sink: EventSink, mapping: AuditMapping, secrets: Mapping[str, str],
                          stop: asyncio.Event, poll_s: float = 0.05, hidden: Mapping[str, str] | None = None) -> None:
    """Follow a JSONL file the gateway appends to; on `stop`, read what remains and return.

    The file may not exist yet (the gateway creates it on its first event). Only complete lines
    are read while following, so a line being written is never parsed half-way.
    """
    path = Path(path)
    position = 0
    pending = b""
    line_number = 0

    def drain(final: bool) -> None:
        nonlocal position, pending, line_number
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size < position:  # truncated or replaced: start over rather than read garbage
            position, pending = 0, b""
        if size > position:
            with path.open("rb") as handle:
                handle.seek(position)
                data = handle.read()
            position += len(data)
            pending += data
        *lines, pending = pending.split(b"\n")
        if final and pending.strip():
            lines.append(pending)  # the gateway has stopped: its last line will not grow any more
            pending = b""
        for line in lines:
            line_number += 1
            if line.strip():
                _record_line(line, line_number)

    def _record_line(line: bytes, number: int) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            # Not an audit event, and possibly holding a key: note where, never what.
            sink.append({"type": ev.NOTE, "ts": time.time(), "level": "warning",
                         "message": f"audit file {path.name} line {number} is not JSON; skipped"})
            return
        sink.append(audit_record(event, mapping, secrets, "file", hidden=hidden))

    while not stop.is_set():
        drain(final=False)
        try:
            await asyncio.wait_for(stop.wait(), poll_s)
        except TimeoutError:
            pass
    drain(final=True)


async def follow_sse_audit(url: str, sink: EventSink, mapping: AuditMapping, secrets: Mapping[str, str],
                           stop: asyncio.Event, retry_s: float = 0.2, hidden: Mapping[str, str] | None = None) -> None:
    """Follow a server-sent event stream of the gateway's logs (Portkey's /log/stream).

    Each `data:` payload that is a JSON object is one audit event; anything else is skipped with
    a note naming the line, never its content (it may hold a key). Reconnects until `stop`.
    """
    import aiohttp  # the collector's server side does not need a client

    async def consume(session: aiohttp.ClientSession) -> None:
        async with session.get(url, headers={"accept": "text/event-stream"}) as resp:
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    try:
                        event = json.loads(line[5:].strip())
                    except ValueError:
                        continue  # keep-alives and plain-text lines
                    if isinstance(event, dict):
                        sink.append(audit_record(event, mapping, secrets, "sse", hidden=hidden))

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            task = asyncio.create_task(consume(session))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if task not in done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return
            if task.exception() is not None:
                log.debug("audit stream %s: %s", url, task.exception())
            try:
                await asyncio.wait_for(stop.wait(), retry_s)
            except TimeoutError:
                pass

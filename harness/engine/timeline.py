"""The nemesis side of the timeline: faults and kill-switch actions, each undone for sure.

Every injection is recorded (with how to undo it) before it acts and is undone in a
`finally`; the provider-side deadline heals it even if this process dies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from harness.core import events as ev
from harness.core.events import EventSink
from harness.core.model import Fault, KillSwitch, KillSwitchAction
from harness.core.placeholders import fill
from harness.faults.base import FaultBackend
from harness.faults.journal import FaultJournal
from harness.traffic.source import Overrides

# Past its scheduled end a fault lives this much longer at most, if nobody heals it.
DEADLINE_GRACE_S = 5.0


class FaultScheduler:
    def __init__(self, backends: dict[str, FaultBackend], sink: EventSink, log: Callable[[str], None],
                 journal: FaultJournal | None = None) -> None:
        self.backends = backends
        self.sink = sink
        self.log = log
        self.journal = journal
        self.active: dict[str, tuple[Fault, list[str]]] = {}
        self.errors: list[str] = []

    async def run(self, fault: Fault, start: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start + fault.at_s - loop.time()))
        backend = self.backends[fault.backend]
        targets = backend.resolve(fault)
        # Only faults the target drops by itself get a deadline; a docker fault has none.
        deadline = time.time() + fault.duration_s + DEADLINE_GRACE_S if backend.self_expiring else None
        undo = backend.undo_description(fault, targets)
        # Recorded, with how to undo it, before it acts: in the ledger and in the journal that
        # `harness recover` reads if this process dies.
        if self.journal is not None:
            self.journal.record(fault.name, backend.name, targets, undo, deadline, fault.effect.model_dump(mode="json"))
        self.sink.append({
            "type": ev.FAULT_START, "fault": fault.name, "backend": backend.name, "targets": targets,
            "providers": backend.providers(fault, targets),
            "effect": fault.effect.model_dump(mode="json"),
            "match": fault.match.model_dump(mode="json", exclude_none=True) if fault.match else None,
            "probability": fault.probability, "deadline_ts": deadline, "undo": undo,
        })
        self.active[fault.name] = (fault, targets)
        try:
            await backend.inject(fault, targets, deadline)
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            self.errors.append(f"fault {fault.name}: injection failed: {exc}")
            await self.heal(fault.name, "aborted")
            raise
        self.log(f"fault {fault.name} injected on {', '.join(targets)}")
        await asyncio.sleep(max(0.0, start + fault.at_s + fault.duration_s - loop.time()))
        await self.heal(fault.name, "scheduled")
        self.log(f"fault {fault.name} healed")

    async def heal(self, name: str, reason: str) -> None:
        entry = self.active.pop(name, None)
        if entry is None:
            return
        fault, targets = entry
        errors = await self.backends[fault.backend].heal(fault, targets)
        if self.journal is not None and not errors:
            self.journal.clear(name)
        self.sink.append({"type": ev.FAULT_END, "fault": name, "healed": not errors, "reason": reason,
                          "error": "; ".join(errors) or None})

    async def heal_all(self, reason: str) -> None:
        for name in list(self.active):
            await self.heal(name, reason)


class KillSwitchDriver:
    """Flips the gateway's fallback off and on through the HTTP call the scenario defines."""

    def __init__(self, spec: KillSwitch, placeholders: dict[str, str], session: aiohttp.ClientSession,
                 sink: EventSink, log: Callable[[str], None], set_overrides: Callable[[Overrides | None], None],
                 redact: Callable[[str], str] = str) -> None:
        self.spec = spec
        self.set_overrides = set_overrides  # the traffic source's, for a per-request switch
        self.redact = redact
        self.url = fill(spec.url or "", placeholders, "gateway.kill_switch.url")
        self.request_headers = {k: fill(v, placeholders, f"gateway.kill_switch.request_headers.{k}")
                                for k, v in spec.request_headers.items()}
        self.headers = {k: fill(v, placeholders, f"gateway.kill_switch.headers.{k}") for k, v in spec.headers.items()}
        self.session = session
        self.sink = sink
        self.log = log
        self.off = False

    async def run(self, action: KillSwitchAction, start: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start + action.at_s - loop.time()))
        await self.set(action.state)

    async def set(self, state: str) -> None:
        body: Any = self.spec.off_body if state == "off" else self.spec.on_body
        event: dict[str, Any] = {"type": ev.KILL_SWITCH, "state": state, "ok": False, "status": None, "error": None,
                                 "ts_sent": time.time()}
        if state == "off":
            self.off = True  # recorded before it acts: the finally turns it back on either way
        if self.spec.mode == "request":
            # No call to make: from now on the traffic source adds the switch to every request it sends.
            self.set_overrides((self.request_headers, dict(self.spec.request_body)) if state == "off" else None)
            self.off = state == "off"
            event["ok"], event["ts"] = True, time.time()
            self.sink.append(event)
            self.log(f"kill switch {state} (per request)")
            return
        try:
            async with self.session.request(self.spec.method, self.url, json=body, headers=self.headers) as resp:
                event["status"] = resp.status
                event["ok"] = resp.status < 300
                if not event["ok"]:
                    event["error"] = self.redact((await resp.text())[:300])
        except (aiohttp.ClientError, TimeoutError) as exc:
            event["error"] = self.redact(f"{type(exc).__name__}: {exc}")
        if state == "on" and event["ok"]:
            self.off = False
        event["ts"] = time.time()  # when the gateway acknowledged it
        self.sink.append(event)
        self.log(f"kill switch {state}: {'ok' if event['ok'] else event['error'] or event['status']}")

    async def restore(self) -> None:
        if self.off:
            await self.set("on")

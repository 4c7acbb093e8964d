"""The gateway's audit trail: one event per fallback, POSTed to the collector in the background."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp

from harness.topology.reference_gateway.config import GatewayConfig
from harness.topology.reference_gateway.routing import RequestAttrs

log = logging.getLogger(__name__)
_SEND_TIMEOUT = aiohttp.ClientTimeout(total=5)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditEmitter:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.url = f"{config.collector_url}/audit" if config.collector_url else None
        self.session: aiohttp.ClientSession | None = None
        # Held so the tasks are not garbage-collected mid-flight, and awaited at shutdown.
        self._pending: set[asyncio.Task[None]] = set()

    def fallback(self, attrs: RequestAttrs, route: str, primary: str, served: str, reason: str, key_used: str) -> None:
        if self.config.has("no-audit"):
            return
        event: dict[str, Any] = {
            "event": "fallback", "request_id": attrs.request_id, "tenant": attrs.tenant, "route": route,
            "region": attrs.region, "request_class": attrs.request_class, "primary": primary,
            "fallback": self._named_target(route, primary, served), "reason": reason, "timestamp": _now_iso(),
        }
        if self.config.has("key-leak"):
            event["upstream_key"] = key_used
        self._send(event)

    def _named_target(self, route: str, primary: str, served: str) -> str:
        if not self.config.has("wrong-audit-target"):
            return served
        # The defect: name another approved target if there is one, else the primary.
        for target in self.config.policy.routes[route].fallbacks:
            if target.target not in (served, primary):
                return target.target
        return primary

    def _send(self, event: dict[str, Any]) -> None:
        if self.url is None or self.session is None:
            return
        task = asyncio.create_task(self._post(self.session, self.url, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @staticmethod
    async def _post(session: aiohttp.ClientSession, url: str, event: dict[str, Any]) -> None:
        try:
            async with session.post(url, json=event, timeout=_SEND_TIMEOUT) as response:
                if response.status >= 300:
                    log.warning("collector refused an audit event: HTTP %s", response.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("audit event not delivered: %s", type(exc).__name__)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Let in-flight audit events arrive before the gateway stops."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)

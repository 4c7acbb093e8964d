"""The reference gateway: an OpenAI-compatible front that implements governed fallback.

It is the harness's own system under test for its selftest: correct by default, and each
switchable defect breaks exactly one rule, so every check can be shown to catch its breach.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from harness.core.identity import bearer
from harness.topology.reference_gateway.audit import AuditEmitter
from harness.topology.reference_gateway.config import GatewayConfig, UpstreamProvider
from harness.topology.reference_gateway.routing import (
    Cause,
    PrimaryHealth,
    RequestAttrs,
    fallback_targets,
    fitting,
    is_fail_closed,
    triggers_fallback,
)
from harness.topology.reference_gateway.upstream import (
    CONTEXT_LENGTH,
    Attempt,
    answer,
    call_upstream,
    function_tool,
    relay_stream,
)

log = logging.getLogger(__name__)
ADMIN_HEADER = "x-admin-token"
STORM_PRIMARY_ATTEMPTS = 6  # retry-storm: the first try and five retries
EXTRA_TOOL = "code_interpreter"


def _error(status: int, message: str, type_: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "code": code, "param": None}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class ReferenceGateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.health = PrimaryHealth(config.cooldown_s, sticky=config.has("sticky-fallback"))
        self.audit = AuditEmitter(config)
        self.fallback_enabled = True   # what governs routing
        self.reported_enabled = True   # what the admin endpoint says (differs only with ignore-kill-switch)
        self.session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def session_ctx(self, app: web.Application) -> AsyncIterator[None]:
        # One pooled session for every upstream call: a connection per request would not
        # survive thousands of requests a second.
        connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector)
        self.audit.session = self.session
        try:
            yield
        finally:
            await self.audit.drain()
            await self.session.close()

    # -- the model endpoint ------------------------------------------------------------------
    def _attrs(self, request: web.Request) -> RequestAttrs:
        names, headers = self.config.headers, request.headers
        return RequestAttrs(
            request_id=headers.get(names.request_id), tenant=headers.get(names.tenant),
            request_class=headers.get(names.request_class), region=headers.get(names.region),
            data_class=headers.get(names.data_class),
        )

    def _client_allowed(self, request: web.Request) -> bool:
        if self.config.client_key is None:
            return True
        given = bearer(request.headers.get("Authorization")) or ""
        return hmac.compare_digest(given.encode(), self.config.client_key.encode())

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if not self._client_allowed(request):
            return _error(401, "missing or wrong API key", "authentication_error", "invalid_api_key")
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return _error(400, "the body must be a JSON object", "invalid_request_error", "invalid_json")
        route_name = body.get("model")
        route = self.config.policy.routes.get(route_name) if isinstance(route_name, str) else None
        if route is None or not isinstance(route_name, str):  # both, so the type of route_name is known below
            return _error(404, f"the model {route_name!r} does not exist", "invalid_request_error", "model_not_found")
        attrs = self._attrs(request)
        stream = bool(body.get("stream"))
        may_fall_back = self.fallback_enabled and not is_fail_closed(self.config, attrs)
        approved = fallback_targets(self.config, route, attrs) if may_fall_back else []
        fallbacks = fitting(self.config, approved, body)
        primary = route.primary
        scope = _scope(primary, attrs)
        # Skip a cooling primary only when there is somewhere else to go.
        skip_primary = bool(fallbacks) and not self.health.available(scope)
        reason: str | None = "primary_cooldown" if skip_primary else None
        storm = self.config.has("retry-storm")
        primaries = [] if skip_primary else [primary] * (STORM_PRIMARY_ATTEMPTS if storm else 1)
        budget = None if storm else self.config.policy.limits.max_upstream_attempts
        order = primaries + fallbacks
        number = 0
        while number < len(order) and (budget is None or number < budget):
            name = order[number]
            is_fallback = name != primary
            key = self._key_for(self.config.providers[name], is_fallback)
            attempt = await self._call(name, body, key, attrs, stream, is_fallback)
            if attempt.ok:
                if is_fallback:
                    self.audit.fallback(attrs, route_name, primary, name, reason or "unknown", key)
                if attempt.response is not None:
                    return await relay_stream(request, attempt, name, self.config.has("truncate-stream"))
                return answer(attempt, name)
            # A prompt too long for the primary says nothing of its health: it must not cool the primary
            # down for the requests that fit.
            if not is_fallback and triggers_fallback(self.config, attempt.cause, attempt.named, defects=False) and (
                    attempt.cause != CONTEXT_LENGTH):
                self.health.failed(scope)
            if attempt.cause == CONTEXT_LENGTH and self.config.has("context-overflow-reroute"):
                # The defect: a context refusal is taken for an outage, and the request goes on to every
                # approved target not tried yet, however small its window.
                tried = set(order[:number + 1])
                order = order[:number + 1] + [n for n in approved if n not in tried]
            elif not triggers_fallback(self.config, attempt.cause, attempt.named):
                return _as_is(attempt)
            if reason is None and not is_fallback:
                reason = _reason(attempt.cause)
            number += 1
        return _error(503, "no upstream could serve the request", "server_error", "upstream_unavailable")

    def _key_for(self, provider: UpstreamProvider, is_fallback: bool) -> str:
        if is_fallback and self.config.has("identity-swap"):
            for name in sorted(self.config.identities):
                if name != provider.identity:
                    return self.config.identities[name]
        return provider.key

    async def _call(self, name: str, body: dict[str, Any], key: str, attrs: RequestAttrs, stream: bool,
                    is_fallback: bool) -> Attempt:
        assert self.session is not None
        provider = self.config.providers[name]
        payload = {**body, "model": provider.model}
        if is_fallback and self.config.has("drops-response-format"):
            # The defect: the fallback call loses the client's response_format (as a gateway that rebuilds
            # the body from the params it knows), so a target that could answer JSON answers text.
            payload.pop("response_format", None)
        if is_fallback and self.config.has("extra-tools"):
            tools = list(body.get("tools") or [])
            present = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict)}
            tools += [function_tool(t) for t in (*provider.tools, EXTRA_TOOL) if t not in present]
            payload["tools"] = tools
        extra = {self.config.headers.request_id: attrs.request_id} if attrs.request_id else {}
        return await call_upstream(self.session, provider, payload, key, extra, self.config.upstream_timeout_s, stream,
                                   self.config.region_headers, self.config.secrets.get(key))

    # -- kill switch and health --------------------------------------------------------------
    def _admin(self, request: web.Request) -> bool:
        given = request.headers.get(ADMIN_HEADER, "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self.config.admin_token.encode())

    async def set_fallback(self, request: web.Request) -> web.Response:
        if not self._admin(request):
            return _error(401, "missing or wrong admin token", "authentication_error")
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("enabled"), bool):
            return _error(400, 'expected {"enabled": true|false}', "invalid_request_error")
        self.reported_enabled = data["enabled"]
        if not self.config.has("ignore-kill-switch"):
            self.fallback_enabled = data["enabled"]
        log.info("fallback switched %s", "on" if data["enabled"] else "off")
        return web.json_response({"enabled": self.reported_enabled})

    async def get_fallback(self, request: web.Request) -> web.Response:
        return web.json_response({"enabled": self.reported_enabled})

    async def health_check(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


def _reason(cause: Cause | None) -> str:
    return str(cause) if cause is not None else "unknown"


def _scope(primary: str, attrs: RequestAttrs) -> str:
    """The cooldown's scope: the primary as seen by one tenant, region and request class.

    Outages are often partial (one tenant's quota, one region's capacity). Cooling the primary
    down only for requests like the one that failed keeps everyone else on the primary, so
    no request is rerouted without a failure that could have hit it too.
    """
    return "\x1f".join((primary, attrs.tenant or "", attrs.region or "", attrs.request_class or ""))


def _as_is(attempt: Attempt) -> web.Response:
    """A failure that is no reason to move: the client gets it as it came."""
    if attempt.status is None:
        if attempt.cause == "timeout":
            return _error(504, "the upstream did not answer in time", "server_error", "upstream_timeout")
        return _error(502, "the upstream connection failed", "server_error", "upstream_connection_error")
    return answer(attempt, None)


GATEWAY_KEY: web.AppKey[ReferenceGateway] = web.AppKey("reference_gateway", ReferenceGateway)


def build_gateway_app(config: GatewayConfig) -> web.Application:
    gateway = ReferenceGateway(config)
    app = web.Application(client_max_size=16 * 1024 * 1024)  # as the providers: long prompts are normal
    app[GATEWAY_KEY] = gateway
    app.cleanup_ctx.append(gateway.session_ctx)
    app.router.add_post("/v1/chat/completions", gateway.chat)
    app.router.add_post("/admin/fallback", gateway.set_fallback)
    app.router.add_get("/admin/fallback", gateway.get_fallback)
    app.router.add_get("/health", gateway.health_check)
    return app

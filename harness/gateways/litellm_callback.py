"""Audit events from inside the LiteLLM proxy, POSTed to the harness's collector.

The LiteLLM adapter copies this file beside the rendered proxy config, which names it
(`litellm_settings.callbacks: litellm_callback.handler`): LiteLLM imports callbacks relative to
the config file. It runs in LiteLLM's interpreter and virtual environment, not the harness's, so
it uses only the standard library and LiteLLM's CustomLogger.

One event per success, failure and fallback (successful or not), each naming the request by the
correlation token in the message content (`[[harness:id=...;tenant=...]]`): the token reaches
every hook, while request headers only reach some of them (they are the fallback here). The
served deployment is LiteLLM's `model_id` (its `model_info.id`); the route is the model group the
client asked for, and the primary is that group's first deployment (the adapter passes the map).

What is forwarded of LiteLLM's own data is its standard logging payload (what it hands every
logging integration) and the exception text, never the raw kwargs: those hold the deployment's
API key. Should LiteLLM put a credential into that payload, the collector finds it there and the
harness reports it as a leak; nothing here hides it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

AUDIT_URL = os.environ.get("HARNESS_AUDIT_URL", "")
PRIMARIES: dict[str, str] = json.loads(os.environ.get("HARNESS_LITELLM_PRIMARIES") or "{}")
_TOKEN = re.compile(r"\[\[harness:([^\]]*)\]\]")
_TOKEN_KEYS = {"id": "request_id", "tenant": "tenant", "class": "request_class", "region": "region",
               "data": "data_class"}
_HEADERS = {"x-harness-request-id": "request_id", "x-harness-tenant": "tenant",
            "x-harness-request-class": "request_class", "x-harness-region": "region",
            "x-harness-data-class": "data_class"}
# Static pricing tables from LiteLLM's cost map: kilobytes per event, and no part of what happened.
_DROPPED = frozenset({"model_map_information"})
BATCH = 200
POST_TIMEOUT_S = 2.0


def correlation(messages: Any) -> dict[str, str]:
    """The request's attributes from the first correlation token in the messages, or {}."""
    if not isinstance(messages, list):
        return {}
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts = [content]
        elif isinstance(content, list):
            texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        else:
            continue
        for text in texts:
            found = _TOKEN.search(text)
            if found is None:
                continue
            parsed: dict[str, str] = {}
            for part in found.group(1).split(";"):
                key, _, value = part.partition("=")
                if key in _TOKEN_KEYS and value:
                    parsed[_TOKEN_KEYS[key]] = value
            if "request_id" in parsed:
                return parsed
    return {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _metadata(kwargs: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's routing metadata: under litellm_params in log hooks, at the top in fallback hooks."""
    params = _dict(kwargs.get("litellm_params"))
    return _dict(params.get("metadata")) or _dict(kwargs.get("metadata")) or _dict(kwargs.get("litellm_metadata"))


def _from_headers(metadata: dict[str, Any], payload: dict[str, Any]) -> dict[str, str]:
    headers = _dict(_dict(payload.get("metadata")).get("requester_custom_headers")) or _dict(metadata.get("headers"))
    return {ours: str(headers[name]) for name, ours in _HEADERS.items() if headers.get(name)}


def describe(exc: Any) -> str | None:
    """An exception as a reason: its class and HTTP status, the way LiteLLM classified the failure."""
    if exc is None:
        return None
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} ({status})" if status else type(exc).__name__


def _previous_reason(metadata: dict[str, Any]) -> str | None:
    """Why LiteLLM left the primary: the last failed hop it recorded before the one that served."""
    previous = metadata.get("previous_models")
    if isinstance(previous, list) and previous and isinstance(previous[-1], dict):
        last = previous[-1]
        return f"{last.get('exception_type')}: {str(last.get('exception_string') or '')[:200]}"
    return None


def _slim(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in _DROPPED}


def build_event(kind: str, kwargs: dict[str, Any], original_group: str | None = None,
                exc: Any = None) -> dict[str, Any]:
    """One audit event. kind: success | failure | fallback | fallback_failed."""
    metadata = _metadata(kwargs)
    payload = _dict(kwargs.get("standard_logging_object"))
    attrs = correlation(kwargs.get("messages")) or correlation(payload.get("messages")) or _from_headers(
        metadata, payload)
    if kind in ("fallback", "fallback_failed"):
        group = kwargs.get("model")  # the fallback model group just tried
        route = original_group or metadata.get("original_model_group")
        deployment = _dict(metadata.get("model_info")).get("id")
    else:
        group = payload.get("model_group") or metadata.get("model_group")
        route = metadata.get("original_model_group") or group
        deployment = payload.get("model_id") or _dict(metadata.get("model_info")).get("id")
    now = time.time()
    primary = PRIMARIES.get(str(route)) if route else None
    event: dict[str, Any] = {
        "event": kind, **attrs, "route": route, "model_group": group, "primary": primary,
        "deployment": deployment or None, "timestamp": datetime.fromtimestamp(now, UTC).isoformat(), "ts": now,
        "attempted_fallbacks": metadata.get("attempted_fallbacks"),
        "attempted_retries": metadata.get("attempted_retries"),
    }
    if kind == "success":
        if deployment and primary and deployment != primary:
            event["fallback"] = deployment
            event["reason"] = _previous_reason(metadata) or f"served by fallback model group {group}"
    elif kind == "failure":
        error = _dict(payload.get("error_information"))
        cls, code = error.get("error_class"), error.get("error_code")
        event["reason"] = (f"{cls} ({code})" if code else str(cls)) if cls else describe(kwargs.get("exception"))
    elif kind == "fallback":
        if deployment:
            event["fallback"] = deployment
        event["reason"] = describe(exc)
    else:
        event["attempted"] = deployment
        event["reason"] = describe(exc)
    if payload:
        event["litellm"] = _slim(payload)
    elif exc is not None:
        event["litellm"] = {"exception": str(exc)[:1000], "fallback_depth": kwargs.get("fallback_depth")}
    return event


class _Sender:
    """POSTs events from a thread of its own, in batches: LiteLLM's event loop never waits on us."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        # No proxy, whatever the environment says: the collector is on 127.0.0.1.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(self, event: dict[str, Any]) -> None:
        if not self.url:
            return
        with self.lock:
            if self.thread is None:  # started on first use: after any fork of the server
                self.thread = threading.Thread(target=self._run, name="harness-audit", daemon=True)
                self.thread.start()
        self.queue.put(event)

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._post(batch)

    def _post(self, batch: list[dict[str, Any]]) -> None:
        body = json.dumps(batch, default=str).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"content-type": "application/json"})
        try:
            self.opener.open(request, timeout=POST_TIMEOUT_S).close()
        except (OSError, ValueError) as exc:
            # Never the payload: it may hold what we are looking for (a key) and this goes to a log.
            print(f"harness audit: {len(batch)} event(s) not delivered: {type(exc).__name__}", file=sys.stderr)


class HarnessAudit(CustomLogger):  # type: ignore[misc]  # LiteLLM ships no type information for it
    def __init__(self, sender: _Sender | None = None) -> None:
        super().__init__()
        self.sender = sender or _Sender(AUDIT_URL)

    def _emit(self, kind: str, kwargs: Any, original_group: str | None = None, exc: Any = None) -> None:
        try:
            self.sender.send(build_event(kind, _dict(kwargs), original_group, exc))
        except Exception as error:  # noqa: BLE001 - auditing must never break the request it describes
            print(f"harness audit: {kind} event not built: {type(error).__name__}: {error}", file=sys.stderr)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._emit("success", kwargs)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._emit("failure", kwargs)

    async def log_success_fallback_event(self, original_model_group: str, kwargs: dict[str, Any],
                                         original_exception: Exception) -> None:
        self._emit("fallback", kwargs, original_model_group, original_exception)

    async def log_failure_fallback_event(self, original_model_group: str, kwargs: dict[str, Any],
                                         original_exception: Exception) -> None:
        self._emit("fallback_failed", kwargs, original_model_group, original_exception)


handler = HarnessAudit()

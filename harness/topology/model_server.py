"""A minimal OpenAI-compatible model server: a stand-in for a real model endpoint.

    python -m harness.topology.model_server --port N [--model M] [--host 127.0.0.1]
        [--chunks 4] [--chunk-delay-ms 0] [--latency-ms 0]

It answers `POST /v1/chat/completions` (and `/chat/completions`) with a chat completion or an
SSE stream, lists its model at `GET /v1/models` and answers `GET /health`. It records nothing
and injects no faults: it is the *upstream* the fault proxy sits in front of, in tests and inside
a container. With `MODEL_SERVER_API_KEY` set it accepts only that bearer key, as a real provider
would (read from the environment so the key never shows in `ps`).

It renders its answers with the mock provider's OpenAI dialect (apis/openai.py), so both speak exactly the same words.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import sys
import time
from dataclasses import dataclass

from aiohttp import web

from harness.topology.apis.openai import completion, stream_events

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


# -- the server ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelServerConfig:
    model: str | None = None        # None: answer as the model the request names
    chunks: int = 4                 # content chunks of a streamed answer
    chunk_delay_s: float = 0.0      # pause before each streamed chunk (to show relays do not buffer)
    latency_s: float = 0.0          # pause before answering at all
    api_key: str | None = None      # when set, only this bearer key is accepted


def _error(status: int, message: str, type_: str) -> web.Response:
    body = {"error": {"message": message, "type": type_, "code": None, "param": None}}
    return web.json_response(body, status=status)


def _authorized(request: web.Request, key: str | None) -> bool:
    if key is None:
        return True
    given = request.headers.get("Authorization", "")
    given = given[7:].strip() if given.lower().startswith("bearer ") else request.headers.get("api-key", "")
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key.encode())


def build_model_server_app(config: ModelServerConfig) -> web.Application:
    served = {"n": 0}

    async def chat(request: web.Request) -> web.StreamResponse:
        if not _authorized(request, config.api_key):
            return _error(401, "invalid api key", "authentication_error")
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("not a chat request")
        except ValueError:
            return _error(400, "the body is not a chat completion request", "invalid_request_error")
        if config.latency_s > 0:
            await asyncio.sleep(config.latency_s)
        served["n"] += 1
        model = config.model or str(body.get("model") or "model")
        completion_id = f"chatcmpl-ms-{served['n']}"
        created = int(time.time())
        text = f"This is answer number {served['n']} from {model}."
        if not body.get("stream"):
            return web.json_response(completion(completion_id, created, model, text))
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        try:
            for event in stream_events(completion_id, created, model, text, config.chunks, usage):
                if config.chunk_delay_s > 0:
                    await asyncio.sleep(config.chunk_delay_s)
                await response.write(event)
            await response.write_eof()
        except ConnectionError:
            pass  # the caller went away mid-stream (a gateway timing out): nobody is left to answer
        return response

    async def models(request: web.Request) -> web.Response:
        name = config.model or "model"
        return web.json_response({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "local"}]})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "model": config.model, "served": served["n"]})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.topology.model_server",
                                     description="A minimal OpenAI-compatible model server (no recording, no faults).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (0.0.0.0 inside a container)")
    parser.add_argument("--model", default=None, help="model name it answers as (default: the requested one)")
    parser.add_argument("--chunks", type=int, default=4, help="content chunks of a streamed answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause before each streamed chunk")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="pause before each answer")
    args = parser.parse_args(argv)
    config = ModelServerConfig(model=args.model, chunks=max(1, args.chunks), chunk_delay_s=args.chunk_delay_ms / 1000,
                               latency_s=args.latency_ms / 1000, api_key=os.environ.get("MODEL_SERVER_API_KEY") or None)

    def ready(_message: str) -> None:  # one line, flushed, so whoever started us can wait for it
        print(f"model server listening on http://{args.host}:{args.port}", flush=True)

    # run_app stops cleanly on SIGINT and SIGTERM (docker stop sends SIGTERM).
    # Handler cancellation: a caller that gives up stops its answer too, instead of a pause running on.
    web.run_app(build_model_server_app(config), host=args.host, port=args.port, access_log=None, print=ready,
                handler_cancellation=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

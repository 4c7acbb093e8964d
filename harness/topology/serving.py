"""Start an aiohttp application (on the loopback interface unless told otherwise) and report its URL."""

from __future__ import annotations

from aiohttp import web

HOST = "127.0.0.1"


async def start_app(app: web.Application, port: int = 0, *, handler_cancellation: bool = True,
                    reuse_port: bool = False, host: str = HOST) -> tuple[web.AppRunner, str]:
    """Serve `app` on `host`:`port` (0 picks a free one); returns the runner and its base URL.

    Handler cancellation is on by default: when a client gives up (a gateway timing out a hung
    provider), the handler stops too instead of holding its sleep and socket until the hold ends.
    reuse_port: SO_REUSEPORT, so that several processes of one provider listen on its one port and the
    kernel spreads the connections over them (only then: a lone server keeps its port to itself).
    host: the reference gateway listens where remote load workers reach it (every address: the URL names
    loopback, where this machine reaches it).
    """
    runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True if reuse_port else None)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    named = HOST if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    return runner, f"http://{named}:{bound_port}"

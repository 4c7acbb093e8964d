"""Start an aiohttp application on the loopback interface and report its URL."""

from __future__ import annotations

from aiohttp import web

HOST = "127.0.0.1"


async def start_app(app: web.Application, port: int = 0, *, handler_cancellation: bool = True,
                    reuse_port: bool = False) -> tuple[web.AppRunner, str]:
    """Serve `app` on 127.0.0.1:`port` (0 picks a free one); returns the runner and its base URL.

    Handler cancellation is on by default: when a client gives up (a gateway timing out a hung
    provider), the handler stops too instead of holding its sleep and socket until the hold ends.
    reuse_port: SO_REUSEPORT, so that several processes of one provider listen on its one port and the
    kernel spreads the connections over them (only then: a lone server keeps its port to itself).
    """
    runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, reuse_port=True if reuse_port else None)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return runner, f"http://{HOST}:{bound_port}"

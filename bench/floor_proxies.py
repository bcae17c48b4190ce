"""Two stand-ins for the token gateway that do none of its work, to measure what any proxy on this machine costs:
a bare TCP relay (bytes in, bytes out, no HTTP at all) and a minimal aiohttp proxy (the gateway's own server and
client libraries on uvloop, streaming the body as the gateway does, but no tokens, routing, metrics, limits or log).
Callers send TorchServe's own key; both pass it through. bench/proxy_floor.py runs each as a process of its own.

    .venv/bin/python bench/floor_proxies.py relay|aiohttp PORT UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

_PASSED = ("Authorization", "Content-Type", "Content-Length")
SESSION = web.AppKey("session", aiohttp.ClientSession)


class _Relay(asyncio.Protocol):
    """One client connection, copied byte for byte to its own upstream connection and back."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._client: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._early: list[bytes] = []
        self._connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._client = transport  # type: ignore[assignment]
        self._connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._upstream, _ = await loop.create_connection(lambda: _Back(self._client), "127.0.0.1",
                                                         self._upstream_port)
        self._upstream.writelines(self._early)
        self._early = []

    def data_received(self, data: bytes) -> None:
        if self._upstream is None:
            self._early.append(data)
        else:
            self._upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upstream is not None:
            self._upstream.close()


class _Back(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport | None) -> None:
        self._client = client

    def data_received(self, data: bytes) -> None:
        assert self._client is not None
        self._client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        assert self._client is not None
        self._client.close()


def minimal_proxy(upstream_port: int) -> web.Application:
    """POST /predictions/... forwarded with the caller's headers that TorchServe needs, the body streamed."""
    async def forward(request: web.Request) -> web.Response:
        headers = {name: request.headers[name] for name in _PASSED if name in request.headers}
        try:
            async with request.app[SESSION].post(f"http://127.0.0.1:{upstream_port}{request.path}", headers=headers,
                                                 data=request.content if request.content_length else None) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body, content_type=answer.content_type)
        except (aiohttp.ClientError, ConnectionError):  # `ab -t` hangs up mid-upload when its time is over
            return web.Response(status=502)

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app[SESSION].close()

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/predictions/{tail:.*}", forward)
    app.cleanup_ctx.append(session)
    return app


async def serve(kind: str, port: int, upstream_port: int) -> None:
    if kind == "relay":
        server = await asyncio.get_running_loop().create_server(lambda: _Relay(upstream_port), "127.0.0.1", port)
        async with server:
            await server.serve_forever()
        return
    runner = web.AppRunner(minimal_proxy(upstream_port), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    kind, port, upstream = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if kind not in ("relay", "aiohttp"):
        sys.exit(f"unknown kind {kind!r}: relay or aiohttp")
    uvloop.run(serve(kind, port, upstream))

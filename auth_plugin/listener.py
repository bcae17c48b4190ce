"""The gateway's listening socket, with the limits aiohttp does not have: a connection's first request must bring
its headers within `header_timeout_s`, and the proxy holds at most `max_connections` connections, at most
`max_connections_per_address` from one client address. Before these, 500 sockets sending a header byte every 10 s
and 50 silent ones were never closed, and ~20k idle sockets made /healthz and predictions fail (issue 12).

When every slot is taken, a new connection is not refused while an idle one can make room: the oldest idle
kept-alive connection that never presented a valid token goes first, then the oldest idle one of a token holder.
Before that, 4 x 256 token-less connections asking /healthz every 10 s locked every new caller out (issue 33).
Only busy connections (a request in progress) and the per-address cap refuse a newcomer.

Each connection's aiohttp handler is wrapped in a `Guard` protocol that forwards everything to it. Later requests
on a kept-alive connection are aiohttp's own business: its keep-alive timer closes a connection that is still
waiting for a request's headers `keepalive_timeout_s` after the last answer. A request aiohttp cannot parse gets
the gateway's JSON error instead of aiohttp's plain text, which quotes the bad line back (a token among it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from auth_plugin.tls import ReloadableTls

log = logging.getLogger("auth_plugin.listener")
_END_OF_HEADERS = (b"\r\n\r\n", b"\n\n")


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float = 10.0
    max_connections: int = 1024
    max_connections_per_address: int = 256


class Book:
    """Open connections, in all and per client address, oldest first; which of them a token holder has used."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.per_address: Counter[str] = Counter()
        self.refused = 0
        self.evicted = 0
        self._open: dict[int, Guard] = {}  # id(guard) -> guard, in admission order
        self._by_handler: dict[int, Guard] = {}  # id(its aiohttp handler) -> guard, for vouch()

    @property
    def total(self) -> int:
        return len(self._open)

    def admit(self, guard: Guard, address: str) -> bool:
        """Take `guard` in; when full, evict an idle connection to make room; False when none can be."""
        if self.per_address[address] >= self.limits.max_connections_per_address:
            self.refused += 1
            return False
        if self.total >= self.limits.max_connections:
            victim = self._evictable()
            if victim is None:
                self.refused += 1
                return False
            self.evicted += 1
            victim.evict()
        self._open[id(guard)] = guard
        self._by_handler[id(guard.inner)] = guard
        self.per_address[address] += 1
        return True

    def _evictable(self) -> Guard | None:
        """The oldest idle connection no valid token came through, else the oldest idle one at all."""
        idle = [guard for guard in self._open.values() if guard.idle]
        return next((guard for guard in idle if not guard.vouched), idle[0] if idle else None)

    def release(self, guard: Guard) -> None:
        if self._open.pop(id(guard), None) is None:
            return
        self._by_handler.pop(id(guard.inner), None)
        self.per_address[guard.address] -= 1
        if self.per_address[guard.address] <= 0:
            del self.per_address[guard.address]

    def vouch(self, handler: object) -> None:
        """A request on this connection (its aiohttp handler: request.protocol) presented a valid token."""
        guard = self._by_handler.get(id(handler))
        if guard is not None:
            guard.vouched = True


CONNECTIONS = web.AppKey("connections", Book)  # set by serve(): the access middleware vouches for connections


class JsonParseErrors(RequestHandler):
    """aiohttp's connection handler, answering a request it cannot parse with a JSON 4xx that names the kind of
    problem and echoes nothing of the request (aiohttp's plain text quotes the offending header line back)."""

    __slots__ = ()  # the same layout as RequestHandler: an instance made by aiohttp can take this class

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        answer = super().handle_error(request, status, exc, message)  # logs (redacted); refuses once answering
        if status >= 500:
            return answer
        kind = type(exc).__name__ if exc is not None else "BadRequest"
        response = web.json_response({"error": "malformed_request", "status": status,
                                      "message": f"the request is not valid HTTP/1.1 ({kind}); nothing was "
                                                 "forwarded: check its request line and headers for stray "
                                                 "control characters or line endings"}, status=status)
        response.force_close()
        return response


def answer_parse_errors_in_json(handler: RequestHandler) -> RequestHandler:
    """`handler`, made by aiohttp's Server (which offers no hook for its class), as a JsonParseErrors."""
    handler.__class__ = JsonParseErrors
    return handler


class Guard(asyncio.Protocol):
    def __init__(self, inner: RequestHandler, book: Book) -> None:
        self.inner = inner
        self._book = book
        self.address = "unknown"
        self.vouched = False  # a request on it presented a valid token
        self._admitted = False
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._head = b""  # the first request's bytes until its headers end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # uvloop's are not asyncio.Transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._book.admit(self, self.address):
            transport.abort()  # type: ignore[attr-defined]  # refused before any work: no handler, no buffer
            return
        self._admitted, self._transport = True, transport
        self._deadline = asyncio.get_running_loop().call_later(self._book.limits.header_timeout_s, self._too_slow)
        self.inner.connection_made(transport)

    @property
    def idle(self) -> bool:
        """Waiting for a request: its first one's headers still to come, or kept alive between requests (aiohttp's
        own idle test in its keep-alive timer: the handler awaits its next message)."""
        if self._deadline is not None:
            return True
        waiter = getattr(self.inner, "_waiter", None)
        return (waiter is not None and not waiter.done() and not getattr(self.inner, "_request_in_progress", True)
                and not getattr(self.inner, "_messages", True))

    def evict(self) -> None:
        """Close it now to make room: its slot is free at once, before the transport reports the loss."""
        self._book.release(self)
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def _too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            self._head = (self._head + data)[-(1 << 16):]
            if any(mark in self._head for mark in _END_OF_HEADERS):
                self._deadline.cancel()
                self._deadline, self._head = None, b""
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return  # refused in connection_made: the handler never saw it
        self._admitted = False
        if self._deadline is not None:
            self._deadline.cancel()
        self._book.release(self)
        self._transport = None
        self.inner.connection_lost(exc)


async def serve(app: web.Application, host: str, port: int, limits: Limits, tls: ReloadableTls | None = None,
                **runner_options: object) -> None:
    """Run `app` on host:port until SIGTERM or SIGINT, every connection behind a Guard; with `tls`, HTTPS only,
    its certificate reread on SIGHUP."""
    book = Book(limits)
    app[CONNECTIONS] = book
    runner = web.AppRunner(app, handle_signals=False, **runner_options)
    await runner.setup()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Guard(answer_parse_errors_in_json(runner.server()), book), host, port,
                                      reuse_address=True, backlog=1024,
                                      ssl=None if tls is None else tls.listening)
    log.info("listening on %s://%s:%d (header timeout %gs, at most %d connections, %d per address; the oldest "
             "idle one makes room, token-less first)",
             "http" if tls is None else "https", host, port, limits.header_timeout_s, limits.max_connections,
             limits.max_connections_per_address)
    stop = asyncio.Event()
    if tls is not None:
        loop.add_signal_handler(signal.SIGHUP, tls.reload)
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await runner.cleanup()  # lets requests in flight finish, then runs the app's cleanup (no lost writes)

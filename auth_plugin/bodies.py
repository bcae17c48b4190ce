"""Reading a request body with the proxy's limits (a size cap known before reading, and a deadline), or as the
JSON object a control call sends; or a prediction's body sent on to TorchServe while it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from food_rotation.service_error import ServiceError


class TooLarge(ServiceError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "body_too_large", f"the body is over {limit} bytes")


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body; TooLarge as soon as it is known to exceed `limit` (before reading it all), and a 408
    when the client takes longer than `timeout_s` to send it (a slow-loris upload must not hold a slot)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            # readany(): each piece as the socket delivered it. iter_chunked() re-joins pieces into fixed-size
            # chunks, copying a 3 MB photo twice more on the way: half the proxy's CPU per request (profile_proxy.py).
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                chunks.append(chunk)
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout() from exc
    return b"".join(chunks)


class IncompleteBody(ServiceError):
    def __init__(self, received: int, announced: int) -> None:
        super().__init__(400, "incomplete_body", f"the body ended after {received} of the {announced} bytes its "
                                                 "Content-Length announced")


class StreamedBody:
    """A body whose length is announced, sent on while it arrives instead of after: the client's upload and the
    relay to TorchServe overlap (at 12 MP the proxy added 6 ms to a stand-in's answer when it read the body first,
    2 ms streaming; bench/TUNING.md). Its pieces are kept, so a resend (a refused key, a dropped pooled connection)
    starts again from the first. The client library reports only that the upload stopped: why (the deadline, the
    client gone) is kept in `failure`, for the proxy to answer with instead of blaming TorchServe."""

    def __init__(self, request: web.Request, timeout_s: float) -> None:
        self.length = request.content_length or 0
        self.failure: ServiceError | web.HTTPException | None = None
        self._content = request.content
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self._pieces: list[bytes] = []
        self._received = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._from_the_start()

    async def _from_the_start(self) -> AsyncIterator[bytes]:
        for piece in list(self._pieces):
            yield piece
        while self._received < self.length:
            yield await self._next_piece()

    async def _next_piece(self) -> bytes:
        if self.failure is not None:
            raise self.failure
        try:
            async with asyncio.timeout_at(self._deadline):  # each read, never across a yield to the writer
                piece = await self._content.readany()
        except TimeoutError:
            self.failure = web.HTTPRequestTimeout()
            raise self.failure from None
        except Exception as exc:  # the client's connection broke mid-body (aiohttp names it several ways)
            self.failure = IncompleteBody(self._received, self.length)
            raise self.failure from exc
        if not piece:
            self.failure = IncompleteBody(self._received, self.length)
            raise self.failure
        self._pieces.append(piece)
        self._received += len(piece)
        return piece


class UploadStreams:
    """At most `limit` prediction bodies are streamed at once; the others (and every body of unannounced length) are
    read whole first. A slow upload holds its TorchServe connection while it streams, so slow clients can hold at
    most `limit` of the pool's connections, never all of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @contextlib.asynccontextmanager
    async def body(self, request: web.Request, max_bytes: int, timeout_s: float) -> AsyncIterator[bytes | StreamedBody]:
        length = request.content_length
        if not length or length > max_bytes or self.open >= self.limit:
            yield await read_body(request, max_bytes, timeout_s)
            return
        self.open += 1
        try:
            yield StreamedBody(request, timeout_s)
        finally:
            self.open -= 1


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; no body at all is an empty one (within the app's client_max_size). Read twice
    (the audit log reads it before the handler), it is the same: aiohttp keeps what it read."""
    raw = await request.read() if request.body_exists else b""
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ServiceError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ServiceError(400, "json_not_object", "the body must be a JSON object")
    return body

"""Reading a request body with the proxy's limits: a size cap known before reading, and a deadline."""

from __future__ import annotations

import asyncio

from aiohttp import web


class TooLarge(Exception):
    pass


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body; TooLarge as soon as it is known to exceed `limit` (before reading it all), and a 408
    when the client takes longer than `timeout_s` to send it (a slow-loris upload must not hold a slot)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise TooLarge
                chunks.append(chunk)
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout() from exc
    return b"".join(chunks)

"""Reading a request body with the proxy's limits (a size cap known before reading, and a deadline), or as the
JSON object a control call sends."""

from __future__ import annotations

import asyncio
import json
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

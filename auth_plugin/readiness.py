"""/readyz's answer, asked of TorchServe at most once a second however often it is called: the route needs no
token, so a flood of it must not become a flood of management calls (it doubled prediction latency before)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

Answer = tuple[dict[str, Any], int]  # JSON body, HTTP status


class Readiness:
    def __init__(self, check: Callable[[], Awaitable[Answer]], ttl_s: float = 1.0) -> None:
        self._check = check
        self._ttl_s = ttl_s
        self._lock = asyncio.Lock()  # callers arriving during a check wait for its answer instead of asking again
        self._answer: Answer | None = None
        self._at = 0.0

    async def answer(self) -> Answer:
        async with self._lock:
            if self._answer is None or time.monotonic() - self._at >= self._ttl_s:
                self._answer = await self._check()
                self._at = time.monotonic()
            return self._answer

"""TorchServe's own keys, held by the proxy: callers never see them, and they survive expiry and restarts.

TorchServe writes key_file.json at start (new keys every start) and rewrites it when a key is renewed through
its token API. The proxy re-reads the file whenever it changes, renews the inference key shortly before it
expires (authorised with the API key, which does not expire), and reads again after TorchServe refused a key.

TorchServe puts a new key in memory *before* it rewrites the file, and rewrites it in place (truncate, then
write): for a moment after a renewal the file still holds the key just refused, or nothing at all. `read()`
waits that moment out (at most `settle_s`) instead of failing the caller's request.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
from multidict import CIMultiDictProxy

_POLL_S = 0.01


class KeysUnavailable(Exception):
    """key_file.json is missing or unreadable: TorchServe is not (yet) running."""


@dataclass(frozen=True)
class _Keys:
    inference: str
    management: str
    api: str
    inference_expires_at: float
    mtime_ns: int


def _epoch(stamp: str) -> float:
    """TorchServe writes nanoseconds ('...T03:16:45.671557840Z'); Python parses at most microseconds."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp.strip()).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


class TorchServeKeys:
    def __init__(self, key_file: Path, management_url: str, refresh_margin_s: float, settle_s: float = 2.0) -> None:
        self._file = key_file
        self._management_url = management_url.rstrip("/")
        self._margin = refresh_margin_s
        self._settle_s = settle_s
        self._keys: _Keys | None = None
        self._renewing = asyncio.Lock()

    def _load(self) -> _Keys:
        try:
            mtime_ns = self._file.stat().st_mtime_ns
            if self._keys is not None and self._keys.mtime_ns == mtime_ns:
                return self._keys
            document = json.loads(self._file.read_text())
            self._keys = _Keys(
                inference=document["inference"]["key"],
                management=document["management"]["key"],
                api=document["API"]["key"],
                inference_expires_at=_epoch(document["inference"]["expiration time"]),
                mtime_ns=mtime_ns,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeysUnavailable(f"TorchServe's key file {self._file} is not readable: {exc}") from exc
        return self._keys

    async def read(self, refused: str | None = None) -> _Keys:
        """The keys in the file; after TorchServe refused the key `refused`, keys without it.

        A missing file fails at once (TorchServe has not started); an unreadable one, or one still holding the
        refused key, is read again every few milliseconds for up to `settle_s`, then returned or raised as is.
        """
        deadline = time.monotonic() + self._settle_s
        while True:
            if refused is not None:
                self.reload()  # the mtime may not have moved within the clock's tick
            try:
                keys = self._load()
                if refused not in (keys.inference, keys.management) or time.monotonic() >= deadline:
                    return keys
            except KeysUnavailable:
                if not self._file.exists() or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(_POLL_S)

    def reload(self) -> None:
        """Forget what was read: the next read parses the file again."""
        self._keys = None

    async def inference(self, session: aiohttp.ClientSession, refused: str | None = None) -> str:
        """The inference key to send now: read again after TorchServe refused `refused`, and renewed first when
        it expires within the margin (one renewal at a time; a request that waited for it uses the new key)."""
        keys = await self.read(refused)
        if keys.inference_expires_at - time.time() > self._margin:
            return keys.inference
        async with self._renewing:
            keys = await self.read()
            if keys.inference_expires_at - time.time() <= self._margin:  # not renewed while we waited
                await self._renew(session, keys.api)
                keys = await self.read()
        return keys.inference

    async def _renew(self, session: aiohttp.ClientSession, api_key: str) -> None:
        async with session.post(f"{self._management_url}/token", params={"type": "inference"},
                                headers={"Authorization": f"Bearer {api_key}"}) as answer:
            await answer.read()
            if answer.status != 200:
                raise KeysUnavailable(f"TorchServe refused to renew the inference key (HTTP {answer.status})")
        self.reload()


@dataclass(frozen=True)
class KeyedAnswer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def key_refused(self) -> bool:
        return self.status == 400 and b"InvalidKeyException" in self.body


async def send_with_key(session: aiohttp.ClientSession, method: str, url: str,
                        key_for: Callable[[str | None], Awaitable[str]], headers: Mapping[str, str] | None = None,
                        **request: object) -> KeyedAnswer:
    """One request carrying one of TorchServe's keys (`key_for(refused)` gives it). When TorchServe refuses that key
    (it renewed it, or restarted with new ones), the key is read again and the request sent once more; a second
    refusal is returned as it is (`key_refused`) for the caller to answer in its own terms."""
    refused: str | None = None
    while True:
        key = await key_for(refused)
        async with session.request(method, url, headers={**(headers or {}), "Authorization": f"Bearer {key}"},
                                   **request) as answer:
            keyed = KeyedAnswer(answer.status, answer.headers, await answer.read())
        if keyed.key_refused and refused is None:
            refused = key
            continue
        return keyed

"""TorchServe's own keys, owned here for every caller: callers never see them, and they survive expiry and restarts.

TorchServe writes key_file.json at start (new keys every start) and rewrites it when a key is renewed through
its token API. Both the inference and the management key expire (`token_expiration_min`); the API key, which
authorises renewals, does not. This module is the one reader of that file: the gateway (`TorchServeKeys`, async)
and every blocking client (`BlockingTorchServeKeys`: `make serve`'s readiness check, the benches, the tests)
re-read it whenever it changes, renew a key shortly before it expires, and after TorchServe refused a key read
again (another process may have renewed it) or, if the file still holds the refused key, renew it.

TorchServe puts a new key in memory *before* it rewrites the file, and rewrites it in place (truncate, then
write): for a moment after a renewal the file still holds the key just refused, or nothing at all. Reads after a
refusal wait that moment out (at most `settle_s`) instead of failing the caller's request.
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
from typing import Any, Literal

import aiohttp
import requests
from multidict import CIMultiDictProxy

_POLL_S = 0.01
Kind = Literal["inference", "management"]
KINDS: tuple[Kind, ...] = ("inference", "management")


class KeysUnavailable(Exception):
    """key_file.json is missing or unreadable, or TorchServe would not renew a key: it is not (yet) running."""


@dataclass(frozen=True)
class Keys:
    inference: str
    management: str
    api: str
    expires_at: Mapping[str, float]  # kind -> epoch seconds
    written_at: float  # the file's mtime: when TorchServe last issued a key (epoch seconds)

    def key(self, kind: Kind) -> str:
        return self.inference if kind == "inference" else self.management

    def due(self, kind: Kind, margin_s: float, now: float) -> bool:
        """Whether `kind` expires within the margin: `margin_s`, but at most half a key's life (a one-minute key
        would otherwise be renewed on every call). The key TorchServe issued last, when it wrote the file, got a
        whole life: the latest expiry less the file's mtime."""
        life = max(self.expires_at.values()) - self.written_at
        return self.expires_at[kind] - now <= min(margin_s, life / 2)

    def must_renew(self, kind: Kind, margin_s: float, refused: str | None) -> bool:
        """Renew when the key is due, or when TorchServe refused the very key the settled file still holds."""
        return self.due(kind, margin_s, time.time()) or refused == self.key(kind)


def _epoch(stamp: str) -> float:
    """TorchServe writes nanoseconds ('...T03:16:45.671557840Z'); Python parses at most microseconds."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp.strip()).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


class KeyFile:
    """key_file.json, parsed again only when its mtime moves (or after `reload`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: Keys | None = None
        self._mtime_ns = -1

    def load(self) -> Keys:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if self._keys is not None and self._mtime_ns == mtime_ns:
                return self._keys
            document = json.loads(self.path.read_text())
            self._keys = Keys(inference=document["inference"]["key"], management=document["management"]["key"],
                              api=document["API"]["key"], written_at=mtime_ns / 1e9,
                              expires_at={kind: _epoch(document[kind]["expiration time"]) for kind in KINDS})
            self._mtime_ns = mtime_ns
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeysUnavailable(f"TorchServe's key file {self.path} is not readable: {exc}") from exc
        return self._keys

    def reload(self) -> None:
        """Forget what was read: the next load parses the file again (the mtime may not move within a tick)."""
        self._keys = None

    def settled(self, refused: str | None, deadline: float) -> Keys | None:
        """One look at the file while waiting for it to settle: the keys once they no longer hold `refused` (or
        the deadline passed), None to look again. A missing file raises at once: TorchServe has not started."""
        if refused is not None:
            self.reload()
        try:
            keys = self.load()
        except KeysUnavailable:
            if not self.path.exists() or time.monotonic() >= deadline:
                raise
            return None
        if refused not in (keys.inference, keys.management) or time.monotonic() >= deadline:
            return keys
        return None


def renewal(management_url: str, kind: Kind, api_key: str) -> dict[str, Any]:
    """The token API call that replaces `kind`'s key (and its expiry) in TorchServe and in its key file."""
    return {"url": f"{management_url.rstrip('/')}/token", "params": {"type": kind},
            "headers": {"Authorization": f"Bearer {api_key}"}}


def _renewed(kind: Kind, status: int) -> None:
    if status != 200:
        raise KeysUnavailable(f"TorchServe refused to renew the {kind} key (HTTP {status})")


class TorchServeKeys:
    """The gateway's holder: one renewal of each kind at a time, on the event loop."""

    def __init__(self, key_file: Path, management_url: str, refresh_margin_s: float, settle_s: float = 2.0) -> None:
        self._file = KeyFile(key_file)
        self._management_url = management_url
        self._margin = refresh_margin_s
        self._settle_s = settle_s
        self._renewing = {kind: asyncio.Lock() for kind in KINDS}

    async def read(self, refused: str | None = None) -> Keys:
        """The keys in the file; after TorchServe refused the key `refused`, keys without it (see KeyFile.settled)."""
        deadline = time.monotonic() + self._settle_s
        while (keys := self._file.settled(refused, deadline)) is None:
            await asyncio.sleep(_POLL_S)
        return keys

    def reload(self) -> None:
        self._file.reload()

    async def key(self, session: aiohttp.ClientSession, kind: Kind, refused: str | None = None) -> str:
        """The `kind` key to send now, renewed first when it is due or was refused as it stands (one renewal at a
        time; a request that waited for it uses the new key)."""
        keys = await self.read(refused)
        if not keys.must_renew(kind, self._margin, refused):
            return keys.key(kind)
        async with self._renewing[kind]:
            keys = await self.read()
            if keys.must_renew(kind, self._margin, refused):  # not renewed while we waited
                async with session.post(**renewal(self._management_url, kind, keys.api)) as answer:
                    await answer.read()
                    _renewed(kind, answer.status)
                keys = await self.read(keys.key(kind))
        return keys.key(kind)

    async def inference(self, session: aiohttp.ClientSession, refused: str | None = None) -> str:
        return await self.key(session, "inference", refused)

    async def management(self, session: aiohttp.ClientSession, refused: str | None = None) -> str:
        return await self.key(session, "management", refused)


class BlockingTorchServeKeys:
    """The same holder for blocking clients (readiness checks, benches, tests): renewed with `requests`."""

    def __init__(self, key_file: Path, management_url: str, refresh_margin_s: float = 300.0,
                 settle_s: float = 2.0) -> None:
        self._file = KeyFile(key_file)
        self._management_url = management_url
        self._margin = refresh_margin_s
        self._settle_s = settle_s

    def read(self, refused: str | None = None) -> Keys:
        deadline = time.monotonic() + self._settle_s
        while (keys := self._file.settled(refused, deadline)) is None:
            time.sleep(_POLL_S)
        return keys

    def key(self, kind: Kind, refused: str | None = None) -> str:
        keys = self.read(refused)
        if keys.must_renew(kind, self._margin, refused):
            try:
                answer = requests.post(**renewal(self._management_url, kind, keys.api), timeout=10)
            except requests.RequestException as exc:
                raise KeysUnavailable(f"TorchServe did not answer a key renewal: {type(exc).__name__}") from exc
            _renewed(kind, answer.status_code)
            keys = self.read(keys.key(kind))
        return keys.key(kind)

    def headers(self, kind: Kind, refused: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(kind, refused)}"}

    def request(self, method: str, url: str, kind: Kind, **options: Any) -> requests.Response:
        """One call with `kind`'s key, sent once more with a fresh key if TorchServe refuses it."""
        extra = options.pop("headers", None) or {}
        options.setdefault("timeout", 10)
        refused: str | None = None
        while True:
            headers = self.headers(kind, refused)
            answer = requests.request(method, url, headers={**extra, **headers}, **options)
            if refused is None and refuses_key(answer.status_code, answer.content):
                refused = headers["Authorization"].removeprefix("Bearer ")
                continue
            return answer


def refuses_key(status: int, body: bytes) -> bool:
    """TorchServe's answer to a wrong or expired key: HTTP 400 naming InvalidKeyException."""
    return status == 400 and b"InvalidKeyException" in body


@dataclass(frozen=True)
class KeyedAnswer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def key_refused(self) -> bool:
        return refuses_key(self.status, self.body)


async def send_with_key(session: aiohttp.ClientSession, method: str, url: str,
                        key_for: Callable[[str | None], Awaitable[str]], headers: Mapping[str, str] | None = None,
                        **request: object) -> KeyedAnswer:
    """One request carrying one of TorchServe's keys (`key_for(refused)` gives it). When TorchServe refuses that key
    (it renewed it, restarted with new ones, or the key expired), the key is read again (or renewed) and the request
    sent once more; a second refusal is returned as it is (`key_refused`) for the caller to answer in its own terms."""
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

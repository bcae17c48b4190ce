"""TorchServe's own keys, held by the proxy: callers never see them, and they survive expiry and restarts.

TorchServe writes key_file.json at start (new keys every start) and rewrites it when a key is renewed through
its token API. The proxy re-reads the file whenever it changes, renews the inference key shortly before it
expires (authorised with the API key, which does not expire), and `reload()`s after TorchServe refused a key.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp


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
    def __init__(self, key_file: Path, management_url: str, refresh_margin_s: float) -> None:
        self._file = key_file
        self._management_url = management_url.rstrip("/")
        self._margin = refresh_margin_s
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

    def inference(self) -> str:
        return self._load().inference

    def management(self) -> str:
        return self._load().management

    def reload(self) -> None:
        """Forget what was read: the next call reads the file again (TorchServe refused the key we sent)."""
        self._keys = None

    def expires_in(self) -> float:
        return self._load().inference_expires_at - time.time()

    async def renew_if_due(self, session: aiohttp.ClientSession) -> None:
        """Renew the inference key when it expires within the margin; one renewal at a time."""
        if self.expires_in() > self._margin:
            return
        async with self._renewing:
            if self.expires_in() > self._margin:  # another request renewed it while we waited
                return
            await self.renew(session)

    async def renew(self, session: aiohttp.ClientSession) -> None:
        headers = {"Authorization": f"Bearer {self._load().api}"}
        async with session.post(f"{self._management_url}/token", params={"type": "inference"},
                                headers=headers) as answer:
            await answer.read()
            if answer.status != 200:
                raise KeysUnavailable(f"TorchServe refused to renew the inference key (HTTP {answer.status})")
        self.reload()

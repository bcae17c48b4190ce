"""Answer ids: what lets a correction count as evidence about a version.

A correction's `model_version` and `model_degree` come from the caller, so by themselves they prove nothing: a
dozen invented corrections rolled a healthy canary back (issue 33). So every answer the router chose a version for
carries an `X-Answer-Id`: that version, the turn it answered and when, signed by the gateway (HMAC-SHA256, a
128-bit tag). A correction quoting it (`answer_id`) counts once in that version's signals, with the version and
turn the id says; without one, or with a forged, stale or already used one, the correction is still stored for
training, but is no evidence for the canary analysis.

The key is PROXY_ANSWER_KEY where set (gateways that share it accept each other's ids; each remembers only the
ids used at itself), else a random one per gateway process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

_ID = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,99}):(0|90|180|270):(\d{1,12}):([A-Za-z0-9_-]{16}):([A-Za-z0-9_-]{22})")


@dataclass(frozen=True)
class Answered:
    """What an answer id vouches for: the version that answered and the turn it gave."""

    version: str
    model_degree: int


class AnswerReceipts:
    """Issues answer ids and redeems each once, within `lifetime_s` of its answer."""

    def __init__(self, key: bytes | None = None, lifetime_s: float = 3600.0, max_remembered: int = 200_000,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key or secrets.token_bytes(32)
        self._lifetime_s = lifetime_s
        self._max_remembered = max_remembered
        self._clock = clock
        self._used: OrderedDict[str, float] = OrderedDict()  # nonce -> when it stops mattering (expiry)

    def _tag(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, version: str, model_degree: int) -> str:
        payload = f"{version}:{model_degree}:{int(self._clock())}:{secrets.token_urlsafe(12)}"
        return f"{payload}:{self._tag(payload)}"

    def verify(self, answer_id: object) -> Answered | None:
        """What a genuine, unexpired id vouches for (used or not); None for anything else."""
        match = _ID.fullmatch(answer_id) if isinstance(answer_id, str) else None
        if match is None:
            return None
        payload = answer_id.rsplit(":", 1)[0]
        if not hmac.compare_digest(self._tag(payload), match[5]):
            return None
        if not 0 <= self._clock() - int(match[3]) <= self._lifetime_s:
            return None
        return Answered(match[1], int(match[2]))

    def redeem(self, answer_id: str) -> bool:
        """Mark a verified id used: True the first time only. Ids are remembered until they expire (the oldest
        are forgotten first beyond `max_remembered`, by then hours of answers)."""
        now = self._clock()
        while self._used and next(iter(self._used.values())) < now:
            self._used.popitem(last=False)
        nonce = answer_id.split(":")[3]
        if nonce in self._used:
            return False
        self._used[nonce] = int(answer_id.split(":")[2]) + self._lifetime_s
        if len(self._used) > self._max_remembered:
            self._used.popitem(last=False)
        return True

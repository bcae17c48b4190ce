"""A client of the public gateway's prediction route, for commands that send many photos (`food-rotation fix`).

One pooled session per thread; a 429 (rate limit) or 503 (TorchServe busy or restarting) is waited out RETRIES
times, as its Retry-After says; anything else that is not an answer becomes PhotoFailed with the gateway's words.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests

from food_rotation import MODEL_NAME

RETRIES = 3


class PhotoFailed(Exception):
    """This photo got no answer; the message says why (for its row of the report)."""


@dataclass(frozen=True)
class Answer:
    turn: int  # counter-clockwise degrees that make the photo, as shown (EXIF turn applied), upright
    confidence: float
    trusted: bool


class Gateway:
    """POST /predictions/<model> with a token (and the caller's min_confidence, where given)."""

    def __init__(self, url: str, token: str, min_confidence: float | None, timeout_s: float = 60.0) -> None:
        self._url = f"{url.rstrip('/')}/predictions/{MODEL_NAME}"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._params = {} if min_confidence is None else {"min_confidence": str(min_confidence)}
        self._timeout = (5.0, timeout_s)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def ask(self, data: bytes, content_type: str) -> Answer:
        headers = {**self._headers, "Content-Type": content_type}
        for attempt in range(RETRIES + 1):
            try:
                answer = self._session().post(self._url, data=data, params=self._params, timeout=self._timeout,
                                              headers=headers)
            except requests.RequestException as exc:
                raise PhotoFailed(f"no answer from the gateway: {type(exc).__name__}") from exc
            if answer.status_code not in (429, 503) or attempt == RETRIES:
                break
            time.sleep(min(10.0, float(answer.headers.get("Retry-After", "1") or 1)))
        return _answer(answer)


def _answer(answer: requests.Response) -> Answer:
    try:
        document = answer.json()
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    if answer.status_code != 200:
        said = document.get("error", "")
        raise PhotoFailed(f"HTTP {answer.status_code} {said}: {str(document.get('message', ''))[:200]}"
                          if said else f"HTTP {answer.status_code}")
    try:
        return Answer(int(document["model_degree"]), float(document["confidence"]), document["trusted"] is True)
    except (KeyError, TypeError, ValueError) as exc:
        raise PhotoFailed(f"the gateway's answer has no verdict: {exc}") from exc

"""Constant load through the proxy for the rollout and fault tests: real JPEGs, every answer recorded."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests

from food_rotation import MODEL_NAME
from operations.gateway_process import Proxy
from tests.photos import CLEAR_SCENES, encode, rotated, scene

CLIENTS = 6
# Each client waits this long between its requests: a constant load (about 13 requests a second from the six
# clients on the demo weights) that keeps both workers busy but leaves the cores room for what the tests do under
# it. Clients that never paused saturated both cores and every worker start took 20-25 s instead of 8-10; at 0.1 s
# a deploy, a refused deploy and a rollback in test_rollout still took 23-27 s each, at 0.25 s 16-18 s.
THINK_S = 0.25


@dataclass
class Load:
    """CLIENTS threads posting real JPEGs through the proxy until stopped; every answer is recorded."""

    proxy: Proxy
    token: str
    model: str = MODEL_NAME
    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (time, status, model_version)
    stop: threading.Event = field(default_factory=threading.Event)

    def _client(self, index: int) -> None:
        photo = encode(rotated(scene(CLEAR_SCENES[index % len(CLEAR_SCENES)]), 90 * (index % 4)), "JPEG")
        session = requests.Session()
        while not self.stop.is_set():
            try:
                answer = session.post(f"{self.proxy.url}/predictions/{self.model}", data=photo,
                                      headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
                version = answer.json().get("model_version", "") if answer.status_code == 200 else answer.text[:200]
                self.answers.append((time.monotonic(), answer.status_code, version))
            except requests.RequestException as exc:
                self.answers.append((time.monotonic(), 0, repr(exc)))
            self.stop.wait(THINK_S)

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)

    def versions_since(self, start: float) -> Counter[str]:
        return Counter(version for at, status, version in self.answers if at >= start and status == 200)

    def failures(self) -> list[tuple[float, int, str]]:
        return [answer for answer in self.answers if answer[1] != 200]

    def since(self, start: float) -> list[tuple[float, int, str]]:
        return [answer for answer in self.answers if answer[0] >= start]

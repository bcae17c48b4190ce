"""One real TorchServe for the integration tests: a real .mar built by scripts/archive.sh, free loopback ports."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from scripts.serving import TorchServe
from tests.conftest import ROOT


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory, demo_weights: Path) -> Iterator[TorchServe]:
    base = tmp_path_factory.mktemp("torchserve")
    store = base / "model_store"
    build = subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(demo_weights), "--version", "1.0",
                            "--export-path", str(store)], capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stderr
    inference, management, metrics = free_ports(3)
    server = TorchServe(home=base / "home", model_store=store, overrides={
        "inference_address": f"http://127.0.0.1:{inference}",
        "management_address": f"http://127.0.0.1:{management}",
        "metrics_address": f"http://127.0.0.1:{metrics}",
    })
    try:
        server.start()
        server.wait_ready(min_workers=2, timeout=180)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def inference_headers(torchserve: TorchServe) -> dict[str, str]:
    return {"Authorization": f"Bearer {torchserve.keys()['inference']}"}


@pytest.fixture
def predict(torchserve: TorchServe, inference_headers: dict[str, str]):
    """POST to the model with TorchServe's inference key; every call has a timeout (a dead worker hangs)."""
    def call(data: bytes | None = None, content_type: str | None = "image/jpeg", **kwargs) -> requests.Response:
        headers = {**inference_headers, **kwargs.pop("headers", {})}
        if content_type:
            headers["Content-Type"] = content_type
        return requests.post(f"{torchserve.inference_url}/predictions/food_rotation", data=data, headers=headers,
                             timeout=30, **kwargs)
    return call


def worker_pids(server: TorchServe) -> list[int]:
    headers = {"Authorization": f"Bearer {server.keys()['management']}"}
    answer = requests.get(f"{server.management_url}/models/food_rotation", headers=headers, timeout=10)
    answer.raise_for_status()
    return sorted(worker["pid"] for worker in answer.json()[0]["workers"] if worker["status"] == "READY")

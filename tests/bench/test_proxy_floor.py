"""bench/proxy_floor.py's stand-in proxies must really carry a prediction (or their cost would measure nothing), and
its table must set each against TorchServe direct."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import proxy_floor  # bench/ is a folder of scripts, not a package
from bench_instruments import Measure


class _Echo(BaseHTTPRequestHandler):
    """Answers a POST with the size of the body it received and the key it was sent."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = f'{{"bytes": {len(body)}, "key": "{self.headers["Authorization"]}", "path": "{self.path}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize("kind", sorted(proxy_floor.PROXIES.values()))
def test_each_floor_proxy_carries_a_prediction_and_its_key_there_and_back(upstream, kind):
    process, port = proxy_floor.start_floor_proxy(kind, upstream)
    try:
        photo = bytes(range(256)) * 4096  # 1 MiB, several socket reads
        with requests.Session() as session:  # twice on one connection: kept alive as ab -k keeps it
            for _ in range(2):
                answer = session.post(f"http://127.0.0.1:{port}/predictions/food_rotation", data=photo,
                                      headers={"Authorization": "Bearer k3y-k3y!", "Content-Type": "image/jpeg"},
                                      timeout=10)
                assert answer.status_code == 200
                assert answer.json() == {"bytes": len(photo), "key": "Bearer k3y-k3y!",
                                         "path": "/predictions/food_rotation"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_floor_table_sets_every_proxy_against_direct_with_its_cpu():
    names = (proxy_floor.DIRECT, *proxy_floor.PROXIES, proxy_floor.GATEWAY)
    cell = ("1 MP", 16)
    results = {cell: dict(zip(names, (Measure(60.0, 260, 300, 320), Measure(59.4, 262, 300, 320),
                                      Measure(57.0, 275, 300, 320), Measure(56.4, 277, 300, 320)), strict=True))}
    cpu = {cell: {"bare TCP relay": 0.31, "minimal aiohttp proxy": 1.3, "token gateway": 1.45}}
    lines = proxy_floor.table(results, cpu)
    assert "| bare TCP relay / direct (goal >= 0.95) | 0.99 |" in lines
    assert "| token gateway: added p50 ms (goal <= 2) | +17 |" in lines
    assert "| minimal aiohttp proxy: CPU ms per request | 1.30 |" in lines
    assert proxy_floor.WEIGHTS.is_file() and proxy_floor.FLOOR_PROXIES.is_file()

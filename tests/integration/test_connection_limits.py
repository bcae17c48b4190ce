"""Idle and slow connections cannot take the gateway down (issue 12 item 1): hundreds of silent and slow-header
sockets are dropped within the header timeout, connections over the caps are closed at once, and a prediction
answers all the while. A real proxy process with small limits, in front of the suite's TorchServe."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.photos import encode, scene
from tests.stack import issue_token, running_proxy

pytestmark = pytest.mark.integration


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except (BlockingIOError, TimeoutError):
        return False


def test_silent_and_slow_header_sockets_are_dropped_and_predictions_go_on(tmp_path, torchserve):
    with running_proxy(tmp_path, torchserve, PROXY_CONTROL_PLANE="false", PROXY_HEADER_TIMEOUT_S="2",
                       PROXY_MAX_CONNECTIONS_PER_ADDRESS="300", PROXY_MAX_CONNECTIONS="400") as proxy:
        token = issue_token(proxy, "--user", "patient")[1]
        host, port = proxy.url.removeprefix("http://").split(":")
        silent = [socket.create_connection((host, int(port)), timeout=5) for _ in range(150)]
        slow = [socket.create_connection((host, int(port)), timeout=5) for _ in range(100)]
        stop = threading.Event()

        def drip() -> None:  # one header byte every 0.5 s: the request would never end
            while not stop.is_set():
                for sock in slow:
                    try:
                        sock.send(b"X")
                    except OSError:
                        pass
                time.sleep(0.5)

        dripping = threading.Thread(target=drip, daemon=True)
        for sock in slow:
            sock.send(b"POST /predictions/food_rotation HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        dripping.start()
        answer = requests.post(f"{proxy.url}/predictions/food_rotation", data=encode(scene()), timeout=30,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})
        assert answer.status_code == 200  # 250 idle sockets held, the caller still served
        time.sleep(3.5)  # past the 2 s header timeout
        stop.set()
        for sock in silent + slow:
            sock.settimeout(0.5)
        assert sum(_closed(sock) for sock in silent + slow) == 250
        over = [socket.create_connection((host, int(port)), timeout=5) for _ in range(320)]
        time.sleep(0.5)
        for sock in over:
            sock.settimeout(0.5)
        assert sum(_closed(sock) for sock in over[300:]) == 20  # over the 300 per address: closed at once
        for sock in silent + slow + over:
            sock.close()
        assert requests.get(f"{proxy.url}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("line", [b"Authorization: Bearer frs_leakme123\r\r\n",
                                  b"Authorization: Bearer frs_leak\x01me\r\n"],
                         ids=["stray-CR", "control-byte"])
def test_a_request_that_is_not_http_gets_a_json_400_that_echoes_nothing(tmp_path, torchserve, line):
    with running_proxy(tmp_path, torchserve, PROXY_CONTROL_PLANE="false") as proxy:
        host, port = proxy.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /predictions/food_rotation HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400" and b"Content-Type: application/json" in head
        assert json.loads(body)["error"] == "malformed_request" and b"leak" not in answer

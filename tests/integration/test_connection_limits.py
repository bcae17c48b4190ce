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


def _kept_alive(host: str, port: int, source: str, request: bytes) -> socket.socket:
    """A connection from `source` (a loopback address of its own) that sent `request` and read its answer."""
    sock = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
    sock.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.split(b"\r\n\r\n", 1)[1].endswith(b"}"):
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    return sock


def test_idle_kept_alive_connections_make_room_token_less_ones_first(tmp_path, torchserve):
    """Issue 33 item 4: 4 x 256 token-less connections asking /healthz filled max_connections and locked every new
    caller out. Here 4 addresses x 15 fill a cap of 61 beside one token holder's kept-alive connection; new callers
    are served, the idle token-less connections make room oldest first, and the token holder's stays."""
    with running_proxy(tmp_path, torchserve, PROXY_CONTROL_PLANE="false", PROXY_MAX_CONNECTIONS="61",
                       PROXY_MAX_CONNECTIONS_PER_ADDRESS="15") as proxy:
        token = issue_token(proxy, "--user", "regular")[1]
        host, port = proxy.url.removeprefix("http://").split(":")
        whoami = f"GET /whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        regular = _kept_alive(host, int(port), "127.0.0.1", whoami)
        healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        crowd = [_kept_alive(host, int(port), f"127.0.0.{2 + a}", healthz) for a in range(4) for _ in range(15)]
        over = socket.create_connection((host, int(port)), timeout=5, source_address=("127.0.0.2", 0))
        over.settimeout(1)
        assert _closed(over)  # the per-address cap still holds: 127.0.0.2 has its 15

        photo = encode(scene())
        predict = (f"POST /predictions/food_rotation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                   f"Content-Type: image/jpeg\r\nContent-Length: {len(photo)}\r\n\r\n").encode() + photo
        newcomers = [_kept_alive(host, int(port), "127.0.0.1", predict) for _ in range(5)]  # each needs a slot
        time.sleep(0.5)
        for sock in crowd:
            sock.settimeout(0.05)
        closed = [_closed(sock) for sock in crowd]  # quickly: they are kept alive for 15 s only
        assert closed == [True] * 5 + [False] * 55  # the oldest token-less ones made room, one each
        regular.sendall(whoami)  # the token holder's connection, the oldest of all, is still open and served
        regular.settimeout(10)
        assert regular.recv(65536).startswith(b"HTTP/1.1 200")
        for sock in [regular, over, *crowd, *newcomers]:
            sock.close()

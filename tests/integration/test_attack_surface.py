"""What an attacker on the network (or with a stolen user token) can reach: as little as possible."""

from __future__ import annotations

import socket
import time

import psutil
import pytest
import requests

from operations.torchserve_process import TorchServe
from tests.stack import issue_token

pytestmark = pytest.mark.integration
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def listening(pid: int) -> set[tuple[str, int]]:
    process = psutil.Process(pid)
    return {(c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="tcp") if c.status == "LISTEN"}


def test_torchserve_listens_on_loopback_only(torchserve: TorchServe):
    sockets = listening(torchserve.pid())
    assert len(sockets) >= 5  # inference, management, metrics, and the two gRPC ports
    assert {ip for ip, _ in sockets} <= LOOPBACK, sockets


def test_the_proxy_listens_on_loopback_by_default(proxy):
    assert {ip for ip, _ in listening(proxy.pid())} <= LOOPBACK


@pytest.mark.parametrize("url", [
    "https://example.com/food_rotation.mar",
    "http://127.0.0.1:1/food_rotation.mar",
    "file:///etc/passwd",
    "file:///tmp/elsewhere/model_store/food_rotation.mar",
])
def test_allowed_urls_refuse_remote_and_foreign_files_on_the_management_port(torchserve: TorchServe, url):
    """ShellTorch (CVE-2023-43654): even with TorchServe's management key, no archive from outside model_store."""
    headers = torchserve.keys.headers("management")
    answer = requests.post(f"{torchserve.management_url}/models", params={"url": url}, headers=headers, timeout=30)
    assert answer.status_code == 404 and "does not match any allowed URL" in answer.json()["message"]


def test_an_archive_of_the_model_store_is_allowed(torchserve: TorchServe):
    headers = torchserve.keys.headers("management")
    url = f"file://{torchserve.model_store}/food_rotation.mar"
    answer = requests.post(f"{torchserve.management_url}/models", params={"url": url}, headers=headers, timeout=60)
    # Past the allowed_urls check; TorchServe then refuses to copy the archive onto itself.
    assert answer.status_code == 500 and "Model file already exists" in answer.json()["message"], answer.text


def test_the_proxy_metrics_are_its_own(proxy):
    text = requests.get(f"{proxy.url}/metrics", timeout=10).text
    assert "proxy_requests_total" in text and "ts_inference" not in text


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        return connection.recv(65536)


def test_malformed_requests_leave_no_token_and_no_forged_line_in_the_proxy_log(proxy):
    """aiohttp's parser logs the bad header line (a token followed by DEL); a %0a in a path could start a line."""
    token = issue_token(proxy, "--user", "logtest", "--scopes", "predict")[1]
    for request in (
        f"POST /predictions/food_rotation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\x7f\r\n\r\n",
        f"POST /predictions/food_rotation HTTP/1.1\nHost: x\nAuthorization: Bearer {token}\n\n",
        "GET /predictions/x%0a2026-01-01%20INFO%20forged%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        answer = _raw(proxy.url, request.encode("latin-1"))
        assert answer.split(b" ")[1].startswith(b"4"), answer[:80]  # refused, never served
    time.sleep(0.5)
    log = proxy.log_file.read_text(errors="replace")
    assert token not in log and token[:12] not in log
    assert not any(line.startswith("2026-01-01 INFO forged") for line in log.splitlines())
    assert "x\\n2026-01-01 INFO forged\\x00" in log

"""What an attacker on the network (or with a stolen user token) can reach: as little as possible."""

from __future__ import annotations

import psutil
import pytest
import requests

from scripts.serving import TorchServe

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
    headers = {"Authorization": f"Bearer {torchserve.keys()['management']}"}
    answer = requests.post(f"{torchserve.management_url}/models", params={"url": url}, headers=headers, timeout=30)
    assert answer.status_code == 404 and "does not match any allowed URL" in answer.json()["message"]


def test_an_archive_of_the_model_store_is_allowed(torchserve: TorchServe):
    headers = {"Authorization": f"Bearer {torchserve.keys()['management']}"}
    url = f"file://{torchserve.model_store}/food_rotation.mar"
    answer = requests.post(f"{torchserve.management_url}/models", params={"url": url}, headers=headers, timeout=60)
    # Past the allowed_urls check; TorchServe then refuses to copy the archive onto itself.
    assert answer.status_code == 500 and "Model file already exists" in answer.json()["message"], answer.text


def test_the_proxy_metrics_are_its_own(proxy):
    text = requests.get(f"{proxy.url}/metrics", timeout=10).text
    assert "proxy_requests_total" in text and "ts_inference" not in text

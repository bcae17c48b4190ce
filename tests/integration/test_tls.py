"""HTTPS in the gateway (issue 16 item 2): predictions over TLS with HSTS, plain HTTP refused, the certificate
reread on SIGHUP while a kept-alive connection goes on, and client certificates required under mTLS. A real
proxy process in front of the suite's TorchServe, certificates made by the test."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import ssl
import time

import pytest
import requests

from auth_plugin.settings import ProxySettings
from operations.gateway_process import Proxy
from operations.healthcheck import healthy
from operations.processes import free_ports
from tests.certificates import Authority
from tests.photos import encode, scene
from tests.stack import issue_token, running_proxy

pytestmark = pytest.mark.integration


def _presented(url: str, ca_file) -> str:
    """sha256 of the certificate the gateway presents in a new handshake."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as wrapped:
        return hashlib.sha256(wrapped.getpeercert(binary_form=True)).hexdigest()


def test_https_predictions_hsts_no_plain_http_and_a_reload_on_sighup(tmp_path, torchserve):
    ca = Authority(tmp_path / "ca")
    cert, key = ca.issue("gateway", server=True)
    with running_proxy(tmp_path / "proxy", torchserve, PROXY_CONTROL_PLANE="false", PROXY_TLS_CERT_FILE=str(cert),
                       PROXY_TLS_KEY_FILE=str(key)) as proxy:
        token = issue_token(proxy, "--user", "tls")[1]
        session, trusted = requests.Session(), str(ca.cert_file)  # per call: REQUESTS_CA_BUNDLE beats Session.verify
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
        answer = session.post(f"{proxy.url}/predictions/food_rotation", data=encode(scene()), headers=headers,
                              timeout=60, verify=trusted)
        assert answer.status_code == 200 and answer.headers["Strict-Transport-Security"] == "max-age=31536000"
        with pytest.raises(requests.ConnectionError):
            requests.get(proxy.url.replace("https://", "http://") + "/healthz", timeout=10)
        port = proxy.url.rsplit(":", 1)[1]  # the container's HEALTHCHECK reads the same settings as the gateway
        assert healthy(ProxySettings.from_env({"PROXY_PORT": port, "PROXY_TLS_CERT_FILE": str(cert)}))
        assert not healthy(ProxySettings.from_env({"PROXY_PORT": port}))  # plain HTTP to the TLS port

        before = _presented(proxy.url, ca.cert_file)
        renewed_cert, renewed_key = ca.issue("gateway-renewed", server=True)
        shutil.copy(renewed_cert, cert)
        shutil.copy(renewed_key, key)
        os.kill(proxy.pid(), signal.SIGHUP)
        for _ in range(50):
            if _presented(proxy.url, ca.cert_file) != before:
                break
            time.sleep(0.1)
        assert _presented(proxy.url, ca.cert_file) != before  # new handshakes get the renewed certificate
        # the kept-alive connection, opened before the reload, still answers
        again = session.post(f"{proxy.url}/predictions/food_rotation", data=encode(scene()), headers=headers,
                             timeout=60, verify=trusted)
        assert again.status_code == 200
        assert "TLS certificate reloaded" in proxy.log_file.read_text()


def test_under_mtls_only_a_certificate_the_client_ca_signed_gets_in(tmp_path, torchserve):
    ca, clients, rogue = Authority(tmp_path / "ca"), Authority(tmp_path / "clients", "client CA"), \
        Authority(tmp_path / "rogue", "rogue CA")
    cert, key = ca.issue("gateway", server=True)
    (port,) = free_ports(1)
    proxy = Proxy(home=tmp_path / "proxy", url=f"https://127.0.0.1:{port}", torchserve=torchserve, extra_env={
        "PROXY_CONTROL_PLANE": "false", "PROXY_TLS_CERT_FILE": str(cert), "PROXY_TLS_KEY_FILE": str(key),
        "PROXY_TLS_CLIENT_CA_FILE": str(clients.cert_file), "PROXY_DATASETS_DIR": str(tmp_path / "datasets")})
    kitchen = tuple(map(str, clients.issue("kitchen", server=False)))
    proxy.start()  # its readiness probe has no client certificate: this test probes with one
    try:
        for _ in range(150):
            try:
                good = requests.get(f"{proxy.url}/healthz", verify=str(ca.cert_file), cert=kitchen, timeout=10)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert good.status_code == 200
        for client in (None, tuple(map(str, rogue.issue("intruder", server=False)))):
            with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
                requests.get(f"{proxy.url}/healthz", verify=str(ca.cert_file), cert=client, timeout=10)
    finally:
        proxy.stop()

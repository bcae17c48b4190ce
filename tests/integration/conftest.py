"""The integration tests' shared proxy in front of the session's TorchServe (tests/conftest.py), for the whole session
(the helpers they use are in tests/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from operations.gateway_process import Proxy
from operations.torchserve_process import TorchServe
from tests.stack import running_proxy


@pytest.fixture(scope="session")
def inference_headers(torchserve: TorchServe) -> dict[str, str]:
    return torchserve.keys.headers("inference")


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


@pytest.fixture(scope="session")
def jwt_keys(tmp_path_factory) -> tuple[object, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_file = tmp_path_factory.mktemp("idp") / "idp-public.pem"
    public_file.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public_file


@pytest.fixture(scope="session")
def proxy(tmp_path_factory, torchserve: TorchServe, jwt_keys) -> Iterator[Proxy]:
    with running_proxy(tmp_path_factory.mktemp("proxy"), torchserve, PROXY_JWT_PUBLIC_KEY_FILE=str(jwt_keys[1]),
                       PROXY_JWT_ISSUER="https://idp.test") as server:
        yield server

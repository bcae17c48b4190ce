"""Hostile and odd uploads through the proxy: each gets its documented answer, and no TorchServe worker dies."""

from __future__ import annotations

import base64
import io
import json
import socket
import time

import numpy as np
import pytest
import requests
from PIL import Image

from tests.photos import CLEAR_SCENES, encode, jpeg_with_orientation, png_header, rotated, scene
from tests.stack import issue_token, running_proxy, worker_pids

pytestmark = pytest.mark.integration
UPRIGHT = scene(CLEAR_SCENES[0])
GOOD = encode(UPRIGHT, "JPEG")


def _with_exif(tag_value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = tag_value
    return encode(UPRIGHT, "JPEG", exif=exif.tobytes())


def _gif() -> bytes:
    out = io.BytesIO()
    frames = [rotated(UPRIGHT, 0).convert("P"), Image.new("P", UPRIGHT.size)]
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def _zip() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photo.jpg", GOOD)
    return out.getvalue()


def _oversized_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: an APP1 segment near its 64 KB maximum
    exif[0x0112] = 1
    return encode(UPRIGHT, "JPEG", exif=exif.tobytes())


def _malformed_exif() -> bytes:
    return GOOD[:2] + b"\xff\xe1\x00\x10Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + GOOD[2:]


def _bad_crc_png() -> bytes:
    png = bytearray(encode(UPRIGHT, "PNG"))
    png[png.index(b"IDAT") + 40] ^= 0xFF
    return bytes(png)


def _broken_marker_jpeg() -> bytes:
    at = GOOD.index(b"\xff\xdb")
    return GOOD[:at] + b"\xff\x01" + GOOD[at:]


def _multipart(fields: dict[str, tuple[str | None, bytes, str]]) -> tuple[bytes, str]:
    prepared = requests.Request("POST", "http://x", files=fields).prepare()
    return prepared.body, prepared.headers["Content-Type"]


_NO_FILE, _NO_FILE_TYPE = _multipart({"note": (None, b"hello", "text/plain")})
JSON = "application/json"

# name: (body, content type, status, error code; None for a 200 whose model_degree must be 0)
REFUSED = {
    "empty body": (b"", "image/jpeg", 400, "empty_body"),
    "text": (b"just some words", "text/plain", 415, "not_an_image"),
    "html": (b"<!doctype html><html><body>hi</body></html>", "text/html", 415, "not_an_image"),
    "pdf": (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n", "application/pdf", 415,
            "not_an_image"),
    "zip": (_zip(), "application/zip", 415, "not_an_image"),
    "truncated jpeg": (GOOD[: len(GOOD) // 2], "image/jpeg", 400, "corrupt_image"),
    "jpeg with a corrupt marker": (_broken_marker_jpeg(), "image/jpeg", 400, "corrupt_image"),
    "png with a bad crc": (_bad_crc_png(), "image/png", 400, "corrupt_image"),
    "header declaring 0 width": (png_header(0, 480), "image/png", 400, "corrupt_image"),
    "30000x30000 png header": (png_header(30000, 30000), "image/png", 413, "image_too_large"),
    "invalid base64": (b'{"image": "%%% not base64 %%%"}', JSON, 400, "invalid_base64"),
    "base64 of a non-image": (json.dumps({"image": base64.b64encode(b"hello").decode()}).encode(), JSON, 415,
                              "not_an_image"),
    "json without the image field": (b'{"picture": "abc"}', JSON, 400, "missing_image_field"),
    "json that is not an object": (b'["a", "b"]', JSON, 400, "json_not_object"),
    "multipart without a file": (_NO_FILE, _NO_FILE_TYPE, 400, "missing_image"),
    "body over the size limit": (b"\xff\xd8\xff" + b"\0" * (17 * 1024 * 1024), "image/jpeg", 413, "body_too_large"),
}
ODD_BUT_VALID = {
    "1x1 image": (encode(Image.new("RGB", (1, 1), (200, 50, 50)), "PNG"), "image/png"),
    "animated gif": (_gif(), "image/gif"),
    "16-bit png": (encode(Image.fromarray(np.asarray(UPRIGHT.convert("L"), dtype=np.uint16) * 257), "PNG"),
                   "image/png"),
    "cmyk jpeg": (encode(UPRIGHT.convert("CMYK"), "JPEG"), "image/jpeg"),
    "palette png with transparency": (encode(UPRIGHT.convert("P"), "PNG", transparency=0), "image/png"),
    "oversized exif block": (_oversized_exif(), "image/jpeg"),
    "malformed exif block": (_malformed_exif(), "image/jpeg"),
    "exif orientation 0": (_with_exif(0), "image/jpeg"),
    "exif orientation 9": (_with_exif(9), "image/jpeg"),
    "wrong content type": (GOOD, "text/plain"),
    "no content type": (GOOD, None),
    "exif orientation 6": (jpeg_with_orientation(UPRIGHT, 6), "application/octet-stream"),
}


@pytest.fixture(scope="module")
def send(proxy):
    token = issue_token(proxy, "--user", "corpus")[1]

    def post(body: bytes, content_type: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if content_type:
            headers["Content-Type"] = content_type
        return requests.post(f"{proxy.url}/predictions/food_rotation", data=body, headers=headers, timeout=60)

    return post


@pytest.mark.parametrize("name", REFUSED)
def test_refused_with_a_named_4xx_and_no_worker_dies(torchserve, send, name):
    body, content_type, status, code = REFUSED[name]
    before = worker_pids(torchserve)
    answer = send(body, content_type)
    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
    assert answer.json()["message"]
    assert send(GOOD, "image/jpeg").status_code == 200
    assert worker_pids(torchserve) == before


@pytest.mark.parametrize("name", ODD_BUT_VALID)
def test_odd_but_valid_is_answered(torchserve, send, name):
    body, content_type = ODD_BUT_VALID[name]
    before = worker_pids(torchserve)
    answer = send(body, content_type)
    assert answer.status_code == 200, answer.text
    if name != "1x1 image":  # one pixel has no "up"; every other one is the upright scene
        assert answer.json()["model_degree"] == 0, name
    assert worker_pids(torchserve) == before


def test_an_upright_image_too_large_to_answer_is_a_named_4xx_not_a_dead_worker(proxy, torchserve):
    """A 12 MP photo of pure detail: its upright PNG (36 MB) is over one answer's 24 MiB. TorchServe used to kill
    the worker over it (an answer over max_response_size, 500 "Worker died"); its JPEG (13 MB) still comes back."""
    token = issue_token(proxy, "--user", "detail")[1]
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    photo = encode(noise, "JPEG", quality=85)
    before = worker_pids(torchserve)
    answers = {accept: requests.post(f"{proxy.url}/predictions/food_rotation", data=photo, timeout=120,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg",
                                              "Accept": accept})
               for accept in ("image/png", "image/jpeg")}
    refused, upright = answers["image/png"], answers["image/jpeg"]
    assert (refused.status_code, refused.json()["error"]) == (422, "output_too_large"), refused.text[:300]
    assert "Accept: image/jpeg" in refused.json()["message"]
    assert upright.status_code == 200 and upright.headers["Content-Type"] == "image/jpeg"
    assert 10 * 2**20 < len(upright.content) < 24 * 2**20
    assert worker_pids(torchserve) == before


def test_huge_header_is_refused_and_the_proxy_lives(proxy, send):
    answer = requests.post(f"{proxy.url}/predictions/food_rotation", data=GOOD,
                           headers={"X-Padding": "a" * 100_000}, timeout=30)
    assert 400 <= answer.status_code < 500
    assert send(GOOD, "image/jpeg").status_code == 200


def test_slow_loris_upload_is_cut_off(tmp_path, torchserve):
    # a second proxy in front of the suite's TorchServe: predictions only, the suite's proxy runs the control plane
    with running_proxy(tmp_path, torchserve, PROXY_BODY_TIMEOUT_S="1", PROXY_CONTROL_PLANE="false") as slow:
        token = issue_token(slow, "--user", "loris")[1]
        host, port = slow.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall((f"POST /predictions/food_rotation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                          f"Content-Type: image/jpeg\r\nContent-Length: {len(GOOD)}\r\n\r\n").encode())
            started = time.monotonic()
            for byte in GOOD[:20]:  # one byte every 0.2 s: it would take an hour to finish
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.2)
            head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5
        # the upload had begun to stream to TorchServe and was cut off there too: the next one is served
        answer = requests.post(f"{slow.url}/predictions/food_rotation", data=GOOD, timeout=30,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})
        assert answer.status_code == 200 and answer.json()["model_degree"] in (0, 90, 180, 270)

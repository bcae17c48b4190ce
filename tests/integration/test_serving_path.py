"""Real TorchServe, real HTTP, real JPEG/PNG files: what a caller of the inference API sees."""

from __future__ import annotations

import base64
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from operations.torchserve_process import ROOT
from tests.photos import CLEAR_SCENES, encode, jpeg_with_orientation, png_bomb, png_header, rotated, scene
from tests.stack import worker_pids

pytestmark = pytest.mark.integration
EXIF_DEGREES = {1: 0, 2: 0, 3: 180, 4: 180, 5: 90, 6: 270, 7: 270, 8: 90}


def test_ping_needs_torchserve_key(torchserve, inference_headers):
    assert requests.get(f"{torchserve.inference_url}/ping", timeout=10).status_code == 400
    answer = requests.get(f"{torchserve.inference_url}/ping", headers=inference_headers, timeout=10)
    assert answer.json()["status"] == "Healthy"


def test_workers_run_the_library_their_archive_carries(torchserve, predict):
    """Each version runs its own food_rotation, not the copy installed beside TorchServe (pip install -e .)."""
    assert predict(encode(scene(CLEAR_SCENES[0]), "JPEG")).status_code == 200
    log = (torchserve.home / "logs" / "model_log.log").read_text()
    loaded = re.findall(r"library from (\S+)", log)
    assert loaded and all(Path(path).name == "food_rotation" for path in loaded)
    assert str(ROOT / "food_rotation") not in loaded


@pytest.mark.parametrize("degree", [0, 90, 180, 270])
def test_rotated_jpeg_gets_its_turn(predict, degree):
    answer = predict(encode(rotated(scene(CLEAR_SCENES[0]), degree), "JPEG"))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["model_degree"] == degree and body["exif_degree"] == 0 and body["exif_mirrored"] is False
    assert body["model_version"] == "1.0" and body["confidence"] > 0.5
    assert set(body["probabilities"]) == {"0", "90", "180", "270"}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_are_applied(predict, orientation):
    body = predict(jpeg_with_orientation(scene(CLEAR_SCENES[1]), orientation)).json()
    assert body["exif_degree"] == EXIF_DEGREES[orientation]
    assert body["exif_mirrored"] is (orientation in (2, 4, 5, 7))
    assert body["model_degree"] == 0


def test_rgba_png(predict):
    answer = predict(encode(rotated(scene(CLEAR_SCENES[2]), 90).convert("RGBA"), "PNG"), "image/png")
    assert answer.status_code == 200 and answer.json()["model_degree"] == 90


def test_multipart_upload(torchserve, inference_headers):
    files = {"data": ("photo.jpg", encode(rotated(scene(CLEAR_SCENES[3]), 180), "JPEG"), "image/jpeg")}
    answer = requests.post(f"{torchserve.inference_url}/predictions/food_rotation", files=files,
                           headers=inference_headers, timeout=30)
    assert answer.status_code == 200 and answer.json()["model_degree"] == 180


def test_json_base64(predict):
    document = {"image": base64.b64encode(encode(rotated(scene(CLEAR_SCENES[0]), 270), "JPEG")).decode()}
    answer = predict(json.dumps(document), "application/json")
    assert answer.status_code == 200 and answer.json()["model_degree"] == 270


def test_upright_image_is_returned_on_request(predict):
    upright = scene(CLEAR_SCENES[1])
    answer = predict(jpeg_with_orientation(rotated(upright, 90), 8), headers={"Accept": "image/jpeg"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["x-model-degree"] == "90" and answer.headers["x-exif-degree"] == "90"
    out = Image.open(io.BytesIO(answer.content))
    assert out.size == upright.size and out.getexif().get(0x0112) is None
    difference = np.abs(np.asarray(out.convert("L"), dtype=float) - np.asarray(upright.convert("L"), dtype=float))
    assert difference.mean() < 8


def test_phone_size_photo_of_15_mb_is_accepted(predict):
    noise = np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=93)
    assert 12e6 < len(data) < 16e6
    answer = predict(data)
    assert answer.status_code == 200 and answer.json()["model_degree"] in (0, 90, 180, 270)


GOOD = encode(scene(CLEAR_SCENES[0]), "JPEG")
BAD_INPUTS = {
    "empty body": (b"", "image/jpeg", 400, "empty_body"),
    "text": (b"just some words", "text/plain", 415, "not_an_image"),
    "html": (b"<html><body>hi</body></html>", "text/html", 415, "not_an_image"),
    "truncated jpeg": (GOOD[: len(GOOD) // 2], "image/jpeg", 400, "corrupt_image"),
    "invalid base64": (b'{"image": "***not base64***"}', "application/json", 400, "invalid_base64"),
    "base64 of text": (json.dumps({"image": base64.b64encode(b"hello").decode()}).encode(), "application/json",
                       415, "not_an_image"),
    "json without image": (b'{"picture": 1}', "application/json", 400, "missing_image_field"),
    "json not an object": (b"[1, 2]", "application/json", 400, "json_not_object"),
    "broken json": (b'{"image": ', "application/json", 400, "invalid_json"),
    "zero-size image": (png_header(0, 10), "image/png", 400, "corrupt_image"),  # PIL refuses a 0-pixel IHDR as broken
    "gigantic dimensions": (png_header(40000, 40000), "image/png", 413, "image_too_large"),
    "decompression bomb": (png_bomb(12_000), "image/png", 413, "image_too_large"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gets_a_named_4xx_and_the_worker_lives(torchserve, predict, name):
    data, content_type, status, code = BAD_INPUTS[name]
    before = worker_pids(torchserve)
    answer = predict(data, content_type)
    assert (answer.status_code, answer.json()["error"]) == (status, code)
    assert answer.json()["message"]
    assert worker_pids(torchserve) == before
    assert predict(encode(scene(CLEAR_SCENES[0]), "JPEG")).status_code == 200


def test_concurrent_mixed_requests_each_get_their_own_answer(predict):
    """Sent at once so TorchServe batches them: bad items must not spoil the good ones beside them."""
    good = {degree: encode(rotated(scene(CLEAR_SCENES[2]), degree), "JPEG") for degree in (0, 90, 180, 270)}
    jobs = [(good[d], d) for d in good] + [(b"", None), (b"nonsense", None)] + [(good[d], d) for d in good]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: predict(job[0]), jobs))
    for (_, degree), answer in zip(jobs, answers, strict=True):
        if degree is None:
            assert answer.status_code in (400, 415)
        else:
            assert answer.status_code == 200 and answer.json()["model_degree"] == degree

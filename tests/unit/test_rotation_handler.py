"""The handler under TorchServe's real Context (no server): the whole handle() lifecycle on real photos."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from ts.context import Context, RequestProcessor

from rotation_handler import RotationHandler
from tests.conftest import ROOT
from tests.photos import CLEAR_SCENES, encode, jpeg_with_orientation, rotated, scene


class MetricsStub:
    """TorchServe's metrics cache needs a running frontend; the handler only records times into it."""

    def add_time(self, *args, **kwargs) -> None:
        pass


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, demo_weights: Path, demo_metadata: dict) -> Path:
    folder = tmp_path_factory.mktemp("model_dir")
    shutil.copy(demo_weights, folder / demo_weights.name)
    (folder / "metadata.json").write_text(json.dumps({**demo_metadata, "version": "1.0"}))
    return folder


@pytest.fixture(scope="module")
def handler_and_context(model_dir: Path, demo_weights: Path):
    manifest = {"model": {"modelName": "food_rotation", "modelVersion": "1.0",
                          "serializedFile": demo_weights.name, "handler": "rotation_handler.py"}}
    config = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())
    context = Context("food_rotation", str(model_dir), manifest, 8, None, "0.12.0", True, MetricsStub(), config)
    handler = RotationHandler()
    handler.initialize(context)
    return handler, context


def handle(handler_and_context, *requests: tuple[dict, dict]) -> tuple[list, Context]:
    """One batch: each request is (TorchServe item, request headers)."""
    handler, context = handler_and_context
    context.request_processor = [RequestProcessor(dict(headers)) for _, headers in requests]
    return handler.handle([item for item, _ in requests], context), context


def jpeg_request(data: bytes, **headers: str) -> tuple[dict, dict]:
    return {"body": bytearray(data)}, {"Content-Type": "image/jpeg", **headers}


@pytest.mark.parametrize("seed", CLEAR_SCENES)
def test_each_turn_of_a_scene_is_recognised(handler_and_context, seed):
    upright = scene(seed)
    requests = [jpeg_request(encode(rotated(upright, degree), "JPEG")) for degree in (0, 90, 180, 270)]
    answers, context = handle(handler_and_context, *requests)
    predictions = [json.loads(answer) for answer in answers]
    assert [p["model_degree"] for p in predictions] == [0, 90, 180, 270]
    for idx, prediction in enumerate(predictions):
        assert context.get_response_status(idx)[0] == 200
        assert set(prediction) == {"model_degree", "exif_degree", "exif_mirrored", "confidence", "probabilities",
                                   "model_version"}
        assert prediction["model_version"] == "1.0"
        assert set(prediction["probabilities"]) == {"0", "90", "180", "270"}
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-3
        assert prediction["confidence"] == max(prediction["probabilities"].values())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_is_applied_before_the_model(handler_and_context, orientation):
    upright = scene(CLEAR_SCENES[0])
    answers, _ = handle(handler_and_context, jpeg_request(jpeg_with_orientation(upright, orientation)))
    prediction = json.loads(answers[0])
    expected_exif = {1: 0, 2: 0, 3: 180, 4: 180, 5: 90, 6: 270, 7: 270, 8: 90}[orientation]
    assert prediction["exif_degree"] == expected_exif
    assert prediction["exif_mirrored"] is (orientation in (2, 4, 5, 7))
    assert prediction["model_degree"] == 0  # upright once the tag is applied


def test_bad_items_fail_alone_in_a_mixed_batch(handler_and_context):
    good = encode(rotated(scene(CLEAR_SCENES[1]), 90), "JPEG")
    answers, context = handle(
        handler_and_context,
        jpeg_request(good),
        jpeg_request(b""),
        ({"body": "plain text"}, {"Content-Type": "text/plain"}),
        jpeg_request(good[: len(good) // 3]),
        ({"body": {"image": "%%%"}}, {"Content-Type": "application/json"}),
        jpeg_request(good),
    )
    statuses = [context.get_response_status(idx) for idx in range(len(answers))]
    assert [code for code, _ in statuses] == [200, 400, 415, 400, 400, 200]
    errors = [json.loads(answers[idx])["error"] for idx in (1, 2, 3, 4)]
    assert errors == ["empty_body", "not_an_image", "corrupt_image", "invalid_base64"]
    assert json.loads(answers[0])["model_degree"] == json.loads(answers[5])["model_degree"] == 90
    assert context.get_response_content_type(1) == "application/json"


def test_json_base64_input(handler_and_context):
    data = base64.b64encode(encode(rotated(scene(CLEAR_SCENES[2]), 270), "PNG")).decode()
    answers, _ = handle(handler_and_context, ({"body": {"image": data}}, {"Content-Type": "application/json"}))
    assert json.loads(answers[0])["model_degree"] == 270


@pytest.mark.parametrize(("accept", "fmt"), [("image/jpeg", "JPEG"), ("image/png", "PNG")])
def test_upright_image_on_request(handler_and_context, accept, fmt):
    upright = scene(CLEAR_SCENES[3])
    data = jpeg_with_orientation(rotated(upright, 180), 6)  # EXIF says 270 on top of the scene's own 180
    answers, context = handle(handler_and_context, jpeg_request(data, Accept=accept))
    out = Image.open(io.BytesIO(answers[0]))
    assert out.format == fmt and out.size == upright.size
    assert context.get_response_content_type(0) == f"image/{fmt.lower()}"
    headers = context.get_response_headers(0)
    assert headers["X-Model-Degree"] == "180" and headers["X-Exif-Degree"] == "270"
    assert out.getexif().get(0x0112) is None


def test_torch_threads_come_from_model_config(handler_and_context):
    handler, _ = handler_and_context
    assert handler.settings.torch_threads == 1 and handler.settings.max_image_pixels == 100_000_000


def test_an_answer_too_large_to_send_is_a_422_for_that_item_only(handler_and_context):
    """TorchServe kills a worker whose answer is over max_response_size: the handler keeps under it."""
    handler, _ = handler_and_context
    shipped = handler.settings
    handler.settings = dataclasses.replace(shipped, max_answer_bytes=100_000)
    try:
        noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
        small = encode(rotated(scene(CLEAR_SCENES[0]).resize((120, 90)), 90), "JPEG")
        answers, context = handle(handler_and_context, jpeg_request(encode(noise, "JPEG"), Accept="image/png"),
                                  jpeg_request(small, Accept="image/png"), jpeg_request(encode(noise, "JPEG")))
    finally:
        handler.settings = shipped
    assert context.get_response_status(0)[0] == 422 and json.loads(answers[0])["error"] == "output_too_large"
    assert context.get_response_status(1)[0] == 200 and Image.open(io.BytesIO(answers[1])).format == "PNG"
    assert context.get_response_status(2)[0] == 200 and "model_degree" in json.loads(answers[2])

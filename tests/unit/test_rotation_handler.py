"""The handler under TorchServe's real Context (no server): the whole handle() lifecycle on real photos."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageOps
from ts.context import Context, RequestProcessor

from food_rotation.photo_io import turn
from rotation_handler import RotationHandler
from tests.conftest import ROOT
from tests.photos import CLEAR_SCENES, encode, jpeg_with_orientation, rotated, scene


class MetricsStub:
    """TorchServe's metrics cache needs a running frontend; the handler only records times into it."""

    def add_time(self, *args, **kwargs) -> None:
        pass


def _initialized(folder: Path, weights: Path, metadata: dict) -> tuple[RotationHandler, Context]:
    """A handler loaded as TorchServe loads it: `weights` and `metadata` in its model dir, the shipped config."""
    shutil.copy(weights, folder / weights.name)
    (folder / "metadata.json").write_text(json.dumps({**metadata, "version": "1.0"}))
    manifest = {"model": {"modelName": "food_rotation", "modelVersion": "1.0",
                          "serializedFile": weights.name, "handler": "rotation_handler.py"}}
    config = yaml.safe_load((ROOT / "handler" / "model-config.yaml").read_text())
    context = Context("food_rotation", str(folder), manifest, 8, None, "0.12.0", True, MetricsStub(), config)
    handler = RotationHandler()
    handler.initialize(context)
    return handler, context


@pytest.fixture(scope="module")
def handler_and_context(tmp_path_factory, demo_weights: Path, demo_metadata: dict):
    return _initialized(tmp_path_factory.mktemp("model_dir"), demo_weights, demo_metadata)


@pytest.fixture(scope="module")
def turn_averaged(tmp_path_factory, demo_weights: Path, demo_metadata: dict):
    """The demo weights served turn-averaged, with the shipped model-config.yaml (require_agreement on)."""
    return _initialized(tmp_path_factory.mktemp("turn_averaged"), demo_weights,
                        {**demo_metadata, "turn_averaging": True})


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
                                   "model_version", "trusted", "min_confidence", "views_agree", "applied_degree"}
        assert prediction["min_confidence"] == handler_and_context[0].settings.min_confidence  # the shipped bar
        assert prediction["views_agree"] is True  # one view (the demo model is not turn-averaged): nothing to differ
        assert prediction["trusted"] is (prediction["confidence"] >= prediction["min_confidence"])
        assert prediction["applied_degree"] == (prediction["model_degree"] if prediction["trusted"] else 0)
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


@contextlib.contextmanager
def settings_changed(handler_and_context, **changes):
    handler, _ = handler_and_context
    shipped = handler.settings
    handler.settings = dataclasses.replace(shipped, **changes)
    try:
        yield handler
    finally:
        handler.settings = shipped


def exif_only(data: bytes) -> np.ndarray:
    """The photo's pixels with its EXIF turn applied and nothing else: what an unsure answer must be."""
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def test_an_unsure_photo_comes_back_with_only_its_exif_turn_and_a_sure_one_turned(handler_and_context):
    upright = scene(CLEAR_SCENES[3])
    data = jpeg_with_orientation(rotated(upright, 90), 6)  # EXIF says 270, then the picture needs 90 more
    answers, context = handle(handler_and_context, jpeg_request(data, Accept="image/png", **{"X-Min-Confidence": "1"}),
                              jpeg_request(data, Accept="image/png", **{"X-Min-Confidence": "0.5"}))
    unsure, sure = (Image.open(io.BytesIO(answer)) for answer in answers)
    assert unsure.size == upright.size[::-1] and np.array_equal(np.asarray(unsure), exif_only(data))
    assert sure.size == upright.size
    assert np.array_equal(np.asarray(sure), np.asarray(turn(Image.fromarray(exif_only(data)), 90)))
    unsure_headers, sure_headers = context.get_response_headers(0), context.get_response_headers(1)
    assert unsure_headers["X-Trusted"] == "false" and unsure_headers["X-Applied-Degree"] == "0"
    assert unsure_headers["X-Model-Degree"] == "90" and unsure_headers["X-Exif-Degree"] == "270"  # still told
    assert float(unsure_headers["X-Confidence"]) < 1 and unsure_headers["X-Model-Version"] == "1.0"
    assert sure_headers["X-Trusted"] == "true" and sure_headers["X-Applied-Degree"] == "90"


def test_the_json_answer_says_what_was_applied(handler_and_context):
    data = encode(rotated(scene(CLEAR_SCENES[0]), 270), "JPEG")
    answers, _ = handle(handler_and_context, jpeg_request(data, **{"X-Min-Confidence": "1"}),
                        jpeg_request(data, **{"X-Min-Confidence": "0"}))
    unsure, sure = (json.loads(answer) for answer in answers)
    keys = ("model_degree", "trusted", "applied_degree", "min_confidence")
    assert [unsure[key] for key in keys] == [270, False, 0, 1.0]
    assert [sure[key] for key in keys] == [270, True, 270, 0.0]
    assert unsure["probabilities"] == sure["probabilities"]  # the bar changes what is done, not what is seen


def test_the_configured_bar_applies_when_the_request_names_none(handler_and_context):
    data = encode(rotated(scene(CLEAR_SCENES[1]), 180), "JPEG")
    with settings_changed(handler_and_context, min_confidence=1.0):
        answers, _ = handle(handler_and_context, jpeg_request(data), jpeg_request(data, **{"X-Min-Confidence": "0.1"}))
    configured, overridden = (json.loads(answer) for answer in answers)
    assert (configured["min_confidence"], configured["trusted"], configured["applied_degree"]) == (1.0, False, 0)
    assert (overridden["min_confidence"], overridden["trusted"], overridden["applied_degree"]) == (0.1, True, 180)


def _probabilities(handler_and_context, data: bytes) -> torch.Tensor:
    handler, context = handler_and_context
    handler.context = context
    context.request_processor = [RequestProcessor({"Content-Type": "image/jpeg"})]
    (item,) = handler.inference(handler.preprocess([{"body": bytearray(data)}]))
    return item.probabilities


def test_temperature_softens_or_sharpens_the_confidence(handler_and_context):
    data = encode(rotated(scene(CLEAR_SCENES[2]), 90), "JPEG")
    plain = _probabilities(handler_and_context, data)
    for temperature in (0.5, 3.0):
        with settings_changed(handler_and_context, temperature=temperature):
            scaled = _probabilities(handler_and_context, data)
            answer = json.loads(handle(handler_and_context, jpeg_request(data))[0][0])
        # softmax(z / T) is softmax(log softmax(z) / T): the same logits, scaled
        assert torch.allclose(scaled, torch.softmax(plain.log() / temperature, dim=0), atol=1e-5)
        assert int(scaled.argmax()) == int(plain.argmax()) and answer["model_degree"] == 90
        assert answer["confidence"] == pytest.approx(float(scaled.max()), abs=1e-6)
        softer = temperature > 1
        assert (float(scaled.max()) < float(plain.max())) is softer


def _json_request(data: bytes, **fields: object) -> tuple[dict, dict]:
    return {"body": {"image": base64.b64encode(data).decode(), **fields}}, {"Content-Type": "application/json"}


def _form_request(data: bytes, **fields: str) -> tuple[dict, dict]:
    """A multipart form as TorchServe hands it over: one item entry per part, each part's headers by its name."""
    item = {"photo": bytearray(data), **{name: bytearray(value.encode()) for name, value in fields.items()}}
    headers = {"Content-Type": "multipart/form-data; boundary=x", "photo": {"content-type": "image/jpeg"},
               **{name: {"content-type": ""} for name in fields}}
    return item, headers


def test_the_bar_can_be_set_by_json_field_form_field_query_parameter_or_header(handler_and_context):
    data = encode(rotated(scene(CLEAR_SCENES[3]), 180), "JPEG")
    query = ({"body": bytearray(data), "min_confidence": bytearray(b"1")}, {"Content-Type": "image/jpeg"})
    answers, context = handle(handler_and_context, _json_request(data, min_confidence=1), _form_request(
        data, min_confidence="1"), query, jpeg_request(data, **{"X-Min-Confidence": "1"}),
        _form_request(data, min_confidence="0", format="png"))
    predictions = [json.loads(answer) for answer in answers[:4]]
    assert [(p["min_confidence"], p["trusted"], p["applied_degree"]) for p in predictions] == [(1.0, False, 0)] * 4
    assert context.get_response_headers(4)["X-Trusted"] == "true"
    assert Image.open(io.BytesIO(answers[4])).size == scene(CLEAR_SCENES[3]).size


def test_the_archive_s_own_verdict_is_told_whatever_bar_the_caller_chose(handler_and_context):
    """X-Archive-Trusted: what the version's own min_confidence says, for the gateway's canary analysis, so that a
    caller's `min_confidence=0` cannot make a canary look sure of everything (issue 33)."""
    data = encode(rotated(scene(CLEAR_SCENES[3]), 180), "JPEG")
    answers, context = handle(handler_and_context, jpeg_request(data), jpeg_request(data, **{"X-Min-Confidence": "0"}),
                              jpeg_request(data, **{"X-Min-Confidence": "1"}))
    own = json.loads(answers[0])["trusted"]
    assert [json.loads(answer)["trusted"] for answer in answers[1:]] == [json.loads(answers[1])["trusted"], False]
    assert [context.get_response_headers(i)["X-Archive-Trusted"] for i in range(3)] == [str(own).lower()] * 3


def test_a_bad_bar_is_a_400_for_that_item_only(handler_and_context):
    data = encode(rotated(scene(CLEAR_SCENES[0]), 90), "JPEG")
    answers, context = handle(
        handler_and_context,
        _json_request(data, min_confidence="high"),
        jpeg_request(data),
        _form_request(data, min_confidence="1.5"),
        jpeg_request(data, **{"X-Min-Confidence": "NaN"}),
        _json_request(data, min_confidence=-0.1),
        jpeg_request(data, **{"X-Min-Confidence": "0.2"}),
    )
    assert [context.get_response_status(idx)[0] for idx in range(len(answers))] == [400, 200, 400, 400, 400, 200]
    for idx in (0, 2, 3, 4):
        error = json.loads(answers[idx])
        assert error["error"] == "invalid_min_confidence" and "from 0 to 1" in error["message"]
    assert json.loads(answers[1])["model_degree"] == json.loads(answers[5])["applied_degree"] == 90


def test_a_photo_whose_turned_views_disagree_is_left_alone_however_sure(turn_averaged):
    """A plain grey photo looks the same at every turn, so each view names a different turn of it: never trusted,
    even at min_confidence 0; a clear scene's four views agree and it is turned."""
    assert turn_averaged[0].settings.require_agreement and turn_averaged[0].settings.turn_averaging
    grey = encode(Image.new("RGB", (320, 240), (128, 128, 128)), "JPEG")
    clear = encode(rotated(scene(CLEAR_SCENES[2]), 90), "JPEG")
    answers, context = handle(turn_averaged, jpeg_request(grey, **{"X-Min-Confidence": "0"}),
                              jpeg_request(clear, **{"X-Min-Confidence": "0"}),
                              jpeg_request(grey, Accept="image/png", **{"X-Min-Confidence": "0"}))
    flat, sure = json.loads(answers[0]), json.loads(answers[1])
    assert (flat["views_agree"], flat["trusted"], flat["applied_degree"]) == (False, False, 0)
    assert (sure["views_agree"], sure["trusted"], sure["applied_degree"]) == (True, True, 90)
    headers = context.get_response_headers(2)
    assert headers["X-Views-Agree"] == "false" and headers["X-Trusted"] == "false"
    with settings_changed(turn_averaged, require_agreement=False):  # the confidence bar alone decides
        answers, _ = handle(turn_averaged, jpeg_request(grey, **{"X-Min-Confidence": "0"}))
    assert json.loads(answers[0])["trusted"] is True

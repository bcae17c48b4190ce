"""Fuzzing the decoder and the payload parser in-process: whatever the bytes, the only failure is a PhotoError
(a named 4xx), never another exception that would fail a whole batch. Bounded: a few hundred examples each."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchserve_item import parse_item

from food_rotation.photo_io import PhotoError, load_upright
from tests.photos import encode, scene

SEEDS = [encode(scene(1001).resize((64, 48)), fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_names_the_problem(data: bytes) -> None:
    try:
        image, orientation = load_upright(data, 32, 4_000_000)
    except PhotoError as error:
        assert 400 <= error.status < 500 and error.code and error.message
    else:
        assert image.mode == "RGB" and orientation.degree in (0, 90, 180, 270)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    decodes_or_names_the_problem(data)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       st.integers(0, 10_000))
def test_mutated_and_truncated_real_images(seed, flips, cut):
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    decodes_or_names_the_problem(bytes(data[: max(1, len(data) - cut)]))


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=10)


@FUZZ
@given(JSON_VALUES, st.sampled_from(["application/json", "text/plain", "", "multipart/form-data; boundary=x"]))
def test_any_json_document(document, content_type):
    for body in (document, bytearray(json.dumps(document).encode())):
        try:
            parse_item({"body": body}, {"Content-Type": content_type})
        except PhotoError as error:
            assert 400 <= error.status < 500


PART_TYPES = ["", "image/png", "text/plain", "application/octet-stream"]


@FUZZ
@given(st.dictionaries(st.text(max_size=12), st.binary(max_size=64), max_size=5),
       st.dictionaries(st.text(max_size=12), st.sampled_from(PART_TYPES), max_size=5))
def test_any_multipart_form(fields, part_types):
    headers = {"Content-Type": "multipart/form-data; boundary=x",
               **{name: {"content-type": kind} for name, kind in part_types.items()}}
    try:
        payload = parse_item({name: bytearray(value) for name, value in fields.items()}, headers)
    except PhotoError as error:
        assert 400 <= error.status < 500
    else:  # one of the parts, as sent (an empty one is refused later, by open_photo, as empty_body)
        assert payload.image in {bytes(value) for value in fields.values()}

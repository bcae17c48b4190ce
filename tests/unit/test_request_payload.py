import base64
import json

import pytest
from torchserve_item import parse_item

from food_rotation.photo_io import PhotoError
from food_rotation.request_payload import format_from_accept

JPEG = b"\xff\xd8\xff\xe0fake-jpeg"


def test_raw_body_is_the_image():
    payload = parse_item({"body": bytearray(JPEG)}, {"Content-Type": "image/jpeg"})
    assert payload.image == JPEG and payload.output_format is None


def test_json_object_with_base64_image_and_format():
    document = {"image": base64.b64encode(JPEG).decode(), "format": "png"}
    payload = parse_item({"body": document}, {"Content-Type": "application/json"})
    assert payload.image == JPEG and payload.output_format == "png"


def test_data_url_and_line_breaks_are_accepted():
    encoded = base64.encodebytes(JPEG).decode()
    payload = parse_item({"body": {"image": "data:image/jpeg;base64," + encoded}}, {})
    assert payload.image == JPEG


def test_json_torchserve_could_not_parse_is_named():
    with pytest.raises(PhotoError) as caught:
        parse_item({"body": bytearray(b'{"image":')}, {"Content-Type": "application/json"})
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")


@pytest.mark.parametrize(("body", "code"), [
    ([1, 2, 3], "json_not_object"),
    ({"picture": "abc"}, "missing_image_field"),
    ({"image": 42}, "invalid_image_field"),
    ({"image": "not base64 !!!"}, "invalid_base64"),
])
def test_bad_json_is_named(body, code):
    with pytest.raises(PhotoError) as caught:
        parse_item({"body": body}, {"Content-Type": "application/json"})
    assert (caught.value.status, caught.value.code) == (400, code)


def test_multipart_file_under_any_field_name():
    item = {"note": bytearray(b"a text field"), "photo": bytearray(JPEG)}
    headers = {"Content-Type": "multipart/form-data; boundary=x", "note": {"content-type": ""},
               "photo": {"content-type": "image/jpeg"}}
    assert parse_item(item, headers).image == JPEG


def test_multipart_text_fields_are_not_taken_for_the_file():
    item = {"note": bytearray(b"hello")}
    with pytest.raises(PhotoError) as caught:
        parse_item(item, {"Content-Type": "multipart/form-data; boundary=x", "note": {"content-type": "text/plain"}})
    assert caught.value.code == "missing_image"


def test_multipart_format_field_asks_for_the_image():
    item = {"file": bytearray(JPEG), "format": bytearray(b"jpeg")}
    assert parse_item(item, {}).output_format == "jpeg"


def test_multipart_without_a_file_is_named():
    with pytest.raises(PhotoError) as caught:
        parse_item({}, {"Content-Type": "multipart/form-data; boundary=x"})
    assert caught.value.code == "missing_image"


def test_form_urlencoded_body_gets_a_hint_about_curl():
    with pytest.raises(PhotoError) as caught:
        parse_item({"garbage": bytearray(b"x")}, {"Content-Type": "application/x-www-form-urlencoded"})
    assert caught.value.status == 415 and "Content-Type: image/jpeg" in caught.value.message


def test_unknown_format_is_refused():
    with pytest.raises(PhotoError) as caught:
        parse_item({"body": {"image": base64.b64encode(JPEG).decode(), "format": "gif"}}, {})
    assert caught.value.code == "invalid_format"


@pytest.mark.parametrize(("accept", "expected"), [
    ("image/jpeg", "jpeg"), ("image/png", "png"), ("text/html, image/png;q=0.9", "png"),
    ("application/json", None), ("*/*", None), ("", None),
])
def test_accept_header_chooses_the_answer(accept, expected):
    assert format_from_accept(accept) == expected
    assert parse_item({"body": bytearray(JPEG)}, {"accept": accept}).output_format == expected


def test_error_body_names_the_problem():
    error = PhotoError(415, "not_an_image", "nope")
    assert json.loads(json.dumps(error.as_dict())) == {"error": "not_an_image", "message": "nope", "status": 415}


def test_no_min_confidence_means_the_model_s_own_bar():
    document = {"image": base64.b64encode(JPEG).decode(), "min_confidence": None}
    assert parse_item({"body": bytearray(JPEG)}, {}).min_confidence is None
    assert parse_item({"body": document}, {}).min_confidence is None


@pytest.mark.parametrize(("item", "headers"), [
    ({"body": {"image": base64.b64encode(JPEG).decode(), "min_confidence": 0.75}}, {}),
    ({"body": {"image": base64.b64encode(JPEG).decode(), "min_confidence": "0.75"}}, {}),
    ({"file": bytearray(JPEG), "min_confidence": bytearray(b" 0.75\r\n")}, {}),  # a multipart form field
    ({"body": bytearray(JPEG), "min_confidence": bytearray(b"0.75")}, {}),  # a query parameter, as TorchServe hands it
    ({"body": bytearray(JPEG)}, {"X-Min-Confidence": "0.75"}),
    ({"body": bytearray(JPEG), "min_confidence": bytearray(b"0.75")}, {"x-min-confidence": "0.2"}),  # field wins
])
def test_min_confidence_from_a_field_or_the_header(item, headers):
    assert parse_item(item, headers).min_confidence == 0.75


@pytest.mark.parametrize("bar", [0, 1, "0", "1.0", 1e-9])
def test_min_confidence_bounds_are_allowed(bar):
    payload = parse_item({"body": {"image": base64.b64encode(JPEG).decode(), "min_confidence": bar}}, {})
    assert payload.min_confidence == float(bar)


@pytest.mark.parametrize("bar", ["abc", "", "NaN", "inf", "1.5", "-0.1", True, [0.5], {"x": 1}, 10**400])
def test_bad_min_confidence_is_refused_naming_the_range(bar):
    with pytest.raises(PhotoError) as caught:
        parse_item({"body": {"image": base64.b64encode(JPEG).decode(), "min_confidence": bar}}, {})
    assert (caught.value.status, caught.value.code) == (400, "invalid_min_confidence")
    assert "from 0 to 1" in caught.value.message


@pytest.mark.parametrize("bar", ["high", "2", "nan"])
def test_bad_min_confidence_header_is_refused(bar):
    with pytest.raises(PhotoError) as caught:
        parse_item({"body": bytearray(JPEG)}, {"X-Min-Confidence": bar})
    assert caught.value.code == "invalid_min_confidence"

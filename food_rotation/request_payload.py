"""A request's fields -> the photo's bytes, the answer format the caller asked for and its bar (`Payload`).

The fields are what a body or a form holds (name -> bytes, text or parsed JSON), with the request's content type,
Accept and X-Min-Confidence headers and each multipart file part's own content type: TorchServe's adapter
(handler/torchserve_item.py) and the gateway's feedback route (multipart_fields) both call `parse_payload`.

Accepted inputs: the raw image as the body (any `image/*` or `application/octet-stream`), a JSON object
`{"image": "<base64>", "format": "json|jpeg|png"}`, or a multipart form with a file field. The upright image
instead of JSON is asked for with `Accept: image/jpeg` / `image/png`, or the `format` field. The bar below which
the photo is left as it is may be set per request: a `min_confidence` field (JSON key, form field or query parameter,
which TorchServe hands over like form fields) or an `X-Min-Confidence` header; a field wins over the header.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Any

from food_rotation.photo_io import PhotoError

IMAGE_FIELDS = ("body", "data", "file", "image")
_FORMATS = {"json": None, "jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
_ACCEPT = {"image/jpeg": "jpeg", "image/jpg": "jpeg", "image/png": "png"}


@dataclass(frozen=True)
class Payload:
    image: bytes
    output_format: str | None  # None: the JSON prediction; "jpeg" / "png": the upright image itself
    min_confidence: float | None = None  # this request's bar; None: the model's configured one


MAX_FORM_PARTS = 16  # a photo and a few fields; thousands of tiny parts only cost parsing time


def multipart_fields(body: bytes, content_type: str,
                     max_parts: int = MAX_FORM_PARTS) -> tuple[dict[str, Any], dict[str, str]]:
    """A multipart form's fields (files as bytes, text fields as str) and each file part's own content type.
    The parts are counted before anything is parsed: 30,000 text parts once held the parser for seconds."""
    boundary = next((param.split("=", 1)[1].strip().strip('"') for param in content_type.split(";")[1:]
                     if param.strip().lower().startswith("boundary=")), "")
    if boundary and body.count(b"--" + boundary.encode("latin-1", "replace")) > max_parts + 1:
        raise PhotoError(400, "too_many_parts", f"a form may have at most {max_parts} parts")
    message = BytesParser(policy=policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1")
                                                          + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise PhotoError(400, "invalid_multipart", "the multipart body could not be parsed (boundary missing?)")
    fields: dict[str, Any] = {}
    part_types: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is None and part.get_content_maintype() == "text":
            fields[name] = payload.decode("utf-8", "replace")
        else:
            fields[name] = payload
            part_types[name] = part.get_content_type()
    return fields, part_types


def format_from_accept(accept: str) -> str | None:
    """The first image type listed in Accept that we can produce; anything else means JSON."""
    for media_range in accept.split(","):
        media_type = media_range.split(";")[0].strip().lower()
        if media_type in _ACCEPT:
            return _ACCEPT[media_type]
    return None


def _format_field(value: object) -> str | None:
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    key = text.strip().lower()
    if key not in _FORMATS:
        raise PhotoError(400, "invalid_format", f"format must be one of json, jpeg, png; got {text[:20]!r}")
    return _FORMATS[key]


def decode_base64(text: object) -> bytes:
    if not isinstance(text, str):
        raise PhotoError(400, "invalid_image_field", "the JSON field \"image\" must be a base64 string")
    if text.startswith("data:") and "," in text:  # a data URL as a browser's FileReader makes it
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PhotoError(400, "invalid_base64", f"the \"image\" field is not valid base64: {exc}") from exc


def min_confidence_field(value: object) -> float:
    """A number from 0 to 1, as JSON sends it or as text (form field, query parameter, header)."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):  # JSON true is not a confidence
        with contextlib.suppress(ValueError, OverflowError):  # OverflowError: a JSON integer past 1e308
            number = float(value)
    if not 0 <= number <= 1:  # NaN and infinities fail this too
        raise PhotoError(400, "invalid_min_confidence",
                         f"min_confidence must be a number from 0 to 1 (0: always turn); got {str(value)[:20]!r}")
    return number


def _from_json(document: object) -> tuple[bytes, dict[str, Any]]:
    if not isinstance(document, dict):
        raise PhotoError(400, "json_not_object", "a JSON body must be an object like {\"image\": \"<base64>\"}")
    if "image" not in document:
        raise PhotoError(400, "missing_image_field", "the JSON object has no \"image\" field")
    return decode_base64(document["image"]), document


def parse_payload(item: Mapping[str, Any], content_type: str, accept: str = "", min_confidence_header: str = "",
                  part_types: Mapping[str, str] | None = None) -> Payload:
    """Raises PhotoError naming the problem when the fields carry no usable image."""
    part_types = part_types or {}
    content_type = content_type.split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        raise PhotoError(
            415,
            "form_encoded_body",
            "the body was sent as application/x-www-form-urlencoded (curl --data-binary does this): send the image "
            "with Content-Type: image/jpeg or application/octet-stream, as a multipart file, or as JSON",
        )
    fields: Mapping[str, Any] = {}
    field = next((name for name in IMAGE_FIELDS if name in item), None)
    if field is None:  # a multipart form whose file field has another name: its first image or binary file part
        field = next((name for name, value in item.items() if isinstance(value, (bytes, bytearray)) and value
                      and part_types.get(name, "").lower().startswith(("image/", "application/octet-stream"))),
                     None)
    if field is None:
        raise PhotoError(400, "missing_image",
                         "no image found: send it as the body, as a multipart file field, or as JSON {\"image\": ...}")
    value = item[field]
    if isinstance(value, (bytes, bytearray)) and content_type == "application/json":
        try:  # TorchServe leaves JSON it could not parse as bytes
            value = json.loads(bytes(value))
        except ValueError as exc:
            raise PhotoError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if isinstance(value, (bytes, bytearray)):
        image = bytes(value)
    elif isinstance(value, str):
        image = value.encode("utf-8")  # text/* arrives decoded; it is refused later as not an image
    else:
        image, fields = _from_json(value)
    fields = {**fields, **item}  # form fields and query parameters win over the JSON object's keys
    format_value = fields.get("format")
    output_format = _format_field(format_value) if format_value is not None else format_from_accept(accept)
    bar = fields.get("min_confidence")
    if bar is None:
        bar = min_confidence_header or None
    min_confidence = min_confidence_field(bar) if bar is not None else None
    return Payload(image=image, output_format=output_format, min_confidence=min_confidence)

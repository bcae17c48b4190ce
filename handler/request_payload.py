"""Turn one TorchServe request item into image bytes and the answer format the caller asked for.

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
from typing import Any

from photo_io import PhotoError

IMAGE_FIELDS = ("body", "data", "file", "image")
_FORMATS = {"json": None, "jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
_ACCEPT = {"image/jpeg": "jpeg", "image/jpg": "jpeg", "image/png": "png"}


@dataclass(frozen=True)
class Payload:
    image: bytes
    output_format: str | None  # None: the JSON prediction; "jpeg" / "png": the upright image itself
    min_confidence: float | None = None  # this request's bar; None: the model's configured one


def _header(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name and isinstance(value, str):
            return value
    return ""


def _part_type(headers: Mapping[str, Any], name: str) -> str:
    """TorchServe files each multipart part's own headers under the part's name."""
    part = headers.get(name)
    return str(part.get("content-type", "")).lower() if isinstance(part, Mapping) else ""


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


def parse_item(item: Mapping[str, Any], headers: Mapping[str, Any]) -> Payload:
    """Raises PhotoError naming the problem when the item carries no usable image."""
    content_type = _header(headers, "content-type").split(";")[0].strip().lower()
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
                      and _part_type(headers, name).startswith(("image/", "application/octet-stream"))), None)
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
    output_format = _format_field(format_value) if format_value is not None else format_from_accept(
        _header(headers, "accept"))
    bar = fields.get("min_confidence")
    if bar is None:
        bar = _header(headers, "x-min-confidence") or None
    min_confidence = min_confidence_field(bar) if bar is not None else None
    return Payload(image=image, output_format=output_format, min_confidence=min_confidence)

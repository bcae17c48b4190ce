"""TorchServe's shape of a request item, read into the library's `parse_payload`.

TorchServe hands the handler each item as a dict of fields (the body under "body" or "data", form fields and query
parameters by name) and a headers dict that holds the request's headers and, under each multipart part's name, that
part's own headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from food_rotation.request_payload import Payload, parse_payload


def _header(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name and isinstance(value, str):
            return value
    return ""


def parse_item(item: Mapping[str, Any], headers: Mapping[str, Any]) -> Payload:
    """Raises PhotoError naming the problem when the item carries no usable image."""
    part_types = {name: str(part.get("content-type", "")) for name, part in headers.items()
                  if isinstance(part, Mapping)}
    return parse_payload(item, _header(headers, "content-type"), _header(headers, "accept"),
                         _header(headers, "x-min-confidence"), part_types)

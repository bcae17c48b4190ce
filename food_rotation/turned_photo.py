"""A photo file turned a quarter turn at a time, in its own format: what `food-rotation fix` writes.

A JPEG is turned without loss, by its EXIF Orientation alone (jpeg_orientation.py); any other format is decoded,
turned and re-encoded in that format, with its ICC profile and EXIF kept (the Orientation reset: the pixels now
are the way up), PNG text chunks kept, and lossless WebP kept lossless.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from food_rotation.jpeg_orientation import (
    ORIENTATION_TAG,
    NotAJpeg,
    orientation_after_turn,
    stored_orientation,
    with_orientation,
)
from food_rotation.photo_io import turn

WEBP_QUALITY = 90  # a lossy WebP says nothing of the quality it was saved at


class TurnFailed(ValueError):
    """The photo could not be turned in its own format; the message says why."""


def _webp_lossless(data: bytes) -> bool:
    """Whether a WebP file holds a lossless (VP8L) image: its RIFF chunks, walked."""
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        if kind == b"VP8L":
            return True
        at += 8 + size + (size & 1)
    return False


def reencoded(data: bytes, degrees: int) -> bytes:
    """A PNG, WebP or other photo turned `degrees` counter-clockwise as shown, re-encoded in its own format."""
    with Image.open(io.BytesIO(data)) as image:
        image_format = image.format or "PNG"
        info = dict(image.info)
        exif = image.getexif()
        upright = turn(ImageOps.exif_transpose(image), degrees)
    options: dict[str, object] = {}
    if info.get("icc_profile"):
        options["icc_profile"] = info["icc_profile"]
    if exif:
        exif[ORIENTATION_TAG] = 1
        options["exif"] = exif.tobytes()
    if image_format == "PNG":
        text = PngInfo()
        for key, value in info.items():
            if isinstance(value, str) and key not in ("icc_profile", "exif"):
                text.add_text(key, value)
        options["pnginfo"] = text
    elif image_format == "WEBP":
        options.update({"lossless": True} if _webp_lossless(data) else {"quality": WEBP_QUALITY})
    out = io.BytesIO()
    upright.save(out, image_format, **options)
    return out.getvalue()


def turned(data: bytes, degrees: int) -> tuple[bytes, str]:
    """(the photo turned `degrees` counter-clockwise as shown, how): a JPEG by its EXIF Orientation alone, anything
    else re-encoded; TurnFailed when neither can be done."""
    if data.startswith(b"\xff\xd8"):
        try:
            return with_orientation(data, orientation_after_turn(stored_orientation(data), degrees)), "EXIF orientation"
        except (NotAJpeg, OSError) as exc:
            raise TurnFailed(f"the JPEG's segments could not be rewritten: {exc}") from exc
    try:
        return reencoded(data, degrees), "re-encoded"
    except OSError as exc:
        raise TurnFailed(f"could not be re-encoded: {exc}") from exc

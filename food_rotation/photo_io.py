"""Decode photos for the model and encode the upright result: pure functions over bytes and PIL images.

Shared by the TorchServe handler, the training library and the proxy's feedback store, so that a photo is seen the
same way everywhere; free of torch, so the proxy can use it without loading a deep-learning framework.
Every failure caused by the input is a `PhotoError` carrying the HTTP status and a code naming the problem.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from food_rotation.service_error import ServiceError

TURNS: tuple[int, ...] = (0, 90, 180, 270)  # the counter-clockwise quarter turns: the model's four classes
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # above a 50 MP phone photo, below a decompression bomb
# What may be decoded at full size: every format but a JPEG that is only shrunk (decoded at a reduced DCT scale),
# and every format returned upright. Its time and memory grow with the pixels: four concurrent 100 MP PNGs held a
# prediction for 9 s. A 48 MP phone photo still passes.
DEFAULT_MAX_FULL_DECODE_PIXELS = 50_000_000
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))
_ORIENTATION_TAG = 0x0112
_T = Image.Transpose


class PhotoError(ServiceError):
    """Bad input: answered with `status` and a JSON body {"error": code, "message": message}."""


@dataclass(frozen=True)
class Orientation:
    """What an EXIF orientation tag asks for: mirror left-right first (if `mirrored`), then turn `degree` CCW."""

    tag: int
    degree: int
    mirrored: bool
    transpose: Image.Transpose | None


ORIENTATIONS: dict[int, Orientation] = {
    1: Orientation(1, 0, False, None),
    2: Orientation(2, 0, True, _T.FLIP_LEFT_RIGHT),
    3: Orientation(3, 180, False, _T.ROTATE_180),
    4: Orientation(4, 180, True, _T.FLIP_TOP_BOTTOM),
    5: Orientation(5, 90, True, _T.TRANSPOSE),
    6: Orientation(6, 270, False, _T.ROTATE_270),
    7: Orientation(7, 270, True, _T.TRANSVERSE),
    8: Orientation(8, 90, False, _T.ROTATE_90),
}
_TURNS = {0: None, 90: _T.ROTATE_90, 180: _T.ROTATE_180, 270: _T.ROTATE_270}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})


def sniff(data: bytes) -> str | None:
    """The format its first bytes claim, whatever follows: tells a broken image from something else."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    return "WEBP" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def check_png_crcs(data: bytes) -> None:
    """PIL does not check the CRC of a PNG's IDAT chunks; a mismatch means the file was damaged on the way."""
    position = 8
    while position + 12 <= len(data):
        length = struct.unpack(">I", data[position:position + 4])[0]
        end = position + 8 + length
        if end + 4 > len(data):
            return  # truncated: the decoder reports it
        kind = data[position + 4:position + 8]
        if zlib.crc32(data[position + 4:end]) != struct.unpack(">I", data[end:end + 4])[0]:
            raise PhotoError(400, "corrupt_image", f"the PNG chunk {kind.decode('latin-1')!r} has a bad CRC")
        if kind == b"IEND":
            return
        position = end + 4


# Decoded bytes per pixel of PIL's modes (16-bit and float images cost more than their pixel count says).
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 2, "I;16B": 2, "I;16L": 2,
                    "I;16N": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4,
                    "CMYK": 4, "I": 4, "F": 4}


def open_photo(data: bytes, max_pixels: int) -> Image.Image:
    """Identify the image from its header only; refuse what must not be decoded before any pixel is."""
    if not data:
        raise PhotoError(400, "empty_body", "the request carried no image bytes")
    claimed = sniff(data)
    if claimed == "PNG":
        check_png_crcs(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PhotoError(413, "image_too_large", f"the image has too many pixels ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if claimed is not None:
            raise PhotoError(400, "corrupt_image", f"the {claimed} header could not be read") from exc
        raise PhotoError(
            415, "not_an_image", "the body is not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF)"
        ) from exc
    if img.format not in ACCEPTED_FORMATS:
        raise PhotoError(415, "unsupported_image_format", f"{img.format} images are not accepted")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise PhotoError(400, "zero_size_image", f"the image declares a size of {width}x{height}")
    if width * height > max_pixels:
        raise PhotoError(
            413, "image_too_large",
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
        )
    decoded = width * height * max(3, _BYTES_PER_PIXEL.get(img.mode, 4))
    if decoded > max_pixels * 3:  # the budget is in bytes: max_pixels of 8-bit RGB
        raise PhotoError(
            413, "image_too_large",
            f"the {img.mode} image of {width}x{height} would take {decoded / 2**20:.0f} MiB to decode; the limit "
            f"is {max_pixels * 3 / 2**20:.0f} MiB ({max_pixels} pixels of 8-bit RGB)",
        )
    return img


def read_orientation(img: Image.Image) -> Orientation:
    """The EXIF orientation; a missing, malformed or out-of-range tag (0, 9, ...) counts as upright."""
    try:
        tag = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - any broken EXIF block: the photo is still a photo
        return ORIENTATIONS[1]
    return ORIENTATIONS.get(tag, ORIENTATIONS[1]) if isinstance(tag, int) else ORIENTATIONS[1]


def _decode(img: Image.Image) -> None:
    try:
        img.load()
    except MemoryError:
        raise
    except Exception as exc:
        raise PhotoError(400, "corrupt_image", f"the {img.format} image could not be decoded: {exc}") from exc


_STRIP_PIXELS = 1 << 20  # 16-bit and float images are scaled a strip of about a million pixels at a time


def _strips(img: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 pixels) of each horizontal strip: the temporaries of a conversion stay a few MB."""
    width, height = img.size
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        yield top, np.array(img.crop((0, top, width, min(height, top + rows))), dtype=np.float32)


def eight_bit_grey(img: Image.Image) -> Image.Image:
    """A 16-bit or float image scaled to 8 bits (its peak to 255) strip by strip: the whole image as float32,
    and three more copies of it, cost 0.6 GB for a 97 KB PNG of 7071 x 7071 (issue 33)."""
    if img.mode.startswith("I;16"):
        peak = 65535.0
    else:
        top = max(float(pixels.max()) for _, pixels in _strips(img))
        peak = max(top, 1.0) if img.mode == "F" else (65535.0 if top > 255 else 255.0)
    out = np.empty((img.height, img.width), dtype=np.uint8)
    for first, pixels in _strips(img):
        np.clip(pixels * (255.0 / peak), 0, 255, out=pixels)
        out[first:first + len(pixels)] = pixels
    return Image.fromarray(out)


def to_rgb(img: Image.Image, min_side: int | None = None) -> Image.Image:
    """Any mode to 8-bit RGB: transparency over white, 16-bit and float scaled rather than clipped. With
    `min_side`, a 16-bit or float image is first shrunk (by a whole factor, as a JPEG's draft is) to no less than
    that, so its RGB copy costs what the model needs, not three bytes a pixel of the original."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_MODES:
        grey = eight_bit_grey(img)
        factor = min(grey.size) // min_side if min_side else 1
        return (grey.reduce(factor) if factor > 1 else grey).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def load_upright(data: bytes, min_side: int, max_pixels: int,
                 max_full_pixels: int | None = None) -> tuple[Image.Image, Orientation]:
    """Decode as an RGB image turned as its EXIF tag asks, at least `min_side` on each side where possible.

    A JPEG is decoded at a reduced DCT scale (`draft`): a 12 MP phone photo is never decoded in full to be
    shrunk to model size. Other formats are decoded whole, so they must also fit `max_full_pixels`.
    """
    img = open_photo(data, max_pixels)
    orientation = read_orientation(img)
    if img.format in ("JPEG", "MPO"):
        img.draft(None, (min_side, min_side))
    else:
        check_full_decode(img, max_full_pixels, "shrinking it decodes it whole")
    _decode(img)
    img = to_rgb(img, min_side)
    if orientation.transpose is not None:
        img = img.transpose(orientation.transpose)
    return img, orientation


def check_full_decode(img: Image.Image, max_full_pixels: int | None, why: str) -> None:
    """Refuse, before any pixel is decoded, an image to be decoded whole that has more than `max_full_pixels`."""
    width, height = img.size
    if max_full_pixels is not None and width * height > max_full_pixels:
        raise PhotoError(
            413, "image_too_large",
            f"the {img.format} image is {width}x{height} = {width * height} pixels and {why}; the limit for that is "
            f"{max_full_pixels} pixels (a JPEG sent for a JSON answer is decoded at a reduced scale)",
        )


def turn(img: Image.Image, degree: int) -> Image.Image:
    """Exactly `img.rotate(degree, expand=True)` for multiples of 90, without resampling."""
    method = _TURNS[degree % 360]
    return img if method is None else img.transpose(method)


class _TooLarge(Exception):
    """Raised by _CappedBuffer: the encoding went past its limit."""


class _CappedBuffer(io.BytesIO):
    """A BytesIO that refuses to grow past `limit` bytes, so an answer too large to send stops encoding early."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self._limit:
            raise _TooLarge
        return super().write(data)


def render_upright(data: bytes, model_degree: int, image_format: str, max_pixels: int, jpeg_quality: int,
                   max_bytes: int, max_full_pixels: int | None = None) -> bytes:
    """The full-resolution photo made upright (EXIF turn, then the model's), EXIF orientation cleared, ICC kept.

    At most `max_bytes` long: TorchServe kills the worker whose answer is over its max_response_size, so a
    larger encoding is refused here as the caller's 422 rather than a dead worker's 500.
    """
    img = open_photo(data, max_pixels)
    check_full_decode(img, max_full_pixels, "returning it upright decodes it whole")
    orientation = read_orientation(img)
    _decode(img)
    icc_profile = img.info.get("icc_profile")
    try:
        exif = img.getexif()
        exif.pop(_ORIENTATION_TAG, None)
        exif_bytes = exif.tobytes() if len(exif) else b""
    except Exception:  # noqa: BLE001 - a malformed EXIF block is dropped rather than copied
        exif_bytes = b""
    if orientation.transpose is not None:
        img = img.transpose(orientation.transpose)
    img = turn(img, model_degree)
    options: dict[str, object] = {}
    if image_format == "jpeg":
        if img.mode not in ("RGB", "L", "CMYK"):
            img, icc_profile = to_rgb(img), None  # a profile describes the original colour space only
        options = {"quality": jpeg_quality}
    elif img.mode not in _PNG_MODES:
        img, icc_profile = to_rgb(img), None
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif_bytes:
        options["exif"] = exif_bytes
    out = _CappedBuffer(max_bytes)
    try:
        img.save(out, format="JPEG" if image_format == "jpeg" else "PNG", **options)
    except _TooLarge:
        instead = "JPEG (Accept: image/jpeg) or " if image_format == "png" else ""
        raise PhotoError(422, "output_too_large",
                         f"the upright {image_format.upper()} of this {img.width}x{img.height} photo is over "
                         f"{max_bytes / 2**20:g} MiB, the most one answer may carry; ask for {instead}the JSON "
                         "prediction (no Accept header), which names the turn to apply") from None
    return out.getvalue()

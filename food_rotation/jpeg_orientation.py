"""Turn a JPEG without touching its pixels: rewrite the EXIF Orientation tag, leave every other byte as it was.

A phone photo's pixels are stored as the sensor saw them and its EXIF Orientation (1-8) says how to show them; the
service answers how far to turn the photo *as shown* (after that EXIF turn). So the lossless fix composes the two
into a new Orientation value and writes it into the APP1 Exif segment: in place where the tag exists (two bytes
change), else in a rebuilt Exif block (the APP1 segment alone changes). No decode, no re-encode, no quality lost.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from food_rotation.photo_io import ORIENTATIONS, read_orientation

ORIENTATION_TAG = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"
_SOI = b"\xff\xd8"


class NotAJpeg(ValueError):
    """The bytes are not a JPEG whose segments can be walked."""


def _shown(orientation: int, stored: np.ndarray) -> np.ndarray:
    """How a photo whose pixels are `stored` is shown under `orientation` (PIL's transposes, as exif_transpose)."""
    method = ORIENTATIONS[orientation].transpose
    image = Image.fromarray(stored)
    return np.asarray(image if method is None else image.transpose(method))


_PROBE = np.arange(6, dtype=np.uint8).reshape(2, 3)  # no symmetry: each of the 8 transforms shows it differently


def orientation_after_turn(orientation: int, degrees_ccw: int) -> int:
    """The Orientation that shows the photo turned `degrees_ccw` counter-clockwise from how `orientation` shows it."""
    wanted = np.rot90(_shown(orientation if orientation in ORIENTATIONS else 1, _PROBE), (degrees_ccw // 90) % 4)
    return next(o for o in ORIENTATIONS if np.array_equal(_shown(o, _PROBE), wanted))


def _segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment before the image data (start of scan)."""
    if not jpeg.startswith(_SOI):
        raise NotAJpeg("no JPEG start-of-image marker")
    found, at = [], 2
    while at + 4 <= len(jpeg):
        if jpeg[at] != 0xFF:
            raise NotAJpeg(f"no segment marker at byte {at}")
        marker = jpeg[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", jpeg[at + 2:at + 4])[0]
        found.append((marker, at, at + 2 + length))
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            return found
        at += 2 + length
    raise NotAJpeg("no start-of-scan segment")


def exif_segment(jpeg: bytes) -> tuple[int, int] | None:
    """(start, end) of the APP1 Exif segment, marker included; None when the photo has none."""
    for marker, start, end in _segments(jpeg):
        if marker == 0xE1 and jpeg[start + 4:start + 10] == _EXIF_HEADER:
            return start, end
    return None


def _patched_in_place(jpeg: bytes, start: int, end: int, orientation: int) -> bytes | None:
    """The photo with IFD0's Orientation entry rewritten where it is; None when IFD0 has no such entry."""
    tiff = start + 10
    order = {b"II": "<", b"MM": ">"}.get(jpeg[tiff:tiff + 2])
    if order is None:
        return None
    (ifd,) = struct.unpack(order + "I", jpeg[tiff + 4:tiff + 8])
    entries_at = tiff + ifd
    if entries_at + 2 > end:
        return None
    (count,) = struct.unpack(order + "H", jpeg[entries_at:entries_at + 2])
    for index in range(count):
        entry = entries_at + 2 + 12 * index
        if entry + 12 > end:
            return None
        tag, kind, values = struct.unpack(order + "HHI", jpeg[entry:entry + 8])
        if tag == ORIENTATION_TAG and kind == 3 and values == 1:  # one SHORT, stored in the entry itself
            return jpeg[:entry + 8] + struct.pack(order + "HH", orientation, 0) + jpeg[entry + 12:]
    return None


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """`jpeg` with its EXIF Orientation set to `orientation`; outside the APP1 Exif segment every byte is kept."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation}")
    segment = exif_segment(jpeg)
    if segment is not None:
        patched = _patched_in_place(jpeg, *segment, orientation)
        if patched is not None:
            return patched
    with Image.open(io.BytesIO(jpeg)) as image:  # reads the headers only: no pixel is decoded
        exif = image.getexif()
    exif[ORIENTATION_TAG] = orientation
    block = _EXIF_HEADER + exif.tobytes()
    if len(block) + 2 > 0xFFFF:
        raise NotAJpeg("the EXIF block would not fit in one APP1 segment")
    app1 = b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block
    if segment is not None:
        return jpeg[:segment[0]] + app1 + jpeg[segment[1]:]
    first = _segments(jpeg)[0]
    at = first[2] if first[0] == 0xE0 else 2  # after a JFIF APP0, which must come first; else after the SOI
    return jpeg[:at] + app1 + jpeg[at:]


def stored_orientation(jpeg: bytes) -> int:
    """The photo's EXIF Orientation (1 when it has none or an invalid one), as photo_io reads it."""
    with Image.open(io.BytesIO(jpeg)) as image:  # the headers only: no pixel is decoded
        return read_orientation(image).tag

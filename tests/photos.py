"""Real test photos: generated upright scenes encoded as JPEG/PNG/..., with EXIF orientation where asked."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from food_rotation.photo_io import ORIENTATIONS
from food_rotation.training.make_demo_data import render_scene

# The transpose that undoes each orientation's: stored pixels = INVERSE(upright), so that a viewer applying
# the tag's transpose sees the upright scene again.
_INVERSE = {
    Image.Transpose.FLIP_LEFT_RIGHT: Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.ROTATE_180: Image.Transpose.ROTATE_180,
    Image.Transpose.FLIP_TOP_BOTTOM: Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE: Image.Transpose.TRANSPOSE,
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    Image.Transpose.TRANSVERSE: Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
}
# Scenes the demo model answers confidently at every turn (checked by tests/unit/test_rotation_handler.py).
CLEAR_SCENES = (1001, 1002, 1003, 1004)


def scene(seed: int = CLEAR_SCENES[0]) -> Image.Image:
    return render_scene(seed)


def encode(img: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def jpeg_with_orientation(upright: Image.Image, orientation: int, **options: object) -> bytes:
    """A JPEG whose pixels are stored turned, with the EXIF tag that turns them back upright."""
    transpose = ORIENTATIONS[orientation].transpose
    stored = upright if transpose is None else upright.transpose(_INVERSE[transpose])
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make: another tag that must survive the round trip
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=92, **options)


def rotated(upright: Image.Image, model_degree: int) -> Image.Image:
    """The upright scene turned so that `rotate(model_degree, expand=True)` makes it upright again."""
    return upright.rotate(-model_degree, expand=True)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (valid CRCs) and holds no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def png_bomb(side: int) -> bytes:
    """A real, valid greyscale PNG of side x side black pixels: tiny on the wire, side^2 bytes decoded."""
    raw = zlib.compress(b"\x00" * ((side + 1) * side), 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b"")


def same_picture(a: Image.Image, b: Image.Image) -> bool:
    """Same picture, allowing for JPEG loss: compare small grey thumbnails."""
    if a.size != b.size:
        return False
    small = (64, 64)
    x = np.asarray(a.convert("L").resize(small), dtype=np.float32)
    y = np.asarray(b.convert("L").resize(small), dtype=np.float32)
    return float(np.abs(x - y).mean()) < 6.0


def real_sources(root: Path, sources: tuple[str, ...] = ("mate", "plasma", "lomiri", "interiors"),
                 per_source: int = 4) -> Path:
    """A data/real-shaped tree (photos/<source>/*.jpg) of generated scenes, one source group per folder."""
    for source in sources:
        folder = root / "photos" / source
        folder.mkdir(parents=True)
        for seed in range(per_source):
            (folder / f"p{seed}.jpg").write_bytes(encode(scene(seed + 10 * len(source)).resize((96, 72))))
    return root

"""A JPEG turned by its EXIF Orientation alone: shown exactly as the pixels turned would be, every byte outside
the APP1 Exif segment the same, whether the tag was there, the EXIF was there without it, or there was none."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from food_rotation.jpeg_orientation import (
    NotAJpeg,
    exif_segment,
    orientation_after_turn,
    stored_orientation,
    with_orientation,
)
from food_rotation.photo_io import turn
from tests.photos import encode, jpeg_with_orientation, scene


def shown(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def outside_exif(jpeg: bytes) -> bytes:
    segment = exif_segment(jpeg)
    return jpeg if segment is None else jpeg[:segment[0]] + jpeg[segment[1]:]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_the_new_orientation_shows_the_photo_turned_and_nothing_else_changes(orientation, degrees):
    photo = jpeg_with_orientation(scene().resize((64, 48)), orientation)
    fixed = with_orientation(photo, orientation_after_turn(stored_orientation(photo), degrees))
    expected = np.asarray(turn(Image.fromarray(shown(photo)), degrees))
    assert np.array_equal(shown(fixed), expected)
    assert outside_exif(fixed) == outside_exif(photo) and len(fixed) == len(photo)  # two bytes of the tag


def test_a_photo_with_exif_but_no_orientation_or_no_exif_at_all_gets_one():
    plain = encode(scene().resize((64, 48)))  # Pillow's JPEG: JFIF APP0, no EXIF
    assert exif_segment(plain) is None
    fixed = with_orientation(plain, orientation_after_turn(1, 90))
    assert stored_orientation(fixed) == 8 and np.array_equal(shown(fixed), np.rot90(shown(plain)))
    assert outside_exif(fixed) == plain
    exif = Image.Exif()
    exif[0x010F] = "a phone"  # Make, but no Orientation
    tagged = encode(scene().resize((64, 48)), exif=exif.tobytes())
    turned = with_orientation(tagged, 3)
    assert stored_orientation(turned) == 3 and outside_exif(turned) == outside_exif(tagged)
    with Image.open(io.BytesIO(turned)) as image:
        assert image.getexif()[0x010F] == "a phone"  # the rest of the EXIF kept


def test_what_is_not_a_jpeg_is_refused():
    for junk in (b"", b"GIF89a", encode(scene(), "PNG"), b"\xff\xd8\xff\xe0\x00"):
        with pytest.raises(NotAJpeg):
            with_orientation(junk, 6)

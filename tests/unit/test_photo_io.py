import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageCms

from food_rotation.photo_io import ORIENTATIONS, PhotoError, load_upright, open_photo, render_upright, turn
from food_rotation.rotation_model import to_pixels
from tests.photos import encode, jpeg_with_orientation, png_header, same_picture, scene

LIMIT = 100_000_000
ANSWER = 24 * 2**20
EXPECTED = {1: (0, False), 2: (0, True), 3: (180, False), 4: (180, True),
            5: (90, True), 6: (270, False), 7: (270, True), 8: (90, False)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_and_reported(orientation):
    upright = scene()
    img, found = load_upright(jpeg_with_orientation(upright, orientation), 600, LIMIT)
    assert (found.degree, found.mirrored) == EXPECTED[orientation]
    assert same_picture(img, upright)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_degree_is_the_counter_clockwise_turn_pil_applies(orientation):
    upright = scene()
    stored = Image.open(io.BytesIO(jpeg_with_orientation(upright, orientation)))
    assert same_picture(stored.rotate(ORIENTATIONS[orientation].degree, expand=True), upright)


@pytest.mark.parametrize("tag", [0, 9, 65535])
def test_out_of_range_orientation_counts_as_upright(tag):
    exif = Image.Exif()
    exif[0x0112] = tag
    img, found = load_upright(encode(scene(), "JPEG", exif=exif.tobytes()), 300, LIMIT)
    assert (found.degree, found.mirrored, img.size) == (0, False, scene().size)


def test_malformed_exif_block_is_ignored():
    good = encode(scene(), "JPEG")
    broken_app1 = b"\xff\xe1\x00\x10Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff"  # IFD offset points nowhere
    img, found = load_upright(good[:2] + broken_app1 + good[2:], 300, LIMIT)
    assert found.degree == 0 and img.mode == "RGB"


def test_big_jpeg_is_decoded_at_reduced_scale():
    big = encode(scene().resize((4000, 3000)), "JPEG", quality=85)
    img, _ = load_upright(big, 224, LIMIT)
    assert 224 <= min(img.size) and max(img.size) <= 1000  # 1/8 scale: 500x375, never the full 12 MP


@pytest.mark.parametrize(("mode", "fmt"), [("RGBA", "PNG"), ("L", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"),
                                           ("RGB", "WEBP"), ("RGB", "BMP"), ("RGB", "TIFF"), ("P", "GIF")])
def test_every_mode_and_format_becomes_rgb(mode, fmt):
    img, _ = load_upright(encode(scene().convert(mode), fmt), 224, LIMIT)
    assert img.mode == "RGB" and img.size == scene().size


def test_transparency_is_composited_over_white():
    clear = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    img, _ = load_upright(encode(clear, "PNG"), 16, LIMIT)
    assert img.getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_png_is_scaled_not_clipped():
    grey = Image.fromarray(np.full((20, 30), 32768, dtype=np.uint16))
    img, _ = load_upright(encode(grey, "PNG"), 16, LIMIT)
    assert abs(img.getpixel((3, 3))[0] - 128) <= 1


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    img, _ = load_upright(out.getvalue(), 16, LIMIT)
    red, _, blue = img.getpixel((10, 10))
    assert red > 200 and blue < 50


@pytest.mark.parametrize(("data", "status", "code"), [
    (b"", 400, "empty_body"),
    (b"hello, this is text", 415, "not_an_image"),
    (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", 415, "not_an_image"),
    (png_header(30000, 30000), 413, "image_too_large"),
])
def test_bad_bytes_are_named(data, status, code):
    with pytest.raises(PhotoError) as caught:
        load_upright(data, 224, LIMIT)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_truncated_jpeg_is_corrupt():
    data = encode(scene(), "JPEG")
    with pytest.raises(PhotoError) as caught:
        load_upright(data[: len(data) // 2], 224, LIMIT)
    assert (caught.value.status, caught.value.code) == (400, "corrupt_image")


def test_zero_width_header_is_refused():
    with pytest.raises(PhotoError) as caught:
        load_upright(png_header(0, 10), 224, LIMIT)
    assert (caught.value.status, caught.value.code) == (400, "corrupt_image")


def test_damaged_png_is_corrupt_not_foreign():
    png = encode(scene(), "PNG")
    damaged_header = bytearray(png)
    damaged_header[29] ^= 0xFF  # the IHDR CRC
    start = png.index(b"IDAT")
    damaged_data = bytearray(png)
    damaged_data[start + 40] ^= 0xFF  # inside IDAT: only the CRC tells (PIL does not check it)
    for data, where in ((damaged_header, "IHDR"), (damaged_data, "IDAT")):
        with pytest.raises(PhotoError) as caught:
            load_upright(bytes(data), 224, LIMIT)
        assert (caught.value.status, caught.value.code) == (400, "corrupt_image") and where in caught.value.message


def test_jpeg_with_a_broken_marker_is_corrupt():
    good = encode(scene(), "JPEG")
    at = good.index(b"\xff\xdb")
    with pytest.raises(PhotoError) as caught:
        load_upright(good[:at] + b"\xff\x01" + good[at:], 224, LIMIT)
    assert (caught.value.status, caught.value.code) == (400, "corrupt_image")


def test_pixel_limit_is_the_one_passed_in():
    with pytest.raises(PhotoError) as caught:
        load_upright(encode(scene(), "PNG"), 224, max_pixels=1000)
    assert caught.value.code == "image_too_large" and "1000" in caught.value.message


def test_only_what_is_decoded_whole_meets_the_full_decode_limit():
    """A PNG is decoded whole to be shrunk, a JPEG at a reduced scale; any image returned upright is decoded whole."""
    pixels = scene().width * scene().height
    png, jpeg = encode(scene(), "PNG"), encode(scene(), "JPEG")
    with pytest.raises(PhotoError) as caught:
        load_upright(png, 224, LIMIT, max_full_pixels=pixels - 1)
    assert (caught.value.status, caught.value.code) == (413, "image_too_large")
    assert "decodes it whole" in caught.value.message and str(pixels - 1) in caught.value.message
    assert load_upright(png, 224, LIMIT, max_full_pixels=pixels)[0].size == scene().size
    assert load_upright(jpeg, 32, LIMIT, max_full_pixels=pixels - 1)[0].width < scene().width  # drafted, no refusal
    with pytest.raises(PhotoError) as caught:
        render_upright(jpeg, 90, "jpeg", LIMIT, 90, 2**24, max_full_pixels=pixels - 1)
    assert caught.value.code == "image_too_large" and "returning it upright" in caught.value.message


@pytest.mark.parametrize("degree", [0, 90, 180, 270])
def test_turn_matches_pil_rotate_with_expand(degree):
    img = scene()
    assert np.array_equal(np.asarray(turn(img, degree)), np.asarray(img.rotate(degree, expand=True)))


def test_to_pixels_is_uint8_chw_of_the_requested_size():
    pixels = to_pixels(scene(), 96)
    assert pixels.shape == (3, 96, 96) and str(pixels.dtype) == "torch.uint8"


def test_render_upright_applies_exif_then_model_turn_and_keeps_metadata():
    upright = scene()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    sideways = upright.rotate(-90, expand=True)  # needs a 90 degree counter-clockwise turn
    data = jpeg_with_orientation(sideways, 6, icc_profile=icc)
    out = Image.open(io.BytesIO(render_upright(data, 90, "jpeg", LIMIT, 90, ANSWER)))
    assert out.format == "JPEG" and same_picture(out, upright)
    assert out.getexif().get(0x0112) is None and out.getexif().get(0x010F) == "TestCam"
    assert out.info.get("icc_profile") == icc


@pytest.mark.parametrize(("image_format", "instead"), [("png", "JPEG (Accept: image/jpeg)"), ("jpeg", "JSON")])
def test_an_upright_image_over_the_answer_limit_is_a_422_naming_the_way_out(image_format, instead):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    data = encode(noise, "JPEG")
    with pytest.raises(PhotoError) as refused:
        render_upright(data, 0, image_format, LIMIT, 95, max_bytes=50_000)
    assert (refused.value.status, refused.value.code) == (422, "output_too_large")
    assert "400x300" in refused.value.message and instead in refused.value.message
    assert len(render_upright(data, 0, image_format, LIMIT, 95, max_bytes=ANSWER)) > 50_000


def test_render_upright_png_keeps_alpha():
    rgba = scene().convert("RGBA")
    out = Image.open(io.BytesIO(render_upright(encode(rgba, "PNG"), 180, "png", LIMIT, 90, ANSWER)))
    assert out.format == "PNG" and out.mode == "RGBA" and out.size == rgba.size


def test_the_decoding_budget_counts_bytes_not_pixels():
    """A float TIFF compresses to almost nothing and decodes to 4 bytes a pixel: within the pixel limit, over the
    byte budget (max_pixels of 8-bit RGB). The same pixels in RGB pass."""
    floats = io.BytesIO()
    Image.fromarray(np.zeros((2000, 2000), dtype=np.float32), mode="F").save(floats, "TIFF",
                                                                            compression="tiff_deflate")
    assert len(floats.getvalue()) < 100_000
    with pytest.raises(PhotoError) as caught:
        open_photo(floats.getvalue(), 4_000_000)
    assert caught.value.status == 413 and "F image" in caught.value.message
    assert open_photo(encode(Image.new("RGB", (2000, 2000)), "PNG"), 4_000_000).size == (2000, 2000)


def test_a_small_file_of_a_huge_16_bit_image_costs_what_the_model_needs_not_its_float_copies(tmp_path):
    """Issue 33: a 97 KB 16-bit grey PNG of 7071 x 7071 raised a process's peak memory by ~0.6 GB (the whole image
    as float32, and copies of it). Measured in a process of its own: its peak resident memory, before and after."""
    script = tmp_path / "decode.py"
    script.write_text("""
import io, resource
import numpy as np
from PIL import Image
from food_rotation.photo_io import load_upright
pixels = np.zeros((7071, 7071), dtype=np.uint16)
pixels[::97, ::89] = 40000
buffer = io.BytesIO()
Image.fromarray(pixels).save(buffer, "PNG")
data = buffer.getvalue()
del pixels, buffer
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
img, _ = load_upright(data, 224, 100_000_000, 50_000_000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(data), (after - before) // 1024, img.mode, min(img.size))
""")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True)
    size, grown_mib, mode, side = run.stdout.split()
    assert int(size) < 200_000 and mode == "RGB" and int(side) >= 224
    assert int(grown_mib) < 160, run.stdout  # the decoded 16-bit image (95 MiB) and little else; was ~570

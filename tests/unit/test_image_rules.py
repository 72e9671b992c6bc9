"""serving.images' guards at their edges, without a model (issue 34: mutants that survived test_images)."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from serving import images


def encoded(fmt: str, size=(10, 10), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM"])
def test_formats_pillow_reads_but_the_function_does_not_accept_are_refused(fmt):
    # Pillow opens these; the allow-list (JPEG, PNG, WEBP, GIF, BMP) does not. Fails if Image.open loses formats=.
    with pytest.raises(images.NotAnImage, match="unrecognised format"):
        images.open_image(encoded(fmt))


def test_the_pixel_limit_allows_exactly_its_count():
    # 10 x 10 = 100 pixels: a limit of 100 lets it through, 99 refuses it before decoding. Fails on `>=`.
    assert images.open_image(encoded("PNG"), max_pixels=100).size == (10, 10)
    with pytest.raises(images.ImageTooLarge):
        images.open_image(encoded("PNG"), max_pixels=99)


def test_softmax_of_one_row_and_of_a_batch():
    # By hand: logits 0 and ln 3 are probabilities 1/4 and 3/4. A 1-D row fails if the axis is not the last one.
    row = np.array([0.0, math.log(3)])
    assert images.softmax(row) == pytest.approx([0.25, 0.75])
    batch = np.array([[0.0, math.log(3)], [math.log(3), 0.0]])
    assert images.softmax(batch) == pytest.approx(np.array([[0.25, 0.75], [0.75, 0.25]]))


@pytest.mark.parametrize("mode", ["RGBa", "PA"])
def test_every_mode_with_transparency_becomes_white_where_transparent(mode):
    # A fully transparent pixel is white, as test_images checks for RGBA and LA; these modes were unchecked.
    # Fails if a mode leaves the list of modes composited on white. (La, also listed, cannot be converted by
    # Pillow 13 at all: no decoder of the five formats makes it, so it is left untested.)
    if mode == "PA":
        img = Image.new("PA", (2, 2), (0, 0))
        img.putpalette([0, 0, 0] * 256)
    else:
        img = Image.new(mode, (2, 2), 0)
    assert np.asarray(images.to_rgb(img)).tolist() == [[[255, 255, 255]] * 2] * 2


def test_a_big_endian_16_bit_image_is_scaled_not_clipped():
    # I;16B, like I;16: 65535 is white (255), 32896 (128 x 257) is 128. Fails if I;16B leaves the 16-bit list.
    img = Image.frombytes("I;16B", (2, 1), np.array([65535, 32896], dtype=">u2").tobytes())
    assert np.asarray(images.to_rgb(img))[0, :, 0].tolist() == [255, 128]


# Issue 34's second pass on images.py (mutation_2026-12-08.md): each test names the mutants it kills.


def png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def test_the_resize_is_bilinear():
    """load_image 15, 17 (Pillow's default, bicubic). Black | white, 2 pixels to 4: bilinear weights (by hand,
    Pillow's pixel centres, weights renormalised at the edges) give 0, 0.25 x 255 = 63.75, 0.75 x 255 = 191.25,
    255: 0, 64, 191, 255 on every row. Bicubic gives 53 and 202 in the middle."""
    img = Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]]] * 2, dtype=np.uint8))
    out = images.load_image(png(img), 4)
    assert out[:, :, 0].tolist() == [[0, 64, 191, 255]] * 4 and (out[:, :, 1] == out[:, :, 0]).all()


def test_a_little_endian_16_bit_image_is_scaled_not_clipped():
    """to_rgb 6, 7 (I;16L out of the 16-bit list): as I;16B, 65535 is 255 and 32896 (128 x 257) is 128."""
    img = Image.frombytes("I;16L", (2, 1), np.array([65535, 32896], dtype="<u2").tobytes())
    assert np.asarray(images.to_rgb(img))[0, :, 0].tolist() == [255, 128]


def test_a_32_bit_image_is_scaled_and_clipped_to_0_255():
    """to_rgb 8, 9 ("I" out of the list: Pillow's own I to RGB clips, 25,700 would be 255), 29, 34 (the clip's
    low end: -514 / 257 = -2 wraps to 254 as uint8; 0 stays 0), 30, 35 (its high end: 70,000 / 257 = 272.4
    wraps to 16, or 256 to 0). By hand: [-514, 0, 25700, 70000] / 257 = [-2, 0, 100, 272.4] -> [0, 0, 100, 255]."""
    img = Image.fromarray(np.array([[-514, 0, 25700, 70000]], dtype=np.int32), mode="I")
    assert np.asarray(images.to_rgb(img))[0, :, 0].tolist() == [0, 0, 100, 255]


def test_16_bit_values_up_to_255_are_taken_as_8_bit_and_from_256_scaled():
    """to_rgb 17 (`>= 255`: a brightest pixel of 255 scaled to 0), 18 (`> 256`: one of 256 clipped to 255
    instead of scaled, 256 / 257 = 0.996 -> 0)."""
    eight = Image.frombytes("I;16", (2, 1), np.array([255, 100], dtype="<u2").tobytes())
    assert np.asarray(images.to_rgb(eight))[0, :, 0].tolist() == [255, 100]
    scaled = Image.frombytes("I;16", (2, 1), np.array([256, 0], dtype="<u2").tobytes())
    assert np.asarray(images.to_rgb(scaled))[0, :, 0].tolist() == [0, 0]


def test_a_refused_format_names_the_accepted_ones():
    """open_image 12 (the list's separator): the client reads which formats to send."""
    with pytest.raises(images.NotAnImage) as error:
        images.open_image(b"hello, not an image")
    assert str(error.value) == "not an image (unrecognised format; accepted: JPEG, PNG, WEBP, GIF, BMP)"
    assert error.value.status == 415


def test_whatever_a_parser_raises_on_hostile_bytes_is_the_clients_4xx_with_its_name(monkeypatch):
    """open_image 13, 14, 15 and load_image 22 (the messages): Pillow's parsers raise nearly anything on
    hostile bytes (ValueError, struct.error, ...) and its own bomb check past 2 x 89 Mpx; each is a 413 or
    422 whose message names it. Made to raise here: the bytes that do so differ between Pillow versions."""

    def raising(error):
        def fail(*args, **kwargs):
            raise error

        return fail

    monkeypatch.setattr(images.Image, "open", raising(ValueError("bad chunk")))
    with pytest.raises(images.ImageError) as error:
        images.open_image(b"any")
    assert type(error.value) is images.ImageError and str(error.value) == "cannot read image: ValueError: bad chunk"
    monkeypatch.setattr(images.Image, "open", raising(Image.DecompressionBombError("200000000 pixels")))
    with pytest.raises(images.ImageTooLarge, match=r"^image too large: 200000000 pixels$"):
        images.open_image(b"any")
    monkeypatch.undo()
    monkeypatch.setattr(images.ImageOps, "exif_transpose", raising(Image.DecompressionBombError("a frame")))
    with pytest.raises(images.ImageTooLarge, match=r"^image too large: a frame$"):
        images.load_image(encoded("PNG"), 4)

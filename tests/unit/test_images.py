import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from serving.images import ImageError, load_image, preprocess, scale, softmax


def png_bytes(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_known_image_gives_known_numbers():
    # 2x2 image, upscaled to 4x4 by bilinear resize: corners keep their colours, scaled to [-1, 1].
    pixels = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    x = preprocess(png_bytes(Image.fromarray(pixels)), 4)
    assert x.shape == (1, 4, 4, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0, 0], [-1, -1, -1])
    np.testing.assert_allclose(x[0, 0, 3], [1, 1, 1])
    np.testing.assert_allclose(x[0, 3, 0], [1, -1, -1])
    np.testing.assert_allclose(x[0, 3, 3], [-1, -1, 1])
    assert scale(np.array([0, 127.5, 255]))[1] == pytest.approx(0.0)


def test_real_photo(dataset_dir):
    photo = next((dataset_dir / "test" / "shoes").iterdir())
    x = preprocess(photo, 299)
    assert x.shape == (1, 299, 299, 3)
    assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0
    np.testing.assert_array_equal(preprocess(photo.read_bytes(), 299), x)


@pytest.mark.parametrize(
    ("orientation", "red_side"),
    # EXIF 6: the stored picture is shown turned 90 degrees clockwise (Pillow's ROTATE_270), so its left edge
    # becomes the top; 8: turned 90 degrees anticlockwise, the left edge becomes the bottom; 3: turned 180
    # degrees; 1: as stored.
    [(6, "top"), (8, "bottom"), (3, "right"), (1, "left")],
)
def test_exif_orientation_is_applied(orientation, red_side):
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = (255, 0, 0)  # a wide picture: left half red, right half black
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(png_bytes(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95), 40)
    sides = {"top": out[:15], "bottom": out[-15:], "left": out[:, :15], "right": out[:, -15:]}
    opposite = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}[red_side]
    np.testing.assert_allclose(sides[red_side].reshape(-1, 3).mean(0), (255, 0, 0), atol=8)  # JPEG's loss
    np.testing.assert_allclose(sides[opposite].reshape(-1, 3).mean(0), (0, 0, 0), atol=8)


COLOUR = (200, 100, 50)
LUMA = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # ITU-R 601-2 luma: the grey the colour turns into
HALF_ON_WHITE = tuple(round(c * 128 / 255 + 255 * 127 / 255) for c in COLOUR)  # alpha 128 over white


def coloured(mode: str, colour: tuple = COLOUR, **convert) -> Image.Image:
    return Image.new("RGBA" if len(colour) == 4 else "RGB", (30, 20), colour).convert(mode, **convert)


def transparent_palette_entry() -> Image.Image:
    img = Image.new("P", (30, 20), 1)
    img.putpalette([*COLOUR, 0, 0, 0])
    img.info["transparency"] = 1  # every pixel is palette entry 1, the transparent one
    return img


MODE_CASES = [
    ("L", lambda: coloured("L"), "PNG", (LUMA,) * 3, 1),
    ("L-jpeg", lambda: coloured("L"), "JPEG", (LUMA,) * 3, 2),
    ("LA", lambda: coloured("LA"), "PNG", (LUMA,) * 3, 1),
    ("LA-transparent", lambda: coloured("LA", (*COLOUR, 0)), "PNG", (255,) * 3, 0),
    ("RGBA", lambda: coloured("RGBA"), "PNG", COLOUR, 0),
    ("RGBA-transparent", lambda: coloured("RGBA", (*COLOUR, 0)), "PNG", (255,) * 3, 0),
    ("RGBA-half", lambda: coloured("RGBA", (*COLOUR, 128)), "PNG", HALF_ON_WHITE, 1),
    # An adaptive palette holds the colour itself (Pillow's default web palette would dither it).
    ("P", lambda: coloured("P", palette=Image.Palette.ADAPTIVE), "PNG", COLOUR, 0),
    ("P-transparent", transparent_palette_entry, "PNG", (255,) * 3, 0),
    ("CMYK", lambda: coloured("CMYK"), "JPEG", COLOUR, 2),
    ("I;16", lambda: coloured("I;16"), "PNG", (LUMA,) * 3, 1),
    ("1-white", lambda: Image.new("1", (30, 20), 1), "PNG", (255,) * 3, 0),
    ("1-black", lambda: Image.new("1", (30, 20), 0), "PNG", (0,) * 3, 0),
]


@pytest.mark.parametrize(("case", "image", "fmt", "expected", "atol"), MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_unusual_modes_become_rgb(case, image, fmt, expected, atol):
    img = image()
    assert img.mode == case.split("-")[0]  # the mode under test really reaches the decoder
    out = load_image(png_bytes(img, fmt), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out.reshape(-1, 3), np.broadcast_to(expected, (256, 3)), atol=atol)


def test_sixteen_bit_is_scaled_not_clipped():
    img = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    out = load_image(png_bytes(img), 8)
    assert 120 <= out.mean() <= 135


def test_transparent_becomes_white():
    out = load_image(png_bytes(Image.new("RGBA", (8, 8), (0, 0, 0, 0))), 8)
    assert out.min() == 255


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    second = Image.open(io.BytesIO(data))
    second.seek(1)
    assert second.convert("RGB").getpixel((5, 5)) == (0, 0, 255)  # the file does hold a blue second frame
    np.testing.assert_array_equal(load_image(data, 10).reshape(-1, 3), np.broadcast_to((255, 0, 0), (100, 3)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello, not an image", "not an image"),
        (b"", "not an image"),
    ],
)
def test_non_images_are_refused(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data, 32)


def test_truncated_jpeg_is_refused(dataset_dir):
    photo = next((dataset_dir / "test" / "hat").iterdir()).read_bytes()
    with pytest.raises(ImageError, match="decode"):
        load_image(photo[: len(photo) // 2], 32)


def test_decompression_bomb_is_refused_before_decoding():
    data = png_bytes(Image.new("L", (10_000, 5_000)))  # 50 Mpx of zeros compress to ~50 KB
    assert len(data) < 200_000
    with pytest.raises(ImageError, match="too large"):
        load_image(data, 32)


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[1, 0] == pytest.approx(1.0)


def test_module_imports_no_tensorflow():
    code = "import sys, serving.images; assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)

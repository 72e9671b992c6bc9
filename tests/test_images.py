import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from serving.images import ImageError, load_image, preprocess, scale, softmax
from serving.labels import LABELS

pytestmark = pytest.mark.fast


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


def test_exif_orientation_is_applied():
    # A wide image tagged "rotate 90" must come out tall: left half red ends up on top or bottom.
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = png_bytes(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(data, 40)
    top, bottom = out[:10].mean(axis=(0, 1)), out[-10:].mean(axis=(0, 1))
    assert (top[0] > 200 and bottom[0] < 60) or (bottom[0] > 200 and top[0] < 60)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_unusual_modes_become_rgb(mode):
    img = Image.new("RGB", (30, 20), (200, 100, 50)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = load_image(png_bytes(img, fmt), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_sixteen_bit_is_scaled_not_clipped():
    img = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    out = load_image(png_bytes(img), 8)
    assert 120 <= out.mean() <= 135


def test_transparent_becomes_white():
    out = load_image(png_bytes(Image.new("RGBA", (8, 8), (0, 0, 0, 0))), 8)
    assert out.min() == 255


def test_animated_gif_uses_first_frame():
    frames = [Image.new("P", (10, 10), c) for c in (1, 2)]
    data = png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data, 10).shape == (10, 10, 3)


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


def test_labels_are_the_ten_classes(dataset_dir):
    assert sorted(p.name for p in (dataset_dir / "train").iterdir()) == sorted(LABELS) and len(LABELS) == 10


def test_module_imports_no_tensorflow():
    code = "import sys, serving.images; assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)

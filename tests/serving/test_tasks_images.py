"""Serving's image conversion is training's: same pixels for every mode and size; bad images refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serving.errors import InvalidInput
from serving.tasks.images import EncodedImage, RawPixels, model_inputs, open_image, png, to_model_input
from training.data import images as training_images


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    return [
        rgb,
        rgb.convert("RGBA"),
        rgb.convert("L"),
        rgb.convert("P"),
        rgb.convert("1"),
        Image.fromarray(rng.integers(0, 256, (300, 200), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)),
    ]


@pytest.mark.parametrize("index", range(7))
@pytest.mark.parametrize("size", [28, 64])
def test_conversion_equals_training(index, size):
    picture = _pictures()[index]
    np.testing.assert_array_equal(to_model_input(picture, size), training_images.to_model_input(picture, size))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
def test_encoded_images_convert_like_training_after_decoding(fmt):
    picture = _pictures()[0]
    data = _encoded(picture, fmt)
    expected = training_images.to_model_input(Image.open(io.BytesIO(data)))
    batch, sizes = model_inputs([EncodedImage(data)], 28, 10**6)
    np.testing.assert_array_equal(batch[0, 0], expected)
    assert sizes == [(53, 37)]


def test_raw_pixels_equal_their_png():
    array = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    raw, _ = model_inputs([RawPixels(array.tobytes(), array.shape)], 28, 10**6)
    encoded, _ = model_inputs([EncodedImage(_encoded(Image.fromarray(array), "PNG"))], 28, 10**6)
    np.testing.assert_array_equal(raw, encoded)


def test_png_round_trip():
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(1, 28, 28)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png(pixels)))), pixels[0])


@pytest.mark.parametrize(
    "source, words",
    [
        (EncodedImage(b"not an image at all"), ["image 2", "not an image"]),
        (EncodedImage(b""), ["image 2", "empty"]),
        (EncodedImage(_encoded(_pictures()[2], "PNG")[:300]), ["image 2", "truncated"]),
        (RawPixels(b"\0" * 10, (3, 4)), ["image 2", "needs 12"]),
        (RawPixels(b"\0" * 24, (2, 3, 2, 2)), ["image 2", "[H, W]"]),
        (RawPixels(b"\0" * 24, (2, 6, 2)), ["image 2", "C = 1, 3 or 4"]),
    ],
)
def test_bad_images_name_their_index(source, words):
    good = EncodedImage(_encoded(Image.new("L", (5, 5)), "PNG"))
    with pytest.raises(InvalidInput) as caught:
        model_inputs([good, good, source], 28, 10**6)
    for word in words:
        assert word in str(caught.value)


def test_image_bomb_is_refused_before_decoding():
    bomb = EncodedImage(_encoded(Image.new("L", (200, 100)), "PNG"))
    with pytest.raises(InvalidInput, match=r"image 0: 200x100 = 20000 pixels exceeds the server's cap of 19999"):
        open_image(bomb, 0, 19_999)
    assert open_image(bomb, 0, 20_000).size == (200, 100)
    with pytest.raises(InvalidInput, match="exceeds the server's cap"):
        open_image(RawPixels(b"\0" * 20_000, (100, 200)), 0, 19_999)


def test_no_images():
    with pytest.raises(InvalidInput, match="no images"):
        model_inputs([], 28, 100)

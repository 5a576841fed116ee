"""Request images -> model inputs, and model outputs -> PNG: the one image conversion of serving.

A request image is encoded bytes (any format Pillow reads: PNG, JPEG, ... of any size and colour
mode) or raw uint8 pixels with a shape [H, W] or [H, W, C] (C = 1, 3, 4). Either way it becomes a
model input exactly as training made its images (`training.data.images.to_model_input`, repeated
here because serving never imports training; a test checks that the two agree): 8-bit grayscale
("L"), bilinear resize to the model's square input size, uint8.

Decoded pixels are capped before decoding (the image-bomb guard): Pillow reads the size from the
header, so an oversized image is refused without allocating it. Every failure is InvalidInput
naming the image's index in the request.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from serving.errors import InvalidInput


@dataclass(frozen=True)
class EncodedImage:
    data: bytes


@dataclass(frozen=True)
class RawPixels:
    pixels: bytes
    shape: tuple[int, ...]


ImageInput = EncodedImage | RawPixels
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def open_image(source: ImageInput, index: int, max_pixels: int) -> Image.Image:
    """The request's image `index` as a loaded PIL image, or InvalidInput saying what is wrong."""
    if isinstance(source, RawPixels):
        return _from_raw(source, index, max_pixels)
    if not source.data:
        raise InvalidInput(f"image {index}: empty image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # our own pixel cap applies; a client's odd file is not the log's business
            image = Image.open(io.BytesIO(source.data))
            _check_size(image.width, image.height, index, max_pixels)
            image.load()
    except InvalidInput:
        raise
    except Image.UnidentifiedImageError:
        raise InvalidInput(f"image {index}: not an image (no format Pillow reads: PNG, JPEG, ...)") from None
    except Image.DecompressionBombError:
        raise InvalidInput(f"image {index}: too many pixels to decode (over the server's cap of {max_pixels})") from None
    except (OSError, ValueError, SyntaxError) as exc:  # what Pillow raises for unreadable data
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"image {index}: not a readable image ({first})") from None
    return image


def _check_size(width: int, height: int, index: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidInput(f"image {index}: empty image ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidInput(
            f"image {index}: {width}x{height} = {width * height} pixels exceeds the server's cap of {max_pixels} decoded pixels"
        )


def _from_raw(source: RawPixels, index: int, max_pixels: int) -> Image.Image:
    shape = tuple(int(d) for d in source.shape)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in _MODES):
        raise InvalidInput(f"image {index}: raw shape {list(shape)} must be [H, W] or [H, W, C] with C = 1, 3 or 4")
    _check_size(shape[1], shape[0], index, max_pixels)
    expected = int(np.prod(shape))
    if len(source.pixels) != expected:
        raise InvalidInput(f"image {index}: raw shape {list(shape)} needs {expected} uint8 pixels, got {len(source.pixels)} bytes")
    array = np.frombuffer(source.pixels, dtype=np.uint8).reshape(shape)
    channels = 1 if len(shape) == 2 else shape[2]
    return Image.fromarray(array.reshape(shape[:2]) if channels == 1 else array)  # uint8 -> L, RGB, RGBA


def to_model_input(image: Image.Image, size: int) -> np.ndarray:
    """Grayscale, bilinear resize to size x size, uint8 [size, size]: training's conversion."""
    return np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def model_inputs(sources: Sequence[ImageInput], size: int, max_pixels: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """uint8 [N, 1, size, size] for the model, and each image's (width, height) as sent."""
    if not sources:
        raise InvalidInput("the request has no images")
    batch = np.empty((len(sources), 1, size, size), np.uint8)
    sizes = []
    for i, source in enumerate(sources):
        image = open_image(source, i, max_pixels)
        sizes.append(image.size)
        batch[i, 0] = to_model_input(image, size)
    return batch, sizes


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 [H, W] or [1, H, W] grayscale image."""
    array = np.asarray(pixels, dtype=np.uint8)
    if array.ndim == 3:
        array = array[0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")  # uint8 [H, W] is mode "L"
    return buffer.getvalue()

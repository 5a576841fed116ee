"""Pictures for the client subcommands, drawn with Pillow (a serving dependency, unlike matplotlib):
boxes on an image, a grid of images, a line plot of a series and its forecast."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324"]


def boxes(image_bytes: bytes, detections) -> Image.Image:
    """The image (as sent) in colour, each detection outlined and labelled with its score."""
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    draw = ImageDraw.Draw(image)
    width = max(1, round(min(image.size) / 150))
    for d in detections:
        colour = COLOURS[d.class_id % len(COLOURS)]
        draw.rectangle([d.x_min, d.y_min, d.x_max, d.y_max], outline=colour, width=width)
        text = f"{d.label} {d.score:.2f}"
        left, top, right, bottom = draw.textbbox((d.x_min, d.y_min), text)
        y = max(0, d.y_min - (bottom - top) - 2)
        draw.rectangle([d.x_min, y, d.x_min + (right - left) + 2, y + (bottom - top) + 2], fill=colour)
        draw.text((d.x_min + 1, y), text, fill="white")
    return image


def grid(images: list[np.ndarray], scale: int = 2, pad: int = 2) -> Image.Image:
    """uint8 [H, W] images in a near-square grid on a black background, scaled up for viewing."""
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    h, w = images[0].shape[-2:]
    sheet = Image.new("L", (columns * (w * scale + pad) + pad, rows * (h * scale + pad) + pad))
    for i, pixels in enumerate(images):
        tile = Image.fromarray(np.asarray(pixels, np.uint8).reshape(h, w)).resize((w * scale, h * scale), Image.NEAREST)
        sheet.paste(tile, (pad + (i % columns) * (w * scale + pad), pad + (i // columns) * (h * scale + pad)))
    return sheet


def plot(history: list[float], forecast: list[float], size: tuple[int, int] = (800, 400), margin: int = 40) -> Image.Image:
    """The series (blue) and its forecast (orange, continuing from the last value) on shared axes."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    values = list(history) + list(forecast)
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1, high + 1
    steps = max(1, len(values) - 1)
    width, height = size[0] - 2 * margin, size[1] - 2 * margin

    def point(i: int, v: float) -> tuple[float, float]:
        return margin + width * i / steps, margin + height * (1 - (v - low) / (high - low))

    draw.rectangle([margin, margin, margin + width, margin + height], outline="#888888")
    draw.text((4, margin - 12), f"{high:.3g}", fill="black")
    draw.text((4, margin + height - 4), f"{low:.3g}", fill="black")
    if len(history) > 1:
        draw.line([point(i, v) for i, v in enumerate(history)], fill="#1f77b4", width=2)
    if forecast:
        start = len(history) - 1
        line = [point(start, history[-1])] if history else []
        line += [point(start + 1 + i, v) for i, v in enumerate(forecast)]
        draw.line(line, fill="#ff7f0e", width=2)
        x = point(start, history[-1])[0] if history else margin
        draw.line([(x, margin), (x, margin + height)], fill="#cccccc")
    draw.text((margin + 4, size[1] - margin + 8), "history (blue), forecast (orange)", fill="black")
    return image

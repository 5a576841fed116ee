"""Pictures for the client subcommands, drawn with Pillow (a serving dependency, unlike matplotlib):
boxes on an image, a grid of images, a line plot of a series and its forecast."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HISTORY, FORECAST, GRID_LINE = "#1f77b4", "#ff7f0e", 96
COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324"]


def boxes(image_bytes: bytes, detections) -> Image.Image:
    """The image (as sent) in colour, each detection outlined and tagged `label: score`. Every outline
    is drawn before any tag, so that no box's line runs through another's tag."""
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    draw = ImageDraw.Draw(image)
    width = max(1, round(min(image.size) / 150))
    font = ImageFont.load_default(size=max(11, round(min(image.size) / 20)))
    for d in detections:
        draw.rectangle([d.x_min, d.y_min, d.x_max, d.y_max], outline=COLOURS[d.class_id % len(COLOURS)], width=width)
    for d in detections:
        text = f"{d.label}: {d.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        y = d.y_min - (bottom - top) - 3 if d.y_min >= bottom - top + 3 else d.y_min  # above the box, else inside it
        draw.rectangle([d.x_min, y, d.x_min + right - left + 3, y + bottom - top + 3], fill=COLOURS[d.class_id % len(COLOURS)])
        draw.text((d.x_min + 2 - left, y + 1 - top), text, fill="white", font=font)
    return image


def grid(images: list[np.ndarray], scale: int = 4, pad: int = 2) -> Image.Image:
    """uint8 [H, W] images in a near-square grid, scaled up (nearest neighbour) so that a 28-pixel
    digit is readable at a glance, separated by grey lines so black margins do not run together."""
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    h, w = images[0].shape[-2:]
    sheet = Image.new("L", (columns * (w * scale + pad) + pad, rows * (h * scale + pad) + pad), GRID_LINE)
    for i, pixels in enumerate(images):
        tile = Image.fromarray(np.asarray(pixels, np.uint8).reshape(h, w)).resize((w * scale, h * scale), Image.NEAREST)
        sheet.paste(tile, (pad + (i % columns) * (w * scale + pad), pad + (i // columns) * (h * scale + pad)))
    return sheet


def ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    span = (high - low) / max(1, count - 1) or 1.0
    power = 10 ** math.floor(math.log10(span))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= span)
    first = math.floor(low / step) * step
    return [round(first + i * step, 12) for i in range(int(math.ceil((high - first) / step)) + 1)]


def plot(history: list[float], forecast: list[float], size: tuple[int, int] = (800, 400)) -> Image.Image:
    """The series (blue) and its forecast (orange, continuing from the last value) on shared axes,
    with ticks, tick labels, axis titles and a legend."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    values = list(history) + list(forecast)
    y_ticks = ticks(min(values), max(values)) if values else [0.0, 1.0]
    low, high = y_ticks[0], y_ticks[-1]
    if high == low:
        low, high = low - 1, high + 1
    steps = max(1, len(values) - 1)
    left, right, top, bottom = 64, 16, 32, 52
    width, height = size[0] - left - right, size[1] - top - bottom

    def point(i: float, v: float) -> tuple[float, float]:
        return left + width * i / steps, top + height * (1 - (v - low) / (high - low))

    for v in y_ticks:
        _, y = point(0, v)
        draw.line([(left, y), (left + width, y)], fill="#eeeeee")
        draw.line([(left - 5, y), (left, y)], fill="black")
        label = f"{v:g}"
        draw.text((left - 8 - draw.textlength(label), y - 6), label, fill="black")
    for t in ticks(0, steps, 8):
        if t > steps:
            break
        x, _ = point(t, low)
        draw.line([(x, top + height), (x, top + height + 5)], fill="black")
        label = f"{t:g}"
        draw.text((x - draw.textlength(label) / 2, top + height + 8), label, fill="black")
    draw.rectangle([left, top, left + width, top + height], outline="black")
    if len(history) > 1:
        draw.line([point(i, v) for i, v in enumerate(history)], fill=HISTORY, width=2)
    if forecast:
        start = len(history) - 1
        line = [point(start, history[-1])] if history else []
        line += [point(start + 1 + i, v) for i, v in enumerate(forecast)]
        draw.line(line, fill=FORECAST, width=2)
        x = point(max(start, 0), low)[0]
        draw.line([(x, top), (x, top + height)], fill="#999999")
    title = "time step"
    draw.text((left + (width - draw.textlength(title)) / 2, size[1] - 20), title, fill="black")
    draw.text((8, 10), "value", fill="black")
    x = left + width - 190
    for colour, name in ((HISTORY, "history"), (FORECAST, "forecast")):
        draw.line([(x, 16), (x + 24, 16)], fill=colour, width=3)
        draw.text((x + 30, 10), name, fill="black")
        x += 100
    return image

"""Argument types the families' own flags share (their `add_arguments`), kept out of the `dnnzoo
train` command module so a family never imports the command that runs it."""

from __future__ import annotations

import argparse


def int_list(text: str) -> tuple[int, ...]:
    """An argparse type for comma-separated positive integers (layer widths, class lists)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values

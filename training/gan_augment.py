"""DiffAugment for the GAN (Zhao et al., 2020): the discriminator sees real and generated images moved by a few pixels.

With ~1,400 training digits the discriminator learns the real set by heart, and what it then tells
the generator stops being about digits. Augmenting only the real images would teach the generator
to draw shifted digits; DiffAugment applies the same random transform to both sides, on every
discriminator call, through differentiable indexing, so the generator's gradient passes through it.
Translation is the transform used here: on the quick profile it raised the judged confidence and
lowered the Fréchet distance more than any other change tried (README, GAN section).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def translate(images: torch.Tensor, shift: int, rng: torch.Generator) -> torch.Tensor:
    """Each image [N, C, H, W] moved by its own whole-pixel offset in [-shift, shift] on each axis, zeros shifted in."""
    if shift <= 0:
        return images
    n, channels, height, width = images.shape
    padded = F.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (2, n), generator=rng).to(images.device)
    rows = (torch.arange(height, device=images.device)[None, :] + offsets[0][:, None])[:, None, :, None]
    cols = (torch.arange(width, device=images.device)[None, :] + offsets[1][:, None])[:, None, None, :]
    picked_rows = padded.gather(2, rows.expand(n, channels, height, padded.shape[3]))
    return picked_rows.gather(3, cols.expand(n, channels, height, width))

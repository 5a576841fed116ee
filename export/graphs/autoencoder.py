"""Autoencoder: uint8 `images` [N,1,S,S] -> `codes` [N,K] and `reconstructions` [N,1,S,S] (float in [0, 1]).

Reconstructions stay float so serving can compute the per-image reconstruction error (an anomaly
score) without the rounding a uint8 picture would add.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from protos import contract

from export.graphs.common import digit_pool, fact, image_input_parameters, image_samples, rebuild, unit_pixels
from export.spec import ExportSpec, TensorSpec
from training import autoencoder


class Codec(nn.Module):
    def __init__(self, model: autoencoder.StackedAutoencoder):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.model.encode(unit_pixels(images))
        return codes, self.model.decode(codes)


def specs(checkpoint: dict, run_dir: Path) -> list[ExportSpec]:
    model = rebuild(autoencoder, checkpoint)
    size = int(checkpoint["model_args"].get("image_size", 28))
    code_size = int(fact(checkpoint, "code_size"))
    wrapper = Codec(model).eval()
    return [
        ExportSpec(
            suffix="",
            module=wrapper,
            inputs=[TensorSpec("images", np.uint8, (1, size, size))],
            outputs=[TensorSpec("codes", np.float32, (code_size,)), TensorSpec("reconstructions", np.float32, (1, size, size))],
            max_batch_size=64,
            samples=image_samples(digit_pool(size), seed=5),
            parameters={
                contract.TASK: contract.AUTOENCODING,
                **image_input_parameters(model, size),
                contract.CODE_SIZE: str(code_size),
                contract.RECONSTRUCTION_RANGE: "float in [0, 1] (pixel / 255)",
            },
        )
    ]

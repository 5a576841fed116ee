"""GAN generator: `latent` FP32 [N,Z] -> `images` UINT8 [N,1,S,S] (rounded from [0, 1] inside the graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from protos import contract

from export.graphs.common import fact, rebuild
from export.spec import ExportSpec, TensorSpec
from training import gan


class Pixels(nn.Module):
    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.round(self.generator(latent) * 255.0).clamp(0.0, 255.0).to(torch.uint8)


def specs(checkpoint: dict, run_dir: Path) -> list[ExportSpec]:
    model = rebuild(gan, checkpoint)
    latent = int(fact(checkpoint, "latent_size"))
    size = int(fact(checkpoint, "image_size"))

    def samples(n: int) -> dict[str, np.ndarray]:
        return {"latent": np.random.default_rng(100 + n).standard_normal((n, latent)).astype(np.float32)}

    return [
        ExportSpec(
            suffix="",
            module=Pixels(model).eval(),
            inputs=[TensorSpec("latent", np.float32, (latent,))],
            outputs=[TensorSpec("images", np.uint8, (1, size, size))],
            max_batch_size=64,
            samples=samples,
            parameters={
                contract.TASK: contract.GENERATION,
                contract.LATENT_SIZE: str(latent),
                contract.LATENT_DISTRIBUTION: str(checkpoint["extra"].get("latent_distribution", "normal(0, 1)")),
                contract.IMAGE_SIZE: str(size),
                contract.OUTPUT_SCALING: "uint8 pixels, round(255 * generator output in [0, 1])",
            },
        )
    ]

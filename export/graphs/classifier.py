"""Classifier: uint8 `images` [N,1,S,S] -> softmax `probabilities` [N,C]; `labels.txt` is the
output's label_filename, so Triton's classification extension answers with label names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from protos import contract

from export.graphs.common import digit_pool, fact, image_input_parameters, image_samples, labels_file, rebuild, unit_pixels
from export.spec import ExportSpec, TensorSpec
from training import classifier


class Probabilities(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(unit_pixels(images)), dim=-1)


def specs(checkpoint: dict, run_dir: Path) -> list[ExportSpec]:
    model = rebuild(classifier, checkpoint)
    labels = [str(label) for label in fact(checkpoint, "labels")]
    size = int(checkpoint["model_args"].get("image_size", 28))
    return [
        ExportSpec(
            suffix="",
            module=Probabilities(model).eval(),
            inputs=[TensorSpec("images", np.uint8, (1, size, size))],
            outputs=[TensorSpec("probabilities", np.float32, (len(labels),), label_filename=contract.LABELS_FILE)],
            max_batch_size=64,
            samples=image_samples(digit_pool(size), seed=1),
            side_files={contract.LABELS_FILE: labels_file(labels)},
            parameters={
                contract.TASK: contract.CLASSIFICATION,
                contract.ARCH: str(checkpoint["model_args"].get("arch", "")),
                **image_input_parameters(model, size),
                contract.LABELS_FILE_KEY: contract.LABELS_FILE,
                contract.CLASSES: str(len(labels)),
            },
        )
    ]

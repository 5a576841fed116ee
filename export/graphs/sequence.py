"""Sequence predictor: `series` [N,T,1] (T dynamic) -> `next` [N,1] and `next10` [N,10]; and the
companion `NAME_step`, one value per stream with the recurrent state as explicit tensors.

The step model's state is batch-first ([N, layers, hidden]; the module transposes to the RNN's
layer-first layout inside), so a server may batch streams along dimension 0 with max_batch_size > 0.
GRU and simple RNN cells have no cell state: their step model has `h` only. A model with a linear
path (`ar_order` p > 0) also carries `past` [N, p], its last p normalised inputs, whose shape
`dnnzoo.state.shape.past` gives (`dnnzoo.state.shape` is h's and c's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.graphs.common import fact, rebuild
from export.spec import ModelSpec, TensorSpec
from training import sequence

MAX_BATCH = 64


def _series(n: int, steps: int, seed: int) -> np.ndarray:
    """Two sines and noise like the training data, from a private generator."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, steps)[None, :]
    f1, f2, o1, o2 = rng.random((4, n, 1))
    values = 0.5 * np.sin((t - o1) * (f1 * 10 + 10)) + 0.2 * np.sin((t - o2) * (f2 * 20 + 20))
    values += 0.1 * (rng.random((n, steps)) - 0.5)
    return values[..., None].astype(np.float32)


class Step(nn.Module):
    """The module's `step` with the state tensors `names` (h, then c, then past, as the model has them) in and out."""

    def __init__(self, model: sequence.SequencePredictor, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, value: torch.Tensor, *state: torch.Tensor):
        given = dict(zip(self.names, state))
        nxt, ahead, h, c, past = self.model.step(value, given["h"], given.get("c"), given.get("past"))
        out = {"h": h, "c": c, "past": past}
        return (nxt, ahead, *(out[n] for n in self.names))


def specs(checkpoint: dict, run_dir: Path) -> list[ModelSpec]:
    model = rebuild(sequence, checkpoint)
    horizon, layers, hidden = int(model.horizon), int(model.num_layers), int(model.hidden_size)
    window = int(fact(checkpoint, "window"))
    lstm = model.cell == "lstm"
    ahead = "next10" if horizon == 10 else f"next{horizon}"
    common = {
        "dnnzoo.cell": model.cell,
        "dnnzoo.window": str(window),
        "dnnzoo.horizon": str(horizon),
        "dnnzoo.normalization.mean": repr(float(model.mean)),
        "dnnzoo.normalization.std": repr(float(model.std)),
        "dnnzoo.output.next": "next",
        "dnnzoo.output.ahead": ahead,
    }
    whole = ModelSpec(
        suffix="",
        module=model,
        inputs=[TensorSpec("series", np.float32, (-1, 1))],
        outputs=[TensorSpec("next", np.float32, (1,)), TensorSpec(ahead, np.float32, (horizon,))],
        max_batch_size=MAX_BATCH,
        samples=lambda n: {"series": _series(n, window, seed=11 + n)},
        extra_cases=[{"series": _series(3, max(2, window // 2 + 3), seed=3)}, {"series": _series(2, 2 * window, seed=4)}],
        parameters={"dnnzoo.task": "sequence", "dnnzoo.min_length": "1", **common},
    )
    shapes = {"h": (layers, hidden), **({"c": (layers, hidden)} if lstm else {}), **({"past": (model.ar_order,)} if model.ar_order else {})}
    state = list(shapes)
    state_out = [f"{s}_next" for s in state]

    def step_samples(n: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(21 + n)
        case = {"value": _series(n, 1, seed=n)[:, 0], **{s: rng.normal(0, 0.5, (n, *shape)).astype(np.float32) for s, shape in shapes.items()}}
        return case

    step = ModelSpec(
        suffix="_step",
        module=Step(model, state).eval(),
        inputs=[TensorSpec("value", np.float32, (1,))] + [TensorSpec(s, np.float32, shapes[s]) for s in state],
        outputs=[TensorSpec("next", np.float32, (1,)), TensorSpec(ahead, np.float32, (horizon,))]
        + [TensorSpec(o, np.float32, shapes[s]) for s, o in zip(state, state_out)],
        max_batch_size=MAX_BATCH,
        samples=step_samples,
        parameters={
            "dnnzoo.task": "sequence_step", **common,
            "dnnzoo.state.inputs": ",".join(state), "dnnzoo.state.outputs": ",".join(state_out),
            "dnnzoo.state.shape": f"{layers},{hidden}", "dnnzoo.state.initial": "zeros",
            **({"dnnzoo.state.shape.past": str(model.ar_order), "dnnzoo.ar_order": str(model.ar_order)} if model.ar_order else {}),
        },
    )  # fmt: skip
    return [whole, step]

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
from protos import contract

from export.graphs.common import fact, rebuild
from export.spec import ExportSpec, TensorSpec
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


def specs(checkpoint: dict, run_dir: Path) -> list[ExportSpec]:
    model = rebuild(sequence, checkpoint)
    horizon, layers, hidden = int(model.horizon), int(model.num_layers), int(model.hidden_size)
    window = int(fact(checkpoint, "window"))
    lstm = model.cell == "lstm"
    ahead = "next10" if horizon == 10 else f"next{horizon}"
    common = {
        contract.CELL: model.cell,
        contract.WINDOW: str(window),
        contract.HORIZON: str(horizon),
        contract.NORMALIZATION_MEAN: repr(float(model.mean)),
        contract.NORMALIZATION_STD: repr(float(model.std)),
        contract.OUTPUT_NEXT: "next",
        contract.OUTPUT_AHEAD: ahead,
    }
    whole = ExportSpec(
        suffix="",
        module=model,
        inputs=[TensorSpec("series", np.float32, (-1, 1))],
        outputs=[TensorSpec("next", np.float32, (1,)), TensorSpec(ahead, np.float32, (horizon,))],
        max_batch_size=MAX_BATCH,
        samples=lambda n: {"series": _series(n, window, seed=11 + n)},
        extra_cases=[{"series": _series(3, max(2, window // 2 + 3), seed=3)}, {"series": _series(2, 2 * window, seed=4)}],
        parameters={contract.TASK: contract.SEQUENCE, contract.MIN_LENGTH: "1", **common},
    )
    shapes = {"h": (layers, hidden), **({"c": (layers, hidden)} if lstm else {}), **({"past": (model.ar_order,)} if model.ar_order else {})}
    state = list(shapes)
    state_out = [f"{s}_next" for s in state]

    def step_samples(n: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(21 + n)
        case = {"value": _series(n, 1, seed=n)[:, 0], **{s: rng.normal(0, 0.5, (n, *shape)).astype(np.float32) for s, shape in shapes.items()}}
        return case

    step = ExportSpec(
        suffix="_step",
        module=Step(model, state).eval(),
        inputs=[TensorSpec("value", np.float32, (1,))] + [TensorSpec(s, np.float32, shapes[s]) for s in state],
        outputs=[TensorSpec("next", np.float32, (1,)), TensorSpec(ahead, np.float32, (horizon,))]
        + [TensorSpec(o, np.float32, shapes[s]) for s, o in zip(state, state_out)],
        max_batch_size=MAX_BATCH,
        samples=step_samples,
        parameters={
            contract.TASK: contract.SEQUENCE_STEP, **common,
            contract.STATE_INPUTS: ",".join(state), contract.STATE_OUTPUTS: ",".join(state_out),
            contract.STATE_SHAPE: f"{layers},{hidden}", contract.STATE_INITIAL: "zeros",
            **({contract.state_shape_key("past"): str(model.ar_order), contract.AR_ORDER: str(model.ar_order)} if model.ar_order else {}),
        },
    )  # fmt: skip
    return [whole, step]

"""The model `peers.py` serves: a foreign ResNet-style CNN exported here, or one from a repository.

The foreign model stands for what a user brings: built and exported with torch.onnx outside
dnnzoo's training and export code, with random weights (speed is all that is measured), and a
*plain* Triton-style config.pbtxt: name, platform, max_batch_size, input, output and an empty
`dynamic_batching { }`, nothing that tunes the server.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FOREIGN_NAME = "foreign_resnet"
FOREIGN_MAX_BATCH = 32


@dataclass(frozen=True)
class ServedModel:
    """One model with one input, as every server and the client see it."""

    name: str
    onnx: Path  # the file the peers and in-process ONNX Runtime load
    input_name: str
    datatype: str  # KServe v2 name, e.g. "FP32"
    dims: tuple[int, ...]  # without the batch dimension; -1 replaced by 1
    max_batch_size: int
    params: int | None = None  # weights, when known

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(DATATYPES[self.datatype])

    def example(self, batch: int) -> np.ndarray:
        """A deterministic request batch: uniform floats, or bytes-valued integers."""
        rng = np.random.default_rng(batch)
        shape = (batch, *self.dims)
        if self.numpy_dtype.kind == "f":
            return rng.random(shape, dtype=np.float32).astype(self.numpy_dtype)
        return rng.integers(0, 255, shape).astype(self.numpy_dtype)


DATATYPES = {"FP32": "float32", "FP64": "float64", "FP16": "float16", "UINT8": "uint8", "INT8": "int8",
             "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT16": "uint16", "BOOL": "bool"}


def foreign_model(repository: Path) -> ServedModel:
    """Define, export and write the foreign model into `repository/<name>/` with a plain config."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.skip = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))

    class SmallResNet(nn.Module):
        """28x28 grey image -> 10 logits: stem, four residual blocks (32, 64, 128, 128 channels), global
        pool, linear: 0.6 M weights."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
            self.stages = nn.Sequential(Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2), Block(128, 128, 1))
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    net = SmallResNet().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, as after training
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    folder = repository / FOREIGN_NAME
    (folder / "1").mkdir(parents=True)
    path = folder / "1" / "model.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    (folder / "config.pbtxt").write_text(
        f'name: "{FOREIGN_NAME}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {FOREIGN_MAX_BATCH}\n'
        'input [ { name: "input" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] } ]\n'
        'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
        "dynamic_batching { }\n"
    )
    return ServedModel(FOREIGN_NAME, path, "input", "FP32", (1, 28, 28), FOREIGN_MAX_BATCH,
                       sum(p.numel() for p in net.parameters()))


def repository_model(source: Path, name: str, repository: Path, dims: tuple[int, ...] | None = None) -> ServedModel:
    """Copy `source/name` (its own config, as it is) into `repository`; describe its one input, whose
    variable dimensions are `dims` where given (else 1)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from serving.repository import Repository

    read = Repository(source).read(name)
    if read.error or read.spec is None:
        raise SystemExit(f"cannot read model {name!r} in {source}: {read.error}")
    spec = read.spec
    if len(spec.inputs) != 1:
        raise SystemExit(f"model {name!r} has {len(spec.inputs)} inputs; peers.py needs exactly one")
    if spec.max_batch_size <= 0:
        raise SystemExit(f"model {name!r} does not batch (max_batch_size 0); peers.py sends batched requests")
    shutil.copytree(source / name, repository / name)
    version = max(read.versions)
    tensor = spec.inputs[0]
    if dims is not None and (len(dims) != len(tensor.dims) or any(d not in (-1, g) for d, g in zip(tensor.dims, dims))):
        raise SystemExit(f"--input-dims {list(dims)} does not fit input {tensor.name!r}'s dims {list(tensor.dims)}")
    dims = dims or tuple(1 if d == -1 else d for d in tensor.dims)
    return ServedModel(name, repository / name / Path(read.versions[version]).relative_to(source / name),
                       tensor.name, tensor.datatype.name, dims, spec.max_batch_size)

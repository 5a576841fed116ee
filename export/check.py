"""Validate a model repository without serving it: what `dnnzoo repo check` runs.

Per model folder: config.pbtxt parses (strictly, as Triton parses it), its name is the folder's,
the platform is ONNX Runtime, there is at least one numeric version with a model.onnx, every input
and output of the config exists in each version's graph with the same type and shape (the batch
dimension prepended when max_batch_size > 0, and dynamic in the graph), every graph input is in the
config, the label/vocabulary files and companion models it names exist, and the parameters its
`dnnzoo.task` requires are there and readable (protos.contract's task table, the one serving refuses
by). Folders whose names start with "." (an export being staged) are not models; any other folder
whose name serving would skip is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx
from protos import config_text, contract
from protos.model_config_pb2 import ModelConfig

from dnnzoo.errors import UserError


@dataclass
class ModelCheck:
    name: str
    versions: list[int] = field(default_factory=list)
    task: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self, name_width: int = 0) -> str:
        """One line of `dnnzoo repo check`; `name_width` pads the name so that the columns line up."""
        versions = ",".join(str(v) for v in self.versions) or "-"
        if self.ok:
            return f"ok    {self.name:<{name_width}}  versions {versions}  {self.task}"
        return f"FAIL  {self.name}: " + "; ".join(self.problems)


def _graph_shape(value: onnx.ValueInfoProto) -> list[int] | None:
    """Dims as ints, -1 where symbolic or unknown; None when the graph states no shape."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim]


def _tensor_problems(kind: str, tensor, graph_values: dict[str, onnx.ValueInfoProto], max_batch_size: int) -> list[str]:
    value = graph_values.get(tensor.name)
    if value is None:
        return [f"{kind} {tensor.name!r} is not in the ONNX graph (graph has {', '.join(graph_values) or 'none'})"]
    problems = []
    try:
        expected_type = config_text.from_config(tensor.data_type)
    except ValueError as exc:
        return [f"{kind} {tensor.name!r}: {exc}"]
    if value.type.tensor_type.elem_type != expected_type.onnx:
        actual = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
        problems.append(f"{kind} {tensor.name!r} is {actual} in the graph but {expected_type.config_name} in the config")
    dims = tensor.reshape.shape if tensor.HasField("reshape") else tensor.dims
    return problems + contract.shape_problems(kind, tensor.name, _graph_shape(value), dims, max_batch_size)


def _graph_problems(path: Path, config: ModelConfig) -> list[str]:
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # a truncated or foreign file
        return [f"{path.parent.name}/{path.name} is not a readable ONNX model ({str(exc).strip().splitlines()[0][:120]})"]
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = {v.name: v for v in graph.input if v.name not in initializers}
    outputs = {v.name: v for v in graph.output}
    problems = []
    for tensor in config.input:
        problems += _tensor_problems("input", tensor, inputs, config.max_batch_size)
    for tensor in config.output:
        problems += _tensor_problems("output", tensor, outputs, config.max_batch_size)
    missing = sorted(set(inputs) - {t.name for t in config.input})
    if missing:
        problems.append(f"graph inputs missing from the config: {', '.join(missing)}")
    return [f"version {path.parent.name}: {p}" for p in problems]


def check_model(folder: Path, names: set[str]) -> ModelCheck:
    result = ModelCheck(folder.name)
    config_path = folder / contract.CONFIG_FILE
    if not config_path.is_file():
        result.problems.append(f"no {contract.CONFIG_FILE}")
        return result
    try:
        config = config_text.parse_config(config_path.read_text(encoding="utf-8"), source=f"{folder.name}/{contract.CONFIG_FILE}")
    except (ValueError, UnicodeDecodeError) as exc:
        result.problems.append(str(exc).splitlines()[0])
        return result
    problems = result.problems
    if not contract.is_model_name(folder.name):
        problems.append(f"serving skips this folder: a model name uses {contract.MODEL_NAME_RULE}")
    parameters = contract.parameters_of(config)
    result.task = parameters.get(contract.TASK, f"(no {contract.TASK})")
    if contract.TASK in parameters:
        problems += contract.task_problems(parameters[contract.TASK], parameters)
    problems += contract.request_parameter_problems(config)
    if config.name and config.name != folder.name:
        problems.append(f"config name {config.name!r} differs from the folder name")
    if config.platform != contract.PLATFORM and config.backend != contract.BACKEND:
        problems.append(f"platform {config.platform!r} is not {contract.PLATFORM!r}")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size {config.max_batch_size} is negative")
    if config.max_batch_size == 0 and config.HasField("dynamic_batching"):
        problems.append("dynamic_batching needs max_batch_size > 0")
    if not config.input or not config.output:
        problems.append("the config lists no inputs or no outputs")
    result.versions = contract.versions(folder)
    if not result.versions:
        problems.append("no numeric version folder")
    filename = config.default_model_filename or contract.MODEL_FILE
    for version in result.versions:
        model_path = folder / str(version) / filename
        if not model_path.is_file():
            problems.append(f"version {version} has no {filename}")
            continue
        problems += _graph_problems(model_path, config)
    files = [t.label_filename for t in config.output if t.label_filename]
    files += [parameters[k] for k in contract.FILE_KEYS if k in parameters]
    for name in files:
        if Path(name).name != name or not (folder / name).is_file():
            problems.append(f"side file {name!r} is missing")
    row = contract.TASKS.get(result.task)
    expected = {contract.companion_key(key): task for key, task in row.companions.items()} if row else {}
    companions = [(v, expected.get(k)) for k, v in parameters.items() if k.startswith(contract.COMPANION_PREFIX) or k == contract.COMPANION_OF]
    problems += [f"companion model {c!r} is not in the repository" for c, _ in companions if c not in names]
    problems += [p for c, task in companions if c in names for p in _pairing_problems(config, folder.parent / c, task)]
    return result


def _pairing_problems(config: ModelConfig, companion: Path, task: str | None) -> list[str]:
    """A companion of another task than the table's is refused by serving; one whose fingerprints
    differ from its main model's was written by another export."""
    try:
        other = config_text.parse_config((companion / contract.CONFIG_FILE).read_text(encoding="utf-8"), source=f"{companion.name}/{contract.CONFIG_FILE}")
    except (OSError, ValueError, UnicodeDecodeError):
        return []  # reported when that folder itself is checked
    theirs = other.parameters[contract.TASK].string_value if contract.TASK in other.parameters else ""
    if task is not None and theirs != task:
        return [f"companion model {companion.name!r} is a {theirs!r} model, not the {task!r} model its task needs"]
    for key in contract.FINGERPRINTS:
        ours, theirs = (c.parameters[key].string_value if key in c.parameters else "" for c in (config, other))
        if ours and theirs and ours != theirs:
            return [f"companion model {companion.name!r} comes from another export ({key} {theirs} != {ours}); re-export both"]
    return []


def check_repository(repository: Path) -> list[ModelCheck]:
    repository = Path(repository)
    if not repository.is_dir():
        raise UserError(f"no model repository at {repository}")
    folders = sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {p.name for p in folders}
    return [check_model(folder, names) for folder in folders]


def read_configs(repository: Path) -> dict[str, ModelConfig]:
    """Every model folder's config that parses (the others are reported by check_repository)."""
    configs = {}
    for folder in sorted(p for p in Path(repository).iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            configs[folder.name] = config_text.parse_config((folder / contract.CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
    return configs

"""The model repository contract between export and serving, in one place.

The repository on disk is all that export and serving share, so everything both sides must agree
on is written here once: the file names, the platform string, which folder names are models and
which are versions, every `dnnzoo.*` parameter key, and the table of tasks (the parameters each task
needs and the companion models it has). Export writes through these names, serving reads through
them, and `dnnzoo repo check` refuses what serving would refuse, with the same `task_problems`.

Pure Python (no torch, no onnxruntime), so both stages and the slim serving image can import it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .config_text import Datatype, from_numpy

# -- files and platform ---------------------------------------------------------------------------

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"  # in each version folder, unless the config's default_model_filename says otherwise
LABELS_FILE = "labels.txt"
VOCAB_FILE = "vocab.txt"
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"

# -- names ----------------------------------------------------------------------------------------

# A model name is a folder name: no path separators, no "..", and not hidden (export stages a model in
# a hidden `.NAME.tmp-XXXX` folder, and the leading "-" would read as a flag on a command line).
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
MODEL_NAME_RULE = "letters, digits, '_', '-' and '.', starting with a letter, a digit or '_'"
# Triton ignores version folders that are not numbers or that start with 0.
_VERSION = re.compile(r"[1-9][0-9]*")


def is_model_name(name: str) -> bool:
    return bool(name) and _MODEL_NAME.fullmatch(name) is not None


def is_version_folder(name: str) -> bool:
    """A version folder's name: a number a request can name (Triton's versions are int64)."""
    return _VERSION.fullmatch(name) is not None and int(name) < 2**63


def model_folders(repository: Path) -> list[Path]:
    """The folders of a repository that are models, sorted by name (hidden staging folders are not)."""
    if not repository.is_dir():
        return []
    return sorted((p for p in repository.iterdir() if p.is_dir() and is_model_name(p.name)), key=lambda p: p.name)


def versions(model_folder: Path) -> list[int]:
    """The numeric version folders of one model, ascending."""
    if not model_folder.is_dir():
        return []
    return sorted(int(p.name) for p in model_folder.iterdir() if p.is_dir() and is_version_folder(p.name))


# -- tensors --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as config.pbtxt states it, for export (which writes it) and serving (which
    reads it): `dims` exclude the batch dimension when the model batches (max_batch_size > 0), -1
    marks a variable dimension. `datatype` may be given as a numpy dtype; it is kept as a Datatype."""

    name: str
    datatype: Datatype
    dims: tuple[int, ...]
    label_filename: str = ""
    labels: tuple[str, ...] = ()  # the label file's lines, once serving has read it
    reshape: tuple[int, ...] | None = None  # the model's own shape when the config sets `reshape`
    optional: bool = False

    def __post_init__(self):
        if not isinstance(self.datatype, Datatype):
            object.__setattr__(self, "datatype", from_numpy(self.datatype))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))


def shape_problems(kind: str, name: str, graph: list[int] | None, dims: tuple[int, ...] | list[int],
                   max_batch_size: int) -> list[str]:
    """Why a config tensor's `dims` (its `reshape` where it has one) do not fit the graph's shape, as
    Triton's ONNX Runtime backend checks when it loads a model: the same rank (with the batch
    dimension first when max_batch_size > 0), a variable first dimension to batch on, and every
    dimension the graph fixes given that size (-1 in the config would admit requests the graph
    refuses). `graph`: positive ints, -1 where named or unknown; None where the graph states no shape.
    Serving refuses to load such a model; `dnnzoo repo check` reports it."""
    if graph is None:
        return []
    batched = max_batch_size > 0
    expected = [-1] * batched + list(dims)
    if len(graph) != len(expected):
        return [f"{kind} {name!r} has shape {_dims_text(graph)} in the graph but {_dims_text(expected)} by the config "
                f"(max_batch_size {max_batch_size})"]
    problems = []
    if batched and graph[0] != -1:
        problems.append(f"{kind} {name!r}: max_batch_size is {max_batch_size}, but the graph fixes the first (batch) "
                        f"dimension: {_dims_text(graph)}; export the model with a variable batch dimension, or set "
                        f"max_batch_size: 0 and give the full shape in dims")
    for axis in range(batched, len(graph)):
        have, want = graph[axis], expected[axis]
        if have != -1 and have != want:
            problems.append(f"{kind} {name!r} dimension {axis} is {have} in the graph but "
                            f"{'-1 (any size)' if want == -1 else want} in the config")
    return problems


def _dims_text(dims) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


# -- parameter keys (config.pbtxt `parameters`, string values; Triton ignores them) ----------------

PREFIX = "dnnzoo."
TASK = "dnnzoo.task"
FAMILY = "dnnzoo.family"
ARCH = "dnnzoo.arch"
EXPORT_ID = "dnnzoo.export_id"  # one id shared by the models of one export
COMPANION_PREFIX = "dnnzoo.companion."  # + key (e.g. "neighbors") -> the companion model's name
COMPANION_OF = "dnnzoo.companion_of"  # on a companion: its main model's name
LABELS_FILE_KEY = "dnnzoo.labels_file"
VOCAB_FILE_KEY = "dnnzoo.vocab_file"
CLASSES = "dnnzoo.classes"
# images in
INPUT_SIZE = "dnnzoo.input_size"
INPUT_SCALING = "dnnzoo.input_scaling"
NORMALIZATION_MEAN = "dnnzoo.normalization.mean"
NORMALIZATION_STD = "dnnzoo.normalization.std"
# detection
GRID = "dnnzoo.grid"
BOXES_PER_CELL = "dnnzoo.boxes_per_cell"
SCORE_THRESHOLD = "dnnzoo.score_threshold"
IOU_THRESHOLD = "dnnzoo.iou_threshold"
MAX_DETECTIONS = "dnnzoo.max_detections"
DETECTION_LAYOUT = "dnnzoo.detection_layout"
# autoencoding, generation
CODE_SIZE = "dnnzoo.code_size"
RECONSTRUCTION_RANGE = "dnnzoo.reconstruction_range"
LATENT_SIZE = "dnnzoo.latent_size"
LATENT_DISTRIBUTION = "dnnzoo.latent_distribution"
IMAGE_SIZE = "dnnzoo.image_size"
OUTPUT_SCALING = "dnnzoo.output_scaling"
# word vectors
VOCAB_HASH = "dnnzoo.vocab_hash"
VOCAB_SIZE = "dnnzoo.vocab_size"
VECTOR_SIZE = "dnnzoo.vector_size"
VOCAB_LOWERCASE = "dnnzoo.vocab.lowercase"
VOCAB_UNICODE_NORMALIZATION = "dnnzoo.vocab.unicode_normalization"
VOCAB_TOKEN_PATTERN = "dnnzoo.vocab.token_pattern"
MAX_K = "dnnzoo.max_k"
# sequences
CELL = "dnnzoo.cell"
WINDOW = "dnnzoo.window"
HORIZON = "dnnzoo.horizon"
MIN_LENGTH = "dnnzoo.min_length"
OUTPUT_NEXT = "dnnzoo.output.next"
OUTPUT_AHEAD = "dnnzoo.output.ahead"
STATE_INPUTS = "dnnzoo.state.inputs"
STATE_OUTPUTS = "dnnzoo.state.outputs"
STATE_SHAPE = "dnnzoo.state.shape"
STATE_INITIAL = "dnnzoo.state.initial"
AR_ORDER = "dnnzoo.ar_order"  # inputs of the linear path beside the recurrent head (0: none)
# tables
TABULAR_KIND = "dnnzoo.tabular.kind"  # "classification" or "regression"
TABULAR_TARGET = "dnnzoo.tabular.target"  # the column the model predicts
TABULAR_SCHEMA_FILE = "dnnzoo.tabular.schema_file"  # side file: columns, vocabularies, missing tokens
TABULAR_OUTPUT = "dnnzoo.tabular.output"  # the output that holds probabilities or values
# where the model came from
METRICS_PREFIX = "dnnzoo.metrics."
BASELINE_PREFIX = "dnnzoo.baseline."
SOURCE_RUN = "dnnzoo.source.run"
SOURCE_PROFILE = "dnnzoo.source.profile"
SOURCE_CHECKPOINT = "dnnzoo.source.checkpoint_sha256"
EXPORT_OPSET = "dnnzoo.export.opset"
EXPORT_PARITY = "dnnzoo.export.parity_max_abs_diff"
# reduced-precision variants (export/precision.py writes them, `repo check --report` reads them)
PRECISION = "dnnzoo.precision"  # fp16 | int8
PRECISION_OF = "dnnzoo.precision.of"  # the FP32 model the variant was made from
PRECISION_METRIC = "dnnzoo.precision.metric"  # e.g. accuracy, map50
PRECISION_HELD_OUT = "dnnzoo.precision.held_out"  # what the metric was measured on, in words
PRECISION_TOLERANCE = "dnnzoo.precision.tolerance"  # the largest loss accepted without --allow-degraded
PRECISION_DEGRADED = "dnnzoo.precision.degraded"  # true: written past the tolerance with --allow-degraded
PRECISION_LATENCY_THREADS = "dnnzoo.precision.latency_threads"
# per precision P (fp32 and the variant's own): dnnzoo.precision.P.metric, .bytes, .latency_ms.b1, .latency_ms.b32
# serving
MAX_REQUEST_ELEMENTS = "dnnzoo.max_request_elements"
PROVIDERS = "dnnzoo.providers"  # written by the server into the effective config it reports
# written into the effective config: the adaptive plan's threads for a batch beside another (serving/plan.py)
SIDE_BY_SIDE_THREADS = "dnnzoo.side_by_side_intra_op_threads"
FILE_KEYS = (LABELS_FILE_KEY, VOCAB_FILE_KEY)  # parameters that name a side file of the model folder
FINGERPRINTS = (VOCAB_HASH, EXPORT_ID)  # equal in a model and its companions when one export wrote both


def state_shape_key(state: str) -> str:
    """`dnnzoo.state.shape.<state>`: one state tensor's own shape where it differs from `dnnzoo.state.shape`
    (the sequence step's `past`: the last p inputs of its linear path)."""
    return f"{STATE_SHAPE}.{state}"


def companion_key(key: str) -> str:
    """`dnnzoo.companion.<key>`: where a main model names its companion (key "neighbors", "step")."""
    return COMPANION_PREFIX + key


def input_range_key(input_name: str) -> str:
    """`dnnzoo.input.<input>.range`: "LOW,HIGH", the inclusive range of an integer input's values."""
    return f"{PREFIX}input.{input_name}.range"


def positive_integer(text: str) -> int | None:
    """`dnnzoo.max_request_elements`'s value as a number, None unless it is a positive whole number."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None


def inclusive_range(text: str) -> tuple[int, int] | None:
    """`dnnzoo.input.<input>.range`'s "LOW,HIGH" as numbers, None unless it is two whole numbers, LOW <= HIGH."""
    try:
        low, high = (int(part) for part in text.split(","))
    except ValueError:
        return None
    return (low, high) if low <= high else None


def request_parameter_problems(config) -> list[str]:
    """What in the parameters that bound requests (dnnzoo.max_request_elements, dnnzoo.input.<input>.range)
    cannot be read: the server refuses such a config at load rather than every request after it."""
    parameters = parameters_of(config)
    problems = []
    text = parameters.get(MAX_REQUEST_ELEMENTS)
    if text is not None and positive_integer(text) is None:
        problems.append(f"parameter {MAX_REQUEST_ELEMENTS!r} is {text[:40]!r}, not a positive whole number")
    for tensor in config.input:
        key = input_range_key(tensor.name)
        if key in parameters and inclusive_range(parameters[key]) is None:
            problems.append(f"parameter {key[:120]!r} is {parameters[key][:40]!r}, not 'LOW,HIGH' (whole numbers, LOW <= HIGH)")
    return problems


# -- the table of tasks ---------------------------------------------------------------------------

CLASSIFICATION = "classification"
DETECTION = "detection"
GENERATION = "generation"
AUTOENCODING = "autoencoding"
WORD_VECTORS = "word_vectors"
WORD_NEIGHBORS = "word_neighbors"
SEQUENCE = "sequence"
SEQUENCE_STEP = "sequence_step"
TABULAR = "tabular"


def _parses(kind: type, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _names(text: str) -> bool:
    return any(text.split(","))


def _shape(text: str) -> bool:
    dims = [d for d in text.split(",") if d]
    return bool(dims) and all(_parses(int, d) for d in dims)


# kind -> (check of the string value, what a readable value is, for messages)
KINDS = {
    "integer": (lambda text: _parses(int, text), "a whole number"),
    "number": (lambda text: _parses(float, text), "a number"),
    "names": (_names, "comma-separated names"),
    "shape": (_shape, "comma-separated whole numbers"),
}


@dataclass(frozen=True)
class Task:
    """One value of `dnnzoo.task`: the parameters without which serving refuses the model's typed
    service (key -> kind of value, see KINDS), and its companion models (key of `dnnzoo.companion.<key>`
    -> the companion's task)."""

    name: str
    requires: Mapping[str, str] = field(default_factory=dict)
    companions: Mapping[str, str] = field(default_factory=dict)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(CLASSIFICATION),
        Task(DETECTION, {SCORE_THRESHOLD: "number", IOU_THRESHOLD: "number", MAX_DETECTIONS: "integer", CLASSES: "integer"}),
        Task(GENERATION, {LATENT_SIZE: "integer"}),
        Task(AUTOENCODING),
        Task(WORD_VECTORS, companions={"neighbors": WORD_NEIGHBORS}),
        Task(WORD_NEIGHBORS),
        Task(SEQUENCE, {HORIZON: "integer"}, companions={"step": SEQUENCE_STEP}),
        Task(SEQUENCE_STEP, {HORIZON: "integer", STATE_INPUTS: "names", STATE_OUTPUTS: "names", STATE_SHAPE: "shape"}),
        Task(TABULAR, {TABULAR_KIND: "names", TABULAR_OUTPUT: "names", TABULAR_SCHEMA_FILE: "names"}),
    )
}


def task_problems(task: str, parameters: Mapping[str, str]) -> list[str]:
    """What keeps a model of `task` with these parameters from serving its task: an unknown task, a
    required parameter that is missing or unreadable. Empty when nothing does."""
    row = TASKS.get(task)
    if row is None:
        return [f"unknown {TASK} {task[:80]!r} (known: {', '.join(TASKS)})"]
    problems = []
    for key, kind in row.requires.items():
        check, readable = KINDS[kind]
        value = parameters.get(key)
        if value is None:
            problems.append(f"a {task!r} model needs the parameter {key!r}")
        elif not check(value):
            problems.append(f"parameter {key!r} is {value[:40]!r}, not {readable}")
    return problems


def parameters_of(config) -> dict[str, str]:
    """A ModelConfig's `parameters` as plain strings (every dnnzoo value is a string_value)."""
    return {key: value.string_value for key, value in config.parameters.items()}

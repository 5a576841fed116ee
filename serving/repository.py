"""Reading a Triton-style model repository: folders, config.pbtxt, version folders, side files.

A model name from a request is only ever looked up among the folder names found by `scan`; it never
becomes part of a path. Names in the config (model file, label files) are accepted only as plain
file names inside the model's folder. Problems are not raised at the server: they come back as the
`error` of a `ModelSource` (or of one version), which RepositoryIndex shows as the reason the model
is UNAVAILABLE while the other models serve.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from protos import contract
from protos.contract import TensorSpec
from protos.config_text import from_config, parse_config
from protos.model_config_pb2 import ModelConfig

from serving import autocomplete, config_fields, files, limits
from serving.batching import BatchPolicy
from serving.plan import plan_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What serving needs from a config.pbtxt, checked once when the model is read."""

    config: ModelConfig
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    warning: str = ""  # config fields accepted but not applied (serving.config_fields)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size

    def full_shape(self, tensor: TensorSpec) -> list[int]:
        """The shape a client sends or receives: a leading -1 when the model batches."""
        return [-1, *tensor.dims] if self.max_batch_size > 0 else list(tensor.dims)

    def batch_policy(self) -> BatchPolicy:
        config = self.config
        instances = plan_for(config).instances
        if config.WhichOneof("scheduling_choice") != "dynamic_batching" or config.max_batch_size <= 0:
            return BatchPolicy(max_batch_size=config.max_batch_size, instances=instances)
        batching = config.dynamic_batching
        return BatchPolicy(
            max_batch_size=config.max_batch_size,
            dynamic=True,
            max_queue_delay_s=batching.max_queue_delay_microseconds / 1e6,
            preferred_sizes=tuple(batching.preferred_batch_size),
            max_queue_size=batching.default_queue_policy.max_queue_size,
            instances=instances,
        )


@dataclass(frozen=True)
class ModelSource:
    """One model folder as read from disk; `error` set means it cannot be loaded, and why."""

    name: str
    spec: ModelSpec | None = None
    versions: dict[int, Path] = field(default_factory=dict)  # selected by version_policy
    version_errors: dict[int, str] = field(default_factory=dict)
    fingerprint: tuple = ()  # config + side files; a change means every version reloads
    version_fingerprints: dict[int, tuple] = field(default_factory=dict)
    error: str | None = None


class Repository:
    """A model repository folder. Stateless: every call reads the disk again (poll mode relies on it)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._skipped: set[str] = set()  # folders whose names are not model names, logged once

    def scan(self) -> list[str]:
        """Model folder names, sorted. Hidden folders (export's temporary ones) are skipped, and so
        are folders whose names break the model-name rule, each said once in the log."""
        names = [p.name for p in contract.model_folders(self.root)]
        if self.root.is_dir():
            for folder in self.root.iterdir():
                name = folder.name
                if folder.is_dir() and not name.startswith(".") and not contract.is_model_name(name) and name not in self._skipped:
                    self._skipped.add(name)
                    log.warning("folder %s is not served: a model name uses %s", limits.shown(name), contract.MODEL_NAME_RULE)
        return names

    def read(self, name: str, override: ModelConfig | None = None) -> ModelSource:
        """Read one model; `name` must come from `scan()` (checked again here).

        `override` replaces config.pbtxt for this read (RepositoryModelLoad's `config` parameter);
        the model files and side files still come from the folder."""
        try:
            source = self._read(name, override)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with one folder is that model's problem
            return ModelSource(name, error=f"cannot read the model folder: {_reason(exc)}")
        # A reason quotes what was wrong (a config line, a list of fields): the index and the log
        # get at most MAX_REASON_CHARS of it, however large the folder made it.
        spec = source.spec
        if spec is not None and spec.warning:
            spec = replace(spec, warning=_short(spec.warning))
        return replace(source, spec=spec, error=source.error and _short(source.error),
                       version_errors={v: _short(e) for v, e in source.version_errors.items()})

    def _read(self, name: str, override: ModelConfig | None) -> ModelSource:
        if name not in self.scan():
            return ModelSource(name, error=f"no model folder named {name!r} in the repository")
        folder = self.root / name
        text: str | None = None
        if override is None:
            try:
                text = files.read_text(folder / contract.CONFIG_FILE, self.root)
            except FileNotFoundError:
                text = None  # completed from the graph, as Triton does
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                return ModelSource(name, error=f"cannot read {contract.CONFIG_FILE}: {_reason(exc)}")
            fingerprint = [_stat(folder / contract.CONFIG_FILE)]
        else:
            fingerprint = [("override", override.SerializeToString(deterministic=True))]
        try:
            if override is not None:
                config = override
            else:
                config = _parsed(text, f"{name}/{contract.CONFIG_FILE}") if text is not None else ModelConfig()
            if not config.name:
                config.name = name
            if autocomplete.needed(config):
                config = _completed(config, folder, has_file=override is not None or text is not None, fingerprint=fingerprint)
            spec = _spec(config, folder, name, fingerprint)
        except ValueError as exc:
            return ModelSource(name, error=str(exc), fingerprint=tuple(fingerprint))
        try:
            versions, errors, stamps = _versions(folder, config)
        except ValueError as exc:
            return ModelSource(name, error=str(exc), fingerprint=tuple(fingerprint))
        error = None if versions or errors else "no numeric version folder (e.g. 1/) to serve"
        return ModelSource(name, spec, versions, errors, tuple(fingerprint), stamps, error)


    def side_file(self, name: str, file_name: str) -> str:
        """A text file of one model's folder (vocab.txt, labels.txt) named by its config.

        `name` must be a scanned folder and `file_name` a plain file name, as for label files.
        """
        if name not in self.scan():
            raise ValueError(f"no model folder named {name!r} in the repository")
        path = self.root / name / _plain_file_name(file_name, "side file")
        try:
            return files.read_text(path, self.root)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"cannot read {file_name!r} of model {name!r}: {_reason(exc)}") from None


def _completed(config: ModelConfig, folder: Path, has_file: bool, fingerprint: list) -> ModelConfig:
    """The config with its tensors (and, without a file, batching) read from the latest version's graph."""
    present = contract.versions(folder)
    if not present:
        raise ValueError(f"no {contract.CONFIG_FILE} and no numeric version folder (e.g. 1/) to complete one from")
    file_name = _plain_file_name(config.default_model_filename or contract.MODEL_FILE, "default_model_filename")
    path = folder / str(present[-1]) / file_name
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        raise ValueError(f"no inputs and outputs in the config, and version {present[-1]} has no {file_name} to read them from")
    files.inside(path, folder.parent)
    fingerprint.append(_stat(path))
    return autocomplete.complete(config, path, has_file)


MAX_REASON_CHARS = 1000
_PARSED: dict[str, tuple[bytes, ModelConfig | str]] = {}  # source -> its text's digest, and its parse (or why it fails)


def _parsed(text: str, source: str) -> ModelConfig:
    """parse_config, remembered per config file by the text's digest: polling reads every config at
    every scan, and protobuf's pure-Python text parser takes seconds for a config of megabytes (a
    copy is returned: callers complete and name it)."""
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    known = _PARSED.get(source)
    if known is None or known[0] != digest:
        try:
            known = (digest, parse_config(text, source))
        except ValueError as exc:
            known = (digest, _short(str(exc)))
        _PARSED[source] = known
    if isinstance(known[1], str):
        raise ValueError(known[1])
    config = ModelConfig()
    config.CopyFrom(known[1])
    return config


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else f"{text[:MAX_REASON_CHARS]}… ({len(text):,} characters in all)"


def _reason(exc: BaseException) -> str:
    """Why a file could not be read, in words and without the server's paths."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    text = str(exc).strip().splitlines()
    return limits.without_paths(text[0])[:300] if text else type(exc).__name__


def _stat(path: Path) -> tuple:
    try:
        st = path.stat()
        return (path.name, st.st_mtime_ns, st.st_size)
    except OSError:
        return (path.name, None, None)


def _plain_file_name(value: str, what: str) -> str:
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise ValueError(f"{what} {value!r} must be a plain file name inside the model folder")
    return value


def _spec(config: ModelConfig, folder: Path, name: str, fingerprint: list) -> ModelSpec:
    if config.name != name:
        raise ValueError(f"config.pbtxt names the model {config.name!r} but its folder is {name!r}")
    if config.platform and config.platform != contract.PLATFORM or config.backend and config.backend != contract.BACKEND:
        raise ValueError(
            f"platform {config.platform!r} / backend {config.backend!r} is not served here "
            f"(only platform {contract.PLATFORM!r} / backend {contract.BACKEND!r})"
        )
    if config.max_batch_size < 0:
        raise ValueError(f"max_batch_size must be >= 0, got {config.max_batch_size}")
    if not config.input or not config.output:
        raise ValueError("config.pbtxt must list the model's inputs and outputs")
    if config.WhichOneof("scheduling_choice") in ("sequence_batching", "ensemble_scheduling"):
        raise ValueError(f"{config.WhichOneof('scheduling_choice')} is not supported by this server")
    check_bounds(config)
    unreadable = contract.request_parameter_problems(config)
    if unreadable:
        raise ValueError("; ".join(unreadable))
    fields = config_fields.review(config)
    if fields.refused:
        raise ValueError("config.pbtxt sets what this server refuses: " + "; ".join(fields.refused))

    def tensor(t, labels: list[str] | tuple = ()) -> TensorSpec:
        try:
            datatype = from_config(t.data_type)
        except ValueError:
            raise ValueError(f"tensor {t.name!r}: unknown data_type {t.data_type}") from None
        if datatype.name != "BYTES" and datatype.numpy is None:
            raise ValueError(f"tensor {t.name!r}: {datatype.config_name} is not supported by ONNX Runtime here")
        if any(d < -1 or d == 0 for d in t.dims):
            raise ValueError(f"tensor {t.name!r}: dims {list(t.dims)} must be positive or -1")
        reshape = tuple(t.reshape.shape) if t.HasField("reshape") else None
        label_filename = getattr(t, "label_filename", "")
        return TensorSpec(t.name, datatype, tuple(t.dims), label_filename, tuple(labels), reshape, getattr(t, "optional", False))

    inputs = tuple(tensor(t) for t in config.input)
    outputs = []
    for t in config.output:
        labels: list[str] = []
        if t.label_filename:
            path = folder / _plain_file_name(t.label_filename, f"output {t.name!r} label_filename")
            try:
                labels = files.read_text(path, folder.parent).splitlines()
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ValueError(f"output {t.name!r}: cannot read labels {t.label_filename!r}: {_reason(exc)}") from None
            fingerprint.append(_stat(path))
        outputs.append(tensor(t, labels))
    names = [t.name for t in (*inputs, *outputs)]
    if len(set(names)) != len(names):
        raise ValueError("input and output names must be unique")
    return ModelSpec(config, inputs, tuple(outputs), fields.warning())


def check_bounds(config: ModelConfig) -> None:
    """Refuse values that would let one config exhaust the host: instance and thread counts, queue
    delay, batch size, tensor sizes and the ONNX Runtime entries it may set (serving.limits)."""
    if len(config.input) > limits.MAX_TENSORS or len(config.output) > limits.MAX_TENSORS:
        raise ValueError(f"a model may have at most {limits.MAX_TENSORS} inputs and outputs")
    if config.max_batch_size > limits.MAX_BATCH_SIZE:
        raise ValueError(f"max_batch_size {config.max_batch_size} is above this server's bound {limits.MAX_BATCH_SIZE}")
    instances = sum(group.count for group in config.instance_group)
    if any(group.count < 0 for group in config.instance_group) or instances > limits.MAX_INSTANCES:
        raise ValueError(f"instance_group counts must be 0..{limits.MAX_INSTANCES} in all (got {instances})")
    if config.WhichOneof("scheduling_choice") == "dynamic_batching":
        batching = config.dynamic_batching
        if not 0 <= batching.max_queue_delay_microseconds <= limits.MAX_QUEUE_DELAY_US:
            raise ValueError(
                f"dynamic_batching.max_queue_delay_microseconds must be 0..{limits.MAX_QUEUE_DELAY_US}, "
                f"got {batching.max_queue_delay_microseconds}"
            )
        if any(not 1 <= size <= max(1, config.max_batch_size) for size in batching.preferred_batch_size):
            raise ValueError(f"dynamic_batching.preferred_batch_size must be 1..max_batch_size ({config.max_batch_size})")
    for key in ("intra_op_thread_count", "inter_op_thread_count"):
        if key in config.parameters:
            text = config.parameters[key].string_value
            if not (text.isascii() and text.isdigit() and int(text) <= limits.MAX_THREADS):  # "²" is a digit to isdigit()
                raise ValueError(f"parameter {key!r} must be a whole number 0..{limits.MAX_THREADS}, got {text[:40]!r}")
    if "execution_mode" in config.parameters and config.parameters["execution_mode"].string_value not in ("", "0", "1"):
        raise ValueError("parameter 'execution_mode' must be 0 (sequential) or 1 (parallel)")
    refused = sorted(k for k in config.parameters if k.startswith(("session.", "memory.")) and k not in limits.ORT_SESSION_ENTRIES)
    if refused:
        raise ValueError(
            f"ONNX Runtime entry {refused[0][:80]!r} is not one this server passes on "
            f"(allowed: {', '.join(sorted(limits.ORT_SESSION_ENTRIES))})"
        )
    for tensor in (*config.input, *config.output):
        fixed = 1
        for d in tensor.dims:
            fixed *= max(d, 1)
            if fixed > limits.MAX_TENSOR_ELEMENTS:
                raise ValueError(f"tensor {tensor.name[:80]!r}: dims {list(tensor.dims)[:20]} hold more than {limits.MAX_TENSOR_ELEMENTS} elements")


# What RepositoryModelLoad's `config` override may set: the fields that describe how the model in
# the folder is served. Anything else (model_transaction_policy, ensemble, backend-specific files...)
# is refused, and parameters are limited to thread settings, dnnzoo's own and the allowed ORT entries.
OVERRIDE_FIELDS = frozenset({
    "name", "platform", "backend", "max_batch_size", "input", "output", "instance_group", "dynamic_batching",
    "version_policy", "parameters", "optimization", "default_model_filename",
})
OVERRIDE_PARAMETERS = frozenset({"intra_op_thread_count", "inter_op_thread_count", "execution_mode"})


def check_override(config: ModelConfig) -> None:
    """ValueError unless a load override sets only allowed fields and parameters, within bounds."""
    for descriptor, _ in config.ListFields():
        if descriptor.name not in OVERRIDE_FIELDS:
            raise ValueError(f"field {descriptor.name!r} cannot be overridden at load (allowed: {', '.join(sorted(OVERRIDE_FIELDS))})")
    for key in config.parameters:
        if key not in OVERRIDE_PARAMETERS and key not in limits.ORT_SESSION_ENTRIES and not key.startswith(contract.PREFIX):
            raise ValueError(f"parameter {key[:80]!r} cannot be set at load")
    check_bounds(config)


def _versions(folder: Path, config: ModelConfig) -> tuple[dict[int, Path], dict[int, str], dict[int, tuple]]:
    """The version folders the version_policy selects (default: latest 1), with their model files."""
    present = contract.versions(folder)
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice")
    errors: dict[int, str] = {}
    if choice == "all":
        selected = present
    elif choice == "specific":
        selected = [v for v in policy.specific.versions if v in present]
        errors = {v: f"version {v} named by version_policy has no folder" for v in policy.specific.versions if v not in present}
    else:
        count = policy.latest.num_versions if choice == "latest" else 1
        selected = present[-max(1, count):] if present else []
    if len(selected) > limits.MAX_VERSIONS:
        raise ValueError(f"version_policy selects {len(selected)} versions; this server loads at most {limits.MAX_VERSIONS} "
                         "of one model at once (name them with version_policy specific, or latest N)")
    file_name = _plain_file_name(config.default_model_filename or contract.MODEL_FILE, "default_model_filename")
    versions, stamps = {}, {}
    for version in selected:
        path = folder / str(version) / file_name
        if path.is_dir():  # Triton's layout for external data: model.onnx/model.onnx
            path = path / file_name
        stamps[version] = _stat(path)
        if not path.is_file():
            errors[version] = f"version {version}: {file_name} is missing"
            continue
        try:
            files.inside(path, folder.parent)  # ONNX Runtime opens it: no link out of the repository
        except ValueError as exc:
            errors[version] = f"version {version}: {exc}"
            continue
        versions[version] = path
    return versions, errors, stamps

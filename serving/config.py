"""Typed settings of `dnnzoo serve`. Each field has a flag and a DNNZOO_<FIELD> environment variable.

Precedence: flag, then environment variable, then the default here. `cli.py` maps flags onto this;
`from_env` is also what a container uses with no flags at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from dnnzoo.errors import UserError
from dnnzoo.profiles import PROFILES

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
CONTROL_MODES = ("none", "poll", "explicit")
GRPC_FRONTS = ("auto", "native", "grpcio")
IDLE_CORES = ("poll", "halt")  # serving/wake_latency.py
ENV_PREFIX = "DNNZOO_"
# Positive integer caps on what one request may ask for; each is a `serve` flag.
LIMIT_FIELDS = (
    "max_generate_count", "max_forecast_horizon", "max_image_pixels", "max_images", "max_words", "max_word_pairs",
    "max_series", "max_series_length", "max_stream_values", "max_rows", "max_request_elements", "max_string_elements",
    "max_queued_mb",
)


@dataclass
class ServeConfig:
    repository: Path = Path("model_repository")
    host: str = "0.0.0.0"
    port: int = 8001  # 0 picks a free port (tests)
    metrics_port: int = 8002  # 0 picks a free port; -1 disables the metrics endpoint
    http_port: int = 8000  # HTTP/REST (KServe v2 as Triton serves it); 0 picks a free port; -1 turns it off
    http_read_seconds: float = 30.0  # an HTTP client must send its request (headers, then body) within this
    providers: str = "auto"
    model_control_mode: str = "none"
    load_model: list[str] = field(default_factory=list)
    poll_seconds: float = 15.0
    max_message_mb: int = 64
    grpc_front: str = "auto"  # native: pygrpc-native's front (unary RPCs) over grpc.aio; auto: native without TLS
    idle_cores: str = "poll"  # poll: while calls arrive close together, idle cores poll (where the process may ask); halt: left alone
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    build_profile: str = "quick"  # the training profile a missing repository is built with
    grace_seconds: float = 30.0  # how long SIGTERM waits for in-flight and queued requests
    # Limits of the typed task services (requests above them are INVALID_ARGUMENT).
    max_generate_count: int = 64  # images one Generate call may ask for
    max_forecast_horizon: int = 1000  # values one Forecast may ask for (beyond the trained horizon by feeding back)
    max_image_pixels: int = 4096 * 4096  # decoded pixels of one request image: the image-bomb cap
    max_images: int = 256  # images one Classify/Detect/Encode/Reconstruct call may carry
    max_words: int = 1024  # words one GetVectors/MostSimilar call may carry
    max_word_pairs: int = 1024  # pairs one Similarity call may carry
    max_series: int = 256  # series one Forecast call may carry
    max_series_length: int = 100_000  # values one series may have
    max_stream_values: int = 1000  # values one ForecastStream message may carry
    max_rows: int = 4096  # table rows one TabularPrediction.Predict call may carry
    # Limits of every inference request (Open Inference Protocol and typed services alike).
    max_request_elements: int = 16 * 1024 * 1024  # elements of all inputs of one request (numbers)
    max_string_elements: int = 1024 * 1024  # BYTES elements of one request (each becomes a Python object)
    max_queued_mb: int = 512  # input MiB of every accepted, unanswered request together (greedy clients)
    max_run_seconds: float = 120.0  # one model run still going after this is stopped (0: no bound); TorchServe's default response timeout
    # Access control: files holding bearer tokens (none: open, as Triton by default).
    auth_token_file: Path | None = None  # inference and metadata need `authorization: Bearer <token>`
    admin_token_file: Path | None = None  # repository control (load, unload, index) needs this token
    drain_delay_seconds: float = 1.0  # after SIGTERM: NOT_SERVING at once, new calls refused after this

    def check(self) -> ServeConfig:
        if self.providers not in PROVIDER_CHOICES:
            raise UserError(f"--providers must be one of {', '.join(PROVIDER_CHOICES)}, got {self.providers!r}")
        if self.build_profile not in PROFILES:
            raise UserError(f"--build-profile must be one of {', '.join(PROFILES)}, got {self.build_profile!r}")
        if self.model_control_mode not in CONTROL_MODES:
            raise UserError(f"--model-control-mode must be one of {', '.join(CONTROL_MODES)}, got {self.model_control_mode!r}")
        if self.grpc_front not in GRPC_FRONTS:
            raise UserError(f"--grpc-front must be one of {', '.join(GRPC_FRONTS)}, got {self.grpc_front!r}")
        if self.idle_cores not in IDLE_CORES:
            raise UserError(f"--idle-cores must be one of {', '.join(IDLE_CORES)}, got {self.idle_cores!r}")
        if self.grpc_front == "native" and self.tls_cert is not None:
            raise UserError("--grpc-front native has no TLS; use --grpc-front grpcio (or auto) with --tls-cert")
        if self.load_model and self.model_control_mode != "explicit":
            raise UserError("--load-model needs --model-control-mode explicit")
        if self.poll_seconds <= 0:
            raise UserError(f"--poll-seconds must be positive, got {self.poll_seconds}")
        if self.max_message_mb <= 0:
            raise UserError(f"--max-message-mb must be positive, got {self.max_message_mb}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UserError("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise UserError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.http_port < -1 or self.metrics_port < -1:
            raise UserError("--http-port and --metrics-port must be a port number, 0 (any free port) or -1 (off)")
        if self.http_read_seconds <= 0:
            raise UserError(f"--http-read-seconds must be positive, got {self.http_read_seconds}")
        if self.max_run_seconds < 0:
            raise UserError(f"--max-run-seconds must be 0 (no bound) or positive, got {self.max_run_seconds}")
        if self.grace_seconds < 0 or self.drain_delay_seconds < 0:
            raise UserError("--grace-seconds and --drain-delay-seconds must not be negative")
        for name in LIMIT_FIELDS:
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "auth_token_file", "admin_token_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise UserError(f"--{name.replace('_', '-')}: no such file {path}")
        return self


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def parse_value(field_name: str, text: str, kind: type):
    """Convert a flag or environment string to the field's type; UserError names the variable."""
    try:
        if kind is list:
            return [part for part in text.replace(",", " ").split() if part]
        if kind is Path:
            return Path(text)
        return kind(text)
    except ValueError:
        raise UserError(f"{env_name(field_name)}: cannot read {text!r} as {kind.__name__}") from None


def field_types() -> dict[str, type]:
    kinds = {"int": int, "float": float, "str": str, "Path": Path, "Path | None": Path, "list[str]": list}
    return {f.name: kinds[str(f.type)] for f in fields(ServeConfig)}


def from_env(environ: dict[str, str] | None = None, **overrides) -> ServeConfig:
    """Defaults, then DNNZOO_* variables, then `overrides` (the flags that were given)."""
    environ = os.environ if environ is None else environ
    values = {}
    for name, kind in field_types().items():
        if env_name(name) in environ:
            values[name] = parse_value(name, environ[env_name(name)], kind)
    kinds = field_types()
    for name, value in overrides.items():
        if value is not None:
            values[name] = parse_value(name, value, kinds[name]) if isinstance(value, str) and kinds[name] is not str else value
    return ServeConfig(**values).check()

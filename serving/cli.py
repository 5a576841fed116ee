"""Serve a model repository over gRPC (Open Inference Protocol, health, reflection) and HTTP/REST, with metrics.

Every flag also reads DNNZOO_<FLAG> from the environment (e.g. DNNZOO_PORT, DNNZOO_PROVIDERS).
When the repository folder does not exist and the training extra is installed, the default
repository is built first by running `dnnzoo build --profile quick` (--build-profile) as a child
process, so that this process never imports torch.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import signal
import subprocess
import sys

from dnnzoo.errors import UserError
from dnnzoo.profiles import PROFILES
from serving.config import CONTROL_MODES, GRPC_FRONTS, IDLE_CORES, PROVIDER_CHOICES, ServeConfig, env_name, from_env

log = logging.getLogger("serving")


def build_parser(prog: str) -> argparse.ArgumentParser:
    d = ServeConfig()
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    # Triton's names (--model-repository, --grpc-port) are accepted too, so its command lines carry over
    p.add_argument("--repository", "--model-repository", dest="repository",
                   help=f"model repository folder (default {d.repository}; {env_name('repository')})")
    p.add_argument("--host", help=f"address to bind (default {d.host})")
    p.add_argument("--port", "--grpc-port", dest="port", type=int, help=f"gRPC port (default {d.port}; 0 = any free port)")
    p.add_argument("--metrics-port", type=int, help=f"Prometheus /metrics port (default {d.metrics_port}; -1 = off)")
    p.add_argument("--http-port", type=int, help=f"HTTP/REST port, KServe v2 as Triton serves it (default {d.http_port}; 0 = any free port; -1 = off)")
    p.add_argument("--http-read-seconds", type=float,
                   help=f"an HTTP client must send each request's headers, and then its body, within this; idle connections to the REST and metrics ports close after it (default {d.http_read_seconds:g})")
    p.add_argument("--providers", choices=PROVIDER_CHOICES, help="execution providers: auto = TensorRT, CUDA, CPU by preference")
    p.add_argument("--model-control-mode", choices=CONTROL_MODES, help="none (default), poll or explicit")
    p.add_argument("--load-model", nargs="+", action="extend", metavar="NAME", help="explicit mode: models to load at start (* = all)")
    p.add_argument("--poll-seconds", type=float, help=f"poll mode: seconds between repository scans (default {d.poll_seconds:g})")
    p.add_argument("--max-message-mb", type=int, help=f"largest gRPC message either way, MiB (default {d.max_message_mb})")
    p.add_argument("--grpc-front", choices=GRPC_FRONTS,
                   help="native: unary RPCs on pygrpc-native's Rust front, the rest via grpc.aio behind it; "
                        "grpcio: grpc.aio alone; auto (default): native unless TLS is on or it is not installed")
    p.add_argument("--idle-cores", choices=IDLE_CORES,
                   help="poll (default): while calls (gRPC or REST) arrive within 2 ms of each other, ask Linux (PM QoS, "
                        "/dev/cpu_dma_latency, root only) to keep idle cores polling instead of halting, which saves "
                        "each call the wake-ups from halt; halt: leave them be")
    p.add_argument("--tls-cert", help="server certificate (PEM) to serve TLS")
    p.add_argument("--tls-key", help="server private key (PEM)")
    p.add_argument("--tls-client-ca", help="CA (PEM) that client certificates must chain to: mutual TLS")
    p.add_argument("--build-profile", choices=PROFILES,
                   help=f"training profile used when the repository is missing and gets built (default {d.build_profile})")
    p.add_argument("--grace-seconds", type=float, help=f"shutdown grace period for in-flight requests (default {d.grace_seconds:g})")
    p.add_argument("--max-generate-count", type=int, help=f"most images one Generate call may ask for (default {d.max_generate_count})")
    p.add_argument("--max-forecast-horizon", type=int, help=f"most values one Forecast may ask for (default {d.max_forecast_horizon})")
    p.add_argument("--max-image-pixels", type=int, help=f"most decoded pixels of one request image (default {d.max_image_pixels})")
    p.add_argument("--max-images", type=int, help=f"most images in one typed call (default {d.max_images})")
    p.add_argument("--max-words", type=int, help=f"most words in one GetVectors/MostSimilar call (default {d.max_words})")
    p.add_argument("--max-word-pairs", type=int, help=f"most pairs in one Similarity call (default {d.max_word_pairs})")
    p.add_argument("--max-series", type=int, help=f"most series in one Forecast call (default {d.max_series})")
    p.add_argument("--max-series-length", type=int, help=f"most values in one series (default {d.max_series_length})")
    p.add_argument("--max-stream-values", type=int, help=f"most values in one ForecastStream message (default {d.max_stream_values})")
    p.add_argument("--max-rows", type=int, help=f"most table rows in one TabularPrediction.Predict call (default {d.max_rows})")
    p.add_argument("--max-request-elements", type=int,
                   help=f"most tensor elements in one inference request (default {d.max_request_elements}; "
                        "a model's dnnzoo.max_request_elements parameter may lower it)")
    p.add_argument("--max-string-elements", type=int, help=f"most BYTES elements in one inference request (default {d.max_string_elements})")
    p.add_argument("--max-queued-mb", type=int,
                   help=f"most MiB of request inputs the server holds at once, all models together (default {d.max_queued_mb})")
    p.add_argument("--max-run-seconds", type=float,
                   help=f"a model run still going after this long is stopped and its requests answered DEADLINE_EXCEEDED / 504, "
                        f"as is one whose requests' deadlines have all passed (default {d.max_run_seconds:g}; 0 = no bound)")
    p.add_argument("--auth-token-file", help="file holding the bearer token that inference and metadata calls must send")
    p.add_argument("--admin-token-file", help="file holding the bearer token that repository control (load, unload, index) needs")
    p.add_argument("--drain-delay-seconds", type=float,
                   help=f"after SIGTERM, health is NOT_SERVING at once and new calls are refused after this delay (default {d.drain_delay_seconds:g})")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def _ensure_repository(config: ServeConfig) -> None:
    """Build the default repository in a child process if it is missing and training is installed."""
    if config.repository.exists():
        return
    if importlib.util.find_spec("torch") is None:
        raise UserError(
            f"model repository {config.repository} does not exist; export models into it "
            "(`dnnzoo build`, which needs the training extra: pip install 'dnnzoo[train]')"
        )
    log.info("no repository at %s: building it with `dnnzoo build --profile %s`", config.repository, config.build_profile)
    command = [sys.executable, "-m", "dnnzoo", "build", "--profile", config.build_profile, "--repository", str(config.repository)]
    if subprocess.run(command, check=False).returncode != 0:
        raise UserError(f"building the default repository failed (command: {' '.join(command)})")


# How long a Python thread may hold the GIL while others wait (CPython's default is 5 ms). A large
# request's Python work (BYTES decoding, say) would make every small request wait that long at each
# step; 0.5 ms keeps small requests flowing beside it (benchmarks/abuse.py, the greedy client).
GIL_SWITCH_INTERVAL_S = 0.0005


async def serve(config: ServeConfig) -> int:
    from serving.server import create_server

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    server, _port = await create_server(config)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task] = []

    def on_signal(signum: int) -> None:
        if not stopping:
            log.info("received %s", signal.Signals(signum).name)
            stopping.append(loop.create_task(server.stop(config.grace_seconds, config.drain_delay_seconds)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await server.wait_stopped()
    if server.failure is not None:
        print(f"dnnzoo serve: stopped because {server.failure}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str = "dnnzoo serve") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flags = {k: v for k, v in vars(args).items() if k != "log_level" and v is not None}
    try:
        config = from_env(**flags)
        _ensure_repository(config)
        return asyncio.run(serve(config))
    except UserError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2

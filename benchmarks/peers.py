"""dnnzoo beside its peers, each with default settings, on a model it has never seen, in one run.

    python benchmarks/peers.py                                  # the foreign ResNet-style CNN, 3 rounds x 5 s
    python benchmarks/peers.py --rounds 1 --seconds 2           # a quick look
    python benchmarks/peers.py --model-repo model_repository --model digits_classifier
    python benchmarks/peers.py --model-repo REPO --model cnn --input-dims 3,64,64   # a config with dims [3, -1, -1]
    python benchmarks/peers.py --json peers.json                # also every measurement, raw
    python benchmarks/peers.py --targets dnnzoo --variant 1x2='instance_group [{count: 1}] parameters {key:
        "intra_op_thread_count" value {string_value: "2"}}'       # dnnzoo's default beside a hand-tuned plan
    python benchmarks/peers.py --targets in-process,dnnzoo --tree main=../main   # this branch beside main's dnnzoo
    python benchmarks/peers.py --targets dnnzoo,dnnzoo-rest,dnnzoo-rest-json,mlserver-rest   # REST beside gRPC

Servers, all started here on free loopback ports and stopped on exit (Ctrl-C included):
- dnnzoo: `python -m dnnzoo serve` on a repository holding only the model (CPU provider).
- MLServer 1.7 in its own venv (installed on first use into ~/.cache/dnnzoo-bench/mlserver-venv,
  with uvloop 0.21.0 and the ONNX Runtime version of this environment), serving the model through
  `mlserver_onnx_runtime.py`, a plain custom runtime (MLServer ships none for ONNX); its defaults:
  parallel_workers 1 (inference in one worker process beside the front), adaptive batching off.
- grpc.aio + ORT: `thin_server.py`, one session, no batching.
- in-process ONNX Runtime (no server): the reference, `concurrency` threads calling one session.
Every session the peers and the reference create has default SessionOptions.

The model: by default a 0.6 M-weight ResNet-style CNN (FP32 [B,1,28,28] -> logits [B,10]) defined
and exported with torch.onnx here, with a plain config.pbtxt (`max_batch_size: 32`,
`dynamic_batching { }`, nothing else); or `--model-repo DIR --model NAME`, served by dnnzoo with
its own config.

One client for all (`peers_client.py`): grpc.aio, closed loop, the same serialised request bytes to
every server, each answer's shapes checked. The REST targets load the same servers' HTTP ports with
one REST load generator (`rest_loadgen.py`: closed loop, the whole HTTP request pre-serialised, one
kept-alive connection per caller, every answer's shapes checked): dnnzoo with Triton's binary tensor
extension (dnnzoo-rest) and with JSON tensors (dnnzoo-rest-json), MLServer with JSON (mlserver-rest;
MLServer 1.7's REST front reads JSON tensors only, no binary extension). Load shapes b1c1, b1c16 and b32c2 (batch, concurrency).
The measurements are interleaved: each round runs every shape on every target, the targets in a
rotated order each round, so that drifting load on the machine hits all of them alike; the table
shows the median of the rounds.

Cores: nothing is pinned by default: the client, the server under test and the idle servers share
all cores as they would on a user's machine, and every server's ONNX Runtime picks its own thread
count. Each row shows the CPU the client and the server used (in cores), so a client that ran out
of CPU is visible (marked *); `--client-cpus` and `--server-cpus` (taskset lists) pin them apart.
ONNX Runtime, when it picks its own thread count (the peers and in-process ORT), pins a worker to
every physical core and so leaves a taskset list; dnnzoo keeps to it. A server that used more cores
than its list holds is marked !. `--server-cpu-limit N` runs the servers and in-process ORT in a
cgroup with a CPU quota of N cores instead (`cpu_quota.py`, as `docker run --cpus N` or a Kubernetes
CPU limit; needs root), which no thread leaves.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import cpu_quota  # noqa: E402
from peers_client import Worker, client_worker, in_process_worker  # noqa: E402
from peers_model import foreign_model, repository_model  # noqa: E402
from serving.child_server import exit_with, stop_on_signals  # noqa: E402
from peers_servers import (MLSERVER_VENV, ensure_mlserver, start_dnnzoo, start_mlserver, start_thin,  # noqa: E402
                           wait_ready)

TARGETS = ("in-process", "dnnzoo", "mlserver", "thin", "dnnzoo-rest", "dnnzoo-rest-json", "mlserver-rest")
LABELS = {"in-process": "in-process ORT", "dnnzoo": "dnnzoo", "mlserver": "MLServer", "thin": "grpc.aio + ORT",
          "dnnzoo-rest": "dnnzoo REST bin", "dnnzoo-rest-json": "dnnzoo REST JSON", "mlserver-rest": "MLServer REST"}
PEERS = ("mlserver", "thin")
# REST targets: the server whose HTTP port they load, and how the body is written (rest_loadgen)
REST = {"dnnzoo-rest": ("dnnzoo", "binary"), "dnnzoo-rest-json": ("dnnzoo", "json"), "mlserver-rest": ("mlserver", "json")}
SATURATED = 0.9  # client CPU (cores) above which the client, not the server, may be the limit


def shapes(text: str) -> list[tuple[int, int]]:
    found = []
    for word in text.split(","):
        match = re.fullmatch(r"b(\d+)c(\d+)", word.strip())
        if not match:
            raise argparse.ArgumentTypeError(f"{word!r}: write load shapes as bBATCHcCONCURRENCY, e.g. b1c16")
        found.append((int(match.group(1)), int(match.group(2))))
    return found


def request_bytes(model, array) -> bytes:
    from protos import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name=model.name, raw_input_contents=[array.tobytes()])
    request.inputs.add(name=model.input_name, datatype=model.datatype, shape=array.shape)
    return request.SerializeToString()


def rest_request(model, server, kind: str, array) -> bytes:
    """A whole HTTP request for `server`'s REST front: binary tensors or JSON (`rest_loadgen`)."""
    import rest_loadgen

    body, headers = (rest_loadgen.binary_body if kind == "binary" else rest_loadgen.json_body)(
        model.name, model.input_name, model.datatype, array)
    return rest_loadgen.request_bytes(server.http_address, f"/v2/models/{model.name}/infer", body, headers)


def median_rows(rows: list[dict]) -> dict:
    refused = [r["refused"] for r in rows if "refused" in r]
    if refused:  # the server refused the request itself: no figures
        return {"refused": refused[0]}
    keys = ("items_s", "p50_ms", "p99_ms", "client_cpu", "server_cpu")
    summary = {k: statistics.median(r[k] for r in rows) for k in keys if all(r.get(k) is not None for r in rows)}
    summary["items_s_range"] = [min(r["items_s"] for r in rows), max(r["items_s"] for r in rows)]
    return summary


def rest_ratio_lines(shape: tuple[int, int], table: dict[str, dict]) -> list[str]:
    """dnnzoo's REST against its own gRPC and against MLServer's REST, with the issue's targets."""
    lines = []
    table = {t: row for t, row in table.items() if "refused" not in row}
    if "dnnzoo-rest" in table and "dnnzoo" in table:
        if shape == (1, 1):
            added = table["dnnzoo-rest"]["p50_ms"] - table["dnnzoo"]["p50_ms"]
            lines.append(f"dnnzoo REST bin p50 - dnnzoo gRPC p50: {added:+.3f} ms   (target <= +0.3 ms)")
        target = "   (target >= 0.9)" if shape == (32, 2) else ""
        lines.append(f"dnnzoo REST bin / dnnzoo gRPC: {table['dnnzoo-rest']['items_s'] / table['dnnzoo']['items_s']:.2f}"
                     f"{target}")
    if "mlserver-rest" in table:
        for ours in ("dnnzoo-rest", "dnnzoo-rest-json"):
            if ours in table:
                lines.append(f"{LABELS[ours]} / MLServer REST: "
                             f"{table[ours]['items_s'] / table['mlserver-rest']['items_s']:.2f}   (target > 1)")
    return lines


def ratio_lines(shape: tuple[int, int], table: dict[str, dict]) -> list[str]:
    """dnnzoo against the best peer, MLServer and in-process ORT, with the issue's targets beside them."""
    batch, concurrency = shape
    table = {t: row for t, row in table.items() if "refused" not in row}
    if "dnnzoo" not in table:
        return []
    ours = table["dnnzoo"]["items_s"]
    lines = []
    peers = {t: table[t]["items_s"] for t in PEERS if t in table}
    if peers:
        best = max(peers, key=peers.get)
        lines.append(f"dnnzoo / best peer ({LABELS[best]}): {ours / peers[best]:.2f}   (target >= 0.95)")
    if "mlserver" in table:
        target = "   (target >= 1.5)" if (batch, concurrency) == (1, 16) else ""
        lines.append(f"dnnzoo / MLServer: {ours / table['mlserver']['items_s']:.2f}{target}")
    if "in-process" in table:
        target = "   (target >= 0.95)" if (batch, concurrency) == (32, 2) else ""
        lines.append(f"dnnzoo / in-process ORT: {ours / table['in-process']['items_s']:.2f}{target}")
        if (batch, concurrency) == (1, 1):
            added = table["dnnzoo"]["p50_ms"] - table["in-process"]["p50_ms"]
            lines.append(f"dnnzoo p50 - in-process p50: {added:+.3f} ms   (target <= 0.5 ms)")
    return lines


def cpu_count_of(cpus: str | None) -> int | None:
    """How many CPUs a taskset list ("0", "0-1", "0,2-3") names; None for none."""
    if not cpus:
        return None
    return sum(int(high or low) - int(low) + 1 for low, _, high in (part.partition("-") for part in cpus.split(",")))


def print_tables(summary: dict, header: list[str], pinned: int | None = None) -> None:
    """`pinned`: the server CPU list's size, to mark a server that used more cores (left its list)."""
    print("\n".join(header))
    escaped = False
    for key, table in summary.items():
        batch, concurrency = (int(x) for x in re.fullmatch(r"b(\d+)c(\d+)", key).groups())
        print(f"\n{key}: batch {batch}, concurrency {concurrency}")
        print(f"  {'server':16} {'items/s':>9} {'(min-max)':>14} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'client CPU':>10} {'server CPU':>10}")
        for target, row in table.items():
            if "refused" in row:
                print(f"  {LABELS[target]:16} refused the request: {row['refused']}")
                continue
            low, high = row["items_s_range"]
            client = row.get("client_cpu")
            mark = "*" if client is not None and client > SATURATED else " "
            client_text = f"{client:9.2f}{mark}" if client is not None else f"{'-':>9} "
            left = "!" if pinned is not None and row["server_cpu"] > pinned + 0.1 else ""
            escaped = escaped or bool(left)
            print(f"  {LABELS[target]:16} {row['items_s']:9.0f} {f'({low:.0f}-{high:.0f})':>14} {row['p50_ms']:8.3f} "
                  f"{row['p99_ms']:8.3f} {client_text:>10} {row['server_cpu']:10.2f}{left}")
        for line in ratio_lines((batch, concurrency), table) + rest_ratio_lines((batch, concurrency), table):
            print(f"  {line}")
    print(f"\nitems/s, p50, p99: median of the rounds; (min-max): items/s over the rounds. CPU in cores "
          f"(1.00 = one core busy); * = the client used more than {SATURATED} of a core and may be the limit.")
    if escaped:
        print(f"! = the server used more than the {pinned} CPU(s) of --server-cpus: ONNX Runtime's own thread "
              f"count pins a worker to every core, whatever taskset says; --server-cpu-limit binds every server.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repo", type=Path, help="serve a model from this repository instead of the foreign CNN")
    parser.add_argument("--model", help="with --model-repo: the model's name (one input, max_batch_size > 0)")
    parser.add_argument("--input-dims", type=lambda text: tuple(int(d) for d in text.split(",")),
                        help="with --model-repo: the input's dimensions without the batch, for a model whose config "
                             "leaves some variable (-1), e.g. 3,64,64 (default: 1 for each variable one)")
    parser.add_argument("--shapes", type=shapes, default=shapes("b1c1,b1c16,b32c2"), help="default b1c1,b1c16,b32c2")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3); the table shows medians")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per shape, target and round")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"subset of {','.join(TARGETS)}")
    parser.add_argument("--client-cpus", help="taskset list for the client, e.g. 1 (default: not pinned)")
    parser.add_argument("--server-cpus",
                        help="taskset list for servers and in-process ORT, e.g. 0 (default: not pinned)")
    parser.add_argument("--server-cpu-limit", type=float, metavar="CORES",
                        help="run servers and in-process ORT in a cgroup with this CPU quota, as a container "
                             "limit does (needs root)")
    parser.add_argument("--mlserver-venv", type=Path, default=MLSERVER_VENV, help=f"default {MLSERVER_VENV}")
    parser.add_argument("--json", type=Path, help="write every measurement and the medians here")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=CONFIG",
                        help="also serve the model with dnnzoo under CONFIG (config.pbtxt text appended), as target dnnzoo:NAME")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="also serve the model with the dnnzoo of another checkout at PATH (e.g. main, to "
                             "compare a branch with it in one run), as target dnnzoo@NAME")
    args = parser.parse_args()
    if bool(args.model_repo) != bool(args.model):
        parser.error("--model-repo and --model go together")
    targets = [t.strip() for t in args.targets.split(",")]
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets {sorted(unknown)}; choose from {','.join(TARGETS)}")
    variants = dict(v.split("=", 1) for v in args.variant)
    for name in variants:
        LABELS[f"dnnzoo:{name}"] = f"dnnzoo:{name}"
    targets += [f"dnnzoo:{name}" for name in variants]
    trees = {name: Path(path).resolve() for name, path in (t.split("=", 1) for t in args.tree)}
    for name, path in trees.items():
        if not (path / "serving").is_dir():
            parser.error(f"--tree {name}={path}: not a dnnzoo checkout (no serving/ folder)")
        LABELS[f"dnnzoo@{name}"] = f"dnnzoo@{name}"
    targets += [f"dnnzoo@{name}" for name in trees]
    stop_on_signals()

    from tqdm import tqdm

    import onnxruntime

    needed = {REST[t][0] if t in REST else t for t in targets}  # the servers to start
    mlserver_version = ensure_mlserver(args.mlserver_venv) if "mlserver" in needed else None
    load_before = os.getloadavg()
    measurements: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dnnzoo-peers-") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        repository = tmp / "repository"
        repository.mkdir()
        logs = tmp / "logs"
        logs.mkdir()
        if args.model_repo:
            model = repository_model(args.model_repo, args.model, repository, args.input_dims)
        else:
            model = foreign_model(repository)
        for batch, _ in args.shapes:
            if batch > model.max_batch_size:
                parser.error(f"batch {batch} is above {model.name}'s max_batch_size {model.max_batch_size}")

        limit, cgroup = {}, None
        if args.server_cpu_limit:
            cgroup = cpu_quota.create(args.server_cpu_limit, tmp.name)
            stack.callback(cpu_quota.remove, cgroup)  # last, once everything in it has stopped
            limit = {"preexec_fn": functools.partial(cpu_quota.join, cgroup)}
        # Workers first (they import slowly), then every server: all start before any is measured.
        reference = Worker(in_process_worker, str(model.onnx), model.input_name, args.server_cpus,
                           str(cgroup) if cgroup else None)
        stack.callback(reference.close)
        client = Worker(client_worker, args.client_cpus, str(ROOT))
        stack.callback(client.close)
        servers = {}
        rest_on = any(t in REST and REST[t][0] == "dnnzoo" for t in targets)
        starters = {"dnnzoo": lambda: start_dnnzoo(repository, model.name, logs, args.server_cpus, http=rest_on,
                                                   **limit),
                    "thin": lambda: start_thin(model.onnx, model.name, logs, args.server_cpus, **limit),
                    "mlserver": lambda: start_mlserver(model.onnx, model.name, tmp / "mlserver", logs,
                                                       args.server_cpus, args.mlserver_venv, **limit)}
        for name, text in variants.items():
            folder = tmp / f"variant-{name}"
            shutil.copytree(repository, folder)
            config = folder / model.name / "config.pbtxt"
            config.write_text(config.read_text() + "\n" + text + "\n")
            starters[f"dnnzoo:{name}"] = lambda folder=folder: start_dnnzoo(folder, model.name, logs, args.server_cpus,
                                                                            **limit)
        for name, path in trees.items():
            starters[f"dnnzoo@{name}"] = lambda path=path: start_dnnzoo(repository, model.name, logs, args.server_cpus,
                                                                        path, **limit)
        for target in targets:
            if target in needed and target in starters:
                servers[target] = starters[target]()
                stack.callback(servers[target].stop)
        for target in needed - set(targets):  # serves a REST target only
            servers[target] = starters[target]()
            stack.callback(servers[target].stop)
        for server in servers.values():
            wait_ready(server, model.name)

        inputs = {batch: model.example(batch) for batch, _ in args.shapes}
        payloads = {batch: request_bytes(model, array) for batch, array in inputs.items()}
        rest_payloads = {(target, batch): rest_request(model, servers[REST[target][0]], REST[target][1], array)
                         for target in targets if target in REST for batch, array in inputs.items()}
        references = {batch: reference.ask(("reference", array)) for batch, array in inputs.items()}
        expected = {batch: {name: list(values.shape) for name, values in outputs.items()}
                    for batch, outputs in references.items()}

        total = args.rounds * len(args.shapes) * len(targets)
        with tqdm(total=total, unit="run", desc="measuring", file=sys.stderr) as progress:
            for round_ in range(args.rounds):
                for batch, concurrency in args.shapes:
                    shift = round_ % len(targets)
                    for target in targets[shift:] + targets[:shift]:
                        progress.set_postfix_str(f"round {round_ + 1} b{batch}c{concurrency} {LABELS[target]}")
                        if target == "in-process":
                            row = reference.ask(("run", inputs[batch], concurrency, args.warmup, args.seconds))
                            row["server_cpu"], row["client_cpu"] = row.pop("cpu"), None
                        else:
                            server = servers[REST[target][0] if target in REST else target]
                            job = {
                                "address": server.address, "server": LABELS[target], "payload": payloads[batch],
                                "batch": batch, "concurrency": concurrency, "seconds": args.seconds,
                                "warmup": args.warmup, "expected": expected[batch], "reference": references[batch],
                            }
                            if target in REST:
                                job.update(protocol="rest", address=server.http_address,
                                           payload=rest_payloads[target, batch])
                            before, start = server.cpu_seconds(), time.perf_counter()
                            row = client.ask(job)
                            if "refused" not in row:
                                # the server's CPU over warm-up and measurement together; the client's over the latter
                                row["server_cpu"] = (server.cpu_seconds() - before) / (time.perf_counter() - start)
                                row["client_cpu"] = row.pop("cpu")
                            if not server.alive():
                                raise SystemExit(f"{server.label} died:\n{server.log_tail()}")
                        measurements.append({"target": target, "shape": f"b{batch}c{concurrency}", "round": round_ + 1,
                                             **row})
                        progress.update()

    summary = {}
    for batch, concurrency in args.shapes:
        key = f"b{batch}c{concurrency}"
        summary[key] = {t: median_rows([m for m in measurements if m["target"] == t and m["shape"] == key])
                        for t in targets}
    load_after = os.getloadavg()
    params = f", {model.params / 1e6:.2f} M weights" if model.params else ""
    header = [
        f"\nmodel {model.name} ({model.datatype} {list(model.dims)} per item{params}); "
        f"ONNX Runtime {onnxruntime.__version__}" + (f"; MLServer {mlserver_version}" if mlserver_version else ""),
        f"{os.cpu_count()} CPU cores; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"client CPUs {args.client_cpus or 'all'}, server CPUs {args.server_cpus or 'all'}"
        + (f", servers limited to {args.server_cpu_limit:g} CPU(s) by a cgroup quota" if args.server_cpu_limit else ""),
        f"{args.rounds} interleaved round(s) x {args.seconds:g} s per shape and target "
        f"({args.warmup:g} s warm-up each)",
    ]
    print_tables(summary, header, cpu_count_of(args.server_cpus))
    if args.json:
        args.json.write_text(json.dumps({
            "model": {"name": model.name, "datatype": model.datatype, "dims": list(model.dims), "params": model.params},
            "onnxruntime": onnxruntime.__version__, "mlserver": mlserver_version, "cpu_count": os.cpu_count(),
            "load_average": [load_before, load_after], "rounds": args.rounds, "seconds": args.seconds,
            "warmup": args.warmup, "client_cpus": args.client_cpus, "server_cpus": args.server_cpus,
            "server_cpu_limit": args.server_cpu_limit,
            "measurements": measurements, "medians": summary,
        }, indent=1))
    return 0


if __name__ == "__main__":
    exit_with(main)

"""REST against gRPC on one `dnnzoo serve`: the latency one client sees per call, in one run.

One process serves the repository on free loopback ports; one client thread calls the same model with
the same inputs over gRPC (raw tensors), REST with binary tensors and REST with JSON tensors, each on a
kept-alive connection, in interleaved rounds so that the machine's noise hits all three alike. Reported
as medians and as ratios to gRPC.

    python benchmarks/http_overhead.py --repository model_repository --model digits_classifier --batch 1 32
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from tqdm import tqdm

from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from protos.config_text import from_name

ROOT = Path(__file__).resolve().parents[1]


def start(repository: Path) -> tuple[subprocess.Popen, int, int]:
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--host", "127.0.0.1",
               "--port", "0", "--http-port", "0", "--metrics-port", "-1", "--providers", "cpu", "--log-level", "INFO"]
    process = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE, text=True)
    http_port = None
    for line in process.stderr:
        found = re.search(r"HTTP/REST \(KServe v2\) on [\d.]+:(\d+)", line)
        if found:
            http_port = int(found.group(1))
        found = re.search(r"on 127\.0\.0\.1:(\d+) \(gRPC\)", line)
        if found:
            return process, int(found.group(1)), http_port
    raise SystemExit("the server did not start")


def inputs(connection: http.client.HTTPConnection, model: str, batch: int) -> list[tuple[str, str, np.ndarray]]:
    connection.request("GET", f"/v2/models/{model}")
    metadata = json.loads(connection.getresponse().read())
    tensors = []
    for spec in metadata["inputs"]:
        shape = [batch if i == 0 else (8 if d == -1 else d) for i, d in enumerate(spec["shape"])]
        tensors.append((spec["name"], spec["datatype"], np.ones(shape, from_name(spec["datatype"]).numpy)))
    return tensors


def interleaved_latencies(calls: dict, rounds: int, per_round: int, desc: str) -> dict[str, list[float]]:
    """Seconds of each call, `per_round` calls of every kind in turn, `rounds` times: the kinds share
    whatever else the machine is doing, so their ratios are fair on a noisy machine."""
    times: dict[str, list[float]] = {kind: [] for kind in calls}
    for _ in tqdm(range(rounds), desc=desc, leave=False):
        for kind, call in calls.items():
            for _ in range(per_round):
                began = time.perf_counter()
                call()
                times[kind].append(time.perf_counter() - began)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="digits_classifier")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--calls", type=int, default=200, help="calls per kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    process, grpc_port, http_port = start(args.repository)
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        connection = http.client.HTTPConnection("127.0.0.1", http_port)
        for batch in args.batch:
            tensors = inputs(connection, args.model, batch)
            request = pb.ModelInferRequest(model_name=args.model)
            for name, datatype, array in tensors:
                request.inputs.add(name=name, datatype=datatype, shape=array.shape)
                request.raw_input_contents.append(array.tobytes())
            header = json.dumps({"inputs": [{"name": n, "datatype": d, "shape": list(a.shape),
                                             "parameters": {"binary_data_size": a.nbytes}} for n, d, a in tensors],
                                 "parameters": {"binary_data_output": True}}).encode()
            binary = header + b"".join(a.tobytes() for _, _, a in tensors)
            as_json = json.dumps({"inputs": [{"name": n, "datatype": d, "shape": list(a.shape), "data": a.reshape(-1).tolist()}
                                             for n, d, a in tensors]}).encode()
            path = f"/v2/models/{args.model}/infer"

            def rest(body: bytes, headers: dict) -> None:
                connection.request("POST", path, body, headers)
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 200, answer.status

            kinds = {
                "grpc": lambda: stub.ModelInfer(request),
                "rest-binary": lambda: rest(binary, {"Inference-Header-Content-Length": str(len(header))}),
                "rest-json": lambda: rest(as_json, {}),
            }
            for call in kinds.values():  # warm up
                for _ in range(20):
                    call()
            times = interleaved_latencies(kinds, args.rounds, args.calls, f"batch {batch}")
            base = statistics.median(times["grpc"])
            for kind, values in times.items():
                median = statistics.median(values)
                print(f"{args.model} batch {batch:3d} {kind:12s} median {median * 1e3:7.3f} ms  "
                      f"({median / base:4.2f}x gRPC, +{(median - base) * 1e3:6.3f} ms)")
    finally:
        process.terminate()
        process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

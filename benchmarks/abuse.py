"""Attacks beside normal load: what one hostile client costs everybody else.

    python benchmarks/abuse.py [--seconds 20] [--good 6] [--bad 2] [--front native|grpcio]

Starts `dnnzoo serve` in its own process on a repository built here (a word-vector lookup, a strings
echo and a float model, as exported models look), then runs two phases of the same length:

1. `--good` measured clients, each a closed loop of ModelInfer calls whose answers are checked
   value by value (a mixed-up answer counts as a failure), beside `--bad` more good clients (so that
   both phases have as many busy client threads on the same cores);
2. the same measured clients while `--bad` clients cycle through the attack mix instead: oversized shape claims
   with empty payloads, half a million dims, requests over the element cap, ids out of the model's
   range, ids that only ONNX Runtime refuses (batched with good requests), non-UTF-8 strings,
   10,000-character names, unparseable protobuf, typed contents that disagree with the shape, huge
   batches, and a client that opens calls and cancels them.

Printed: the good requests' success rate and p50/p99 latency in each phase (and the ratio), every
status code the attacks got (never INTERNAL or UNKNOWN), and the server's peak resident memory
(VmHWM) after each phase. The machine is shared and noisy: read the ratios within one run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protos import grpc_service_pb2 as pb  # noqa: E402
from protos import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
from serving.client import Client  # noqa: E402

VOCABULARY, WIDTH = 1000, 8
TABLE = np.arange(VOCABULARY * WIDTH, dtype=np.float32).reshape(VOCABULARY, WIDTH) / 7.0


def build_repository(root: Path) -> Path:
    """`lookup` (ids -> vectors, with no declared range: only ONNX Runtime refuses a bad id),
    `words` (the same with dnnzoo.input.ids.range) and `echo` (strings)."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    def save(graph, folder: Path, config: str) -> None:
        (folder / "1").mkdir(parents=True)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
        model.ir_version = 9
        onnx.save(model, str(folder / "1" / "model.onnx"))
        (folder / "config.pbtxt").write_text(config, encoding="utf-8")

    def lookup(name: str) -> None:
        ids = h.make_tensor_value_info("ids", T.INT64, ["N", 1])
        out = h.make_tensor_value_info("vectors", T.FLOAT, ["N", 1, WIDTH])
        table = h.make_tensor("table", T.FLOAT, list(TABLE.shape), TABLE.reshape(-1).tolist())
        graph = h.make_graph([h.make_node("Gather", ["table", "ids"], ["vectors"], axis=0)], name, [ids], [out], [table])
        extra = f'parameters {{ key: "dnnzoo.input.ids.range" value {{ string_value: "0,{VOCABULARY - 1}" }} }}' if name == "words" else ""
        save(graph, root / name, f"""
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 32
input [ {{ name: "ids" data_type: TYPE_INT64 dims: [ 1 ] }} ]
output [ {{ name: "vectors" data_type: TYPE_FP32 dims: [ 1, {WIDTH} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 500 }}
{extra}
""")

    lookup("lookup")
    lookup("words")
    text = h.make_tensor_value_info("text", T.STRING, ["N", -1])
    echo = h.make_tensor_value_info("echo", T.STRING, ["N", -1])
    save(h.make_graph([h.make_node("Identity", ["text"], ["echo"])], "echo", [text], [echo]), root / "echo", """
name: "echo"
platform: "onnxruntime_onnx"
max_batch_size: 32
input [ { name: "text" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "echo" data_type: TYPE_STRING dims: [ -1 ] } ]
dynamic_batching { }
""")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(repository: Path, front: str):
    """`dnnzoo serve` on `repository` with the gRPC `front`, ready: yields (process, address, stderr
    lines so far); stopped with SIGTERM on leaving (its exit code is then `process.returncode`)."""
    port = free_port()
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--host", "127.0.0.1",
               "--port", str(port), "--metrics-port", "-1", "--http-port", "-1", "--grpc-front", front,
               "--log-level", "WARNING"]
    server = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    log: list[str] = []  # read as it comes: a full pipe would stall the server, not measure it
    reader = threading.Thread(target=lambda: log.extend(server.stderr), daemon=True)
    reader.start()
    address = f"127.0.0.1:{port}"
    try:
        with Client(address, timeout=2) as client:
            for _ in range(300):
                try:
                    if client.server_ready():
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        yield server, address, log
    finally:
        server.terminate()
        server.wait(timeout=60)
        reader.join(10)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> None:
    """Reset VmHWM so each phase reports its own peak (Linux: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


# -- the attack mix: each builds a raw request message (or does a raw call) ---------------------

def _message(model: str, name: str, datatype: str, shape: list[int], raw: bytes | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def _bytes(*items: bytes) -> bytes:
    return b"".join(len(i).to_bytes(4, "little") + i for i in items)


def attacks() -> dict[str, object]:
    huge_name = "m" * 10_000
    typed = _message("lookup", "ids", "INT64", [3, 1])
    typed.inputs[0].contents.int64_contents.extend([1])
    return {
        "bytes shape 3e8, empty payload": _message("echo", "text", "BYTES", [300_000_000, 1], b""),
        "half a million dims": _message("lookup", "ids", "INT64", [1] * 500_000, b""),
        "strings over the element cap": _message("echo", "text", "BYTES", [1, 2_000_000], b"\x00" * 8_000_000),
        "declared id out of range": _message("words", "ids", "INT64", [1, 1], np.array([[10**9]], np.int64).tobytes()),
        "id only ONNX Runtime refuses": _message("lookup", "ids", "INT64", [2, 1], np.array([[3], [10**9]], np.int64).tobytes()),
        "negative id": _message("lookup", "ids", "INT64", [1, 1], np.array([[-10**6]], np.int64).tobytes()),
        "non-UTF-8 string": _message("echo", "text", "BYTES", [1, 1], _bytes(b"\xff\xfe\xfd")),
        "BYTES length past the end": _message("echo", "text", "BYTES", [1, 1], (10**9).to_bytes(4, "little") + b"abc"),
        "10,000-character model name": _message(huge_name, "ids", "INT64", [1, 1], np.zeros(8, np.uint8).tobytes()),
        "10,000-character input name": _message("lookup", huge_name, "INT64", [1, 1], np.zeros(8, np.uint8).tobytes()),
        "typed contents disagree with shape": typed,
        "batch over max_batch_size": _message("lookup", "ids", "INT64", [10_000, 1], np.zeros((10_000, 1), np.int64).tobytes()),
        "negative dim": _message("lookup", "ids", "INT64", [-1, 1], b""),
        "unknown datatype": _message("lookup", "ids", "INT1024", [1, 1], b"\x00" * 8),
        "unparseable protobuf": b"\xff\xff\xff\xff garbage that is not a ModelInferRequest",
        "cancelled calls": "cancel",
        "greedy: 16 large requests at once": "greedy",
    }


class Phase:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures = 0
        self.reasons: collections.Counter = collections.Counter()  # why good requests failed
        self.lock = threading.Lock()

    def summary(self) -> tuple[int, float, float, float]:
        total = len(self.latencies) + self.failures
        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([float("nan")])
        return total, 100.0 * len(self.latencies) / max(1, total), float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def good_client(address: str, seed: int, until: float, phase: Phase) -> None:
    rng = np.random.default_rng(seed)
    with Client(address, timeout=30) as client:
        while time.monotonic() < until:
            chosen = rng.integers(0, VOCABULARY, size=int(rng.integers(1, 5)))
            model = "lookup" if seed % 2 else "words"
            started = time.perf_counter()
            try:
                answer = client.infer(model, {"ids": chosen.reshape(-1, 1)})
                reason = None if np.array_equal(answer["vectors"][:, 0], TABLE[chosen]) else "wrong answer"
            except grpc.RpcError as error:
                reason = f"{error.code().name}: {error.details()[:120]}"
            elapsed = time.perf_counter() - started
            with phase.lock:
                if reason is None:
                    phase.latencies.append(elapsed)
                else:
                    phase.failures += 1
                    phase.reasons[reason] += 1


def bad_client(address: str, until: float, codes: dict, offset: int, only: str = "", skip: str = "") -> None:
    mix = [(name, attack) for name, attack in attacks().items() if only in name and not (skip and skip in name)]
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    raw_call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    i = offset
    while time.monotonic() < until:
        name, attack = mix[i % len(mix)]
        i += 1
        try:
            if attack == "greedy":  # 16 requests of 256k strings each (1 MiB), all in flight together
                big = _message("echo", "text", "BYTES", [1, 1 << 18], _bytes(*[b""] * (1 << 18)))
                futures = [stub.ModelInfer.future(big, timeout=30) for _ in range(16)]
                for future in futures:
                    try:
                        future.result()
                        codes[name]["OK"] += 1
                    except grpc.RpcError as error:
                        codes[name][error.code().name] += 1
                continue
            if attack == "cancel":
                future = stub.ModelInfer.future(pb.ModelInferRequest(model_name="lookup"), timeout=30)
                future.cancel()
                code = "CANCELLED"
            elif isinstance(attack, bytes):
                raw_call(attack, timeout=30)
                code = "OK"
            else:
                stub.ModelInfer(attack, timeout=30)
                code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
            if len(error.details() or "") > 1100:
                code += " (message over 1 KB)"
        codes[name][code] += 1
    channel.close()


def _attacker(address: str, until_wall: float, offset: int, only: str, skip: str) -> dict:
    """One attacker in its own process (its message building must not take the measured clients'
    GIL); returns its status counts."""
    codes: dict = collections.defaultdict(collections.Counter)
    bad_client(address, time.monotonic() + max(0.0, until_wall - time.time()), codes, offset, only, skip)
    return {name: dict(counter) for name, counter in codes.items()}


def _neighbour(address: str, until_wall: float, seed: int) -> None:
    """One more good client in its own process: the control for an attacker."""
    good_client(address, seed, time.monotonic() + max(0.0, until_wall - time.time()), Phase())


def run_phase(address: str, seconds: float, good: int, bad: int, only: str = "", skip: str = "",
              extra: int = 0) -> tuple[Phase, dict]:
    """`good` measured clients (threads of this process) beside `bad` attackers, or beside `extra`
    more good clients (the control), each of those in a process of its own."""
    phase, codes = Phase(), collections.defaultdict(collections.Counter)
    until_wall = time.time() + seconds
    with multiprocessing.get_context("spawn").Pool(max(1, bad + extra)) as pool:
        others = [pool.apply_async(_attacker, (address, until_wall, k * 5, only, skip)) for k in range(bad)]
        others += [pool.apply_async(_neighbour, (address, until_wall, 100 + k)) for k in range(extra)]
        time.sleep(1.0)  # the pool's processes start (spawn) before the measured clients do
        until = time.monotonic() + max(0.0, until_wall - time.time())
        threads = [threading.Thread(target=good_client, args=(address, seed, until, phase)) for seed in range(good)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for result in others:
            for name, counter in (result.get(60) or {}).items():
                codes[name].update(counter)
    return phase, codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase (1 s of it lets the other processes start)")
    parser.add_argument("--good", type=int, default=6)
    parser.add_argument("--bad", type=int, default=2)
    parser.add_argument("--front", choices=("native", "grpcio"), default="native")
    parser.add_argument("--only", default="", help="only the attacks whose name contains this")
    parser.add_argument("--skip", default="", help="leave out the attacks whose name contains this")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, running_server(build_repository(Path(tmp) / "repo"), args.front) as (server, address, log):
        start_rss = peak_rss_mb(server.pid)
        print(f"server: {args.front} front, {os.cpu_count()} cores; RSS at start {start_rss:.0f} MB")
        reset_peak(server.pid)
        calm, _ = run_phase(address, args.seconds, args.good, 0, extra=args.bad)
        calm_peak = peak_rss_mb(server.pid)
        reset_peak(server.pid)
        stormy, codes = run_phase(address, args.seconds, args.good, args.bad, args.only, args.skip)
        stormy_peak = peak_rss_mb(server.pid)
        with Client(address, timeout=5) as client:
            live = client.server_live()
    stderr = "".join(log)

    print(f"\n{'phase':<28}{'good requests':>14}{'success %':>11}{'p50 ms':>9}{'p99 ms':>9}{'peak RSS MB':>13}")
    for label, phase, peak in ((f"{args.good} + {args.bad} good clients", calm, calm_peak),
                               (f"{args.good} good + {args.bad} attackers", stormy, stormy_peak)):
        total, rate, p50, p99 = phase.summary()
        print(f"{label:<28}{total:>14}{rate:>11.2f}{p50:>9.2f}{p99:>9.2f}{peak:>13.0f}")
    print(f"measured clients' p99, attackers / good neighbours: {stormy.summary()[3] / calm.summary()[3]:.2f}")
    for reason, count in (calm.reasons + stormy.reasons).most_common():
        print(f"  good request failed x{count}: {reason}")
    print(f"\n{'attack':<38}answers")
    bad_codes = 0
    for name in attacks():
        counter = codes.get(name, {})
        bad_codes += sum(n for code, n in counter.items() if code.startswith(("INTERNAL", "UNKNOWN")) or "over 1 KB" in code)
        print(f"{name:<38}{', '.join(f'{code} x{n}' for code, n in sorted(counter.items()))}")
    print(f"\nserver live after the attacks: {live}; exit code on SIGTERM: {server.returncode}")
    tracebacks = stderr.count("Traceback")
    print(f"server log: {len(stderr.splitlines())} lines, {tracebacks} tracebacks; "
          f"INTERNAL/UNKNOWN or over-long answers to attacks: {bad_codes}")
    ok = live and server.returncode == 0 and bad_codes == 0 and stormy.failures == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

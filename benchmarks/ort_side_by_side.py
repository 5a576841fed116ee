"""Two one-thread runs side by side against one run on both cores, in process: which uses 2 cores best.

    python benchmarks/ort_side_by_side.py [--rounds 2 --seconds 1.5] [--model-file M.onnx]

The adaptive plan (serving/plan.py) runs batches beside each other on one-thread sessions and a
batch alone on an all-core session; splitting a request into a part per instance
(serving/batching.py) rests on the first being the more efficient use of the cores. This measures
items/s at several batch sizes for: two threads each running a one-thread session ("2x1"), and one
thread running a two-thread session whose workers spin within a run (the all-core session's
setting), spin always (ONNX Runtime's default), or never spin. The foreign CNN `peers.py` serves
by default; the best of `--rounds` per setting.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

SETTINGS = {  # name -> (intra-op threads, session entries, streams running at once)
    "2x1": (1, {"session.intra_op.allow_spinning": "0"}, 2),
    "1x2 spinning within a run": (2, {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}, 1),
    "1x2 spinning always": (2, {"session.intra_op.allow_spinning": "1"}, 1),
    "1x2 no spinning": (2, {"session.intra_op.allow_spinning": "0"}, 1),
}


def session(model_file: Path, threads: int, entries: dict[str, str]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def items_per_second(s: ort.InferenceSession, feed: dict, streams: int, seconds: float) -> float:
    """`streams` threads calling `s.run` back to back for `seconds`: items per second, all together."""
    rows = next(iter(feed.values())).shape[0]
    counts = [0] * streams
    stop = time.perf_counter() + seconds

    def stream(number: int) -> None:
        while time.perf_counter() < stop:
            s.run(None, feed)
            counts[number] += 1

    threads = [threading.Thread(target=stream, args=(n,)) for n in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) * rows / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--model-file", type=Path, help="an ONNX model with one FP32 input (default: the foreign CNN)")
    parser.add_argument("--batches", default="1,4,8,16,32")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_file:
            model_file = args.model_file
        else:
            from peers_model import foreign_model
            model_file = foreign_model(Path(tmp)).onnx
        sessions = {name: session(model_file, threads, entries) for name, (threads, entries, _) in SETTINGS.items()}
        first = next(iter(sessions.values())).get_inputs()[0]
        dims = [d if isinstance(d, int) else 1 for d in first.shape[1:]]
        print(f"{model_file.name}: items/s, best of {args.rounds} round(s) x {args.seconds} s")
        for batch in (int(b) for b in args.batches.split(",")):
            feed = {first.name: np.random.default_rng(0).random((batch, *dims), dtype=np.float32)}
            best = {name: 0.0 for name in sessions}
            for _ in range(args.rounds):
                for name, s in sessions.items():
                    s.run(None, feed)
                    best[name] = max(best[name], items_per_second(s, feed, SETTINGS[name][2], args.seconds))
            print(f"  batch {batch:3d}: " + "  ".join(f"{name} {value:,.0f}" for name, value in best.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

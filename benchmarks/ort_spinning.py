"""ONNX Runtime's thread spinning, in process: what it buys a lone run, with nothing else on the cores.

dnnzoo's sessions keep their intra-op threads from spinning (serving/sessions.py); ONNX Runtime's
default lets them spin. This measures one session per setting on the foreign CNN `peers.py` serves,
the settings interleaved in rounds, batch 1 and batch 32, median milliseconds per run:

    python benchmarks/ort_spinning.py [--rounds 5] [--gap-ms 0.5]

One thread; two threads without spinning (dnnzoo's); two spinning (ONNX Runtime's default); two
spinning during a run only (`session.force_spinning_stop`). `--gap-ms` sleeps that long before
each timed run, as a server's runs are spaced by its clients' round trips: a pool that sleeps
between runs then wakes for each. Whether spinning pays in a server, where other threads need the
cores between and beside runs, is `peers.py --variant`'s and `two_models.py`'s question.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import onnxruntime as ort  # noqa: E402
from peers_model import foreign_model  # noqa: E402

SETTINGS = {
    "1 thread": (1, {}),
    "2 threads, no spinning": (2, {"session.intra_op.allow_spinning": "0"}),
    "2 threads, spinning": (2, {"session.intra_op.allow_spinning": "1"}),
    "2 threads, spinning in a run": (2, {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}),
}


def session(model_file: Path, threads: int, entries: dict[str, str]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gap-ms", type=float, default=0.0, help="sleep before each timed run (default 0)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = foreign_model(Path(tmp))
        sessions = {name: session(model.onnx, *setting) for name, setting in SETTINGS.items()}
        for batch, calls in ((1, 300), (32, 40)):
            feed = {model.input_name: model.example(batch)}
            medians: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(args.rounds):
                for name, s in sessions.items():
                    for _ in range(20):
                        s.run(None, feed)
                    times = []
                    for _ in range(calls):
                        if args.gap_ms:
                            time.sleep(args.gap_ms / 1e3)
                        started = time.perf_counter()
                        s.run(None, feed)
                        times.append(time.perf_counter() - started)
                    medians[name].append(statistics.median(times) * 1e3)
            print(f"batch {batch}: " + ", ".join(f"{name} {statistics.median(v):.3f} ms" for name, v in medians.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

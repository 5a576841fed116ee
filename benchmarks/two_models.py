"""Two models in one dnnzoo, loaded at once: what one model's plan costs the other.

    python benchmarks/two_models.py [--rounds 3 --seconds 4]
    python benchmarks/two_models.py --tree before=../base    # also another checkout's dnnzoo, same rounds

Serves two copies of the foreign CNN `peers.py` uses (`quiet` and `busy`, plain configs) and drives
them at the same time: `quiet` at batch 1 by one client, `busy` at batch 32 by two, each client a
process of its own (serving.loadgen: grpc.aio, closed loop). Once with the adaptive plan as it is,
once with its all-core session's workers also spinning between runs (`session.force_spinning_stop`
0 in both configs), and once per `--tree` checkout with the plan as it is there, the servers
interleaved in rounds; items/s per model and round.

Why: spinning between runs makes a lone model's next batch-1 run start sooner (peers.py --variant),
but a worker spins about 24 ms after each run, on a core another model may need.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from google.protobuf import text_format  # noqa: E402
from peers_model import foreign_model  # noqa: E402
from protos.model_config_pb2 import ModelConfig  # noqa: E402
from serving import child_server  # noqa: E402
from serving.loadgen import measure, request_for  # noqa: E402

SPIN_BETWEEN_RUNS = 'parameters { key: "session.force_spinning_stop" value { string_value: "0" } }'
LOADS = {"quiet": (1, 1), "busy": (32, 2)}  # model -> (batch, concurrency)


def drive(address: str, config_file: Path, batch: int, concurrency: int, seconds: float, results) -> None:
    config = text_format.Parse(config_file.read_text(), ModelConfig())
    figures = asyncio.run(measure(address, request_for(config, batch), batch, concurrency, seconds))
    results.put((config.name, figures["items_s"]))


def repository(root: Path, template: Path, extra: str) -> Path:
    for name in LOADS:
        shutil.copytree(template, root / name)
        config = root / name / "config.pbtxt"
        text = config.read_text().replace(f'name: "{template.name}"', f'name: "{name}"')
        config.write_text(text + "\n" + extra + "\n")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="also serve both models with the dnnzoo of another checkout at PATH")
    args = parser.parse_args()
    root = HERE.parent
    plans = {"adaptive plan (default)": ("", root), "spinning between runs": (SPIN_BETWEEN_RUNS, root)}
    for name, path in (tree.split("=", 1) for tree in args.tree):
        if not (Path(path) / "serving").is_dir():
            parser.error(f"--tree {name}={path}: not a dnnzoo checkout (no serving/ folder)")
        plans[f"adaptive plan @{name}"] = ("", Path(path).resolve())
    with tempfile.TemporaryDirectory(prefix="dnnzoo-two-") as tmp:
        tmp = Path(tmp)
        model = foreign_model(tmp / "source")
        servers, roots = {}, {}
        try:
            for number, (plan, (extra, checkout)) in enumerate(plans.items()):
                roots[plan] = repository(tmp / f"repo{number}", tmp / "source" / model.name, extra)
                servers[plan] = child_server.start_dnnzoo(roots[plan], tmp / f"server{number}.log", cwd=checkout,
                                                          env=dict(os.environ, PYTHONPATH=str(checkout)))
                for name in LOADS:
                    child_server.wait_ready(servers[plan], name)
            figures: dict[str, dict[str, list[float]]] = {plan: {name: [] for name in LOADS} for plan in plans}
            for round_number in range(args.rounds):
                order = list(plans)[round_number % len(plans):] + list(plans)[:round_number % len(plans)]
                for plan in order:
                    results = multiprocessing.Queue()
                    clients = [multiprocessing.Process(target=drive, args=(
                        servers[plan].address, roots[plan] / name / "config.pbtxt", batch, concurrency, args.seconds, results))
                        for name, (batch, concurrency) in LOADS.items()]
                    for client in clients:
                        client.start()
                    for _ in clients:
                        name, items_s = results.get(timeout=120)
                        figures[plan][name].append(items_s)
                    for client in clients:
                        client.join()
                    print(f"round {round_number + 1} {plan}: "
                          + ", ".join(f"{name} {figures[plan][name][-1]:,.0f} items/s" for name in LOADS), flush=True)
        finally:
            for server in servers.values():
                server.stop()
    print(f"\nmedian items/s of {args.rounds} rounds (quiet: b1c1, busy: b32c2, at the same time, one server)")
    for plan in plans:
        print(f"  {plan:32s} " + "  ".join(f"{name} {statistics.median(figures[plan][name]):7,.0f}" for name in LOADS))
    return 0


if __name__ == "__main__":
    child_server.exit_with(main)

"""Training-step time of the classifier's quick-profile model at fp32, bf16 and fp16 autocast, interleaved.

What `--precision bf16` or `fp16` (with its gradient scaler) costs or saves on this machine's CPU (on a GPU it is where the speed is; see
benchmarks/full_profile.sh). Reports the median time per step of each and their ratios to fp32.

    python benchmarks/precision_cpu.py [--steps 20] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import training  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch
from torch.nn import functional as F

from training import classifier
from training.precision import Precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    profile = classifier.PROFILES["quick"]
    torch.manual_seed(0)
    model = classifier.build_model("resnet", 10, profile["widths"], profile["blocks"], dropout=profile["dropout"],
                                   stem_stride=profile["stem_stride"]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.rand(profile["batch_size"], 1, 28, 28, device=device), torch.randint(0, 10, (profile["batch_size"],), device=device)
    times: dict[str, list[float]] = {"fp32": [], "bf16": [], "fp16": []}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for name in times:
            amp = Precision(name, device)
            started = time.perf_counter()
            for _ in range(args.steps):
                with amp.autocast():
                    loss = F.cross_entropy(model(x), y).float()
                optimizer.zero_grad(set_to_none=True)
                amp.backward(loss)
                amp.unscale(optimizer)
                amp.step(optimizer)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if repeat:
                times[name].append((time.perf_counter() - started) / args.steps)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{device.type}, batch {profile['batch_size']}, threads {torch.get_num_threads()}: "
          + ", ".join(f"{name} {median[name] * 1e3:.1f} ms/step" for name in median)
          + "; time ratio to fp32: " + ", ".join(f"{name} {median[name] / median['fp32']:.2f}" for name in ("bf16", "fp16")))


if __name__ == "__main__":
    main()

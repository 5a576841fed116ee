"""Which families `--precision`, `--resume` and `--nproc` apply to, refused before anything is written.

They live in the shared fit loop (training.fit), so a family whose training is its own loop does not
get them; a flag it would ignore is a UserError saying why (as training.families does for technique flags).
"""

from __future__ import annotations

from typing import Any

from dnnzoo.errors import UserError
from training import precision
from training.device import pick

# family -> why its training has no --precision / --resume / --nproc (its loop is not training.fit)
OWN_LOOP = {
    "word2vec": "its hand-written sparse step (sparse embedding updates, plain SGD or SparseAdam) is not the shared fit loop",
    "gan": "it trains two networks with two optimisers in its own loop, not the shared fit loop",
}
# family -> why the fit loop cannot spread it over processes
NO_DDP = {
    "sequence": "its loss calls model.forecasts, which DistributedDataParallel does not synchronise (only forward is)",
}


def refuse(config, options: Any) -> None:
    name = config.family
    asked = [flag for flag, on in (("--precision", config.precision != "fp32"), ("--resume", config.resume is not None),
                                   ("--nproc", config.nproc is not None)) if on]
    if name in OWN_LOOP and asked:
        raise UserError(f"{', '.join(asked)}: not available for the {name} family ({OWN_LOOP[name]}); leave {'it' if len(asked) == 1 else 'them'} out")
    if config.nproc is not None and config.nproc < 1:
        raise UserError(f"--nproc must be at least 1 (got {config.nproc})")
    if name in NO_DDP and (config.nproc or 1) > 1:
        raise UserError(f"--nproc: the {name} family trains in one process ({NO_DDP[name]})")
    if config.resume is not None and getattr(options, "layerwise", False):
        raise UserError("--resume: a --layerwise autoencoder run trains one fit per layer pair and keeps no state between them; start it again")
    precision.check(config.precision)
    pick(config.device)  # --device cuda without one is refused here, before the run folder exists


def without_nproc(argv: list[str]) -> list[str]:
    """The command line a torchrun worker gets: the launcher's, less --nproc N (or --nproc=N)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out

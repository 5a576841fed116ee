"""The `dnnzoo` command: a table of subcommands, each imported only when it runs.

Importing a stage lazily keeps `dnnzoo serve` free of torch: the table names modules, not objects.
Each module named here exposes `main(argv: list[str], prog: str) -> int`.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module that implements it, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("training.cli", "train one model family into a run folder"),
    "export": ("export.cli", "export a training run into a model repository"),
    "build": ("export.build", "train (if needed) and export every default model"),
    "repo": ("export.repo_cli", "check a model repository without serving it"),
    "serve": ("serving.cli", "serve a model repository over gRPC"),
    "analyze": ("serving.analyze.cli", "measure a model under candidate execution plans and keep the best"),
    "classify": ("serving.commands.classify", "classify images with a served classifier"),
    "detect": ("serving.commands.detect", "detect objects in images (optionally draw the boxes)"),
    "similar": ("serving.commands.similar", "nearest words and analogies from a served word2vec model"),
    "forecast": ("serving.commands.forecast", "forecast a series with a served sequence model"),
    "generate": ("serving.commands.generate", "generate images with a served GAN into a grid PNG"),
    "predict": ("serving.commands.predict", "predict classes or values for table rows with a served tabular model"),
    "samples": ("training.samples", "write sample inputs (digit.png, scene.png, series.csv) for these commands"),
    "health": ("serving.commands.health", "exit 0 only when the server's health service says SERVING"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: dnnzoo COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `dnnzoo COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from dnnzoo import __version__

        print(f"dnnzoo {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dnnzoo: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest, prog=f"dnnzoo {name}") or 0)

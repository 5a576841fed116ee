"""Regenerate the committed Python stubs from the .proto files beside this module.

    python -m protos.generate           # rewrite protos/*_pb2.py, *_pb2.pyi, *_pb2_grpc.py
    python -m protos.generate --check   # exit 1 if the committed stubs differ from fresh output

The stubs are committed so that installing dnnzoo (and a serving container) needs no protoc.
Every ``*.proto`` directly in this folder is compiled with this folder as the only import root, so
a descriptor's file name is the bare file name (``model_config.proto``, ``grpc_service.proto``),
exactly as in Triton: that is what lets ``import "model_config.proto";`` resolve and what
tritonclient's own descriptors are named. A new proto file (the dnnzoo.v1 task services) is picked
up by dropping it here; its package comes from its ``package`` line, not from a sub-folder.

protoc writes absolute imports between generated modules (``import model_config_pb2``), which only
work with this folder on ``sys.path``; they are rewritten to package-relative imports. A gRPC
module is kept only for files that declare a service.

This module must not import the generated stubs (nor must ``protos/__init__.py``): it has to run
when they are stale or broken.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
_SERVICE = re.compile(r"^\s*service\s+\w+\s*\{", re.MULTILINE)


def proto_files(proto_dir: Path = PROTO_DIR) -> list[Path]:
    return sorted(proto_dir.glob("*.proto"))


def generate(proto_dir: Path = PROTO_DIR) -> dict[str, str]:
    """Compile every proto in ``proto_dir``; return {generated file name: text}, imports rewritten."""
    try:
        from grpc_tools import protoc  # a dev dependency: only this generator needs it
    except ImportError:
        raise SystemExit("protos.generate needs grpcio-tools: pip install -e '.[dev]'") from None

    protos = proto_files(proto_dir)
    if not protos:
        raise SystemExit(f"no .proto files in {proto_dir}")
    local_modules = {path.stem + "_pb2" for path in protos}
    with_services = {path.stem for path in protos if _SERVICE.search(path.read_text(encoding="utf-8"))}
    well_known = Path(protoc.__file__).resolve().parent / "_proto"  # google/protobuf/*.proto
    with tempfile.TemporaryDirectory() as out:
        argv = [
            "grpc_tools.protoc",
            f"--proto_path={proto_dir}",
            f"--proto_path={well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *(str(path) for path in protos),
        ]
        if protoc.main(argv) != 0:
            raise SystemExit("protoc failed (its message is above)")
        generated = {}
        for path in sorted(Path(out).iterdir()):
            if path.name.endswith("_pb2_grpc.py") and path.name[: -len("_pb2_grpc.py")] not in with_services:
                continue
            generated[path.name] = relative_imports(path.read_text(encoding="utf-8"), local_modules)
    return generated


def relative_imports(source: str, local_modules: set[str]) -> str:
    """``import model_config_pb2 as x`` -> ``from . import model_config_pb2 as x`` for our modules."""

    def rewrite(match: re.Match[str]) -> str:
        module, alias = match.group(1), match.group(2) or ""
        return f"from . import {module}{alias}" if module in local_modules else match.group(0)

    return re.sub(r"^import (\w+)( as \w+)?$", rewrite, source, flags=re.MULTILINE)


def committed(proto_dir: Path = PROTO_DIR) -> dict[str, str]:
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(proto_dir.iterdir())
        if path.name.endswith(GENERATED_SUFFIXES)
    }


def stale_files(proto_dir: Path = PROTO_DIR) -> list[str]:
    """Names of generated files that are missing, different, or no longer produced."""
    fresh, current = generate(proto_dir), committed(proto_dir)
    return sorted(name for name in fresh.keys() | current.keys() if fresh.get(name) != current.get(name))


def write(proto_dir: Path = PROTO_DIR) -> list[str]:
    fresh = generate(proto_dir)
    for name in committed(proto_dir).keys() - fresh.keys():
        (proto_dir / name).unlink()
    for name, text in fresh.items():
        (proto_dir / name).write_text(text, encoding="utf-8")
    return sorted(fresh)


def _version_hint(proto_dir: Path = PROTO_DIR) -> str:
    """Stubs record the grpcio-tools that wrote them; a different one never reproduces them byte for byte."""
    installed = importlib.metadata.version("grpcio-tools")
    recorded = {
        match.group(1)
        for path in proto_dir.glob("*_pb2_grpc.py")
        if (match := re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'", path.read_text(encoding="utf-8"), re.M))
    }
    if recorded and recorded != {installed}:
        return (
            f"They were generated with grpcio-tools {', '.join(sorted(recorded))} and {installed} is installed: "
            f"install grpcio-tools=={min(recorded)}, or regenerate on purpose with `python -m protos.generate`."
        )
    return "Run `python -m protos.generate` and commit the result."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protos.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed stubs; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"protos: generated stubs are stale: {', '.join(stale)}. {_version_hint()}", file=sys.stderr)
            return 1
        print("protos: generated stubs are current")
        return 0
    for name in write():
        print(f"wrote protos/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

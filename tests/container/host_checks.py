"""Host-side steps of the container smoke test (tests/container/smoke.sh), one subcommand each.

Kept in Python because each step is a protocol exchange (gRPC, HTTP) or a file format (apt's
sources) that shell would only approximate. Runs with the project installed on the host; needs no
torch. Every subcommand prints one line and exits non-zero with a reason when its check fails.
"""

from __future__ import annotations

import argparse
import io
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

SUITE_DEFAULT = "bookworm"


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now; all held open together so that they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def apt_mirror(suite: str, root: Path = Path("/etc/apt")) -> str:
    """The first archive URI apt is configured with for `suite` (deb822 .sources, then one-line .list)."""
    stanzas: list[tuple[list[str], list[str], list[str]]] = []
    for path in sorted((root / "sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                if ":" in line and not line.lstrip().startswith("#") and not line.startswith((" ", "\t")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            stanzas.append((fields.get("types", "").split(), fields.get("uris", "").split(), fields.get("suites", "").split()))
    for path in [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3:
                stanzas.append(([words[0]], [words[1]], [words[2]]))
    for types, uris, suites in stanzas:
        if "deb" in types and suite in suites and uris:
            return uris[0]
    raise SystemExit(f"no 'deb' source for suite {suite!r} in {root}/sources.list(.d)")


def oip_infer(address: str, model: str) -> str:
    """One ModelInfer over the Open Inference Protocol with the committed stubs; checks the output."""
    import grpc
    import numpy as np

    from protos import grpc_service_pb2 as oip
    from protos import grpc_service_pb2_grpc as oip_grpc

    images = np.zeros((2, 1, 28, 28), np.uint8)
    images[1, 0, 4:24, 12:16] = 255  # a vertical bar: a "1" of sorts
    request = oip.ModelInferRequest(model_name=model)
    request.inputs.add(name="images", datatype="UINT8", shape=list(images.shape))
    request.raw_input_contents.append(images.tobytes())
    with grpc.insecure_channel(address) as channel:
        metadata = oip_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(oip.ModelMetadataRequest(name=model), timeout=30)
        reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    out = reply.outputs[0]
    probabilities = np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(tuple(out.shape))
    if out.name != "probabilities" or probabilities.shape[0] != 2 or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        raise SystemExit(f"unexpected ModelInfer reply: {out.name} {list(out.shape)} sums {probabilities.sum(axis=1)}")
    return f"ModelInfer {model} ({metadata.platform}): {out.name} {list(out.shape)}, argmax {probabilities.argmax(axis=1).tolist()}"


def digit_png(path: Path) -> Path:
    """A 28x28 PNG of a drawn digit, for the typed Classify call (no data set needed)."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(14, 4), (14, 24)], fill=255, width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def typed_call(address: str, model: str, workdir: Path) -> str:
    """`dnnzoo classify` (the typed ImageClassification service) from the host, as a person would."""
    from dnnzoo.cli import COMMANDS

    if "classify" not in COMMANDS:
        return "typed call skipped: this checkout has no `dnnzoo classify` (typed task services not present)"
    image = digit_png(workdir / "digit.png")
    command = [sys.executable, "-m", "dnnzoo", "classify", str(image), "--server", address, "--model", model, "--top-k", "3", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 or '"label"' not in result.stdout:
        raise SystemExit(f"`{' '.join(command)}` failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    return "Classify: " + " ".join(result.stdout.split())[:200]


def metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:  # loopback only: the container's published port
        text = reply.read().decode()
    if "# TYPE" not in text:
        raise SystemExit(f"{url} did not answer Prometheus text")
    return f"metrics: {len(text.splitlines())} lines from {url}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    sub.add_parser("free-ports").add_argument("count", type=int)
    sub.add_parser("apt-mirror").add_argument("--suite", default=SUITE_DEFAULT)
    for name in ("oip-infer", "typed-call"):
        s = sub.add_parser(name)
        s.add_argument("address")
        s.add_argument("--model", default="digits_classifier")
        s.add_argument("--workdir", type=Path, default=Path("."))
    sub.add_parser("metrics").add_argument("url")
    args = p.parse_args(argv)
    if args.step == "free-ports":
        print(" ".join(map(str, free_ports(args.count))))
    elif args.step == "apt-mirror":
        print(apt_mirror(args.suite))
    elif args.step == "oip-infer":
        print(oip_infer(args.address, args.model))
    elif args.step == "typed-call":
        print(typed_call(args.address, args.model, args.workdir))
    else:
        print(metrics(args.url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

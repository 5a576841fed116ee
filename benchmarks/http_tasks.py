"""The typed Classify call over gRPC (`dnnzoo.v1`) against REST's /v1/classify, in one run.

One `dnnzoo serve` on free loopback ports; one client thread sends the same PNG digit through the
typed gRPC service, and through /v1/classify as a bare image body, as JSON with base64 and as a
multipart upload, each on a kept-alive connection, in interleaved rounds so that the machine's noise
hits all alike. Reported as medians per call and as ratios to gRPC.

    python benchmarks/http_tasks.py --repository model_repository
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import statistics
import sys
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.http_overhead import interleaved_latencies, start  # noqa: E402 - shared by both benchmarks
from serving.client import Client  # noqa: E402


def digit_png() -> bytes:
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4:24, 12:16] = 255  # a "1"
    out = io.BytesIO()
    Image.fromarray(pixels).resize((112, 112), Image.NEAREST).save(out, format="PNG")
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="digits_classifier")
    parser.add_argument("--calls", type=int, default=200, help="calls per kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    png = digit_png()
    boundary = uuid.uuid4().hex
    form = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    bodies = {
        "REST bare image": (png, {"Content-Type": "image/png"}),
        "REST JSON base64": (json.dumps({"model": args.model, "images": [base64.b64encode(png).decode()]}).encode(),
                             {"Content-Type": "application/json"}),
        "REST multipart": (form, {"Content-Type": f"multipart/form-data; boundary={boundary}"}),
    }
    process, grpc_port, http_port = start(args.repository)
    try:
        client = Client(f"127.0.0.1:{grpc_port}", timeout=30)
        connection = http.client.HTTPConnection("127.0.0.1", http_port)
        path = f"/v1/classify?model={args.model}"

        def rest(kind: str) -> None:
            body, headers = bodies[kind]
            connection.request("POST", path, body, headers)
            answer = connection.getresponse()
            data = answer.read()
            if answer.status != 200:
                raise SystemExit(f"{kind}: {answer.status} {data[:200]!r}")

        calls = {"gRPC Classify": lambda: client.classify(args.model, [png]), **{k: (lambda k=k: rest(k)) for k in bodies}}
        for call in calls.values():  # warm up every path
            call()
        times = interleaved_latencies(calls, args.rounds, args.calls, "rounds")
        base = statistics.median(times["gRPC Classify"])
        print(f"{'path':<18} {'median ms':>10} {'vs gRPC':>8}")
        for kind, values in times.items():
            median = statistics.median(values)
            print(f"{kind:<18} {median * 1e3:>10.3f} {median / base:>7.2f}x")
        client.close()
    finally:
        process.terminate()
        process.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run by test_auth.py in a subprocess (tritonclient's generated protos clash with ours in one process):
Triton's own client against a server with bearer tokens, passing them as `headers=`; prints a JSON
summary of what each call answered."""

from __future__ import annotations

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def outcome(call) -> str:
    """"OK", or the status code name the server refused the call with."""
    try:
        call()
    except InferenceServerException as exc:
        return str(exc.status()).rsplit(".", 1)[-1]
    return "OK"


def main(address: str, inference_token: str, admin_token: str) -> int:
    client = triton.InferenceServerClient(address)
    user = {"authorization": f"Bearer {inference_token}"}
    admin = {"authorization": f"Bearer {admin_token}"}
    x = triton.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.full((1, 4), 3, np.float32))
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=user)
    client.async_stream_infer("doubler", [x])
    streamed, error = answers.get(timeout=30)
    client.stop_stream()
    summary = {
        "live": outcome(lambda: client.is_server_live()),
        "metadata_without_token": outcome(lambda: client.get_model_metadata("doubler")),
        "infer_without_token": outcome(lambda: client.infer("doubler", [x])),
        "metadata": outcome(lambda: client.get_model_metadata("doubler", headers=user)),
        "y": client.infer("doubler", [x], headers=user).as_numpy("y").tolist(),
        "stream_error": None if error is None else str(error),
        "stream_y": streamed.as_numpy("y").tolist(),
        "index_with_inference_token": outcome(lambda: client.get_model_repository_index(headers=user)),
        "index_with_admin_token": outcome(lambda: client.get_model_repository_index(headers=admin)),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

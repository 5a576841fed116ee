"""Run by test_tritonclient.py in a subprocess (tritonclient's generated protos clash with ours in one
process): Triton's own client drives every READY model of the server and prints a JSON summary."""

from __future__ import annotations

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as triton

from triton_samples import sample_inputs


def inputs_for(metadata, config) -> list:
    tensors = []
    for name, shape, datatype, values in sample_inputs(metadata, config["config"].get("max_batch_size", 0)):
        tensor = triton.InferInput(name, shape, datatype)
        tensor.set_data_from_numpy(values)
        tensors.append(tensor)
    return tensors


def main(address: str) -> int:
    client = triton.InferenceServerClient(address)
    summary = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "extensions": client.get_server_metadata(as_json=True)["extensions"],
        "models": {},
    }
    index = client.get_model_repository_index(as_json=True)["models"]
    for model in sorted({m["name"] for m in index if m.get("state") == "READY"}):
        metadata = client.get_model_metadata(model, as_json=True)
        config = client.get_model_config(model, as_json=True)
        result = client.infer(model, inputs_for(metadata, config))
        outputs = {o["name"]: list(result.as_numpy(o["name"]).shape) for o in metadata["outputs"]}
        answers: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        client.async_stream_infer(model, inputs_for(metadata, config))
        streamed, error = answers.get(timeout=30)
        client.stop_stream()
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        summary["models"][model] = {
            "ready": client.is_model_ready(model),
            "outputs": outputs,
            "stream_error": None if error is None else str(error),
            "stream_outputs": {o["name"]: list(streamed.as_numpy(o["name"]).shape) for o in metadata["outputs"]},
            "success": int(stats["inference_stats"]["success"]["count"]),
            "config_name": config["config"]["name"],
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Run by test_http.py in a subprocess (tritonclient's protos clash with ours in one process): Triton's
own HTTP client drives every READY model of the server, in binary and in JSON, compressed both ways,
and prints a JSON summary with the answers."""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from triton_samples import sample_inputs


def inputs_for(metadata, config, binary: bool) -> list:
    tensors = []
    for name, shape, datatype, values in sample_inputs(metadata, config.get("max_batch_size", 0)):
        tensor = triton.InferInput(name, shape, datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        tensors.append(tensor)
    return tensors


def plain(array: np.ndarray) -> list:
    if array.dtype == object:
        return [v.decode() if isinstance(v, bytes) else v for v in array.reshape(-1)]
    return array.reshape(-1).tolist()


def answers(result, metadata) -> dict:
    return {o["name"]: {"shape": list(result.as_numpy(o["name"]).shape), "values": plain(result.as_numpy(o["name"]))}
            for o in metadata["outputs"]}


def main(url: str) -> int:
    client = triton.InferenceServerClient(url)
    summary = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "extensions": client.get_server_metadata()["extensions"],
        "models": {},
    }
    index = client.get_model_repository_index()
    for model in sorted({m["name"] for m in index if m.get("state") == "READY"}):
        metadata = client.get_model_metadata(model)
        config = client.get_model_config(model)
        binary = client.infer(model, inputs_for(metadata, config, True))
        wanted = [triton.InferRequestedOutput(o["name"], binary_data=False) for o in metadata["outputs"]]
        in_json = client.infer(model, inputs_for(metadata, config, False), outputs=wanted)
        stats = client.get_inference_statistics(model)["model_stats"][0]
        summary["models"][model] = {
            "ready": client.is_model_ready(model),
            "binary": answers(binary, metadata),
            "json": answers(in_json, metadata),
            "success": stats["inference_stats"]["success"]["count"],
            "config_name": config["name"],
            "inputs": {t.name(): {"shape": t.shape(), "datatype": t.datatype()}
                       for t in inputs_for(metadata, config, True)},
        }
    doubler = client.get_model_metadata("doubler")
    doubler_config = client.get_model_config("doubler")
    compressed = {}
    for algorithm in ("gzip", "deflate"):
        result = client.infer("doubler", inputs_for(doubler, doubler_config, True),
                              request_compression_algorithm=algorithm, response_compression_algorithm=algorithm)
        compressed[algorithm] = answers(result, doubler)
    summary["compressed"] = compressed
    top = client.infer("doubler", inputs_for(doubler, doubler_config, True),
                       outputs=[triton.InferRequestedOutput("probabilities", class_count=2)])
    summary["classification"] = plain(top.as_numpy("probabilities"))
    try:
        client.get_model_metadata("no_such_model")
        summary["unknown"] = None
    except InferenceServerException as exc:
        summary["unknown"] = {"status": exc.status(), "message": exc.message()}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Models without a config.pbtxt, or with one that lists no tensors, are completed from the graph,
as Triton's ONNX Runtime backend does, and served."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from protos.model_config_pb2 import DataType
from serving.autocomplete import DEFAULT_MAX_BATCH_SIZE
from tests.serving.builders import _save, doubler_graph, int64_graph
from tests.serving.conftest import server_config, start_server
from tests.serving.test_protocol import output, raw_request


def per_item_scalar_graph():
    """x [N] FP32 -> y [N] = x + 1: one number per item, no dimension beside the batch."""
    x = h.make_tensor_value_info("x", T.FLOAT, ["N"])
    y = h.make_tensor_value_info("y", T.FLOAT, ["N"])
    one = h.make_tensor("one", T.FLOAT, [], [1.0])
    return h.make_graph([h.make_node("Add", ["x", "one"], ["y"])], "scalar", [x], [y], [one])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("autocomplete") / "repo"
    _save(doubler_graph(), root / "bare_batched" / "1" / "model.onnx")  # x [N,4]: batches
    _save(int64_graph(), root / "bare_fixed" / "1" / "model.onnx")  # v [2,2]: no variable first dim
    _save(per_item_scalar_graph(), root / "bare_scalar" / "1" / "model.onnx")
    _save(doubler_graph(), root / "named_only" / "1" / "model.onnx")
    (root / "named_only" / "config.pbtxt").write_text('name: "named_only"\nplatform: "onnxruntime_onnx"\n', encoding="utf-8")
    _save(int64_graph(), root / "batching_fixed" / "1" / "model.onnx")  # v [2,2] under max_batch_size 8
    (root / "batching_fixed" / "config.pbtxt").write_text(
        'name: "batching_fixed"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n', encoding="utf-8")
    (root / "bare_corrupt" / "1").mkdir(parents=True)
    (root / "bare_corrupt" / "1" / "model.onnx").write_bytes(b"not a graph")
    (root / "bare_empty").mkdir()
    running = start_server(server_config(root))
    with grpc.insecure_channel(running.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
    running.stop()


def config_of(stub, name: str):
    return stub.ModelConfig(pb.ModelConfigRequest(name=name), timeout=10).config


def test_a_bare_batching_graph_gets_a_batching_config(served):
    config = config_of(served, "bare_batched")
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == DEFAULT_MAX_BATCH_SIZE and config.HasField("dynamic_batching")
    assert [(t.name, list(t.dims)) for t in config.input] == [("x", [4])]
    assert [t.name for t in config.output] == ["y", "probabilities"]
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    response = served.ModelInfer(raw_request("bare_batched", x=("FP32", x)), timeout=10)
    np.testing.assert_array_equal(output(response, "y"), x * 2)


def test_a_fixed_graph_does_not_batch(served):
    config = config_of(served, "bare_fixed")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("v", DataType.TYPE_INT64, [2, 2])]
    v = np.array([[1, 2], [3, 4]], dtype=np.int64)
    response = served.ModelInfer(raw_request("bare_fixed", v=("INT64", v)), timeout=10)
    np.testing.assert_array_equal(output(response, "tripled"), v * 3)


def test_a_scalar_per_item_is_dims_one_reshaped(served):
    tensor = config_of(served, "bare_scalar").input[0]
    assert list(tensor.dims) == [1] and tensor.HasField("reshape") and list(tensor.reshape.shape) == []
    x = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
    response = served.ModelInfer(raw_request("bare_scalar", x=("FP32", x)), timeout=10)
    np.testing.assert_array_equal(output(response, "y"), x + 1)


def test_a_config_without_tensors_keeps_its_own_batch_size(served):
    """max_batch_size 0 (unset) in an existing config means no batching: the graph's shapes are stated whole."""
    config = config_of(served, "named_only")
    assert config.max_batch_size == 0
    assert [(t.name, list(t.dims)) for t in config.input] == [("x", [-1, 4])]
    x = np.ones((2, 4), dtype=np.float32)
    np.testing.assert_array_equal(output(served.ModelInfer(raw_request("named_only", x=("FP32", x)), timeout=10), "y"), x * 2)


def test_unreadable_or_missing_graphs_are_unavailable_with_a_reason(served):
    index = {m.name: m for m in served.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10).models}
    assert index["bare_corrupt"].state == "UNAVAILABLE"
    assert "cannot be read to complete them" in index["bare_corrupt"].reason
    assert "/" not in index["bare_corrupt"].reason.split(":", 1)[0]
    assert index["bare_empty"].state == "UNAVAILABLE" and "no numeric version folder" in index["bare_empty"].reason
    assert index["bare_batched"].state == "READY"  # the others serve


def test_a_batching_config_over_a_graph_without_a_batch_dimension_is_refused_by_the_shape_rule(served):
    """Completed like any other, then refused at load in the words `dnnzoo repo check` uses."""
    row = {m.name: m for m in served.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10).models}["batching_fixed"]
    assert row.state == "UNAVAILABLE"
    assert "input 'v': max_batch_size is 8, but the graph fixes the first (batch) dimension: [2,2]" in row.reason

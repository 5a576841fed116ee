"""Every Triton ModelConfig field is honoured, refused, or loaded with a warning that the index shows."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from protos.config_text import parse_config
from protos.model_config_pb2 import ModelConfig

from export.check import check_repository
from serving import config_fields
from serving.client import Client
from tests.serving.builders import plus_one_graph, unpadded_conv_graph, write_model
from tests.serving.conftest import server_config, start_server
from tests.serving.test_isolation import TABLE, ids, lookup_config, lookup_graph


def test_every_top_level_field_of_the_proto_is_in_the_table():
    top = {f.name for f in ModelConfig.DESCRIPTOR.fields}
    assert top - set(config_fields.FIELDS) == set()


def _review(text: str) -> config_fields.Review:
    return config_fields.review(parse_config(f'name: "m"\nplatform: "onnxruntime_onnx"\n{text}'))


def test_exported_configs_raise_no_warning():
    text = """max_batch_size: 8
input [ { name: "images" data_type: TYPE_UINT8 dims: [ 1, 28, 28 ] } ]
output [ { name: "p" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
dynamic_batching { max_queue_delay_microseconds: 100 default_queue_policy { max_queue_size: 1024 } preferred_batch_size: [ 4 ] }
instance_group [ { kind: KIND_AUTO count: 2 } ]
version_policy { latest { num_versions: 1 } }
optimization { graph { level: 1 } }
parameters { key: "dnnzoo.task" value { string_value: "classification" } }
parameters { key: "intra_op_thread_count" value { string_value: "1" } }"""
    assert _review(text) == config_fields.Review((), ())


def test_ignored_fields_are_named_once_each_with_what_happens_instead():
    review = _review("""max_batch_size: 8
dynamic_batching { priority_levels: 2 default_queue_policy { default_timeout_microseconds: 5 max_queue_size: 3 } }
response_cache { enable: true }
model_warmup [ { name: "w" batch_size: 1 } ]
optimization { execution_accelerators { gpu_execution_accelerator [ { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ]
                                        cpu_execution_accelerator [ { name: "openvino" } ] } }
instance_group [ { kind: KIND_GPU gpus: [ 0, 1 ] rate_limiter { priority: 2 } } ]
parameters { key: "cudnn_conv_algo_search" value { string_value: "1" } }
parameters { key: "enable_mem_arena" value { string_value: "1" } }""")
    assert review.refused == ()
    names = [item.split(" ")[0] for item in review.ignored]
    assert sorted(names) == sorted(["optimization.execution_accelerators.cpu_execution_accelerator", "dynamic_batching.priority_levels",
                     "dynamic_batching.default_queue_policy.default_timeout_microseconds", "instance_group.rate_limiter",
                     "response_cache", "parameters['enable_mem_arena']"])  # fmt: skip
    assert "response_cache (no response cache)" in review.warning()


@pytest.mark.parametrize("text, field", [
    ("batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: [ \"n\" ] data_type: TYPE_INT32 source_input: [ \"ids\" ] } ]", "batch_input"),
    ("model_transaction_policy { decoupled: true }", "model_transaction_policy.decoupled"),
    ("model_operations { op_library_filename: [ \"libcustom.so\" ] }", "model_operations"),
    ("input [ { name: \"x\" data_type: TYPE_INT64 dims: [ 1 ] allow_ragged_batch: true } ]", "input.allow_ragged_batch"),
])  # fmt: skip
def test_refused_fields_say_why(text, field):
    review = _review(text)
    assert [item.split(":")[0] for item in review.refused] == [field]
    assert review.refused[0].split(": ", 1)[1] == config_fields.FIELDS[field][1]


def test_decoupled_false_is_the_honoured_default():
    assert _review("model_transaction_policy { decoupled: false }").refused == ()


def test_a_served_model_with_ignored_fields_loads_and_its_index_reason_says_so(tmp_path, caplog):
    root = tmp_path / "repo"
    write_model(root, "cached", graph=lookup_graph, config=lookup_config("cached", "dynamic_batching { }\nresponse_cache { enable: true }"))
    write_model(root, "ragged", graph=lookup_graph,
                config=lookup_config("ragged", "dynamic_batching { }").replace("dims: [ 1 ] }", "dims: [ 1 ] allow_ragged_batch: true }", 1))
    caplog.set_level(logging.WARNING, logger="serving.models")
    running = start_server(server_config(root))
    try:
        with Client(running.address, timeout=10) as client:
            np.testing.assert_array_equal(client.infer("cached", ids(3))["vectors"][:, 0], TABLE[[3]])
            index = {row.name: row for row in client.repository_index()}
            assert index["cached"].state == "READY"
            assert index["cached"].reason == "config fields accepted but not applied: response_cache (no response cache)"
            assert index["ragged"].state == "UNAVAILABLE"
            assert "input.allow_ragged_batch: ragged batches need batch_input" in index["ragged"].reason
    finally:
        running.stop()
    assert sum("response_cache" in r.getMessage() for r in caplog.records) == 1


def test_the_readme_table_is_the_modules():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert config_fields.markdown_table() in readme


def test_model_warmup_samples_run_at_load_and_a_bad_one_keeps_the_model_unavailable(tmp_path):
    root = tmp_path / "repo"
    warm = 'model_warmup [ { name: "w" batch_size: 2 count: 3 inputs { key: "ids" value { data_type: TYPE_INT64 dims: [ 1 ] random_data: true } } } ]'
    write_model(root, "warm", graph=lookup_graph, config=lookup_config("warm", "dynamic_batching { }\n" + warm))
    write_model(root, "cold", graph=lookup_graph, config=lookup_config("cold", "dynamic_batching { }\n" + warm.replace("TYPE_INT64", "TYPE_FP32")))
    running = start_server(server_config(root))
    try:
        with Client(running.address, timeout=10) as client:
            index = {row.name: row for row in client.repository_index()}
            assert index["warm"].state == "READY" and index["warm"].reason == ""
            assert index["cold"].state == "UNAVAILABLE" and "warm-up inference failed" in index["cold"].reason
    finally:
        running.stop()


def unpadded_conv_config(name: str) -> str:
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
            'input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, -1, -1 ] } ]\n'
            'output [ { name: "mean" data_type: TYPE_FP32 dims: [ 1, 1, 1 ] } ]\n')


def _plus_one_config(name: str, max_batch_size: int, dims: str) -> str:
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
            f'input [ {{ name: "x" data_type: TYPE_FP32 dims: {dims} }} ]\n'
            f'output [ {{ name: "y" data_type: TYPE_FP32 dims: {dims} }} ]\n')


def test_a_config_that_contradicts_the_graphs_fixed_dimensions_is_refused_at_load_and_by_repo_check(tmp_path):
    """As Triton's ONNX Runtime backend refuses it, and `dnnzoo repo check` reports it in the same
    words (one rule: contract.shape_problems). A graph exported without a dynamic batch dimension
    under a batching config used to load: it answered batch 1 and failed every larger batch."""
    root = tmp_path / "repo"
    write_model(root, "fixed_batched", graph=lambda: plus_one_graph(batch=1), config=_plus_one_config("fixed_batched", 8, "[ 2 ]"))
    write_model(root, "fixed_whole", graph=lambda: plus_one_graph(batch=1), config=_plus_one_config("fixed_whole", 0, "[ 1, 2 ]"))
    write_model(root, "wrong_width", graph=plus_one_graph, config=_plus_one_config("wrong_width", 8, "[ 3 ]"))
    write_model(root, "any_width", graph=plus_one_graph, config=_plus_one_config("any_width", 8, "[ -1 ]"))
    expected = {
        "fixed_batched": "input 'x': max_batch_size is 8, but the graph fixes the first (batch) dimension: [1,2]; "
                         "export the model with a variable batch dimension, or set max_batch_size: 0",
        "wrong_width": "input 'x' dimension 1 is 2 in the graph but 3 in the config",
        "any_width": "input 'x' dimension 1 is 2 in the graph but -1 (any size) in the config",
    }
    running = start_server(server_config(root))
    try:
        with Client(running.address, timeout=10) as client:
            index = {row.name: row for row in client.repository_index()}
            assert index["fixed_whole"].state == "READY", index["fixed_whole"].reason
            np.testing.assert_array_equal(client.infer("fixed_whole", {"x": np.array([[1, 2]], np.float32)})["y"], [[2, 3]])
            for name, words in expected.items():
                assert index[name].state == "UNAVAILABLE" and words in index[name].reason, (name, index[name].reason)
    finally:
        running.stop()
    checked = {result.name: result for result in check_repository(root)}
    assert checked["fixed_whole"].ok, checked["fixed_whole"].problems
    for name, words in expected.items():
        assert any(words in problem for problem in checked[name].problems), (name, checked[name].problems)


def test_a_model_with_variable_dims_warms_up_on_the_first_size_it_takes_or_says_what_to_do(tmp_path):
    """Zeros of size 1 fail a 5x5 convolution without padding: the server tries larger sizes, as a CNN
    exported with a dynamic height and width needs; one that no size fits names the fix."""
    root = tmp_path / "repo"
    write_model(root, "conv5", graph=lambda: unpadded_conv_graph(5), config=unpadded_conv_config("conv5"))
    write_model(root, "conv300", graph=lambda: unpadded_conv_graph(300), config=unpadded_conv_config("conv300"))
    running = start_server(server_config(root))
    try:
        with Client(running.address, timeout=10) as client:
            index = {row.name: row for row in client.repository_index()}
            assert index["conv5"].state == "READY", index["conv5"].reason
            assert index["conv300"].state == "UNAVAILABLE"
            assert "variable dimensions set to each of 1, 8, 32, 224" in index["conv300"].reason
            assert "model_warmup" in index["conv300"].reason
            image = np.arange(2 * 1 * 6 * 7, dtype=np.float32).reshape(2, 1, 6, 7)
            got = client.infer("conv5", {"image": image})["mean"]
            windows = np.lib.stride_tricks.sliding_window_view(image, (5, 5), axis=(2, 3)).mean(axis=(-1, -2))
            np.testing.assert_allclose(got[:, 0, 0, 0], windows.mean(axis=(1, 2, 3)), rtol=1e-5)
        loaded = running.server.models.resolve("conv5")
        assert loaded.runtime.warm_up_size == 8
        if loaded.side_by_side is not None:  # the adaptive plan timed both sessions on 8 x 8 zeros, but a
            # request's own size decides its cost: lone single rows of different sizes do not compare
            assert loaded.side_by_side.warm_up_size == 8 and loaded.side_by_side.warm_run_ns > 0
            assert loaded.batcher._probe is None
    finally:
        running.stop()

"""Triton's GPU settings mapped to ONNX Runtime provider options: pure functions, checked on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
from protos.config_text import parse_config

from serving import gpu_options as g


def _config(text: str):
    return parse_config(f'name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n{text}')


TRT = """optimization { execution_accelerators { gpu_execution_accelerator [
  { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" }
                     parameters { key: "max_workspace_size_bytes" value: "1073741824" }
                     parameters { key: "trt_max_partition_iterations" value: "10" } },
  { name: "cuda" parameters { key: "cudnn_conv_use_max_workspace" value: "1" } } ] } }
parameters { key: "cudnn_conv_algo_search" value { string_value: "1" } }
parameters { key: "gpu_mem_limit" value { string_value: "4294967296" } }"""


def test_tensorrt_accelerator_becomes_tensorrt_options(tmp_path):
    options = g.tensorrt_options(_config(TRT), tmp_path)
    assert options == {"trt_fp16_enable": "True", "trt_max_workspace_size": "1073741824", "trt_max_partition_iterations": "10"}


def test_cuda_options_come_from_parameters_and_the_cuda_accelerator():
    assert g.cuda_options(_config(TRT)) == {"cudnn_conv_algo_search": "1", "gpu_mem_limit": "4294967296", "cudnn_conv_use_max_workspace": "1"}


def test_int8_precision_mode_enables_int8_with_fp16_fallback(tmp_path):
    config = _config('optimization { execution_accelerators { gpu_execution_accelerator [ { name: "tensorrt" parameters { key: "precision_mode" value: "int8" } } ] } }')
    options = g.tensorrt_options(config, tmp_path)
    assert options["trt_int8_enable"] == "True" and options["trt_fp16_enable"] == "True"


def test_an_engine_cache_asked_for_is_kept_inside_the_model_folder(tmp_path):
    cache = '{ name: "tensorrt" parameters { key: "trt_engine_cache_enable" value: "1" } %s }'
    config = lambda extra: _config("optimization { execution_accelerators { gpu_execution_accelerator [ %s ] } }" % (cache % extra))  # noqa: E731
    assert g.tensorrt_options(config(""), tmp_path)["trt_engine_cache_path"] == str(tmp_path / "trt_cache")
    elsewhere = g.tensorrt_options(config('parameters { key: "trt_engine_cache_path" value: "/etc/engines" }'), tmp_path)
    assert elsewhere["trt_engine_cache_path"] == str(tmp_path / "engines")


@pytest.mark.parametrize("text, words", [
    ('optimization { execution_accelerators { gpu_execution_accelerator [ { name: "tensorrt" parameters { key: "precision_mode" value: "FP8" } } ] } }', "choose FP32, FP16 or INT8"),
    ('optimization { execution_accelerators { gpu_execution_accelerator [ { name: "tensorrt" parameters { key: "workspace" value: "1" } } ] } }', "is not one ONNX Runtime's TensorRT provider takes"),
    ('optimization { execution_accelerators { gpu_execution_accelerator [ { name: "cuda" parameters { key: "bogus" value: "1" } } ] } }', "cuda accelerator parameter 'bogus'"),
])  # fmt: skip
def test_unknown_settings_are_refused_not_dropped(text, words, tmp_path):
    with pytest.raises(ValueError, match=words):
        g.tensorrt_options(_config(text), tmp_path)
        g.cuda_options(_config(text))


def test_unknown_accelerator_names_are_refused():
    with pytest.raises(ValueError, match="offers tensorrt and cuda"):
        g.accelerators(_config('optimization { execution_accelerators { gpu_execution_accelerator [ { name: "openvino" } ] } }'))


def test_instance_groups_place_count_instances_on_each_listed_gpu():
    config = _config("instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0, 3 ] }, { kind: KIND_CPU count: 1 } ]")
    assert g.device_ids(config) == [0, 0, 3, 3, None]


def test_a_gpu_group_without_gpus_places_count_instances_on_every_visible_gpu():
    config = _config("instance_group [ { kind: KIND_GPU count: 2 } ]")
    assert g.device_ids(config, visible=3) == [0, 0, 1, 1, 2, 2]
    assert g.device_ids(config, visible=0) == [None, None]  # no GPU: the CPU, as the providers decide


@pytest.mark.parametrize("text, instances, visible, devices", [
    ("instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0, 1 ] } ]", 4, 2, [0, 0, 1, 1]),
    ("instance_group [ { kind: KIND_GPU gpus: [ 2 ] } ]", 2, 4, [2, 2]),        # no count: the plan's, on GPU 2
    ("instance_group [ { kind: KIND_GPU gpus: [ 0, 1 ] } ]", 3, 2, [0, 1, 0]),  # in turn over the groups' GPUs
    ("instance_group [ { kind: KIND_AUTO } ]", 2, 2, [None, None]),             # the provider's default device
    ("", 2, 1, [None, None]),
])  # fmt: skip
def test_each_of_the_plans_instances_gets_a_device(text, instances, visible, devices):
    assert g.instance_devices(_config(text), instances, visible) == devices


def test_each_gpu_instance_gets_its_own_session_options_and_cpu_instances_share_one(tmp_path):
    config = _config("instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0, 1 ] }, { kind: KIND_CPU count: 1 } ]")
    places = g.placements(config, 5, visible=2, on_gpu=True)
    assert places == [g.Placement(0), g.Placement(0), g.Placement(1), g.Placement(1), g.Placement(None, cpu_only=True)]
    wanted = [g.CUDA, "CPUExecutionProvider"]
    per_instance = [g.provider_options(wanted, config, tmp_path, place.device)[0].get("device_id") for place in places]
    assert per_instance == ["0", "0", "1", "1", None]


def test_off_the_gpu_every_instance_shares_one_session():
    config = _config("instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0, 1 ] } ]")
    assert g.placements(config, 4, visible=0, on_gpu=False) == [g.Placement(None)] * 4


def test_io_binding_is_off_unless_the_parameter_turns_it_on():
    parameter = 'parameters { key: "io_binding" value { string_value: "%s" } }'
    assert not g.io_binding(_config("")) and not g.io_binding(_config(parameter % "false"))
    assert g.io_binding(_config(parameter % "true")) and g.io_binding(_config(parameter % "1"))
    with pytest.raises(ValueError, match="'io_binding' must be true or false"):
        g.io_binding(_config(parameter % "sometimes"))


def test_provider_options_follow_the_provider_order_with_the_device(tmp_path):
    options = g.provider_options([g.TENSORRT, g.CUDA, "CPUExecutionProvider"], _config(TRT), tmp_path, 3)
    assert [o.get("device_id") for o in options] == ["3", "3", None] and options[2] == {}


def test_model_warmup_samples_become_batches(tmp_path):
    (tmp_path / "warmup").mkdir()
    np.array([[1, 2, 3]], dtype="<i8").tofile(tmp_path / "warmup" / "ids.bin")
    config = _config("""model_warmup [
  { name: "zeros" batch_size: 4 count: 2 inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true } } },
  { name: "file" batch_size: 2 inputs { key: "ids" value { data_type: TYPE_INT64 dims: [ 3 ] input_data_file: "ids.bin" } } } ]""")
    zeros, from_file = g.warmup_runs(config, tmp_path)
    assert (zeros.name, zeros.count, zeros.inputs["x"].shape, zeros.inputs["x"].dtype) == ("zeros", 2, (4, 2), np.float32)
    np.testing.assert_array_equal(from_file.inputs["ids"], [[1, 2, 3], [1, 2, 3]])


def test_warmup_files_must_be_plain_names_and_large_enough(tmp_path):
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "short.bin").write_bytes(b"\x00" * 4)
    bad = 'model_warmup [ { name: "w" inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 2 ] input_data_file: "%s" } } } ]'
    with pytest.raises(ValueError, match="must be a plain file name"):
        g.warmup_runs(_config(bad % "../x.bin"), tmp_path)
    with pytest.raises(ValueError, match="holds 4 bytes, one item needs 8"):
        g.warmup_runs(_config(bad % "short.bin"), tmp_path)
    with pytest.raises(ValueError, match="above max_batch_size"):
        g.warmup_runs(_config('model_warmup [ { name: "big" batch_size: 9 } ]'), tmp_path)


def test_the_iobinding_run_answers_as_plain_run_does(tmp_path):
    """The binding path of LoadedSession, checked on the CPU (on a GPU its outputs are bound on the
    device and copied once instead; benchmarks/gpu.sh compares the two there)."""
    from dataclasses import replace

    from serving.repository import Repository
    from serving.sessions import ProviderChoice, open_session
    from tests.serving.builders import write_model

    write_model(tmp_path, "doubler")
    source = Repository(tmp_path).read("doubler")
    plain = open_session(source.versions[1], source.spec, ProviderChoice("cpu"), "doubler")
    bound = replace(plain, bind_outputs=True)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    want, got = plain.run({"x": x}), bound.run({"x": x})
    assert not plain.bind_outputs and list(got) == ["y", "probabilities"]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    np.testing.assert_array_equal(got["y"], x * 2)

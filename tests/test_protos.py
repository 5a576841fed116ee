"""protos/: stubs current, Triton's field numbers, config.pbtxt round trips, tritonclient decodes ours.

tritonclient registers its own ``model_config.proto`` and ``grpc_service.proto`` in the default
descriptor pool, and ours differ from them (no shared-memory, trace or log messages), so one process
cannot import both: every tritonclient check runs in one subprocess that gets our serialised bytes
and config text on stdin and answers with its decoding, its descriptors and its own serialisation.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor, json_format

from protos import config_text, grpc_service_pb2 as pb, model_config_pb2 as mc
from protos.config_text import format_config, parse_config

ROOT = Path(__file__).resolve().parents[1]

DENSENET = """
# Resembles Triton's docs/examples/model_repository/densenet_onnx/config.pbtxt
name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
    reshape { shape: [ 1, 3, 224, 224 ] }
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    reshape { shape: [ 1, 1000, 1, 1 ] }
    label_filename: "densenet_labels.txt"
  }
]
"""

BATCHING = """
name: "digits_classifier"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 32
version_policy: { latest: { num_versions: 2 } }
input [ { name: "images" data_type: TYPE_UINT8 dims: [ 1, 28, 28 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
dynamic_batching {
  preferred_batch_size: [ 8, 16 ]
  max_queue_delay_microseconds: 200
  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 5000 max_queue_size: 64 }
  priority_levels: 2
  priority_queue_policy { key: 1 value: { max_queue_size: 4 timeout_action: DELAY } }
}
instance_group [ { kind: KIND_CPU count: 2 }, { kind: KIND_GPU count: 1 gpus: [ 0 ] } ]
optimization {
  graph { level: 1 }
  execution_accelerators {
    gpu_execution_accelerator: [ { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ]
  }
  input_pinned_memory { enable: true }
}
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters { key: "dnnzoo.task" value: { string_value: "classify" } }
model_warmup [ { name: "zeros" batch_size: 1 inputs { key: "images" value: { data_type: TYPE_UINT8 dims: [ 1, 28, 28 ] zero_data: true } } } ]
model_transaction_policy { decoupled: false }
response_cache { enable: true }
"""

SEQUENCE = """
name: "waves_sequence_stateful"
platform: "onnxruntime_onnx"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2 ] max_queue_delay_microseconds: 100 }
  state [ {
    input_name: "h_in" output_name: "h_out" data_type: TYPE_FP32 dims: [ 1, 32 ]
    initial_state: { data_type: TYPE_FP32 dims: [ 1, 32 ] zero_data: true name: "zeros" }
  } ]
}
input [ { name: "series" data_type: TYPE_FP32 dims: [ -1, 1 ] } ]
output [ { name: "forecast" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def fields(message) -> dict[str, int]:
    return {field.name: field.number for field in message.DESCRIPTOR.fields}


def test_stubs_are_current():
    pytest.importorskip("grpc_tools")
    result = subprocess.run(
        [sys.executable, "-m", "protos.generate", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_file_names_and_package_are_tritons():
    assert mc.DESCRIPTOR.name == "model_config.proto"
    assert pb.DESCRIPTOR.name == "grpc_service.proto"
    assert mc.DESCRIPTOR.package == pb.DESCRIPTOR.package == "inference"
    assert [dep.name for dep in pb.DESCRIPTOR.dependencies] == ["model_config.proto"]


def test_service_methods():
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    methods = {m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming)
               for m in service.methods}
    assert methods.pop("ModelStreamInfer") == ("ModelInferRequest", "ModelStreamInferResponse", True, True)
    assert methods.pop("ModelInfer") == ("ModelInferRequest", "ModelInferResponse", False, False)
    for name, (request, response, client_streaming, server_streaming) in methods.items():
        assert (request, response) == (f"{name}Request", f"{name}Response")
        assert not client_streaming and not server_streaming
    assert set(methods) == {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig",
        "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
    }


def test_protocol_field_numbers_match_the_reference():
    assert fields(pb.ModelInferRequest) == {
        "model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5, "outputs": 6,
        "raw_input_contents": 7,
    }
    assert fields(pb.ModelInferRequest.InferInputTensor) == {
        "name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5,
    }
    assert fields(pb.ModelInferRequest.InferRequestedOutputTensor) == {"name": 1, "parameters": 2}
    assert fields(pb.ModelInferResponse) == {
        "model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "outputs": 5, "raw_output_contents": 6,
    }
    assert fields(pb.ModelStreamInferResponse) == {"error_message": 1, "infer_response": 2}
    assert fields(pb.InferParameter) == {
        "bool_param": 1, "int64_param": 2, "string_param": 3, "double_param": 4, "uint64_param": 5,
    }
    choice = pb.InferParameter.DESCRIPTOR.oneofs_by_name["parameter_choice"]
    assert len(choice.fields) == 5
    by_name = pb.InferParameter.DESCRIPTOR.fields_by_name
    assert by_name["double_param"].type == descriptor.FieldDescriptor.TYPE_DOUBLE
    assert by_name["uint64_param"].type == descriptor.FieldDescriptor.TYPE_UINT64
    assert fields(pb.InferTensorContents) == {
        "bool_contents": 1, "int_contents": 2, "int64_contents": 3, "uint_contents": 4, "uint64_contents": 5,
        "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8,
    }
    assert fields(pb.ModelMetadataResponse) == {"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5}
    assert fields(pb.InferStatistics) == {
        "success": 1, "fail": 2, "queue": 3, "compute_input": 4, "compute_infer": 5, "compute_output": 6,
        "cache_hit": 7, "cache_miss": 8,
    }
    assert fields(pb.InferResponseStatistics) == {
        "compute_infer": 1, "compute_output": 2, "success": 3, "fail": 4, "empty_response": 5, "cancel": 6,
    }
    assert fields(pb.ModelStatistics) == {
        "name": 1, "version": 2, "last_inference": 3, "inference_count": 4, "execution_count": 5,
        "inference_stats": 6, "batch_stats": 7, "memory_usage": 8, "response_stats": 9,
    }
    assert fields(pb.MemoryUsage) == {"type": 1, "id": 2, "byte_size": 3}
    assert fields(pb.ModelRepositoryParameter) == {"bool_param": 1, "int64_param": 2, "string_param": 3, "bytes_param": 4}
    assert fields(pb.RepositoryModelLoadRequest) == {"repository_name": 1, "model_name": 2, "parameters": 3}
    assert fields(pb.RepositoryIndexResponse.ModelIndex) == {"name": 1, "version": 2, "state": 3, "reason": 4}


def test_model_config_field_numbers_match_the_reference():
    config = fields(mc.ModelConfig)
    expected = {
        "name": 1, "platform": 2, "version_policy": 3, "max_batch_size": 4, "input": 5, "output": 6,
        "instance_group": 7, "default_model_filename": 8, "cc_model_filenames": 9, "metric_tags": 10,
        "dynamic_batching": 11, "optimization": 12, "sequence_batching": 13, "parameters": 14,
        "ensemble_scheduling": 15, "model_warmup": 16, "backend": 17, "model_operations": 18,
        "model_transaction_policy": 19, "batch_input": 20, "batch_output": 21, "model_repository_agents": 23,
        "response_cache": 24, "runtime": 25, "model_metrics": 26,
    }
    assert config == expected
    scheduling = mc.ModelConfig.DESCRIPTOR.oneofs_by_name["scheduling_choice"]
    assert {field.name for field in scheduling.fields} == {"dynamic_batching", "sequence_batching", "ensemble_scheduling"}
    assert fields(mc.ModelDynamicBatching) == {
        "preferred_batch_size": 1, "max_queue_delay_microseconds": 2, "preserve_ordering": 3, "priority_levels": 4,
        "default_priority_level": 5, "default_queue_policy": 6, "priority_queue_policy": 7,
    }
    assert fields(mc.ModelQueuePolicy) == {
        "timeout_action": 1, "default_timeout_microseconds": 2, "allow_timeout_override": 3, "max_queue_size": 4,
    }
    assert fields(mc.ModelInput) == {
        "name": 1, "data_type": 2, "format": 3, "dims": 4, "reshape": 5, "is_shape_tensor": 6,
        "allow_ragged_batch": 7, "optional": 8, "is_non_linear_format_io": 9,
    }
    assert fields(mc.ModelOutput) == {
        "name": 1, "data_type": 2, "dims": 3, "label_filename": 4, "reshape": 5, "is_shape_tensor": 6,
        "is_non_linear_format_io": 7,
    }
    assert fields(mc.ModelInstanceGroup) == {
        "name": 1, "count": 2, "gpus": 3, "kind": 4, "profile": 5, "rate_limiter": 6, "passive": 7,
        "secondary_devices": 8, "host_policy": 9,
    }
    assert fields(mc.ModelOptimizationPolicy) == {
        "graph": 1, "priority": 2, "cuda": 3, "execution_accelerators": 4, "input_pinned_memory": 5,
        "output_pinned_memory": 6, "gather_kernel_buffer_threshold": 7, "eager_batching": 8,
    }
    assert fields(mc.ModelSequenceBatching) == {
        "max_sequence_idle_microseconds": 1, "control_input": 2, "direct": 3, "oldest": 4, "state": 5,
        "iterative_sequence": 6,
    }
    assert fields(mc.ModelSequenceBatching.Control) == {
        "kind": 1, "int32_false_true": 2, "fp32_false_true": 3, "data_type": 4, "bool_false_true": 5,
    }
    assert fields(mc.ModelWarmup) == {"name": 1, "batch_size": 2, "inputs": 3, "count": 4}
    assert fields(mc.ModelParameter) == {"string_value": 1}
    assert {v.name: v.number for v in mc.DataType.DESCRIPTOR.values} == {
        "TYPE_INVALID": 0, "TYPE_BOOL": 1, "TYPE_UINT8": 2, "TYPE_UINT16": 3, "TYPE_UINT32": 4, "TYPE_UINT64": 5,
        "TYPE_INT8": 6, "TYPE_INT16": 7, "TYPE_INT32": 8, "TYPE_INT64": 9, "TYPE_FP16": 10, "TYPE_FP32": 11,
        "TYPE_FP64": 12, "TYPE_STRING": 13, "TYPE_BF16": 14,
    }
    assert mc.ModelInstanceGroup.KIND_CPU == 2 and mc.ModelInstanceGroup.KIND_GPU == 1
    assert mc.ModelQueuePolicy.DELAY == 1 and mc.ModelInput.FORMAT_NCHW == 2


def test_triton_style_config_parses_and_round_trips():
    config = parse_config(DENSENET)
    assert (config.name, config.platform, config.max_batch_size) == ("densenet_onnx", "onnxruntime_onnx", 0)
    (tensor,) = config.input
    assert tensor.data_type == mc.TYPE_FP32 and tensor.format == mc.ModelInput.FORMAT_NCHW
    assert list(tensor.dims) == [3, 224, 224] and list(tensor.reshape.shape) == [1, 3, 224, 224]
    assert config.output[0].label_filename == "densenet_labels.txt"
    assert config.WhichOneof("scheduling_choice") is None

    batching = parse_config(BATCHING)
    assert batching.WhichOneof("scheduling_choice") == "dynamic_batching"
    queue = batching.dynamic_batching.default_queue_policy
    assert (queue.max_queue_size, queue.default_timeout_microseconds) == (64, 5000)
    assert batching.dynamic_batching.priority_queue_policy[1].timeout_action == mc.ModelQueuePolicy.DELAY
    assert [(g.kind, g.count) for g in batching.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 2),
                                                                    (mc.ModelInstanceGroup.KIND_GPU, 1)]
    assert batching.parameters["intra_op_thread_count"].string_value == "1"
    assert batching.version_policy.latest.num_versions == 2
    accelerator = batching.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert batching.model_warmup[0].inputs["images"].zero_data

    sequence = parse_config(SEQUENCE)
    assert sequence.sequence_batching.WhichOneof("strategy_choice") == "oldest"
    assert sequence.sequence_batching.state[0].initial_state[0].zero_data

    for text in (DENSENET, BATCHING, SEQUENCE):
        parsed = parse_config(text)
        written = format_config(parsed)
        assert parse_config(written) == parsed
        assert format_config(parse_config(written)) == written


def test_parse_errors_name_the_line():
    text = 'name: "m"\nmax_batch_size: 4\ninput { name: "x" data_type: TYPE_FLOAT }\n'
    with pytest.raises(ValueError, match=r"^repo/m/config.pbtxt: line 3, column \d+: .*TYPE_FLOAT"):
        parse_config(text, source="repo/m/config.pbtxt")
    with pytest.raises(ValueError, match=r"line 2.*no field named \"max_batch\""):
        parse_config('name: "m"\nmax_batch: 4\n')


def test_datatype_table_is_complete_and_consistent():
    rows = config_text.DATATYPES
    assert sorted(row.config for row in rows) == [v.number for v in mc.DataType.DESCRIPTOR.values if v.number]
    assert len({row.name for row in rows}) == len({row.onnx for row in rows}) == len(rows)
    for row in rows:
        assert config_text.from_config(row.config) is config_text.from_config(row.config_name) is row
        assert config_text.from_name(row.name) is config_text.from_onnx(row.onnx) is row
        assert config_text.from_onnx(row.onnxruntime) is row
        if row.numpy is not None:
            assert config_text.from_numpy(row.numpy) is row
            if row.itemsize is not None:
                assert row.numpy.itemsize == row.itemsize
    assert config_text.from_config("TYPE_FP32").name == "FP32"
    assert config_text.from_name("FP32").numpy == np.float32
    string = config_text.from_config(mc.TYPE_STRING)
    assert (string.name, string.numpy, string.itemsize) == ("BYTES", np.dtype(object), None)
    assert config_text.from_numpy(np.array([b"ab"]).dtype) is string
    assert config_text.from_numpy(np.bool_).name == "BOOL"
    assert config_text.from_name("BF16").numpy is None
    for bad in (lambda: config_text.from_name("FLOAT"), lambda: config_text.from_numpy(np.complex64),
                lambda: config_text.from_config(0)):
        with pytest.raises(ValueError, match="unknown"):
            bad()


def test_datatype_table_matches_onnx_and_onnxruntime():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    rows = config_text.DATATYPES
    for row in rows:
        assert TensorProto.DataType.Name(row.onnx) == {"BYTES": "STRING", "FP32": "FLOAT", "FP64": "DOUBLE",
                                                        "FP16": "FLOAT16", "BF16": "BFLOAT16"}.get(row.name, row.name)
    inputs = [helper.make_tensor_value_info(f"i{k}", row.onnx, [1]) for k, row in enumerate(rows)]
    outputs = [helper.make_tensor_value_info(f"o{k}", row.onnx, [1]) for k, row in enumerate(rows)]
    nodes = [helper.make_node("Identity", [f"i{k}"], [f"o{k}"]) for k in range(len(rows))]
    model = helper.make_model(helper.make_graph(nodes, "types", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnx's default IR version can be newer than onnxruntime reads
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [arg.type for arg in session.get_inputs()] == [row.onnxruntime for row in rows]


# --- tritonclient, in a subprocess --------------------------------------------------------------

TRITON_SIDE = r"""
import base64, json, sys
from google.protobuf import descriptor, json_format, text_format
from tritonclient.grpc import model_config_pb2, service_pb2

def shape(d):
    out = {"fields": {f.name: [f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else
                               (f.enum_type.full_name if f.enum_type else ""),
                               f.containing_oneof.name if f.containing_oneof else ""] for f in d.fields}}
    return out

def walk(messages, enums, file):
    def visit(d):
        messages[d.full_name] = shape(d)
        for e in d.enum_types:
            enums[e.full_name] = {v.name: v.number for v in e.values}
        for n in d.nested_types:
            visit(n)
    for d in file.message_types_by_name.values():
        visit(d)
    for e in file.enum_types_by_name.values():
        enums[e.full_name] = {v.name: v.number for v in e.values}

request = json.load(sys.stdin)
messages, enums = {}, {}
walk(messages, enums, model_config_pb2.DESCRIPTOR)
walk(messages, enums, service_pb2.DESCRIPTOR)
service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
methods = {m.name: [m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming]
           for m in service.methods}
classes = {"ModelConfig": model_config_pb2.ModelConfig}
classes.update({name: getattr(service_pb2, name) for name in service_pb2.DESCRIPTOR.message_types_by_name})
decoded, encoded = {}, {}
for key, (type_name, data, as_dict) in request["messages"].items():
    message = classes[type_name].FromString(base64.b64decode(data))
    decoded[key] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    encoded[key] = base64.b64encode(
        json_format.ParseDict(as_dict, classes[type_name]()).SerializeToString(deterministic=True)).decode()
texts = {key: json_format.MessageToDict(text_format.Parse(text, model_config_pb2.ModelConfig()),
                                        preserving_proto_field_name=True)
         for key, text in request["texts"].items()}
json.dump({"messages": messages, "enums": enums, "methods": methods, "decoded": decoded, "encoded": encoded,
           "texts": texts}, sys.stdout)
"""


def as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def sample_messages() -> dict:
    """Messages of ours with every interesting field set, keyed by a label."""
    full = parse_config(BATCHING)
    full.metric_tags["team"] = "zoo"
    full.cc_model_filenames["8.6"] = "model_sm86.onnx"
    full.model_repository_agents.agents.add(name="checksum").parameters["MD5:1/model.onnx"] = "abc"
    full.batch_input.add(kind=mc.BatchInput.BATCH_ITEM_SHAPE, target_name=["shape"], data_type=mc.TYPE_INT64,
                         source_input=["images"])
    full.model_metrics.metric_control.add().histogram_options.buckets.extend([0.5, 1.0])
    full.optimization.cuda.graph_spec.add(batch_size=4).input["images"].dim.extend([4, 1, 28, 28])
    full.instance_group[0].rate_limiter.resources.add(name="R1", count=2)
    full.instance_group[0].secondary_devices.add(device_id=1)

    infer = pb.ModelInferResponse(model_name="digits_classifier", model_version="1", id="req-7")
    for key, value in {"b": dict(bool_param=True), "i": dict(int64_param=-3), "s": dict(string_param="x"),
                       "d": dict(double_param=0.25), "u": dict(uint64_param=2**63 + 5)}.items():
        infer.parameters[key].CopyFrom(pb.InferParameter(**value))
    probabilities = infer.outputs.add(name="probabilities", datatype="FP32", shape=[2, 10])
    probabilities.parameters["classification"].int64_param = 3
    infer.raw_output_contents.append(np.arange(20, dtype="<f4").tobytes())
    labels = infer.outputs.add(name="labels", datatype="BYTES", shape=[1])
    labels.contents.bytes_contents.append(b"0.9:7:seven")
    labels.contents.fp64_contents.append(1.5)
    request = pb.ModelInferRequest(model_name="m", model_version="2", id="a")
    request.parameters["priority"].uint64_param = 1
    request.parameters["sequence_start"].bool_param = True
    tensor = request.inputs.add(name="images", datatype="UINT8", shape=[1, 1, 28, 28])
    tensor.parameters["shared_memory_offset"].int64_param = 0
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = 2
    request.raw_input_contents.append(bytes(range(256)) * 3 + bytes(16))

    duration = lambda n: pb.StatisticDuration(count=n, ns=1000 * n)  # noqa: E731
    stats = pb.ModelStatistics(name="m", version="1", last_inference=1_700_000_000_000, inference_count=40,
                               execution_count=9)
    for field in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                  "cache_hit", "cache_miss"):
        getattr(stats.inference_stats, field).CopyFrom(duration(len(field)))
    stats.batch_stats.add(batch_size=8, compute_input=duration(1), compute_infer=duration(2),
                          compute_output=duration(3))
    stats.memory_usage.add(type="CPU", id=0, byte_size=123456)
    stats.response_stats["0"].empty_response.CopyFrom(duration(4))
    stats.response_stats["0"].cancel.CopyFrom(duration(5))

    load = pb.RepositoryModelLoadRequest(model_name="m")
    load.parameters["config"].string_param = '{"max_batch_size": 4}'
    load.parameters["file:1/model.onnx"].bytes_param = b"\x08\x07onnx"
    return {
        "config_full": pb.ModelConfigResponse(config=full),
        "config_densenet": pb.ModelConfigResponse(config=parse_config(DENSENET)),
        "config_sequence": pb.ModelConfigResponse(config=parse_config(SEQUENCE)),
        "infer_response": infer,
        "stream_response": pb.ModelStreamInferResponse(error_message="", infer_response=infer),
        "stream_error": pb.ModelStreamInferResponse(error_message="model 'x' is not ready"),
        "infer_request": request,
        "statistics": pb.ModelStatisticsResponse(model_stats=[stats]),
        "metadata": pb.ModelMetadataResponse(
            name="m", versions=["1", "2"], platform="onnxruntime_onnx",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name="images", datatype="UINT8", shape=[-1, 1, 28, 28])]),
        "index": pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(
            name="m", version="1", state="UNAVAILABLE", reason="model.onnx is missing")]),
        "load": load,
    }


@pytest.fixture(scope="module")
def triton():
    if importlib.util.find_spec("tritonclient") is None:
        pytest.skip("tritonclient is not installed (a dev dependency)")
    samples = sample_messages()
    request = {
        "messages": {key: [type(m).DESCRIPTOR.name, base64.b64encode(m.SerializeToString()).decode(), as_dict(m)]
                     for key, m in samples.items()},
        "texts": {"densenet": DENSENET, "batching": BATCHING, "sequence": SEQUENCE,
                  "formatted": format_config(samples["config_full"].config)},
    }
    result = subprocess.run([sys.executable, "-c", TRITON_SIDE], input=json.dumps(request), capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return samples, json.loads(result.stdout)


def our_descriptors():
    messages, enums = {}, {}

    def visit(d):
        messages[d.full_name] = {"fields": {
            f.name: [f.number, f.type, f.is_repeated,
                     f.message_type.full_name if f.message_type else (f.enum_type.full_name if f.enum_type else ""),
                     f.containing_oneof.name if f.containing_oneof else ""] for f in d.fields}}
        for e in d.enum_types:
            enums[e.full_name] = {v.name: v.number for v in e.values}
        for n in d.nested_types:
            visit(n)

    for file in (mc.DESCRIPTOR, pb.DESCRIPTOR):
        for d in file.message_types_by_name.values():
            visit(d)
        for e in file.enum_types_by_name.values():
            enums[e.full_name] = {v.name: v.number for v in e.values}
    return messages, enums


def test_descriptors_agree_with_tritonclient(triton):
    _, theirs = triton
    messages, enums = our_descriptors()
    for name, shape in messages.items():
        assert name in theirs["messages"], f"{name} is not one of Triton's messages"
        assert shape == theirs["messages"][name], name
    for name, values in enums.items():
        assert values == theirs["enums"][name], name
    # model_config.proto is complete: every message Triton's ModelConfig can hold is ours too.
    missing = {name for name in theirs["messages"] if name.startswith("inference.Model") and name not in messages}
    assert not missing, missing
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        assert theirs["methods"][method.name] == [method.input_type.full_name, method.output_type.full_name,
                                                  method.client_streaming, method.server_streaming]
    left_out = set(theirs["methods"]) - {m.name for m in service.methods}
    assert left_out == {"SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
                        "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
                        "TraceSetting", "LogSettings"}


def test_tritonclient_decodes_our_bytes(triton):
    samples, theirs = triton
    for key, message in samples.items():
        assert theirs["decoded"][key] == as_dict(message), key
    assert theirs["decoded"]["infer_response"]["parameters"]["u"] == {"uint64_param": str(2**63 + 5)}


def test_we_decode_tritonclient_bytes(triton):
    samples, theirs = triton
    for key, message in samples.items():
        ours = type(message).FromString(base64.b64decode(theirs["encoded"][key]))
        assert ours == message, key
        assert ours.SerializeToString(deterministic=True) == base64.b64decode(theirs["encoded"][key]), key


def test_tritonclient_parses_our_config_text_alike(triton):
    samples, theirs = triton
    for key, text in {"densenet": DENSENET, "batching": BATCHING, "sequence": SEQUENCE}.items():
        assert theirs["texts"][key] == as_dict(parse_config(text)), key
    assert theirs["texts"]["formatted"] == as_dict(samples["config_full"].config)

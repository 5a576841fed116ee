"""FP16 and INT8 variants: converted, judged on the run's held-out data through ONNX Runtime, refused
past the family's tolerance, recorded in config.pbtxt and `repo check --report`."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from protos.config_text import parse_config

from dnnzoo.errors import UserError
from export import precision, precision_data, precision_variants
from export.check import check_repository, read_configs
from export.pipeline import export_run


def _params(repository, name) -> dict[str, str]:
    config = parse_config((repository / name / "config.pbtxt").read_text())
    return {k: v.string_value for k, v in config.parameters.items()}


def _io_types(path) -> dict[str, int]:
    graph = onnx.load(str(path)).graph
    return {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)}


def test_classifier_variants_keep_their_tensors_and_record_held_out_figures(run_of, tmp_path):
    run = run_of("classifier")
    written = export_run(run, tmp_path, precisions=("fp32", "fp16", "int8"), allow_degraded=True)
    assert [w.name for w in written] == ["digits_classifier", "digits_classifier_fp16", "digits_classifier_int8"]
    assert all(check.ok for check in check_repository(tmp_path)), [c.line() for c in check_repository(tmp_path)]
    fp32_types = _io_types(written[0].path)
    assert fp32_types == {"images": onnx.TensorProto.UINT8, "probabilities": onnx.TensorProto.FLOAT}
    test_acc = json.loads((run / "metrics.json").read_text())["final"]["test_acc"]
    for item in written[1:]:
        assert _io_types(item.path) == fp32_types  # keep_io_types: clients send the same pixels
        params = _params(tmp_path, item.name)
        own = params[precision.KEY]
        assert params[precision.KEY_OF] == "digits_classifier" and params[precision.KEY_METRIC] == "accuracy"
        # The FP32 figure through ONNX Runtime is the accuracy training measured on its own test split.
        assert float(params[precision.key("fp32", "metric")]) == pytest.approx(test_acc, abs=1e-6)
        assert int(params[precision.key(own, "bytes")]) == item.path.stat().st_size
        assert int(params[precision.key(own, "bytes")]) < int(params[precision.key("fp32", "bytes")])
        assert float(params[precision.key(own, "latency_ms.b32")]) > 0
        assert "dnnzoo.export.parity_max_abs_diff" not in params  # FP32's parity does not describe the variant
    graph = onnx.load(str(written[2].path)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    assert _params(tmp_path, "digits_classifier")[precision.KEY] == "fp32"
    table = precision.report_table(read_configs(tmp_path))
    assert [line.split()[:2] for line in table.splitlines()[1:4]] == [
        ["digits_classifier", "fp32"], ["digits_classifier_fp16", "fp16"], ["digits_classifier_int8", "int8"]]


def test_a_variant_past_its_tolerance_is_refused_and_nothing_is_written(run_of, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_data, "ACCURACY_TOLERANCE", -1.0)  # every variant, even a lossless one, is past it
    with pytest.raises(UserError, match=r"digits_classifier_int8: accuracy .* more than the tolerance -1; nothing written"):
        export_run(run_of("classifier"), tmp_path, precisions=("fp32", "int8"))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_int8_alone_writes_only_the_variant(run_of, tmp_path):
    written = export_run(run_of("classifier"), tmp_path, precisions=("int8",), allow_degraded=True)
    assert [w.name for w in written] == ["digits_classifier_int8"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits_classifier_int8"]


def test_detector_int8_keeps_nms_in_float_and_is_judged_by_held_out_map(run_of, tmp_path):
    written = export_run(run_of("detector"), tmp_path, precisions=("int8",), allow_degraded=True)
    params = _params(tmp_path, "digits_detector_int8")
    assert params[precision.KEY_METRIC] == "map50" and "held-out test scenes" in params[precision.KEY_HELD_OUT]
    graph = onnx.load(str(written[0].path)).graph
    assert _io_types(written[0].path) == {"images": onnx.TensorProto.UINT8, "detections": onnx.TensorProto.FLOAT}
    nms = [n for n in graph.node if n.op_type == "NonMaxSuppression"]
    producers = {out: n.op_type for n in graph.node for out in n.output}
    assert len(nms) == 1 and [producers.get(i) for i in nms[0].input[:2]] != ["DequantizeLinear"] * 2
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    # The box decode after the head convolution runs in float: the head's output is the last tensor quantised.
    index = {out: i for i, n in enumerate(graph.node) for out in n.output}
    head = max(i for i, n in enumerate(graph.node) if n.op_type == "Conv")
    assert max(index.get(n.input[0], -1) for n in graph.node if n.op_type == "QuantizeLinear") == head


@pytest.mark.parametrize("family", sorted(precision_data.REFUSED))
def test_families_without_variants_say_why(family, tmp_path):
    with pytest.raises(UserError, match=f"the {family} family has no FP16/INT8 variants: "):
        precision_data.judge(family, tmp_path, {}, {})


def test_precision_list_parses_and_refuses_unknown_names():
    assert precision_variants.parse("FP32, int8,int8") == ("fp32", "int8")
    with pytest.raises(UserError, match="choose from fp32, fp16, int8"):
        precision_variants.parse("bf16")


def test_latency_is_measured_for_every_model_and_batch():
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])],
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    timings = precision.latency_ms([model, model], lambda n: {"x": np.ones((n, 4), np.float32)}, repeats=3)
    assert [sorted(t) for t in timings] == [[1, 32], [1, 32]]


def test_build_adds_variants_beside_fp32_where_the_family_has_them(built, tmp_path):
    from export.build import build

    said = []
    build("tiny", tmp_path, built.runs, opset=17, force=False, instance_kind="auto", progress=False, out=said.append,
          precisions=("fp32", "int8"), allow_degraded=True)  # fmt: skip
    names = {p.name for p in tmp_path.iterdir()}
    assert {"digits_classifier", "digits_classifier_int8", "digits_detector", "digits_detector_int8"} <= names
    assert not any(n.endswith("_int8") for n in names - {"digits_classifier_int8", "digits_detector_int8"})
    assert any(line.startswith("pydoc_word2vec: FP32 only (its graphs are a vector lookup") for line in said)
    again = []
    build("tiny", tmp_path, built.runs, opset=17, force=False, instance_kind="auto", progress=False, out=again.append,
          precisions=("fp32", "int8"), allow_degraded=True)  # fmt: skip
    assert "digits_classifier: up to date" in " ".join(again)

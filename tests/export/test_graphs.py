"""The hand-written graph pieces against their PyTorch counterparts, beyond what a tiny run exercises."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from export.graphs import word2vec as w2v_graph
from export.graphs.nms import append_nms
from training.detector_model import nms
from training.word2vec_eval import unit_rows


def _identity_model(anchors: int, classes: int) -> onnx.ModelProto:
    value = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(
        [helper.make_node("Identity", ["b_in"], ["boxes"]), helper.make_node("Identity", ["s_in"], ["scores"])], "t",
        [value("b_in", ["batch", anchors, 4]), value("s_in", ["batch", classes, anchors])],
        [value("boxes", ["batch", anchors, 4]), value("scores", ["batch", classes, anchors])],
    )  # fmt: skip
    imports = [helper.make_opsetid("", 17)]
    return helper.make_model(graph, opset_imports=imports, ir_version=helper.find_min_ir_version_for(imports))


def test_nms_graph_gives_the_training_modules_detections():
    """Many overlapping boxes, scores with exact ties: ONNX NonMaxSuppression + the top-k table must
    select the same rows, in the same order, as training.detector_model.nms."""
    images, classes, anchors, max_det, score, iou = 6, 3, 40, 7, 0.3, 0.4
    model = append_nms(_identity_model(anchors, classes), "boxes", "scores", "det", classes, anchors, score, iou, max_det)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(20):
        corner = rng.uniform(0, 50, (images, anchors, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(1, 20, (images, anchors, 2))], -1).astype(np.float32)
        scores = rng.uniform(0, 1, (images, classes, anchors)).astype(np.float32)
        scores[:, :, ::5] = 0.5  # ties across boxes and classes
        (got,) = session.run(None, {"b_in": boxes, "s_in": scores})
        for i in range(images):
            found = nms(torch.from_numpy(boxes[i]), torch.from_numpy(scores[i]), score, iou, max_det).numpy()
            want = np.zeros((max_det, 6), np.float32)
            want[: len(found)] = found
            np.testing.assert_allclose(got[i], want, atol=1e-6)
            compared += len(found)
    assert compared > 100


def test_neighbour_graph_takes_k_as_an_input():
    unit = unit_rows(np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32))
    model = w2v_graph.neighbour_graph(unit, 17)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = w2v_graph.neighbour_reference(unit)
    for k in (1, 5, 50):
        queries = (unit[[3, 7]] * 4.0).astype(np.float32)  # not unit length: the graph normalises
        ids, scores = session.run(["ids", "scores"], {"queries": queries, "k": np.array([k], np.int64)})
        want = reference({"queries": queries, "k": np.array([k], np.int64)})
        assert ids.shape == (2, k)
        np.testing.assert_array_equal(ids, want["ids"])
        np.testing.assert_allclose(scores, want["scores"], atol=1e-5)
        assert ids[0, 0] == 3 and ids[1, 0] == 7 and abs(scores[0, 0] - 1) < 1e-5

"""Non-maximum suppression appended to an ONNX graph: decoded boxes and class scores in, a fixed-size,
zero-padded `[N, max_det, 6]` tensor of `x1, y1, x2, y2, score, class` out.

ONNX `NonMaxSuppression` gives a variable list of `[batch, class, box]` rows; a fixed-size output
needs the best `max_det` of each image across classes. The rows' scores are scattered into a dense
`[N, C·A]` table that starts at -1 (A boxes per class), and `TopK` along it picks them: a table cell
is `class·A + box`, so ties go to the lower class and then the lower box, the order PyTorch's stable
sort gives `training.detector_model.nms`. Cells still at -1 were not selected and become zero rows.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def append_nms(model: onnx.ModelProto, boxes: str, scores: str, output: str, classes: int, anchors: int,
               score_threshold: float, iou_threshold: float, max_det: int) -> onnx.ModelProto:  # fmt: skip
    """Replace the graph outputs `boxes` [N,A,4] and `scores` [N,C,A] by `output` [N,max_det,6]."""
    if classes * anchors < max_det:
        raise ValueError(f"max_det {max_det} exceeds the {classes * anchors} class-box pairs the grid can produce")
    p = "nms_"
    g = model.graph
    g.initializer.extend([
        _const(p + "max_per_class", np.array([max_det], np.int64)),
        _const(p + "iou", np.array([iou_threshold], np.float32)),
        _const(p + "score", np.array([score_threshold], np.float32)),
        _const(p + "flat", np.array([0, -1], np.int64)),
        _const(p + "zero", np.array(0.0, np.float32)),
        _const(p + "minus_one", np.array(-1.0, np.float32)),
        _const(p + "half", np.array(-0.5, np.float32)),
        _const(p + "anchors", np.array(anchors, np.int64)),
        _const(p + "k", np.array([max_det], np.int64)),
        _const(p + "i0", np.array([0], np.int64)),
        _const(p + "i1", np.array([1], np.int64)),
        _const(p + "i2", np.array([2], np.int64)),
        _const(p + "four", np.array([4], np.int64)),
    ])  # fmt: skip
    n = lambda op, ins, outs, **kw: helper.make_node(op, [i if i in (boxes, scores) else p + i for i in ins], [p + o for o in outs], **kw)  # noqa: E731
    g.node.extend([
        n("NonMaxSuppression", [boxes, scores, "max_per_class", "iou", "score"], ["selected"]),
        n("GatherND", [scores, "selected"], ["selected_scores"]),
        n("Gather", ["selected", "i0"], ["batch_col"], axis=1),
        n("Gather", ["selected", "i1"], ["class_col"], axis=1),
        n("Gather", ["selected", "i2"], ["box_col"], axis=1),
        n("Mul", ["class_col", "anchors"], ["class_offset"]),
        n("Add", ["class_offset", "box_col"], ["cell_col"]),
        n("Concat", ["batch_col", "cell_col"], ["cells"], axis=1),
        n("Reshape", [scores, "flat"], ["flat_scores"]),
        n("Mul", ["flat_scores", "zero"], ["zeros"]),
        n("Add", ["zeros", "minus_one"], ["table_empty"]),
        n("ScatterND", ["table_empty", "cells", "selected_scores"], ["table"]),
        n("TopK", ["table", "k"], ["top_scores", "top_cells"], axis=1, largest=1, sorted=1),
        n("Div", ["top_cells", "anchors"], ["top_class"]),
        n("Mod", ["top_cells", "anchors"], ["top_box"]),
        n("Unsqueeze", ["top_box", "i2"], ["top_box3"]),
        n("Shape", ["top_box3"], ["top_box3_shape"]),
        n("Slice", ["top_box3_shape", "i0", "i2"], ["lead_shape"]),
        n("Concat", ["lead_shape", "four"], ["gather_shape"], axis=0),
        n("Expand", ["top_box3", "gather_shape"], ["box_index"]),
        n("GatherElements", [boxes, "box_index"], ["top_boxes"], axis=1),
        n("Cast", ["top_class"], ["top_class_f"], to=TensorProto.FLOAT),
        n("Unsqueeze", ["top_scores", "i2"], ["score3"]),
        n("Unsqueeze", ["top_class_f", "i2"], ["class3"]),
        n("Concat", ["top_boxes", "score3", "class3"], ["rows"], axis=2),
        n("Greater", ["top_scores", "half"], ["valid"]),
        n("Unsqueeze", ["valid", "i2"], ["valid3"]),
        n("Where", ["valid3", "rows", "zero"], ["padded"]),
    ])  # fmt: skip
    g.node.append(helper.make_node("Identity", [p + "padded"], [output]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", max_det, 6]))
    return model

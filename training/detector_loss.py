"""The YOLO v1 loss of the detector (Redmon et al., 2016): sum-squared error over the grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.detector_model import box_iou, cell_boxes

LAMBDA_COORD = 5.0
LAMBDA_NOOBJ = 0.5


def yolo_loss(raw: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, boxes: int,
              image_size: int, parts: bool = False):  # fmt: skip
    """The YOLO v1 sum-squared loss, summed over the grid and averaged over the batch.

    gt_boxes [N, K, 4] pixel corners, gt_labels [N, K] (-1 = padding). Each object belongs to the cell
    holding its centre; of that cell's B boxes the one whose prediction has the highest IoU with it is
    "responsible" (ties: the first). Terms: λ_coord·[(x−x̂)² + (y−ŷ)² + (√w−√ŵ)² + (√h−√ĥ)²] and
    (C − IoU)² for responsible boxes; λ_noobj·C² for every other box; Σ_k (p_k − p̂_k)² over classes
    for cells holding an object. √w and √h are relative to the image, x and y to the cell; the
    confidence target IoU (of the prediction with its object) is held constant. A cell holds one object:
    when two centres share a cell one of them wins (YOLO v1's limit; the scenes' ink boxes never
    overlap, so it is rare).
    """
    raw = raw.to(torch.promote_types(raw.dtype, torch.float32))  # bf16/fp16 under --precision's autocast: summed in FP32 at least
    n, s = raw.shape[0], raw.shape[1]
    classes = raw.shape[-1] - boxes * 5
    act, corners = cell_boxes(raw, boxes, image_size)
    probs = torch.softmax(raw[..., boxes * 5 :], dim=-1)

    valid = gt_labels >= 0
    item = torch.arange(n, device=raw.device).unsqueeze(1).expand_as(gt_labels)[valid]
    box = gt_boxes[valid]
    centre = (box[:, :2] + box[:, 2:]) / 2 * (s / image_size)
    col, row = centre[:, 0].floor().clamp(0, s - 1).long(), centre[:, 1].floor().clamp(0, s - 1).long()
    index = (item, row, col)
    obj = torch.zeros(n, s, s, dtype=torch.bool, device=raw.device)
    obj[index] = True
    target = torch.zeros(n, s, s, 4, dtype=raw.dtype, device=raw.device)
    size = ((box[:, 2:] - box[:, :2]).clamp(min=0) / image_size).sqrt()
    target[index] = torch.cat([centre - torch.stack([col, row], 1).to(raw.dtype), size], dim=1)
    target_corners = torch.zeros(n, s, s, 4, dtype=raw.dtype, device=raw.device)
    target_corners[index] = box.to(raw.dtype)
    onehot = torch.zeros(n, s, s, classes, dtype=raw.dtype, device=raw.device)
    onehot[index] = F.one_hot(gt_labels[valid], classes).to(raw.dtype)

    iou = box_iou(corners, target_corners.unsqueeze(3)).detach()  # [N, S, S, B]
    responsible = F.one_hot(iou.argmax(-1), boxes).bool() & obj.unsqueeze(-1)
    r = responsible.to(raw.dtype)
    coord = LAMBDA_COORD * (r * ((act[..., :4] - target.unsqueeze(3)) ** 2).sum(-1)).sum()
    conf_obj = (r * (act[..., 4] - iou) ** 2).sum()
    conf_noobj = LAMBDA_NOOBJ * ((1 - r) * act[..., 4] ** 2).sum()
    cls = (obj.unsqueeze(-1).to(raw.dtype) * (probs - onehot) ** 2).sum()
    total = (coord + conf_obj + conf_noobj + cls) / n
    if parts:
        return total, {"coord": coord / n, "conf_obj": conf_obj / n, "conf_noobj": conf_noobj / n, "class": cls / n}
    return total

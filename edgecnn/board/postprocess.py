"""Boxes from a detector's output tensors, in float numpy: one module for the host and the boards.

`decode(outputs, head)` dispatches on the head description a detector's spec carries (`PreprocessSpec.head`,
`{"kind": "centernet", "stride": 8}`): `evaluate` calls it for mAP, and the board runner (`runner.py`, shipped with
this file) calls it to time post-processing apart from invoke. Standard library and numpy only, as the runner is.

CenterNet-style maps (`edgecnn.zoo.detectors`): peak search, top-k, class-wise NMS.

What: `decode_centernet(heatmap, size, offset, stride)` turns the three output maps of `edgecnn.zoo.detectors` into boxes
`[x0, y0, x1, y1]` in model-input pixels, with scores and classes; `nms` keeps, per class, the best of boxes that
overlap by more than `iou`.

Why here and in float: an int8 model ends at its three output tensors; post-processing on their dequantized values
costs microseconds and keeps the graph integer-only (TFLite's TFLite_Detection_PostProcess op is float-only, so
inside the graph it would force float inputs back in). It depends on numpy only, so a board runner can carry a copy.

Steps, per image:
1. peaks: a heatmap cell that equals the maximum of its 3x3 neighbourhood (CenterNet's max-pool "NMS"; ties on an
   int8 plateau all survive and are merged by step 4);
2. top-k: the `top_k` highest peaks over all cells and classes, those below `score_threshold` dropped;
3. boxes: centre = (cell + offset) * stride, width/height = size * stride (size and offset as trained by
   `edgecnn.train.targets.encode`, the inverse of this);
4. class-wise NMS at `iou` (two peaks of one object in neighbouring cells), at most `max_detections` kept.
"""

from __future__ import annotations

import numpy as np

TOP_K = 100
SCORE_THRESHOLD = 0.05
NMS_IOU = 0.5
MAX_DETECTIONS = 100


def peaks(heatmap: np.ndarray) -> np.ndarray:
    """Boolean (H, W, C): cells that equal the max of their 3x3 neighbourhood (edges padded with -inf)."""
    h, w = heatmap.shape[:2]
    padded = np.pad(heatmap, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    local = np.max([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
    return heatmap >= local


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one [x0, y0, x1, y1] box with each row of `others` (M, 4)."""
    lt = np.maximum(box[:2], others[:, :2])
    rb = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(others[:, 2:] - others[:, :2], axis=1) - inter
    return inter / np.maximum(union, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU,
        max_detections: int = MAX_DETECTIONS) -> np.ndarray:
    """Indices kept by class-wise greedy NMS, best score first (ties: lower index first)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    suppressed = np.zeros(len(scores), bool)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == max_detections:
            break
        rest = order[pos + 1:]
        rest = rest[(classes[rest] == classes[i]) & ~suppressed[rest]]
        if len(rest):
            suppressed[rest[box_iou(boxes[i], boxes[rest]) > iou]] = True
    return np.asarray(keep, dtype=np.int64)


def decode_centernet(heatmap: np.ndarray, size: np.ndarray, offset: np.ndarray, stride: float, top_k: int = TOP_K,
           score_threshold: float = SCORE_THRESHOLD, iou: float = NMS_IOU,
           max_detections: int = MAX_DETECTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (K, 4) float32 in input pixels, scores (K,), classes (K,) int) of one image's maps (H, W, ...)."""
    heatmap = np.asarray(heatmap, np.float32)
    cand = np.flatnonzero(peaks(heatmap) & (heatmap >= score_threshold))
    scores = heatmap.reshape(-1)[cand]
    if len(cand) > top_k:
        best = np.argsort(-scores, kind="stable")[:top_k]
        cand, scores = cand[best], scores[best]
    y, x, cls = np.unravel_index(cand, heatmap.shape)
    cx = (x + offset[y, x, 0]) * stride
    cy = (y + offset[y, x, 1]) * stride
    w, h = size[y, x, 0] * stride, size[y, x, 1] * stride
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32).reshape(-1, 4)
    keep = nms(boxes, scores, cls, iou, max_detections)
    return boxes[keep], scores[keep].astype(np.float32), cls[keep].astype(np.int64)



def centernet(outputs: list, head: dict, input_hw: tuple[int, int], **options) -> list:
    """`decode_centernet` on each image of a batch of (heatmap, size, offset) maps; stride from the input size."""
    heat, size, offset = outputs
    stride = input_hw[0] / heat.shape[1]
    return [decode_centernet(heat[i], size[i], offset[i], stride, **options) for i in range(len(heat))]


# head kind -> a function (outputs, head, input_hw, **options) -> per image (boxes, scores, classes)
HEADS = {"centernet": centernet}


def decode(outputs: list, head: dict, input_hw: tuple[int, int], **options) -> list:
    """Per image (boxes (K, 4) in input pixels, scores, classes) of a batch of dequantized `outputs` (each (N, ...)).

    `head`: the detector's head description, `{"kind": KIND, ...}` with KIND in `HEADS` and the kind's own keys;
    `input_hw`: the model input's (height, width); `options`: the decoder's thresholds (`score_threshold`, `iou`...).
    """
    kind = head.get("kind")
    if kind not in HEADS:
        raise ValueError(f"unknown detection head {kind!r}; known: {', '.join(sorted(HEADS))}")
    return HEADS[kind](outputs, head, input_hw, **options)

"""Training targets of the SSDLite head (`edgecnn.zoo.ssdlite`) and its losses; the inverse of
`edgecnn.tasks.detection.postprocess.decode_ssd`.

What: each image's boxes are matched to the head's anchors (`edgecnn.tasks.detection.postprocess.anchors`, regenerated from
the head description in the spec): an anchor whose IoU with a box is >= 0.5 is a positive of its best box, and
each box also claims its single best anchor (a 16 px digit between two stride-8 cells may reach IoU 0.5 with no
anchor at all, and would otherwise never be trained). A positive's box target is the SSD encoding of its box
(`encode_boxes`: centre offset in anchor sizes, log size ratio, each divided by its variance); its score target
is its class's one-hot row; every other anchor is background (all-zero row).

Why these losses: smooth-L1 on the deltas of positives only (negatives have no box); a sigmoid focal loss
(Lin et al. 2017, alpha 0.25, gamma 2) on every anchor and class, so ~2,000 easy background anchors an image do
not drown the few positives without SSD's hard-negative mining; both divided by the batch's number of positives.
"""

from __future__ import annotations

import numpy as np

MATCH_IOU = 0.5
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def to_corners(cxcywh: np.ndarray) -> np.ndarray:
    """`[cx, cy, w, h]` rows -> `[x0, y0, x1, y1]` rows."""
    a = np.asarray(cxcywh, np.float32)
    return np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], axis=1)


def encode_boxes(boxes: np.ndarray, prior: np.ndarray, variances) -> np.ndarray:
    """(A, 4) deltas of boxes `[x0, y0, x1, y1]` (A, 4) against anchors `[cx, cy, w, h]` (A, 4): the inverse of
    `edgecnn.tasks.detection.postprocess.decode_boxes`."""
    b = np.asarray(boxes, np.float32)
    wh = np.maximum(b[:, 2:] - b[:, :2], 1e-3)
    c = (b[:, :2] + b[:, 2:]) / 2
    d = np.concatenate([(c - prior[:, :2]) / prior[:, 2:], np.log(wh / prior[:, 2:])], axis=1)
    return (d / np.asarray(variances, np.float32)).astype(np.float32)


def match(prior_corners: np.ndarray, boxes: np.ndarray, iou: float = MATCH_IOU) -> np.ndarray:
    """(A,) index of the box each anchor is a positive of, -1 for background: IoU >= `iou` with its best box,
    plus each box's best anchor (the later box wins an anchor two boxes pick)."""
    from edgecnn.tasks.detection.postprocess import iou_matrix

    out = np.full(len(prior_corners), -1, np.int64)
    if not len(boxes):
        return out
    overlaps = iou_matrix(prior_corners, boxes)  # (A, K)
    best = overlaps.argmax(axis=1)
    hit = overlaps[np.arange(len(best)), best] >= iou
    out[hit] = best[hit]
    out[overlaps.argmax(axis=0)] = np.arange(len(boxes))
    return out


def encode(boxes: list, prior: np.ndarray, variances, num_classes: int):
    """(boxes (N, A, 5), scores (N, A, C)) float32 targets for each image's boxes ((K, 5) `[x0, y0, x1, y1,
    class]` in input pixels) against anchors `prior` (A, 4) `[cx, cy, w, h]`; boxes' last channel marks positives."""
    n, a = len(boxes), len(prior)
    corners = to_corners(prior)
    box_t = np.zeros((n, a, 5), np.float32)
    score_t = np.zeros((n, a, num_classes), np.float32)
    for i, b in enumerate(boxes):
        b = np.asarray(b, np.float32).reshape(-1, 5)
        b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
        m = match(corners, b[:, :4])
        pos = np.flatnonzero(m >= 0)
        box_t[i, pos, :4] = encode_boxes(b[m[pos], :4], prior[pos], variances)
        box_t[i, pos, 4] = 1.0
        score_t[i, pos, b[m[pos], 4].astype(np.int64)] = 1.0
    return box_t, score_t


def encoder(head: dict, input_hw: tuple[int, int], num_classes: int):
    """A function (per-image boxes) -> targets for the SSD head described by `head` at input size `input_hw`."""
    from edgecnn.tasks.detection.postprocess import anchors

    prior = anchors(head["anchors"], input_hw)
    return lambda boxes: encode(boxes, prior, head["variances"], num_classes)


def losses():
    """({"boxes": smooth-L1 on positives, "scores": sigmoid focal}, their weights) as Keras loss functions."""
    from keras import ops

    def smooth_l1(y_true, y_pred):
        mask = y_true[..., 4:5]
        diff = ops.abs(y_pred - y_true[..., :4])
        per = ops.where(diff < 1.0, 0.5 * diff ** 2, diff - 0.5)
        return ops.sum(per * mask) / ops.maximum(ops.sum(mask), 1.0)

    def focal(y_true, y_pred):
        p = ops.clip(y_pred, 1e-6, 1 - 1e-6)
        pos = -FOCAL_ALPHA * (1 - p) ** FOCAL_GAMMA * ops.log(p) * y_true
        neg = -(1 - FOCAL_ALPHA) * p ** FOCAL_GAMMA * ops.log(1 - p) * (1 - y_true)
        return ops.sum(pos + neg) / ops.maximum(ops.sum(y_true), 1.0)

    return {"boxes": smooth_l1, "scores": focal}, {"boxes": 1.0, "scores": 1.0}

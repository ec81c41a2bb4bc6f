"""Training targets of the CenterNet-style head (`edgecnn.zoo.detectors`) and its losses; the inverse of
`edgecnn.tasks.detection.postprocess.decode_centernet`.

For a box with centre (cx, cy) and size (w, h) in input pixels and a head at stride s: its centre cell is
(floor(cx/s), floor(cy/s)); the heatmap of its class holds a Gaussian peaking at 1 on that cell (radius from the
box size as in CenterNet: the largest shift that keeps IoU >= 0.7 with the true box, at least `MIN_RADIUS`);
`size` holds (w/s, h/s) and `offset` holds (cx/s - cell x, cy/s - cell y) on the centre cell, with a mask (third channel) that marks the
cells where they count. Losses: the penalty-reduced focal loss on the heatmap (alpha 2, beta 4), L1 on size
(weight 0.1) and offset (weight 1), each divided by the batch's number of objects.
"""

from __future__ import annotations

import numpy as np

SIZE_WEIGHT = 0.1
MIN_OVERLAP = 0.7
MIN_RADIUS = 1  # cells: CenterNet's radius is 0 for most of scenes:digits' 2-6-cell objects, a single positive
# cell; a floor of 1 gives the neighbours partial credit (measured with it: 6,000 scenes x 6 epochs, mAP@.5 0.376)


def gaussian_radius(h: float, w: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's radius (cells): the smallest of the three corner-shift cases keeping IoU >= `min_overlap`."""
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + np.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return max(0.0, float(min(r1, r2, r3)))


def encode(boxes: list, grid: tuple[int, int], stride: float, num_classes: int):
    """(heatmap (N, H, W, C), size (N, H, W, 3), offset (N, H, W, 3)) float32 targets for each image's boxes
    ((K, 5) `[x0, y0, x1, y1, class]` in input pixels); the last channel of size/offset is the centre mask."""
    gh, gw = grid
    n = len(boxes)
    heat = np.zeros((n, gh, gw, num_classes), np.float32)
    size = np.zeros((n, gh, gw, 3), np.float32)
    offset = np.zeros((n, gh, gw, 3), np.float32)
    ys, xs = np.arange(gh)[:, None], np.arange(gw)[None, :]
    for i, b in enumerate(boxes):
        for x0, y0, x1, y1, c in np.asarray(b, np.float32).reshape(-1, 5):
            w, h = (x1 - x0) / stride, (y1 - y0) / stride
            if w <= 0 or h <= 0:
                continue
            cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
            jx, jy = min(int(cx), gw - 1), min(int(cy), gh - 1)
            sigma = (2 * max(int(gaussian_radius(h, w)), MIN_RADIUS) + 1) / 6
            g = np.exp(-((xs - jx) ** 2 + (ys - jy) ** 2) / (2 * sigma ** 2))
            heat[i, :, :, int(c)] = np.maximum(heat[i, :, :, int(c)], g)
            size[i, jy, jx] = (w, h, 1.0)
            offset[i, jy, jx] = (cx - jx, cy - jy, 1.0)
    return heat, size, offset


def losses():
    """{"heatmap": focal, "size": masked L1, "offset": masked L1} Keras loss functions and their weights."""
    from keras import ops

    def num_objects(y_true):
        return ops.maximum(ops.sum(ops.cast(ops.equal(y_true, 1.0), "float32")), 1.0)

    def focal(y_true, y_pred):
        p = ops.clip(y_pred, 1e-6, 1 - 1e-6)
        pos = ops.cast(ops.equal(y_true, 1.0), "float32")
        pos_loss = -ops.log(p) * (1 - p) ** 2 * pos
        neg_loss = -ops.log(1 - p) * p ** 2 * (1 - y_true) ** 4 * (1 - pos)
        return (ops.sum(pos_loss) + ops.sum(neg_loss)) / num_objects(y_true)

    def masked_l1(y_true, y_pred):
        mask = y_true[..., 2:3]
        return ops.sum(ops.abs(y_pred - y_true[..., :2]) * mask) / ops.maximum(ops.sum(mask), 1.0)

    return {"heatmap": focal, "size": masked_l1, "offset": masked_l1}, \
        {"heatmap": 1.0, "size": SIZE_WEIGHT, "offset": 1.0}

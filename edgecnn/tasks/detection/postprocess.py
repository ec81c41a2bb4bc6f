"""Boxes from a detector's output tensors, in float numpy: one module for the host and the boards.

`decode(outputs, head)` dispatches on the head description a detector's spec carries (`PreprocessSpec.head`,
`{"kind": "centernet"}`, `{"kind": "ssd", "anchors": {...}, "variances": [...]}`): `evaluate` calls it for mAP, and the board runner (`runner.py`, shipped with
this file) calls it to time post-processing apart from invoke. Standard library and numpy only, as the runner is.

| head kind   | outputs                                   | decoder                                            |
|-------------|-------------------------------------------|----------------------------------------------------|
| `centernet` | heatmap, size, offset maps                | `decode_centernet`: peak search, top-k, NMS         |
| `ssd`       | boxes (A, 4) deltas, scores (A, C)        | `decode_ssd`: `anchors`, `decode_boxes`, top-k, NMS |

What: `decode_centernet(heatmap, size, offset, stride)` turns the three output maps of `edgecnn.zoo.detectors` into boxes
`[x0, y0, x1, y1]` in model-input pixels, with scores and classes; `nms` keeps, per class, the best of boxes that
overlap by more than `iou`.

Why here and in float: an int8 model ends at its three output tensors; post-processing on their dequantized values
costs microseconds and keeps the graph integer-only (TFLite's TFLite_Detection_PostProcess op is float-only, so
inside the graph it would force float inputs back in). It depends on numpy only, so a board runner can carry a copy.

CenterNet, per image:
1. peaks: a heatmap cell that equals the maximum of its 3x3 neighbourhood (CenterNet's max-pool "NMS"), one cell
   per plateau (`plateau_peaks`): int8 rounding makes the top cells of an object 2-3 cells wide equal, and their
   boxes, one cell apart, overlap by IoU 0.33-0.5, under the NMS threshold, so NMS would not merge them;
2. top-k: the `top_k` highest peaks over all cells and classes, those below `score_threshold` dropped;
3. boxes: centre = (cell + offset) * stride, width/height = size * stride (size and offset as trained by
   `edgecnn.train.targets.encode`, the inverse of this);
4. class-wise NMS at `iou` (peaks of one object that are not equal, or boxes of overlapping objects), at most
   `max_detections` kept.

SSD, per image: the anchors come back from the head description alone (`anchors`: strides, sizes, aspect ratios),
every (anchor, class) score >= `score_threshold` is a candidate, the best `top_k` are decoded against their
anchors (`decode_boxes`, the inverse of `edgecnn.train.ssd_targets.encode_boxes`), then class-wise NMS.
"""

from __future__ import annotations

import numpy as np

TASK = "detection"  # the task whose models this file decodes (a spec's `task`), for the runner that loads it
DEFAULT_HEAD = {"kind": "centernet"}  # a detection spec without a head is an early CenterNet
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


def plateau_peaks(heatmap: np.ndarray, floor: float = -np.inf) -> np.ndarray:
    """Boolean (H, W, C): `peaks` at or above `floor`, keeping one cell of each plateau (the first in row-major
    order). `floor` (the score threshold) leaves the flat background out of the search.

    What: two neighbouring peaks (8-connected, same class) must be equal, each being >= the other, so the peaks
    that touch form plateaus; each cell takes the smallest flat index of its plateau, spread one neighbour per
    pass until nothing changes (passes = the plateau's length, 1-2 on a real heatmap), and only the cell whose own
    index that is stays. Why: an int8 heatmap rounds an object's top cells to one value; every one of them is a
    3x3 maximum, and their boxes, one cell apart, overlap too little for NMS to merge them (see the module
    docstring), so one object would give two or three boxes.
    """
    peak = peaks(heatmap) & (heatmap >= floor)
    h, w = peak.shape[:2]
    own = np.arange(peak.size, dtype=np.int64).reshape(peak.shape)
    none = np.iinfo(np.int64).max
    label = np.where(peak, own, none)
    while True:
        padded = np.pad(label, ((1, 1), (1, 1), (0, 0)), constant_values=none)
        low = np.min([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
        spread = np.where(peak, low, none)
        if np.array_equal(spread, label):
            return peak & (label == own)
        label = spread


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4), boxes as [x0, y0, x1, y1]."""
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU,
        max_detections: int = MAX_DETECTIONS) -> np.ndarray:
    """Indices kept by class-wise greedy NMS, best score first (ties: lower index first).

    The overlaps of all candidates are one (K, K) matrix, so the greedy pass is a boolean OR per kept box: it was
    an IoU against the rest per box (2.2 ms of post-processing per image against a 0.34 ms invoke, 100 candidates).
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    b, c = np.asarray(boxes)[order], np.asarray(classes)[order]
    over = (iou_matrix(b, b) > iou) & (c[:, None] == c[None, :])
    keep = []
    suppressed = np.zeros(len(order), bool)
    for j in range(len(order)):
        if suppressed[j]:
            continue
        keep.append(order[j])
        if len(keep) == max_detections:
            break
        suppressed |= over[j]
    return np.asarray(keep, dtype=np.int64)


def decode_centernet(heatmap: np.ndarray, size: np.ndarray, offset: np.ndarray, stride: float, top_k: int = TOP_K,
           score_threshold: float = SCORE_THRESHOLD, iou: float = NMS_IOU,
           max_detections: int = MAX_DETECTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (K, 4) float32 in input pixels, scores (K,), classes (K,) int) of one image's maps (H, W, ...)."""
    heatmap = np.asarray(heatmap, np.float32)
    cand = np.flatnonzero(plateau_peaks(heatmap, score_threshold))
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


def anchors(spec: dict, input_hw: tuple[int, int]) -> np.ndarray:
    """(A, 4) float32 anchors `[cx, cy, w, h]` in input pixels, in the order an SSD head's outputs are laid out.

    `spec` (an SSD head's `"anchors"`): `strides` (one per feature level; the level's grid is ceil(H/stride) x
    ceil(W/stride), as "same"-padded stride-2 convolutions give), `sizes` (per level, the anchor sides in input
    pixels at aspect ratio 1), `aspect_ratios` (width/height; each size x each ratio, side sqrt(w*h) kept) and
    `offset` (an anchor's centre in its cell, 0.5 = the middle). Order: level, row, column, size, ratio, which is
    a (H, W, per-cell * 4) conv output reshaped to (H*W*per-cell, 4). MediaPipe's SSD anchor options map on it:
    BlazeFace (128 px, fixed_anchor_size) is strides [8, 16], sizes [[128] * 2, [128] * 6], ratios [1].
    """
    h, w = input_hw
    ratios = np.asarray(spec.get("aspect_ratios", [1.0]), np.float64)
    offset = float(spec.get("offset", 0.5))
    if len(spec["strides"]) != len(spec["sizes"]):
        raise ValueError(f"anchors: {len(spec['strides'])} strides but {len(spec['sizes'])} lists of sizes")
    out = []
    for stride, sizes in zip(spec["strides"], spec["sizes"]):
        gh, gw = -(-h // int(stride)), -(-w // int(stride))
        sides = np.asarray(sizes, np.float64)[:, None]
        aw = (sides * np.sqrt(ratios)).reshape(-1)  # (sizes * ratios,), ratio fastest
        ah = (sides / np.sqrt(ratios)).reshape(-1)
        cy, cx = np.meshgrid((np.arange(gh) + offset) * stride, (np.arange(gw) + offset) * stride, indexing="ij")
        k = len(aw)
        out.append(np.stack([np.repeat(cx.reshape(-1), k), np.repeat(cy.reshape(-1), k),
                             np.tile(aw, gh * gw), np.tile(ah, gh * gw)], axis=1))
    return np.concatenate(out).astype(np.float32)


def decode_boxes(deltas: np.ndarray, anchors_cxcywh: np.ndarray, variances) -> np.ndarray:
    """(A, 4) boxes `[x0, y0, x1, y1]` from SSD deltas (A, 4) against anchors `[cx, cy, w, h]`:
    centre = anchor centre + d_xy * variance_xy * anchor size, size = anchor size * exp(d_wh * variance_wh)."""
    d = np.asarray(deltas, np.float32) * np.asarray(variances, np.float32)
    a = np.asarray(anchors_cxcywh, np.float32)
    c = a[:, :2] + d[:, :2] * a[:, 2:]
    half = a[:, 2:] * np.exp(np.clip(d[:, 2:], -10.0, 10.0)) / 2
    return np.concatenate([c - half, c + half], axis=1)


def decode_ssd(deltas: np.ndarray, scores: np.ndarray, anchors_cxcywh: np.ndarray, variances,
               background: bool = False, top_k: int = TOP_K, score_threshold: float = SCORE_THRESHOLD,
               iou: float = NMS_IOU, max_detections: int = MAX_DETECTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (K, 4) float32 in input pixels, scores (K,), classes (K,) int) of one image's SSD outputs.

    `deltas` (A, 4), `scores` (A, C) probabilities (sigmoid per class; with `background`, softmax whose column 0 is
    the background and is dropped): every (anchor, class) at or above `score_threshold`, the best `top_k` of them
    decoded against their anchors, then class-wise NMS.
    """
    scores = np.asarray(scores, np.float32)
    if background:
        scores = scores[:, 1:]
    if len(deltas) != len(anchors_cxcywh) or len(scores) != len(anchors_cxcywh):
        raise ValueError(f"{len(deltas)} box and {len(scores)} score rows for {len(anchors_cxcywh)} anchors")
    cand = np.flatnonzero(scores >= score_threshold)
    best = scores.reshape(-1)[cand]
    if len(cand) > top_k:
        keep = np.argsort(-best, kind="stable")[:top_k]
        cand, best = cand[keep], best[keep]
    a, cls = np.unravel_index(cand, scores.shape)
    boxes = decode_boxes(np.asarray(deltas)[a], np.asarray(anchors_cxcywh)[a], variances).reshape(-1, 4)
    keep = nms(boxes, best, cls, iou, max_detections)
    return boxes[keep], best[keep].astype(np.float32), cls[keep].astype(np.int64)


def ssd(outputs: list, head: dict, input_hw: tuple[int, int], **options) -> list:
    """`decode_ssd` on each image of a batch of (boxes (N, A, 4), scores (N, A, C)) outputs; anchors from `head`."""
    deltas, scores = outputs
    prior = anchors(head["anchors"], input_hw)
    background = head.get("scores", "sigmoid") == "softmax"
    return [decode_ssd(deltas[i], scores[i], prior, head["variances"], background, **options)
            for i in range(len(deltas))]


def output_problem(shapes: list, head: dict, input_hw: tuple[int, int], num_classes: int) -> str:
    """"" when output shapes (each without the batch axis) fit `head` and `num_classes`, else what was expected."""
    shapes = [tuple(int(d) for d in s) for s in shapes]
    kind = head.get("kind")
    if kind == "centernet":
        ok = len(shapes) == 3 and [s[-1] for s in shapes] == [num_classes, 2, 2]
        return "" if ok else f"three outputs (heatmap with {num_classes} classes, size 2, offset 2)"
    if kind == "ssd":
        n = len(anchors(head["anchors"], input_hw))
        c = num_classes + (head.get("scores") == "softmax")
        ok = shapes == [(n, 4), (n, c)]
        return "" if ok else f"two outputs (boxes ({n}, 4), scores ({n}, {c})) for {n} anchors"
    return f"a known head kind ({', '.join(sorted(HEADS))}), not {kind!r}"


# head kind -> a function (outputs, head, input_hw, **options) -> per image (boxes, scores, classes)
HEADS = {"centernet": centernet, "ssd": ssd}


def decode(outputs: list, head: dict, input_hw: tuple[int, int], **options) -> list:
    """Per image (boxes (K, 4) in input pixels, scores, classes) of a batch of dequantized `outputs` (each (N, ...)).

    `head`: the detector's head description, `{"kind": KIND, ...}` with KIND in `HEADS` and the kind's own keys;
    `input_hw`: the model input's (height, width); `options`: the decoder's thresholds (`score_threshold`, `iou`...).
    """
    kind = head.get("kind")
    if kind not in HEADS:
        raise ValueError(f"unknown detection head {kind!r}; known: {', '.join(sorted(HEADS))}")
    return HEADS[kind](outputs, head, input_hw, **options)


# --- foreign detectors: BlazeFace raw outputs, TFLite_Detection_PostProcess outputs, and telling them apart --------
#
# Kept in their own functions, registered at the end with `HEADS.update(FOREIGN_HEADS)`.

# MediaPipe's SsdAnchorsCalculator options of its BlazeFace models (face_detection_*_common.pbtxt): the layer
# strides, and whether each layer adds an "interpolated" anchor (interpolated_scale_aspect_ratio 1.0) to the
# aspect-ratio-1 one. With `fixed_anchor_size: true` every anchor is 1x1 (in input-size units): only centres count.
BLAZEFACE_LAYOUTS = {
    "short_range": {"strides": [8, 16, 16, 16], "interpolated": True},  # 128x128: 16*16*2 + 8*8*6 = 896
    "back": {"strides": [16, 32, 32, 32], "interpolated": True},  # 256x256: 896
    "full_range": {"strides": [4], "interpolated": False},  # 192x192: 48*48 = 2304
}
BLAZEFACE_SCORE_THRESHOLD = 0.5  # MediaPipe's min_score_thresh
BLAZEFACE_IOU = 0.3  # MediaPipe's min_suppression_threshold
BLAZEFACE_SCORE_CLIP = 100.0  # MediaPipe's score_clipping_thresh


def blazeface_anchors(input_hw: tuple[int, int], strides: list, interpolated: bool = True) -> np.ndarray:
    """(N, 2) anchor centres (x, y) in 0..1, in MediaPipe's SsdAnchorsCalculator order.

    Consecutive layers with the same stride share one feature map: per cell, each of them adds one anchor of aspect
    ratio 1 and, with `interpolated`, one more; cells are walked row by row (y, then x), anchors within a cell last.
    """
    h, w = input_hw
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += 2 if interpolated else 1
            layer += 1
        fh, fw = -(-h // stride), -(-w // stride)
        ys, xs = np.meshgrid((np.arange(fh) + 0.5) / fh, (np.arange(fw) + 0.5) / fw, indexing="ij")
        cell = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode_blazeface(regressors: np.ndarray, classificators: np.ndarray, anchors: np.ndarray,
                     input_hw: tuple[int, int], score_threshold: float = BLAZEFACE_SCORE_THRESHOLD,
                     iou: float = BLAZEFACE_IOU, max_detections: int = MAX_DETECTIONS, **_ignored):
    """(boxes (K, 4) in input pixels, scores, classes (all 0)) of one image's (N, 4+2k) regressors and (N, 1) logits.

    MediaPipe's TensorsToDetectionsCalculator with x/y/w/h_scale = the input size: centre = raw[0:2] / size +
    anchor centre, width/height = raw[2:4] / size (anchors are 1x1); score = sigmoid(clip(logit, +-100)); then
    greedy NMS at `iou` (MediaPipe blends overlapping boxes instead; the kept boxes are the same).
    """
    h, w = input_hw
    logits = np.clip(np.asarray(classificators, np.float32).reshape(-1), -BLAZEFACE_SCORE_CLIP, BLAZEFACE_SCORE_CLIP)
    scores = 1.0 / (1.0 + np.exp(-logits))
    cand = np.flatnonzero(scores >= score_threshold)
    raw = np.asarray(regressors, np.float32)[cand, :4]
    cx = raw[:, 0] / w + anchors[cand, 0]
    cy = raw[:, 1] / h + anchors[cand, 1]
    bw, bh = raw[:, 2] / w, raw[:, 3] / h
    boxes = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], axis=1)
    boxes = boxes.astype(np.float32).reshape(-1, 4)
    classes = np.zeros(len(cand), np.int64)
    keep = nms(boxes, scores[cand], classes, iou, max_detections)
    return boxes[keep], scores[cand][keep].astype(np.float32), classes[keep]


def _blazeface_pair(outputs: list) -> tuple[np.ndarray, np.ndarray]:
    """(regressors (B, N, 4+2k), classificators (B, N, 1)) among `outputs`, in either order, or a ValueError."""
    shapes = [tuple(np.shape(o)) for o in outputs]
    if len(outputs) != 2 or any(len(s) != 3 for s in shapes) or shapes[0][:2] != shapes[1][:2]:
        raise ValueError(f"blazeface needs two outputs (1, N, 16) and (1, N, 1), got {shapes}")
    reg, cls = (outputs[0], outputs[1]) if shapes[0][2] > shapes[1][2] else (outputs[1], outputs[0])
    if np.shape(cls)[2] != 1 or np.shape(reg)[2] < 4:
        raise ValueError(f"blazeface needs two outputs (1, N, 16) and (1, N, 1), got {shapes}")
    return reg, cls


def blazeface_layout(input_hw: tuple[int, int], num_anchors: int) -> dict | None:
    """The BLAZEFACE_LAYOUTS entry whose anchors at `input_hw` number `num_anchors`, or None."""
    for layout in BLAZEFACE_LAYOUTS.values():
        if len(blazeface_anchors(input_hw, layout["strides"], layout["interpolated"])) == num_anchors:
            return dict(layout)
    return None


def blazeface(outputs: list, head: dict, input_hw: tuple[int, int], **options) -> list:
    """BlazeFace-style raw outputs (regressors, classificators) -> per image boxes, scores, classes.

    `head`: `{"kind": "blazeface", "strides": [...], "interpolated": bool}` (the anchors; without them the layout
    whose anchor count fits the outputs), optional `score_threshold` and `iou`.
    """
    reg, cls = _blazeface_pair(outputs)
    n = np.shape(reg)[1]
    layout = {k: head[k] for k in ("strides", "interpolated") if k in head} or blazeface_layout(input_hw, n)
    if layout is None or "strides" not in layout:
        raise ValueError(f"blazeface: no known anchor layout gives {n} anchors at input {input_hw[0]}x{input_hw[1]}"
                         f" (give strides and interpolated in the head)")
    anchors = blazeface_anchors(input_hw, layout["strides"], layout.get("interpolated", True))
    if len(anchors) != n:
        raise ValueError(f"blazeface: strides {layout['strides']} give {len(anchors)} anchors at input "
                         f"{input_hw[0]}x{input_hw[1]}, the outputs have {n}")
    opts = {k: head[k] for k in ("score_threshold", "iou") if k in head}
    opts.update(options)
    return [decode_blazeface(reg[i], cls[i], anchors, input_hw, **opts) for i in range(len(reg))]


TFLITE_DETECTION_ROLES = ("boxes", "classes", "scores", "count")  # the op's own output order


def tflite_detection_postprocess(outputs: list, head: dict, input_hw: tuple[int, int],
                                 score_threshold: float = 0.0, **_ignored) -> list:
    """The four outputs of TFLite's TFLite_Detection_PostProcess op -> per image boxes (input pixels), scores, classes.

    The op already decoded the anchors and ran NMS inside the graph: here only the first `count` rows are kept and
    [ymin, xmin, ymax, xmax] in 0..1 becomes [x0, y0, x1, y1] in pixels. `head["roles"]` names each model output
    (the model may list the op's outputs in any order); without it the op's order is assumed.
    """
    roles = head.get("roles") or list(TFLITE_DETECTION_ROLES)
    if len(outputs) != 4 or sorted(roles) != sorted(TFLITE_DETECTION_ROLES):
        raise ValueError(f"tflite_detection_postprocess needs the op's four outputs (boxes, classes, scores, count), "
                         f"got {len(outputs)} outputs {[tuple(np.shape(o)) for o in outputs]}")
    by = dict(zip(roles, outputs))
    boxes, classes, scores = np.asarray(by["boxes"]), np.asarray(by["classes"]), np.asarray(by["scores"])
    count = np.asarray(by["count"]).reshape(-1)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.shape != boxes.shape[:2] or classes.shape != boxes.shape[:2]:
        raise ValueError(f"tflite_detection_postprocess: boxes {boxes.shape}, classes {classes.shape}, scores "
                         f"{scores.shape} do not fit (1, M, 4), (1, M), (1, M)")
    h, w = input_hw
    result = []
    for i in range(len(boxes)):
        k = int(count[i]) if i < len(count) else boxes.shape[1]
        b, s, c = boxes[i, :k], scores[i, :k], classes[i, :k]
        keep = s >= score_threshold
        xyxy = np.stack([b[:, 1] * w, b[:, 0] * h, b[:, 3] * w, b[:, 2] * h], axis=1).astype(np.float32)
        result.append((xyxy[keep].reshape(-1, 4), s[keep].astype(np.float32), c[keep].astype(np.int64)))
    return result


def tflite_ssd(outputs: list, head: dict, input_hw: tuple[int, int], **options) -> list:
    """The inputs of a TFLite_Detection_PostProcess op that convert cut off (`--postprocess numpy`) -> per image
    boxes (input pixels), scores, classes, as the op computes them.

    `outputs`: box encodings (N, A, 4) `[ty, tx, th, tw]` and class scores (N, A, C or C + 1; already sigmoid, a
    background column 0 when C + 1); `head`: `anchors` (A, 4) `[ycenter, xcenter, h, w]` in 0..1, `scales`
    `[y, x, h, w]` (centre = t / scale * anchor size + anchor centre, size = exp(t / scale) * anchor size: the op's
    centre-size decoding), `num_classes`, `max_detections`, `iou`, `score_threshold` and `nms`:
    - "fast" (the op's default, `use_regular_nms` false): each anchor's best class (`max_classes_per_detection` 1),
      those at or above the threshold, greedy NMS across classes, at most `max_detections`;
    - "regular": every (anchor, class) at or above the threshold, NMS per class, the best `max_detections` overall
      (the op also caps each class at `detections_per_class`, 100 by default; not applied here).
    `options` (`score_threshold`, `iou`, `max_detections`) override the head's, as `evaluate` asks.
    """
    enc, scores = outputs
    h, w = input_hw
    a = np.asarray(head["anchors"], np.float32)
    prior = np.stack([a[:, 1] * w, a[:, 0] * h, a[:, 3] * w, a[:, 2] * h], axis=1)
    ys, xs, hs, ws = (float(v) for v in head["scales"])
    deltas = np.asarray(enc, np.float32)
    scores = np.asarray(scores, np.float32)
    c = int(head.get("num_classes") or scores.shape[-1])
    if deltas.shape[-1] != 4 or scores.shape[-1] not in (c, c + 1) or deltas.shape[1] != len(a):
        raise ValueError(f"tflite_ssd needs box encodings (1, {len(a)}, 4) and scores (1, {len(a)}, {c} or {c + 1}),"
                         f" got {deltas.shape} and {scores.shape}")
    threshold = float(options.get("score_threshold", head.get("score_threshold", SCORE_THRESHOLD)))
    iou = float(options.get("iou", head.get("iou", NMS_IOU)))
    most = int(options.get("max_detections", head.get("max_detections", MAX_DETECTIONS)))
    variances = [1 / xs, 1 / ys, 1 / ws, 1 / hs]
    result = []
    for i in range(len(deltas)):
        s = scores[i][:, scores.shape[-1] - c:]  # without the background column
        boxes = decode_boxes(deltas[i][:, [1, 0, 3, 2]], prior, variances)
        if head.get("nms", "fast") == "regular":
            anchor, cls = np.nonzero(s >= threshold)
            best = s[anchor, cls]
        else:
            cls = np.argmax(s, axis=1)
            best = s[np.arange(len(s)), cls]
            anchor = np.flatnonzero(best >= threshold)
            cls, best = cls[anchor], best[anchor]
        keep = nms(boxes[anchor], best, cls if head.get("nms", "fast") == "regular" else np.zeros_like(cls), iou,
                   most)
        result.append((boxes[anchor][keep].astype(np.float32).reshape(-1, 4), best[keep].astype(np.float32),
                       cls[keep].astype(np.int64)))
    return result


FOREIGN_HEADS = {"blazeface": blazeface, "tflite_detection_postprocess": tflite_detection_postprocess,
                 "tflite_ssd": tflite_ssd}
IN_GRAPH_HEADS = {"tflite_detection_postprocess"}  # post-processing runs inside the model: timed by a truncated copy
DETECTION_POSTPROCESS_OP = "TFLite_Detection_PostProcess"


def recognise(outputs: list, ops: list, input_hw: tuple[int, int]) -> dict | None:
    """The head description of a foreign detector from its outputs and ops, or None when it is neither kind.

    `outputs`: per model output `{"index": tensor index, "shape": [...]}`; `ops`: per op `{"name": builtin or custom
    name, "outputs": [tensor indices]}` (the runner's `_get_ops_details()` or the TF-free reader give both).
    - a TFLite_Detection_PostProcess op whose four outputs are the model's outputs ->
      `{"kind": "tflite_detection_postprocess", "roles": [role of each model output]}`;
    - two outputs (1, N, 4+2k) and (1, N, 1) whose N is the anchor count of a BlazeFace layout at the input size ->
      `{"kind": "blazeface", "strides": ..., "interpolated": ...}`.
    """
    out_index = [int(o["index"]) for o in outputs]
    for op in ops:
        if str(op.get("name", "")).split(":")[-1] != DETECTION_POSTPROCESS_OP:
            continue
        op_outs = [int(t) for t in op.get("outputs", [])]
        if len(op_outs) == 4 and sorted(op_outs) == sorted(out_index):
            return {"kind": "tflite_detection_postprocess",
                    "roles": [TFLITE_DETECTION_ROLES[op_outs.index(t)] for t in out_index]}
    shapes = [tuple(int(d) for d in o["shape"]) for o in outputs]
    if len(shapes) == 2 and all(len(s) == 3 for s in shapes) and shapes[0][:2] == shapes[1][:2]:
        last = sorted(s[2] for s in shapes)
        if last[0] == 1 and last[1] >= 4 and last[1] % 2 == 0:
            layout = blazeface_layout(input_hw, shapes[0][1])
            if layout is not None:
                return {"kind": "blazeface", **layout}
    return None


def parse_head(text: str) -> dict:
    """A head given by the user: a kind name (`blazeface`) or a JSON object (`{"kind": "blazeface", ...}`)."""
    import json

    text = text.strip()
    if text.startswith("{"):
        try:
            head = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"head {text[:80]!r} is not valid JSON ({exc})") from None
    else:
        head = {"kind": text}
    if not isinstance(head, dict) or head.get("kind") not in HEADS:
        raise ValueError(f"unknown detection head {head.get('kind') if isinstance(head, dict) else head!r}; "
                         f"known: {', '.join(sorted(HEADS))}")
    return head


HEADS.update(FOREIGN_HEADS)


# --- boxes back from a board: exact and compact (the runner packs, the host unpacks) -----------------------

DETECTIONS_FORMAT = "rows-f32le-b64/1"  # see pack_detections


def pack_detections(np, dets: list) -> dict:
    """Detections as compact JSON: `counts` (boxes per image) and `rows`, base64 of little-endian float32 (D, 6)
    `[x0, y0, x1, y1, score, class]` rows, image after image. Exact (float32 in, float32 out) and ~4x smaller than
    numbers in JSON, so 1000 images of boxes still travel back from a board on stdout."""
    import base64

    parts = [np.concatenate([np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s, np.float32).reshape(-1, 1),
                             np.asarray(c, np.float32).reshape(-1, 1)], axis=1) for b, s, c in dets]
    rows = np.concatenate(parts) if parts else np.zeros((0, 6), np.float32)
    return {"format": DETECTIONS_FORMAT, "images": len(dets), "counts": [len(p) for p in parts],
            "rows": base64.b64encode(rows.astype("<f4").tobytes()).decode("ascii")}


def found(np, pred) -> dict:
    """What the runner's `postprocess` section says was found in sample 0's prediction: its number of boxes."""
    return {"detections": len(pred[0]) if pred is not None else 0}


def device_result(np, dets: list, samples: str, shapes: list) -> tuple[str, dict]:
    """(`detections`, the packed boxes) the runner returns for the host to score (the samples file and the output
    shapes are the shipped post-processing's common signature; boxes need neither)."""
    return "detections", pack_detections(np, dets)


def unpack_detections(np, packed: dict) -> list:
    """`pack_detections`' inverse (used on the host): per image (boxes (K, 4), scores (K,), classes (K,) int64).
    A document that does not hold what `pack_detections` writes is a ValueError saying what is wrong."""
    import base64
    import binascii

    if not isinstance(packed, dict) or packed.get("format") != DETECTIONS_FORMAT:
        found = packed.get("format") if isinstance(packed, dict) else type(packed).__name__
        raise ValueError(f"detections are not in format {DETECTIONS_FORMAT!r} (found {found!r})")
    try:
        rows = np.frombuffer(base64.b64decode(packed["rows"], validate=True), "<f4")
        counts = [int(c) for c in packed["counts"]]
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"detections are damaged ({type(exc).__name__}: {exc})") from None
    if rows.size != 6 * sum(counts) or any(c < 0 for c in counts):
        raise ValueError(f"detections are damaged: {rows.size} values for {sum(counts)} boxes of 6")
    if not counts:
        return []
    rows = rows.reshape(-1, 6).astype(np.float32)
    return [(r[:, :4], r[:, 4], r[:, 5].astype(np.int64)) for r in np.split(rows, np.cumsum(counts)[:-1])]

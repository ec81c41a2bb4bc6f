"""Detection accuracy: COCO mAP of a detector (Keras or .tflite of any IO dtype) on a detection source's test split.

| number           | what (pycocotools' COCOeval, bbox, all areas, up to 100 detections an image)          |
|------------------|----------------------------------------------------------------------------------------|
| `map`            | mAP@[.5:.95]: AP averaged over IoU thresholds 0.50, 0.55 ... 0.95 and over classes       |
| `map50`          | mAP@.5: AP at IoU 0.5, averaged over classes                                           |
| `per_class`      | AP@[.5:.95] and AP@.5 of each class (None for a class absent from the test split)       |

The model runs on inputs made with its own saved spec (as classifiers are); its outputs (CenterNet's three maps,
SSD's boxes and scores) are dequantized (`predict_outputs`, the same LiteRT path as top-1) and decoded in float by
`edgecnn.board.postprocess.decode`; boxes are scaled back to each raw image's pixels and scored against the
source's exact boxes by pycocotools, the reference implementation, so numbers compare with published COCO numbers' definition.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError

MAX_DETS = 100


def coco_map(gt_boxes: list, detections: list, image_sizes: list, class_names) -> dict:
    """mAP numbers of `detections` against `gt_boxes` (per image (K, 5) `[x0, y0, x1, y1, class]`, pixels).

    `detections`: per image (boxes (D, 4), scores (D,), classes (D,)); `image_sizes`: per image (H, W).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (gt, (h, w), (boxes, scores, classes)) in enumerate(zip(gt_boxes, image_sizes, detections), 1):
        images.append({"id": i, "width": int(w), "height": int(h)})
        for x0, y0, x1, y1, c in np.asarray(gt, np.float64).reshape(-1, 5):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c) + 1, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
        for (x0, y0, x1, y1), s, c in zip(np.asarray(boxes, np.float64).reshape(-1, 4), scores, classes):
            dets.append({"image_id": i, "category_id": int(c) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "score": float(s)})
    if not anns:
        raise EdgecnnError("no ground-truth boxes to measure mAP against")
    cats = [{"id": k + 1, "name": str(n)} for k, n in enumerate(class_names)]
    out = {"images": len(images), "objects": len(anns), "detections": len(dets)}
    present = sorted({a["category_id"] - 1 for a in anns})
    if not dets:  # pycocotools cannot load an empty result list; no detection means AP 0 everywhere
        per = [{"name": str(n), "ap": 0.0 if k in present else None, "ap50": 0.0 if k in present else None}
               for k, n in enumerate(class_names)]
        return {**out, "map": 0.0, "map50": 0.0, "per_class": per}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": cats}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.maxDets = [1, 10, MAX_DETS]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (IoU thresholds, recall points, classes), all areas
    per = []
    for k, name in enumerate(class_names):
        p = precision[:, :, k]
        ok = k in present and (p > -1).any()
        per.append({"name": str(name), "ap": float(np.mean(p[p > -1])) if ok else None,
                    "ap50": float(np.mean(p[0][p[0] > -1])) if ok else None})
    return {**out, "map": max(float(ev.stats[0]), 0.0), "map50": max(float(ev.stats[1]), 0.0), "per_class": per}


def detect(model_path: str | Path, x: np.ndarray, spec, **decode_args) -> list:
    """Per input image (boxes in input pixels, scores, classes) of a detector (Keras or .tflite)."""
    from edgecnn.board.postprocess import decode, output_problem
    from edgecnn.evaluate.predict import predict_outputs

    outs = predict_outputs(model_path, x)
    head = spec.head or {"kind": "centernet"}
    try:
        expected = output_problem([o.shape[1:] for o in outs], head, (spec.height, spec.width), len(spec.labels))
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgecnnError(f"{model_path}: its spec's detection head {head} is malformed ({exc!r})") from None
    if expected:
        raise EdgecnnError(f"{model_path}: expected a {head.get('kind')} detector's {expected}, got "
                           f"{[list(o.shape[1:]) for o in outs]}")
    try:
        return decode(outs, head, (spec.height, spec.width), **decode_args)
    except (ValueError, IndexError) as exc:
        raise EdgecnnError(f"{model_path}: cannot decode its outputs as a {head.get('kind')} head: {exc}") from None


def evaluate_detection(model_path: str | Path, src: str, limit: int | None = None, scaling=None) -> dict:
    """COCO mAP of the detector at `model_path` on `src`'s test split (see the module table)."""
    from edgecnn.evaluate.accuracy import model_spec, test_split

    spec = model_spec(model_path, scaling)
    ds = test_split(src, spec, limit)
    if ds.task != "detection":
        raise EdgecnnError(f"{src}: not a detection set (no boxes); {model_path} is a detector")
    x = spec.apply(ds.images)
    sizes = [np.asarray(im).shape[:2] for im in ds.images]
    dets = []
    for (boxes, scores, classes), (h, w) in zip(detect(model_path, x, spec), sizes):
        b = boxes * np.array([w / spec.width, h / spec.height] * 2, np.float32)
        dets.append((np.clip(b, 0, [w, h, w, h]), scores, classes))
    r = coco_map(ds.boxes, dets, sizes, ds.class_names)
    return {"model": str(model_path), "data": src, "task": "detection", "n": len(ds), **r}

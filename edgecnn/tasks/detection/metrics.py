"""Detection measures, in float numpy on the host: COCO mAP of boxes against true boxes, and box agreement.

| number           | what (pycocotools' COCOeval, bbox, all areas, up to 100 detections an image)          |
|------------------|----------------------------------------------------------------------------------------|
| `map`            | mAP@[.5:.95]: AP averaged over IoU thresholds 0.50, 0.55 ... 0.95 and over classes       |
| `map50`          | mAP@.5: AP at IoU 0.5, averaged over classes                                           |
| `per_class`      | AP@[.5:.95] and AP@.5 of each class (None for a class absent from the test split)       |
| `box_agreement`  | label-free: the share of the float model's confident boxes the quantized model finds   |

One scoring path (`score_boxes`): `eval`, `compare` (both models, and the quantized one against the float one's
confident boxes) and `bench --data` all scale boxes from model-input pixels to each raw image's pixels, clip them to
the image and run `coco_map` (pycocotools, the reference implementation), so the same model on the same images gets
the same mAP from each of them.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from edgecnn.errors import EdgecnnError

MAX_DETS = 100
EXAMPLE_SCORE = 0.3  # boxes kept for a report's picture


def coco_map(gt_boxes: list, detections: list, image_sizes: list, class_names) -> dict:
    """mAP numbers of `detections` against `gt_boxes` (per image (K, 5) `[x0, y0, x1, y1, class]`, pixels).

    `detections`: per image (boxes (D, 4), scores (D,), classes (D,)); `image_sizes`: per image (H, W).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _same_count(images=gt_boxes, detections=detections, sizes=image_sizes)
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


def _same_count(**per_image) -> None:
    """One line when per-image lists differ in length: zipping them would silently drop the tail images."""
    counts = {k: len(v) for k, v in per_image.items()}
    if len(set(counts.values())) > 1:
        raise EdgecnnError("mAP needs one entry per image in each list, got "
                           + ", ".join(f"{n} {k}" for k, n in counts.items()))


def image_sizes(ds) -> list[tuple[int, int]]:
    """Each raw image's (H, W): the frame its true boxes are in."""
    return [np.asarray(im).shape[:2] for im in ds.images]


def to_image_pixels(dets: list, sizes: list, input_hw: tuple[int, int]) -> list:
    """Detections in model-input pixels (per image (boxes, scores, classes)) with the boxes scaled to each raw
    image's pixels (`sizes`: per image (H, W)) and clipped to it: how `edgecnn eval` scores boxes against a source's
    exact ones, and `bench --data` the boxes a device produced, so both give the same mAP."""
    _same_count(detections=dets, sizes=sizes)
    in_h, in_w = input_hw
    out = []
    for (boxes, scores, classes), (h, w) in zip(dets, sizes):
        b = boxes * np.array([w / in_w, h / in_h] * 2, np.float32)
        out.append((np.clip(b, 0, [w, h, w, h]), scores, classes))
    return out


def score_boxes(truth: list, dets: list, sizes: list, input_hw: tuple[int, int], class_names) -> dict:
    """`coco_map` of detections in model-input pixels (per image (boxes, scores, classes)) against `truth` in
    raw-image pixels (per image (K, 5)): the one scoring path of `eval`, `compare` and `bench --data` (see the
    module docstring), the boxes scaled and clipped by `to_image_pixels`."""
    return coco_map(truth, to_image_pixels(dets, sizes, input_hw), sizes, class_names)


AGREEMENT_SCORE = 0.3  # float boxes at or above this score are the "objects" a label-free comparison matches
AGREEMENT_IOU = 0.5


def box_agreement(float_dets: list, quant_dets: list, score: float = AGREEMENT_SCORE,
                  iou: float = AGREEMENT_IOU) -> dict:
    """How many of the float model's confident boxes the quantized model finds again, no labels needed.

    A float box (score >= `score`) is matched by the best-IoU quantized box of the same class (score >= `score`)
    with IoU >= `iou`, each quantized box used once. `matched`: the matched share of float boxes; `extra`: the share
    of confident quantized boxes that match no float box; `mean_iou`: the matched pairs' mean IoU; `score_mae`: their
    mean absolute score difference.
    """
    from edgecnn.tasks.detection.postprocess import iou_matrix

    n_f = n_q = hits = 0
    ious, dscore = [], []
    for (fb, fs, fc), (qb, qs, qc) in zip(float_dets, quant_dets):
        fk, qk = fs >= score, qs >= score
        fb, fs, fc, qb, qs, qc = fb[fk], fs[fk], fc[fk], qb[qk], qs[qk], qc[qk]
        n_f, n_q = n_f + len(fb), n_q + len(qb)
        free = np.ones(len(qb), bool)
        for i in np.argsort(-fs, kind="stable"):
            cand = np.flatnonzero(free & (qc == fc[i]))
            if not len(cand):
                continue
            o = iou_matrix(fb[i], qb[cand])[0]
            j = int(np.argmax(o))
            if o[j] >= iou:
                free[cand[j]] = False
                hits += 1
                ious.append(float(o[j]))
                dscore.append(abs(float(fs[i]) - float(qs[cand[j]])))
    return {"float_boxes": n_f, "quant_boxes": n_q, "matched": hits / n_f if n_f else None,
            "extra": (n_q - hits) / n_q if n_q else None, "mean_iou": float(np.mean(ious)) if ious else None,
            "score_mae": float(np.mean(dscore)) if dscore else None, "score_threshold": score, "iou": iou}


def as_ground_truth(dets: list, sizes: list, input_hw: tuple[int, int], score: float) -> list:
    """A model's confident detections as (K, 5) ground-truth boxes `[x0, y0, x1, y1, class]` in raw-image pixels
    (the frame `score_boxes` scores in)."""
    return [np.concatenate([b[s >= score], c[s >= score, None].astype(np.float32)], axis=1).reshape(-1, 5)
            for b, s, c in to_image_pixels(dets, sizes, input_hw)]


def output_names(head: dict, n: int) -> list[str]:
    names = {"centernet": ["heatmap", "size", "offset"], "ssd": ["boxes", "scores"]}.get(head.get("kind"), [])
    return names if len(names) == n else [f"output{i}" for i in range(n)]


def num_classes(*dets) -> int:
    return 1 + max([int(c.max()) for d in dets for _, _, c in d if len(c)] or [0])


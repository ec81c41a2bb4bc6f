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

One scoring path (`score_boxes`): `eval`, `compare` (both models, and the quantized one against the float one's
confident boxes) and `bench --data` all scale boxes from model-input pixels to each raw image's pixels, clip them to
the image and run `coco_map`, so the same model on the same images gets the same mAP from each of them.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

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


def detect(model_path: str | Path, x: np.ndarray, spec, batch: int | None = None, **decode_args) -> list:
    """Per input image (boxes in input pixels, scores, classes) of a detector (Keras or .tflite); `batch`: LiteRT's
    batch size (default min(64, N); a shard passes the whole split's, so it decodes what one process would)."""
    from edgecnn.board.postprocess import output_problem
    from edgecnn.evaluate.predict import predict_outputs

    outs = predict_outputs(model_path, x, batch)
    head = spec.head or {"kind": "centernet"}
    try:
        expected = output_problem([o.shape[1:] for o in outs], head, (spec.height, spec.width), len(spec.labels))
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgecnnError(f"{model_path}: its spec's detection head {head} is malformed ({exc!r})") from None
    if expected:
        raise EdgecnnError(f"{model_path}: expected a {head.get('kind')} detector's {expected}, got "
                           f"{[list(o.shape[1:]) for o in outs]}")
    return _decode(model_path, outs, spec, head, **decode_args)


def shard_detections(root: Path, models: tuple[str, ...], src: str, spec, limit: int | None, index: int,
                     count: int) -> dict:
    """One worker's part of a sharded detector eval (`--executor ray`): each model's boxes (files under `root`) on
    the contiguous shard `index` of `count` of `src`'s test split (`accuracy.shard_bounds`), at the whole split's
    LiteRT batch size, so the boxes are those one process finds, image for image."""
    from edgecnn.evaluate.accuracy import shard_bounds, test_split
    from edgecnn.evaluate.predict import BATCH

    ds = test_split(src, spec, limit)
    start, stop = shard_bounds(len(ds), index, count)
    if start >= stop:
        return {"dets": [[] for _ in models]}
    x = spec.apply(ds.subset(np.arange(start, stop)).images)
    return {"dets": [detect(Path(root) / m, x, spec, batch=min(BATCH, len(ds))) for m in models]}


def evaluate_detection(model_path: str | Path, src: str, limit: int | None = None, scaling=None,
                       examples: int = 0, map_shards=None) -> dict:
    """COCO mAP of the detector at `model_path` on `src`'s test split (see the module table); with `examples`,
    also its boxes (raw-image pixels, score >= `EXAMPLE_SCORE`) and the true ones on the first `examples` images.
    `map_shards` (e.g. `RayExecutor.map_shards`) spreads the inference and decoding over workers
    (`shard_detections`); the mAP is computed here from all boxes, and is the same."""
    from edgecnn.evaluate.accuracy import model_spec, test_split

    spec = model_spec(model_path, scaling)
    ds = test_split(src, spec, limit, model=model_path)
    sizes = image_sizes(ds)
    if map_shards is None:
        found = detect(model_path, spec.apply(ds.images), spec)
    else:
        found = [d for part in map_shards(shard_detections, [Path(model_path)], (src, spec, limit))
                 for d in part["dets"][0]]
    r = score_boxes(ds.boxes, found, sizes, (spec.height, spec.width), ds.class_names)
    out = {"model": str(model_path), "data": src, "task": "detection", "n": len(ds), **r}
    if examples:
        dets = to_image_pixels(found[:examples], sizes[:examples], (spec.height, spec.width))
        out["examples"] = [{"truth": np.round(np.asarray(t, np.float64), 2).tolist(),
                            "boxes": np.round(b[s >= EXAMPLE_SCORE].astype(np.float64), 2).tolist(),
                            "scores": np.round(s[s >= EXAMPLE_SCORE].astype(np.float64), 3).tolist(),
                            "classes": c[s >= EXAMPLE_SCORE].tolist()}
                           for t, (b, s, c) in zip(ds.boxes[:examples], dets[:examples])]
    return out


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
    from edgecnn.board.postprocess import iou_matrix

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


def _as_ground_truth(dets: list, sizes: list, input_hw: tuple[int, int], score: float) -> list:
    """A model's confident detections as (K, 5) ground-truth boxes `[x0, y0, x1, y1, class]` in raw-image pixels
    (the frame `score_boxes` scores in)."""
    return [np.concatenate([b[s >= score], c[s >= score, None].astype(np.float32)], axis=1).reshape(-1, 5)
            for b, s, c in to_image_pixels(dets, sizes, input_hw)]


def compare_detection(float_path: str | Path, quant_path: str | Path, src: str, limit: int | None = None,
                      layer_samples: int = 32, top_layers: int = 10, scaling=None, head: dict | None = None) -> dict:
    """Float vs quantized detector on `src`'s test split: what `compare` gives a classifier, in boxes.

    Always (no labels needed): `agreement` (the share of the float model's confident boxes the quantized one
    finds again, `box_agreement`), the quantized model's mAP with the float model's confident boxes taken as ground
    truth (`map_vs_float`, `map50_vs_float`), the SNR of each raw output map, and the worst layers. With boxes in
    `src`: both models' mAP@[.5:.95] and mAP@.5, the drops in points and per-class AP deltas. `head`: how both
    models' outputs become boxes (default: the float model's spec; a foreign detector's recognised head).
    """
    from edgecnn.evaluate.accuracy import model_spec, test_split
    from edgecnn.evaluate.compare import float_flatbuffer
    from edgecnn.evaluate.layer_error import layer_errors
    from edgecnn.evaluate.predict import predict_outputs
    from edgecnn.metrics import snr_db

    fspec, qspec = model_spec(float_path, scaling), model_spec(quant_path, scaling)
    ds = test_split(src, fspec, limit, needs_labels=None, task="detection", model=float_path)
    x = fspec.apply(ds.images)
    fo, qo = predict_outputs(float_path, x), predict_outputs(quant_path, x)
    if [o.shape for o in fo] != [o.shape for o in qo]:
        raise EdgecnnError(f"{quant_path}: outputs {[list(o.shape[1:]) for o in qo]} differ from {float_path}'s "
                           f"{[list(o.shape[1:]) for o in fo]}; they are not the same model")
    head = head or fspec.head or {"kind": "centernet"}
    fd, qd = _decode(float_path, fo, fspec, head), _decode(quant_path, qo, qspec, head)
    sizes, fhw, qhw = image_sizes(ds), (fspec.height, fspec.width), (qspec.height, qspec.width)
    out = {"float_model": str(float_path), "quant_model": str(quant_path), "data": src, "task": "detection",
           "n": len(x), "labeled": ds.task == "detection", **box_agreement(fd, qd)}
    out["agreement"] = out["matched"]
    out["head"] = head.get("kind")
    out["output_snr_db"] = {name: snr_db(f.reshape(len(x), -1), q.reshape(len(x), -1))
                            for name, f, q in zip(_output_names(head, len(fo)), fo, qo)}
    reference = _as_ground_truth(fd, sizes, fhw, AGREEMENT_SCORE)
    if sum(len(r) for r in reference):
        vs = score_boxes(reference, qd, sizes, qhw, fspec.labels or [str(i) for i in range(_num_classes(fd, qd))])
        out["map_vs_float"], out["map50_vs_float"] = vs["map"], vs["map50"]
    if out["labeled"]:
        fm = score_boxes(ds.boxes, fd, sizes, fhw, ds.class_names)
        qm = score_boxes(ds.boxes, qd, sizes, qhw, ds.class_names)
        out.update({"float_map": fm["map"], "quant_map": qm["map"], "float_map50": fm["map50"],
                    "quant_map50": qm["map50"], "drop_points": 100 * (fm["map"] - qm["map"]),
                    "drop50_points": 100 * (fm["map50"] - qm["map50"]),
                    "per_class": [{"name": f["name"], "float_ap50": f["ap50"], "quant_ap50": q["ap50"],
                                   "delta_points": None if f["ap50"] is None else 100 * (q["ap50"] - f["ap50"])}
                                  for f, q in zip(fm["per_class"], qm["per_class"])]})
    layers = layer_errors(float_flatbuffer(float_path), Path(quant_path).read_bytes(), x, layer_samples)
    return {**out, "worst_layers": layers[:top_layers], "layers_compared": len(layers)}


def _decode(model_path, outputs, spec, head: dict, **decode_args) -> list:
    """`postprocess.decode` of a model's outputs; a head that does not fit them is one line naming the model."""
    from edgecnn.board.postprocess import decode

    try:
        return decode(outputs, head, (spec.height, spec.width), **decode_args)
    except KeyError as exc:  # a head description without a key its kind needs (an SSD's anchors, variances)
        raise EdgecnnError(f"{model_path}: its {head.get('kind')} detection head lacks {exc.args[0]!r} "
                           f"({head})") from None
    except (ValueError, IndexError, TypeError) as exc:
        raise EdgecnnError(f"{model_path}: cannot decode its outputs as a {head.get('kind')} head: {exc}") from None


def _output_names(head: dict, n: int) -> list[str]:
    names = {"centernet": ["heatmap", "size", "offset"], "ssd": ["boxes", "scores"]}.get(head.get("kind"), [])
    return names if len(names) == n else [f"output{i}" for i in range(n)]


def _num_classes(*dets) -> int:
    return 1 + max([int(c.max()) for d in dets for _, _, c in d if len(c)] or [0])


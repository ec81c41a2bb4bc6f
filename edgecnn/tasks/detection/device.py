"""A detector's accuracy in `bench --data`: COCO mAP of the boxes the device produced, scored on the host
(`Detection.device_samples` and `Detection.score_device` are what `edgecnn.bench.run` calls).

The board runner cannot score boxes (no pycocotools on a board), and a top-1 from a detector's first output is a
wrong number, so the work is split:

| where  | what                                                                                                  |
|--------|-------------------------------------------------------------------------------------------------------|
| host   | `bench.run.prepare_samples` keeps the true boxes (`Truth`: from a detection source, or an .npz `boxes`) |
| device | the runner decodes each sample's outputs with `postprocess.decode` and returns the boxes (`detections`) |
| host   | `score` scores them with `tasks.detection.metrics.score_boxes`, the very path of `edgecnn eval` and `compare` |

so `bench --data scenes:digits` and `edgecnn eval` give the same mAP on the same .tflite and samples (when the
device computes the same outputs as this host's LiteRT). The document's `accuracy` then holds `metric: "mAP@.5"`,
`map50`, `map` (mAP@[.5:.95]), `images`, `objects`, `per_class`, and `top1: null`. Without true boxes (an unlabeled
source, a foreign detector's .npz without `boxes`) `map50` is null and `note` says why, in one line.

A foreign detector's .npz gives its true boxes as `boxes`: (M, 6) rows `[image, x0, y0, x1, y1, class]`, `image` the
row of `x` the box belongs to, the corners in model-input pixels (the frame `x` is in), `class` from 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.errors import EdgecnnError

METRIC = "mAP@.5"  # what the `accuracy` of a detector's bench is, as the pipeline and report name it


@dataclass(frozen=True)
class Truth:
    """The true boxes of the samples a bench runs: per image (K, 5) `[x0, y0, x1, y1, class]` in that image's
    pixels, its (H, W), the class names, and the model input's (H, W) the device's boxes are in."""

    boxes: list
    sizes: list
    class_names: tuple
    input_hw: tuple

    @property
    def objects(self) -> int:
        return int(sum(len(b) for b in self.boxes))


def truth_from_dataset(ds, input_hw: tuple[int, int]) -> Truth:
    """The truth of a detection source's samples (raw-image pixels, as `edgecnn eval` scores them)."""
    from edgecnn.tasks.detection.metrics import image_sizes

    return Truth(list(ds.boxes), image_sizes(ds), tuple(ds.class_names), tuple(input_hw))


def truth_from_npz(boxes: np.ndarray, total: int, n: int, input_hw: tuple[int, int], path) -> Truth:
    """The truth of the first `n` of the `total` samples of a foreign detector's .npz from its `boxes` (see the module
    docstring); a malformed array is one line naming the file."""
    b = np.asarray(boxes)
    if b.ndim != 2 or b.shape[1] != 6 or b.dtype.kind not in "iuf":
        raise EdgecnnError(f"{path}: 'boxes' must be numbers of shape (M, 6), rows [image, x0, y0, x1, y1, class] "
                           f"in model-input pixels, got {b.dtype} {tuple(b.shape)}")
    b = b.astype(np.float64)
    if not np.isfinite(b).all():
        raise EdgecnnError(f"{path}: 'boxes' holds NaN or infinite values")
    image, cls = b[:, 0], b[:, 5]
    bad = (image != np.round(image)) | (image < 0) | (image >= total) | (cls != np.round(cls)) | (cls < 0) | \
        (b[:, 3] <= b[:, 1]) | (b[:, 4] <= b[:, 2])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EdgecnnError(f"{path}: 'boxes' row {i} {b[i].tolist()} is not [image, x0, y0, x1, y1, class] with an "
                           f"image index 0..{total - 1} of 'x', a whole class >= 0, x1 > x0 and y1 > y0")
    per_image = [b[image == i, 1:].astype(np.float32).reshape(-1, 5) for i in range(n)]
    names = tuple(str(k) for k in range(int(cls.max()) + 1 if len(cls) else 1))
    return Truth(per_image, [tuple(input_hw)] * n, names, tuple(input_hw))


def score(doc: dict, truth: Truth | None, data: str) -> None:
    """Turn a runner document's `detections` into its `accuracy` (mAP against `truth`, see the module docstring).

    A document without `detections` (a classifier, a failed run) is left as it is. The packed boxes are dropped
    once scored: the mAP and the counts are what is kept and stored.
    """
    packed = doc.pop("detections", None)
    if packed is None or doc.get("status") != "ok":
        return
    from edgecnn.tasks.detection.postprocess import unpack_detections

    try:
        dets = unpack_detections(np, packed)
    except ValueError as exc:
        raise EdgecnnError(f"{data}: the runner's boxes cannot be read: {exc}") from None
    acc = {"n": len(dets), "task": "detection", "metric": METRIC, "top1": None, "map50": None, "map": None,
           "detections": int(sum(len(d[0]) for d in dets))}
    if truth is None:
        acc["note"] = f"no mAP: {data} has no true boxes" + (
            " (a foreign detector's .npz gives them as 'boxes' rows [image, x0, y0, x1, y1, class])"
            if str(data).endswith(".npz") else " (a detector's accuracy needs a detection source)")
    elif len(truth.boxes) != len(dets):
        raise EdgecnnError(f"{data}: the runner returned boxes for {len(dets)} images, {len(truth.boxes)} were sent")
    elif not truth.objects:
        acc["note"] = f"no mAP: the {len(dets)} images of {data} hold no true boxes"
    else:
        acc.update(_map(dets, truth))
    doc["accuracy"] = acc


def _map(dets: list, truth: Truth) -> dict:
    """Device boxes (model-input pixels) scored against `truth` by eval's own `score_boxes`."""
    from edgecnn.tasks.detection.metrics import score_boxes

    r = score_boxes(truth.boxes, dets, truth.sizes, truth.input_hw, truth.class_names)
    return {k: r[k] for k in ("map50", "map", "images", "objects", "detections", "per_class")}

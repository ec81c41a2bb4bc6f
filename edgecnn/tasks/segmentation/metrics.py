"""Segmentation measures from one confusion matrix over the whole data set (the standard definition).

| measure         | what                                                                                           |
|-----------------|------------------------------------------------------------------------------------------------|
| `iou` per class | TP / (TP + FP + FN) of that class's pixels; None when the class is in neither truth nor prediction |
| `miou`          | the mean of the per-class IoUs that are not None (classes with a non-empty union)              |
| `pixel_accuracy`| correct pixels / all scored pixels (the ignore label scores nothing)                           |
| `mean_accuracy` | mean over the classes present in the truth of TP / true pixels of the class                     |
| pixel agreement | share of pixels where the float and quantized class maps agree (label-free)                    |
| `kl_per_pixel`  | mean over pixels of KL(softmax float || softmax quant) of the logits, nats (label-free)          |

One matrix for the whole set, as `keras.metrics.MeanIoU` and mmsegmentation compute it (a test checks the first);
torchmetrics' `segmentation.MeanIoU` averages per image and gives another number (torchmetrics #2558). Shards and
boards return matrices, which add: the mIoU of the sum is the set's mIoU.
"""

from __future__ import annotations

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.tasks.segmentation.postprocess import IGNORE, confusion_of

EPS = 1e-7  # probabilities are clipped to [EPS, 1] (and renormalised) before the per-pixel KL divergence


def scores(cm: np.ndarray, names) -> dict:
    """mIoU, per-class IoU, pixel accuracy and mean accuracy of the (C, C) confusion matrix `cm` (rows: truth)."""
    cm = np.asarray(cm, np.float64)
    tp, true, pred = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    union = true + pred - tp
    iou = [float(t / u) if u > 0 else None for t, u in zip(tp, union)]
    present = [v for v in iou if v is not None]
    acc = [float(t / n) for t, n in zip(tp, true) if n > 0]
    total = float(cm.sum())
    names = list(names) + [str(i) for i in range(len(names), len(cm))]
    return {"miou": float(np.mean(present)) if present else None,
            "pixel_accuracy": float(tp.sum() / total) if total else None,
            "mean_accuracy": float(np.mean(acc)) if acc else None, "pixels": int(total),
            "classes_scored": len(present),
            "per_class": [{"class": c, "name": names[c], "iou": iou[c], "pixels": int(true[c])} for c in range(len(cm))]}


def classes_of(preds, truth, names, labels) -> int:
    """How many classes a confusion matrix needs: the model's (its labels), else the data set's names, at least the
    largest predicted class + 1; a true class above the model's (other than the ignore label) is one line."""
    classes = len(labels) or len(names)
    top = max((int(np.max(p)) for p in preds if np.asarray(p).size), default=-1)
    seen = [int(np.max(m[m != IGNORE])) for m in (np.asarray(t) for t in truth) if (m != IGNORE).any()]
    if labels and seen and max(seen) >= len(labels):
        raise EdgecnnError(f"a mask holds class {max(seen)}, the model has {len(labels)} classes (0..{len(labels) - 1}"
                           f", {IGNORE} = ignore): masks of another label set")
    return max(classes, top + 1, (max(seen) + 1) if seen else 0, 1)


def score_maps(preds, truth, names, labels) -> dict:
    """`scores` of class maps `preds` (the model's size) against raw-size masks `truth`."""
    classes = classes_of(preds, truth, names, labels)
    return scores(confusion_of(preds, truth, classes), names or labels)


def pixel_agreement(fpreds, qpreds) -> float:
    """Share of pixels where both class maps agree (1.0 for no pixels)."""
    f, q = np.asarray(fpreds), np.asarray(qpreds)
    return float(np.mean(f == q)) if f.size else 1.0


def kl_sums(f: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the summed per-pixel KL(softmax f || softmax q) over its pixels (nats), and its pixel count, of
    logits (N, H, W, C)."""
    def dist(a):
        a = np.asarray(a, np.float64)
        e = np.exp(a - a.max(axis=-1, keepdims=True))
        p = np.clip(e / e.sum(axis=-1, keepdims=True), EPS, 1.0)
        return p / p.sum(axis=-1, keepdims=True)

    sums, pixels = np.zeros(len(f)), np.zeros(len(f))
    for i in range(len(f)):  # a sample at a time: a whole split of float64 maps would take gigabytes
        p, r = dist(f[i]), dist(q[i])
        kl = np.sum(p * np.log(p / r), axis=-1)
        sums[i], pixels[i] = kl.sum(), kl.size
    return sums, pixels


def example(pred: np.ndarray) -> dict:
    """A class map as a report keeps it (`Task.examples`): its shape and base64 bytes (compact in summary.json)."""
    import base64

    m = np.ascontiguousarray(np.asarray(pred, np.uint8))
    return {"mask": base64.b64encode(m.tobytes()).decode("ascii"), "shape": list(m.shape)}


def example_map(ex: dict) -> np.ndarray:
    """`example`'s inverse."""
    import base64

    return np.frombuffer(base64.b64decode(ex["mask"]), np.uint8).reshape(ex["shape"])

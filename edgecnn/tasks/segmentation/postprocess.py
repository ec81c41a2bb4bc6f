"""Class maps from a segmenter's output, and their confusion matrix: one numpy-only module for the host and the boards.

A segmenter ends at its logits (N, H, W, C) at the input resolution (`edgecnn.zoo.segmenters`); ARG_MAX stays out
of the graph (no XNNPACK kernel, not on the Edge TPU's op list: pycoral takes the arg-max on the host too), so the
class of each pixel is taken here, in numpy, after the dequantize. The board runner (`runner.py`, shipped with this
file) calls the same functions, so `bench --data` on a board gives `edgecnn eval`'s mIoU to the last pixel.

| function          | what                                                                                         |
|-------------------|----------------------------------------------------------------------------------------------|
| `decode`          | outputs -> class maps (N, h, w) uint8: the arg-max over the classes of output 0 (ties: lower class); a foreign graph's ARG_MAX ids as they are |
| `resize_nearest`  | a class map to a mask's (H, W): pixel centres, `floor((i + 0.5) * h / H)`                      |
| `confusion`       | (C, C) int64 counts, rows = truth, columns = prediction, pixels of the IGNORE label left out    |
| `confusion_of`    | the summed confusion of class maps against raw-size masks (each map resized to its mask)        |
| `device_result`   | the runner's `confusion` document from a samples .npz's packed masks (`pack_masks`)            |

Why the class map is resized, not the logits: arg-max then nearest resize is what a board can afford (a few
microseconds for 128x128), and equals resize-then-arg-max whenever the model runs at the masks' own size (the
built-in scenes); a set of bigger photos is scored on the model's class map brought up to each photo's pixels.
"""

from __future__ import annotations

import numpy as np

TASK = "segmentation"  # the task whose models this file decodes (a spec's `task`), for the runner that loads it
DEFAULT_HEAD = {"kind": "argmax"}  # what a segmenter's spec means without a head: logits (N, H, W, C), arg-max
IGNORE = 255  # the VOC "void" label: pixels with it count for no class
CONFUSION_FORMAT = "confusion-int64/1"


def decode(outputs: list, head: dict, input_hw) -> np.ndarray:
    """Class maps (N, h, w) uint8 of output 0's logits or scores (N, h, w, C), or output 0 as it is when it is
    already a map of class ids (N, h, w) (a foreign graph that ends in ARG_MAX) (`head` and `input_hw`: the shape of
    the runner's call, unused: the map keeps the output's own size)."""
    logits = np.asarray(outputs[0])
    if logits.ndim == 3:  # ids (widened to float by the caller's dequantize: exact below 2**24)
        ids = np.rint(logits).astype(np.int64)
        if ids.size and (not np.array_equal(ids, logits) or int(ids.min()) < 0 or int(ids.max()) >= 65536):
            raise ValueError(f"a segmenter's 3-D output {tuple(logits.shape)} is not class ids (whole numbers "
                             "0..65535)")
        return ids.astype(np.uint8 if ids.size == 0 or int(ids.max()) < 256 else np.uint16)
    if logits.ndim != 4:
        raise ValueError(f"a segmenter's output is (N, H, W, classes) or class ids (N, H, W), got "
                         f"{tuple(logits.shape)}")
    return np.argmax(logits, axis=-1).astype(np.uint8 if logits.shape[-1] <= 256 else np.uint16)


def recognise(outputs: list, ops: list, input_hw) -> dict | None:
    """A foreign model's head when its one output is a map of class scores (1, H, W, C), H and W > 1, C >= 2 (a
    DeepLab's logits, at the input's size or below), or the class ids (1, H, W) an ARG_MAX makes (a DeepLab
    export's `SemanticPredictions`): the arg-max head; else None. An output of 3 channels at the input's size is an
    image (super-resolution, style transfer), not class scores."""
    if len(outputs) != 1:
        return None
    shape = list(outputs[0]["shape"])
    if len(shape) == 3 and min(shape[1:3]) > 1:
        made = [op["name"] for op in ops if int(outputs[0]["index"]) in {int(t) for t in op["outputs"]}]
        return dict(DEFAULT_HEAD) if made == ["ARG_MAX"] else None
    if len(shape) != 4 or min(shape[1:3]) <= 1 or shape[3] < 2:
        return None
    return None if shape[3] == 3 and tuple(shape[1:3]) == tuple(input_hw) else dict(DEFAULT_HEAD)


def resize_nearest(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """(h, w) nearest-neighbour resize of a 2-D map by pixel centres (`floor((i + 0.5) * src / dst)`)."""
    sh, sw = m.shape[:2]
    if (sh, sw) == (h, w):
        return m
    rows = np.minimum(((np.arange(h) + 0.5) * sh / h).astype(np.int64), sh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * sw / w).astype(np.int64), sw - 1)
    return m[rows[:, None], cols[None, :]]


def confusion(pred: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) int64 pixel counts, row = true class, column = predicted class; IGNORE pixels are left
    out. Truth above the model's classes (other than IGNORE) is a ValueError: a mask of another label set."""
    t = np.asarray(truth).reshape(-1).astype(np.int64)
    p = np.asarray(pred).reshape(-1).astype(np.int64)
    keep = t != IGNORE
    t, p = t[keep], p[keep]
    if t.size and int(t.max()) >= classes:
        raise ValueError(f"a mask holds class {int(t.max())}, the model has {classes} classes (0..{classes - 1}, "
                         f"{IGNORE} = ignore)")
    return np.bincount(classes * t + p, minlength=classes * classes).reshape(classes, classes)


def confusion_of(preds, masks, classes: int) -> np.ndarray:
    """The summed confusion of class maps `preds` (each the model's size) against `masks` (each its image's size)."""
    if len(preds) != len(masks):
        raise ValueError(f"{len(preds)} class maps for {len(masks)} masks")
    total = np.zeros((classes, classes), np.int64)
    for p, m in zip(preds, masks):
        m = np.asarray(m)
        total += confusion(resize_nearest(np.asarray(p), *m.shape[:2]), m, classes)
    return total


def found(np, pred) -> dict:
    """What the runner's `postprocess` section says was found in sample 0's class map: the classes it holds."""
    return {"classes_found": [] if pred is None else [int(c) for c in np.unique(pred)]}


def pack_masks(masks) -> dict:
    """Masks of any sizes as two arrays an .npz holds without pickling: `mask_flat` (all pixels, uint8) and
    `mask_shapes` (N, 2)."""
    shapes = np.asarray([np.asarray(m).shape[:2] for m in masks], np.int64).reshape(-1, 2)
    flat = np.concatenate([np.asarray(m, np.uint8).reshape(-1) for m in masks]) if len(masks) else \
        np.zeros(0, np.uint8)
    return {"mask_flat": flat, "mask_shapes": shapes}


def unpack_masks(flat: np.ndarray, shapes: np.ndarray) -> list:
    """`pack_masks`' inverse; a ValueError when the two arrays do not fit together."""
    shapes = np.asarray(shapes, np.int64).reshape(-1, 2)
    sizes = shapes[:, 0] * shapes[:, 1]
    if int(sizes.sum()) != int(np.asarray(flat).size) or (shapes < 1).any():
        raise ValueError(f"mask_flat holds {np.asarray(flat).size} pixels, mask_shapes says {int(sizes.sum())}")
    parts = np.split(np.asarray(flat, np.uint8), np.cumsum(sizes)[:-1]) if len(sizes) else []
    return [p.reshape(int(h), int(w)) for p, (h, w) in zip(parts, shapes)]


def device_result(np, preds: list, samples: str, shapes: list) -> tuple[str, dict]:
    """(`confusion`, its document) of the class maps `preds` against the masks packed into the runner's samples
    .npz (the classes: the last dimension of output 0's shape in `shapes`, or for class ids (N, H, W) the largest
    id or mask class + 1); without masks there (unlabeled samples) the document holds no matrix."""
    with np.load(samples, allow_pickle=False) as z:
        if "mask_flat" not in z.files:
            return "confusion", {"format": CONFUSION_FORMAT, "matrix": None, "images": len(preds)}
        masks = unpack_masks(z["mask_flat"], z["mask_shapes"])
    classes = int(shapes[0][-1])
    if len(shapes[0]) == 3:  # class ids (N, H, W) of a graph's ARG_MAX: as many classes as the ids and masks name
        seen = [int(p.max()) for p in preds if p.size] + [int(m[m != IGNORE].max()) for m in masks
                                                            if (m != IGNORE).any()]
        classes = max(seen, default=0) + 1
    return "confusion", {"format": CONFUSION_FORMAT, "images": len(preds),
                         "matrix": confusion_of(preds, masks, classes).tolist()}

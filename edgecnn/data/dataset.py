"""The in-memory dataset every source returns: raw uint8 images, integer labels, class names.

| name             | what                                                                            |
|------------------|---------------------------------------------------------------------------------|
| `Dataset`        | raw images + labels; `labeled=False` for a source without labels (labels -1)     |
| `Dataset.boxes`  | detection sources: per image a float32 (K, 5) `[x0, y0, x1, y1, class]`          |
| `Dataset.masks`  | segmentation sources: per image a uint8 (H, W) map of class indices, 255 = ignore |
| `Dataset.concat` | one set after another (split `all` of a source that has split folders)          |
| `split_indices`  | the deterministic stratified split every source and the trainer use             |
| `check_task`     | one line when a model meets a labeled data set of the other task               |

A detection source (`scenes:digits`, a COCO folder, a YOLO folder) also fills `boxes`: per image a float32 (K, 5)
array `[x0, y0, x1, y1, class]` in pixels of the raw image (x right, y down, x1/y1 exclusive edges); its
`labels` are then the class of each image's first object (-1 for an image without objects), so the classification
helpers (`take`, `subset`) keep working unchanged.

A segmentation source (a mask folder, and `scenes:` too, whose masks come with its boxes) fills `masks`: per image
a uint8 (H, W) array of class indices in the raw image's pixels (the same H, W as that image), 255 = ignore (the
VOC convention); a uint8 (N, H, W) array when all share a size, else a list. `mask_names` names the mask classes
(index = class; background first where there is one: `scenes:` has `("background", *object classes)`). A mask
folder's `labels` are each image's most frequent class other than 0 (the background) and 255 (-1 when the mask
holds no other), its `class_names` are its `mask_names`; a `scenes:` set keeps its detection labels (first object).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgecnn.errors import EdgecnnError

@dataclass
class Dataset:
    """Raw images before preprocessing.

    `images` is a uint8 (N, H, W[, C]) array when all images share a size, else a list of HxW[xC] uint8 arrays
    (an image folder of mixed sizes); `PreprocessSpec.apply` handles both.
    """

    images: np.ndarray | list
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    skipped: tuple[str, ...] = ()  # files that could not be read (only when the caller allowed skipping)
    labeled: bool = True  # False: a flat image folder or an .npz without 'y' (labels are -1, class_names empty)
    boxes: list | None = None  # detection sources only: per image a float32 (K, 5) [x0, y0, x1, y1, class]
    masks: np.ndarray | list | None = None  # segmentation sources: per image uint8 (H, W) class indices, 255 ignore
    mask_names: tuple[str, ...] = ()  # the names of the mask classes (index = class), background first if any

    @property
    def task(self) -> str:
        """The task whose truth this set carries (`edgecnn.tasks.for_dataset`)."""
        from edgecnn import tasks

        return tasks.for_dataset(self).name

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        first = self.images[0] if len(self) else np.zeros((1, 1))
        return 1 if np.asarray(first).ndim == 2 else int(np.asarray(first).shape[-1])

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) when all images share a size."""
        if isinstance(self.images, np.ndarray):
            return int(self.images.shape[1]), int(self.images.shape[2])
        return None

    def subset(self, idx) -> "Dataset":
        idx = np.asarray(idx, dtype=int)
        boxes = None if self.boxes is None else [self.boxes[i] for i in idx]
        return replace(self, images=_pick(self.images, idx), labels=self.labels[idx], boxes=boxes,
                       masks=None if self.masks is None else _pick(self.masks, idx))

    def concat(self, other: "Dataset", name: str | None = None) -> "Dataset":
        """This set's samples, then `other`'s (same classes): arrays stay one array when their sizes agree."""
        boxes = None if self.boxes is None or other.boxes is None else list(self.boxes) + list(other.boxes)
        masks = None if self.masks is None or other.masks is None else _join(self.masks, other.masks)
        return replace(self, images=_join(self.images, other.images), name=name or self.name,
                       labels=np.concatenate([self.labels, other.labels]), skipped=self.skipped + other.skipped,
                       labeled=self.labeled and other.labeled, boxes=boxes, masks=masks)

    def take(self, n: int, seed: int | None = None) -> "Dataset":
        """The first `n` samples, or `n` drawn without replacement with `seed` (a stratified-enough random pick)."""
        n = min(n, len(self))
        if seed is None:
            return self.subset(np.arange(n))
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))


def _pick(items, idx: np.ndarray):
    return items[idx] if isinstance(items, np.ndarray) else [items[i] for i in idx]


def _join(a, b):
    """Two per-image collections as one: an array when both are arrays of one item shape, else a list."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape[1:] == b.shape[1:]:
        return np.concatenate([a, b])
    return list(a) + list(b)


def split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: each class keeps `val_fraction` of its samples (at least one when it has 2+)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and k == 0 and len(idx) > 1:
            k = 1
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def check_task(model_task: str, ds: Dataset, model, src: str) -> None:
    """Refuse, in one line, a model of `model_task` given a labeled set of the other task.

    Why: a classifier scored against a detection set's labels (each scene's first object) or a detector against a
    classification set's class labels gives a number that measures nothing, without an error. `train`, `eval`,
    `compare` and `bench --data` call this one check. An unlabeled set (a flat folder of images) has no task to
    mismatch: label-free commands take it.
    """
    from edgecnn import tasks

    task = tasks.get(model_task)
    if not ds.labeled or task.accepts(ds):
        return
    raise EdgecnnError(f"{src}: a {ds.task} set, but {model} is a {task.name} model; give it a {task.name} "
                       f"set (e.g. {task.example_source})")

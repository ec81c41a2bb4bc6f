"""`scenes:OBJECTS`: an offline object-detection set: real objects pasted onto real photos, with exact boxes and
exact per-pixel masks.

No labelled detection data set ships in a package reachable offline, so edgecnn makes one from two real sources
it already has: the objects are the images of a classification source (`scenes:digits`: scikit-learn's 8x8
handwritten digits; `scenes:fashion-mnist[:DIR]`: Fashion-MNIST items, where installed) and the backgrounds are
crops of the photos shipped in `calibration/photos` (16 photos and textures from scikit-image, 8 crops each).

| what                | value                                                                                      |
|---------------------|--------------------------------------------------------------------------------------------|
| image               | 128x128 RGB uint8: a random square crop (64..128 px) of a photo, resized, maybe mirrored     |
| objects per image   | 1..4, each scaled to a random side of 16..48 px, placed anywhere fully inside the image      |
| overlap             | a new object's box overlaps an earlier one by IoU <= 0.2 (else re-drawn; dropped after 20)  |
| look                | the object's grey levels are its alpha; ink dark on a bright spot, bright on a dark one     |
| box                 | exact: the tight bounds of the pasted pixels with alpha >= 0.25, `[x0, y0, x1, y1)` pixels |
| mask                | exact: those same pixels are class + 1, the rest 0 (background); a later object overwrites |
| classes             | the object source's classes (digits: '0'..'9'; Fashion-MNIST: its 10 item names)           |
| mask classes        | `("background", *classes)`: mask value k + 1 is object class k                              |
| train split         | 6,000 scenes: objects from the source's train split, photo crops 0-2, 4-6 of each photo     |
| test split          | 500 scenes (1,193 objects: enough for a stable mAP): test-split objects, crops 3 and 7      |
| seed                | fixed (0): every machine builds the same pixels and boxes; `load_scenes(..., seed=)` varies it |
| made                | once per process and split (train: ~10 s on 2 cores); each call gets its own copy          |

Train and test share no object image and no background crop. Boxes and masks are in pixels of the 128x128 scene; a
model with another input size gets them scaled with the image (`PreprocessSpec` resizes without keeping aspect). The
masks draw nothing from the random generator: the images and boxes are the ones made before masks existed. A scene
set carries both truths; its `labels` stay the detection ones (each scene's first object, `Dataset`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from edgecnn.tasks.detection.postprocess import iou_matrix
from edgecnn.data.dataset import Dataset
from edgecnn.errors import EdgecnnError

SIZE = 128
SCENES = {"train": 6000, "test": 500}  # 6,000: at 2,000 a detector overfits (test loss 1.70 vs train 0.79)
OBJECTS_PER_SCENE = (1, 4)
OBJECT_SIDE = (16, 48)
MAX_IOU = 0.2
ALPHA_EDGE = 0.25
TEST_CROPS = (3, 7)  # photo files are NAME_0..NAME_7.jpg; crops 3 and 7 of each are the test backgrounds


def _backgrounds(split: str) -> list[np.ndarray]:
    from edgecnn.data.calibration import calibration_dir
    from edgecnn.data.folder import IMAGE_SUFFIXES, read_image

    root = calibration_dir("photos")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    test = [p for p in files if p.stem.rsplit("_", 1)[-1] in {str(i) for i in TEST_CROPS}]
    chosen = test if split == "test" else [p for p in files if p not in test]
    if not chosen:
        raise EdgecnnError(f"{root}: no background photos for the {split} scenes")
    out = []
    for p in chosen:
        try:
            img = read_image(p)
        except ValueError as exc:
            raise EdgecnnError(f"{p}: unreadable background photo ({exc})") from None
        out.append(np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img)
    return out


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    mode = "F" if a.dtype != np.uint8 else None
    img = Image.fromarray(a.astype(np.float32) if mode else a, mode)
    return np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32)


def _background(rng, photos) -> np.ndarray:
    photo = photos[rng.integers(len(photos))]
    side = int(rng.integers(64, min(photo.shape[:2]) + 1))
    y, x = (int(rng.integers(0, d - side + 1)) for d in photo.shape[:2])
    crop = photo[y:y + side, x:x + side]
    bg = np.stack([_resize(crop[..., c], SIZE, SIZE) for c in range(3)], axis=2)
    return bg[:, ::-1] if rng.random() < 0.5 else bg


def _paste(rng, canvas: np.ndarray, obj: np.ndarray, placed: list, mask: np.ndarray | None = None,
           value: int = 0) -> np.ndarray | None:
    """Paste `obj` (grey uint8) at a random scale and place; its exact box, or None when it found no free spot.

    With `mask` (uint8, the canvas' H, W) the pasted pixels (alpha >= ALPHA_EDGE, those the box bounds) are set to
    `value` there."""
    gray = obj if obj.ndim == 2 else obj.mean(axis=2)
    side = int(rng.integers(OBJECT_SIDE[0], OBJECT_SIDE[1] + 1))
    alpha = np.clip(_resize(gray.astype(np.uint8), side, side) / 255.0 * 1.5, 0.0, 1.0)
    ys, xs = np.nonzero(alpha >= ALPHA_EDGE)
    if not len(ys):
        return None
    for _ in range(20):
        y, x = (int(rng.integers(0, SIZE - side + 1)) for _ in range(2))
        box = np.array([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1], np.float32)
        if placed and iou_matrix(box, np.stack(placed)).max() > MAX_IOU:
            continue
        region = canvas[y:y + side, x:x + side]
        lum = float((region.mean(axis=2) * alpha).sum() / max(alpha.sum(), 1e-6))
        ink = rng.uniform(0, 70, 3) if lum > 128 else rng.uniform(185, 255, 3)
        a = alpha[..., None]
        canvas[y:y + side, x:x + side] = region * (1 - a) + ink * a
        if mask is not None:
            mask[y + ys, x + xs] = value
        return box
    return None


_MADE: dict[tuple, Dataset] = {}  # the splits made in this process, by everything that decides their pixels


def _items(images) -> list:
    return images if isinstance(images, list) else [images]


def _digest(arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_scenes(objects: str = "digits", split: str = "train", seed: int = 0) -> Dataset:
    """Split `train`, `test` or `all` of the scenes made of `objects` (a classification source name) on photos.

    A split is made once per process (6,000 train scenes take ~10 s on a 2-core machine; training, calibration and
    eval each load them) and every call gets its own copy. The cache key is what decides the pixels: the object
    images and labels, the background photos, the seed, the split's size and the generator's constants.
    """
    from edgecnn.data.sources import load_split

    if split == "all":
        return load_scenes(objects, "train", seed).concat(load_scenes(objects, "test", seed))
    source = load_split(objects, split, needs_labels="scenes")
    if source.boxes is not None:
        raise EdgecnnError(f"scenes:{objects}: objects must come from a classification source")
    photos = _backgrounds(split)
    key = (objects, split, seed, SCENES[split], SIZE, OBJECTS_PER_SCENE, OBJECT_SIDE, MAX_IOU, ALPHA_EDGE,
           source.class_names, _digest([source.labels, *_items(source.images)]), _digest(photos))
    if key not in _MADE:
        _MADE[key] = _make_scenes(source, photos, objects, split, seed)
    made = _MADE[key]
    return replace(made, images=made.images.copy(), labels=made.labels.copy(), masks=made.masks.copy(),
                   boxes=[b.copy() for b in made.boxes])


def _make_scenes(source: Dataset, photos: list[np.ndarray], objects: str, split: str, seed: int) -> Dataset:
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    images = np.empty((SCENES[split], SIZE, SIZE, 3), np.uint8)
    masks = np.zeros((SCENES[split], SIZE, SIZE), np.uint8)
    boxes = []
    for i in range(SCENES[split]):
        canvas = _background(rng, photos)
        placed, classes = [], []
        for _ in range(int(rng.integers(OBJECTS_PER_SCENE[0], OBJECTS_PER_SCENE[1] + 1))):
            k = int(rng.integers(len(source)))
            cls = int(source.labels[k])
            box = _paste(rng, canvas, np.asarray(source.images[k]), placed, masks[i], cls + 1)
            if box is not None:
                placed.append(box)
                classes.append(cls)
        images[i] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        b = np.concatenate([np.stack(placed), np.asarray(classes, np.float32)[:, None]], axis=1) if placed else \
            np.zeros((0, 5), np.float32)
        boxes.append(b.astype(np.float32))
    labels = np.asarray([int(b[0, 4]) if len(b) else -1 for b in boxes], np.int64)
    return Dataset(images, labels, source.class_names, f"scenes:{objects}", boxes=boxes, masks=masks,
                   mask_names=("background",) + tuple(source.class_names))

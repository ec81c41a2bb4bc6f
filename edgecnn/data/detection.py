"""Detection data users bring: a COCO-format folder or a YOLO-txt folder, read into a `Dataset` with `boxes`.

| layout                                            | format | boxes in the file                                   |
|---------------------------------------------------|--------|-----------------------------------------------------|
| `DIR/annotations.json` + `DIR/images/*`           | COCO   | `bbox: [x, y, width, height]` in pixels              |
| `DIR/images/*` + `DIR/labels/*.txt` + `DIR/classes.txt` (or `data.yaml` with `names:`) | YOLO | `class cx cy w h` a line, in [0, 1] of the image |
| `DIR/train/...` + `DIR/test/...` (either format)  | split  | those folders are the splits                         |

Without split folders a fixed 20% of the images (seed 0) is the test split. Classes: COCO's `categories` in id
order; YOLO's class names in file order. An image with no annotation (COCO) or no label file (YOLO) is an image
without objects. COCO crowd annotations (`iscrowd: 1`) are skipped.

Bad input stops the load with one line naming the file (and the line, for YOLO): a JSON that does not parse or lacks
`images`/`annotations`/`categories`, an image file that is missing or unreadable, an annotation with an unknown
`image_id` or `category_id`, a box with no area or outside its image (1 px of slack for rounding), a set without any
annotation; a YOLO line that is not five numbers, a class index out of range, a box outside [0, 1]. Nothing is
written, so nothing can be half-written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecnn.data.dataset import Dataset, split_indices
from edgecnn.errors import EdgecnnError

TEST_FRACTION = 0.2
SLACK = 1.0  # pixels a box may stick out of its image (annotation tools round)
YOLO_SLACK = 1e-3


def is_coco_dir(path: Path) -> bool:
    return (path / "annotations.json").is_file() or all((path / s / "annotations.json").is_file()
                                                        for s in ("train", "test"))


def is_yolo_dir(path: Path) -> bool:
    return ((path / "labels").is_dir() and (path / "images").is_dir()) or all(
        (path / s / "labels").is_dir() for s in ("train", "test"))


def _read_image(path: Path, where: str) -> np.ndarray:
    from edgecnn.data.folder import read_image

    if not path.is_file():
        raise EdgecnnError(f"{where}: image file {path} not found")
    try:
        return read_image(path)
    except ValueError as exc:
        raise EdgecnnError(f"{where}: image file {path} is not readable ({exc})") from None


def _finish(images: list, boxes: list, class_names, name: str, split: str) -> Dataset:
    if len({im.shape for im in images}) == 1:
        images = np.stack(images)
    labels = np.asarray([int(b[0, 4]) if len(b) else -1 for b in boxes], np.int64)
    ds = Dataset(images, labels, tuple(class_names), name, boxes=boxes)
    if split == "all":
        return ds
    train, test = split_indices(np.zeros(len(ds), np.int64), TEST_FRACTION, seed=0)
    return ds.subset(train if split == "train" else test)


def _split_dirs(root: Path, split: str, is_fmt, load):
    """`root/train` + `root/test` as the splits when both hold the format; None when `root` itself holds it."""
    if not all(is_fmt(root / s) for s in ("train", "test")):
        return None
    if split == "all":
        return load(root / "train", "all").concat(load(root / "test", "all"), root.name)
    return load(root / split, "all")


def load_coco(root: str | Path, split: str = "train") -> Dataset:
    """A COCO-format folder (see the module table) as a Dataset with boxes."""
    root = Path(root)
    by_split = _split_dirs(root, split, lambda p: (p / "annotations.json").is_file(), load_coco)
    if by_split is not None:
        return by_split
    path = root / "annotations.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EdgecnnError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecnnError(f"{path}: cannot read ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations",
                                                                                    "categories")):
        raise EdgecnnError(f"{path}: a COCO file needs the lists 'images', 'annotations' and 'categories'")
    if not doc["annotations"]:
        raise EdgecnnError(f"{path}: no annotations (a detection set needs boxes)")
    try:
        cats = sorted((int(c["id"]), str(c["name"])) for c in doc["categories"])
        images = [(int(im["id"]), str(im["file_name"])) for im in doc["images"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgecnnError(f"{path}: every category needs 'id' and 'name', every image 'id' and 'file_name' "
                           f"({type(exc).__name__}: {exc})") from None
    if not cats:
        raise EdgecnnError(f"{path}: no categories")
    cat_index = {cid: i for i, (cid, _) in enumerate(cats)}
    row = {iid: i for i, (iid, _) in enumerate(images)}
    pixels = [_read_image(root / "images" / fname, f"{path}: image '{fname}' (id {iid})") for iid, fname in images]
    boxes: list[list] = [[] for _ in images]
    for k, ann in enumerate(doc["annotations"]):
        aid = ann.get("id", f"#{k}") if isinstance(ann, dict) else f"#{k}"
        try:
            iid, cid = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise EdgecnnError(f"{path}: annotation {aid}: needs 'image_id', 'category_id' and 'bbox' "
                               "[x, y, width, height]") from None
        if ann.get("iscrowd"):
            continue
        if iid not in row:
            raise EdgecnnError(f"{path}: annotation {aid}: unknown image_id {iid}")
        if cid not in cat_index:
            raise EdgecnnError(f"{path}: annotation {aid}: unknown category_id {cid} (categories: "
                               f"{', '.join(str(c) for c, _ in cats)})")
        ih, iw = pixels[row[iid]].shape[:2]
        fname = images[row[iid]][1]
        if w <= 0 or h <= 0:
            raise EdgecnnError(f"{path}: annotation {aid} (image '{fname}'): bbox {ann['bbox']} has no area")
        if x < -SLACK or y < -SLACK or x + w > iw + SLACK or y + h > ih + SLACK:
            raise EdgecnnError(f"{path}: annotation {aid} (image '{fname}'): bbox {ann['bbox']} lies outside the "
                               f"{iw}x{ih} image")
        boxes[row[iid]].append([max(x, 0), max(y, 0), min(x + w, iw), min(y + h, ih), cat_index[cid]])
    arrays = [np.asarray(b, np.float32).reshape(-1, 5) for b in boxes]
    return _finish(pixels, arrays, [n for _, n in cats], root.name, split)


def _yolo_classes(root: Path) -> list[str]:
    for base in (root, root.parent):
        if (base / "classes.txt").is_file():
            return [ln.strip() for ln in (base / "classes.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
        if (base / "data.yaml").is_file():
            from edgecnn.schema import load_yaml

            names = (load_yaml(base / "data.yaml") or {}).get("names")
            if isinstance(names, dict):
                names = [names[k] for k in sorted(names)]
            if isinstance(names, list) and names:
                return [str(n) for n in names]
            raise EdgecnnError(f"{base / 'data.yaml'}: needs 'names:' (the class names)")
    raise EdgecnnError(f"{root}: a YOLO folder needs classes.txt (one class name a line) or data.yaml with 'names:'")


def _yolo_line(txt: Path, lineno: int, line: str, n_classes: int, w: int, h: int) -> list[float]:
    bad = f"{txt}:{lineno}: expected 'class x_center y_center width height' (class 0..{n_classes - 1}, the rest " \
          f"in [0, 1]), got {line.strip()[:60]!r}"
    parts = line.split()
    try:
        cls, cx, cy, bw, bh = int(parts[0]), *(float(v) for v in parts[1:])
    except (ValueError, IndexError, TypeError):
        raise EdgecnnError(bad) from None
    if len(parts) != 5 or not 0 <= cls < n_classes or not all(np.isfinite([cx, cy, bw, bh])):
        raise EdgecnnError(bad)
    x0, y0, x1, y1 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
    if bw <= 0 or bh <= 0 or min(x0, y0) < -YOLO_SLACK or max(x1, y1) > 1 + YOLO_SLACK:
        raise EdgecnnError(f"{txt}:{lineno}: box {line.strip()[:60]!r} has no area or lies outside the image")
    return [max(x0, 0) * w, max(y0, 0) * h, min(x1, 1) * w, min(y1, 1) * h, cls]


def load_yolo(root: str | Path, split: str = "train") -> Dataset:
    """A YOLO-txt folder (see the module table) as a Dataset with boxes."""
    from edgecnn.data.folder import annotated_images

    root = Path(root)
    by_split = _split_dirs(root, split, lambda p: (p / "labels").is_dir(), load_yolo)
    if by_split is not None:
        return by_split
    classes = _yolo_classes(root)
    files = annotated_images(root, "labels", ".txt", "label file")
    images, boxes = [], []
    for p in files:
        img = _read_image(p, str(root))
        txt = root / "labels" / f"{p.stem}.txt"
        rows = []
        if txt.is_file():
            for lineno, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    rows.append(_yolo_line(txt, lineno, line, len(classes), img.shape[1], img.shape[0]))
        images.append(img)
        boxes.append(np.asarray(rows, np.float32).reshape(-1, 5))
    if not any(len(b) for b in boxes):
        raise EdgecnnError(f"{root / 'labels'}: no annotations (a detection set needs boxes)")
    return _finish(images, boxes, classes, root.name, split)


def input_boxes(ds, spec) -> list[np.ndarray]:
    """Each image's boxes (K, 5) scaled from its raw pixels to the model input (H, W) of `spec`."""
    out = []
    for img, b in zip(ds.images, ds.boxes):
        h, w = np.asarray(img).shape[:2]
        b = np.array(b, np.float32).reshape(-1, 5)
        b[:, [0, 2]] *= spec.width / w
        b[:, [1, 3]] *= spec.height / h
        out.append(b)
    return out

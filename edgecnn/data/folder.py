"""Image folders: the format users bring their own data in.

| layout                                  | loads as                                                           |
|-----------------------------------------|--------------------------------------------------------------------|
| `root/<class>/*.jpg|png|...`            | labeled; a fixed stratified split (seed 0, 20% test)               |
| `root/{train,test|val}/<class>/*`       | labeled; those folders are the splits                              |
| `root/*.jpg|png|...` (no sub-folders)   | unlabeled (`labeled=False`); every split is all of its images      |

Every PIL mode is normalised to uint8 gray or RGB: palette (with or without transparency), alpha (dropped),
16-bit and 32-bit integer (scaled to 8 bits), float, CMYK; EXIF orientation is applied so a photo taken
sideways is fed upright. A flat folder may hold notes beside its images (README.md, PROVENANCE.md: .md, .txt, .yaml,
.json are ignored there).

Files that cannot be decoded, and files that are not images, stop the load with an error naming them and their
count, unless the caller allows skipping; then they are counted in `Dataset.skipped`, never dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.dataset import Dataset, split_indices
from edgecnn.errors import EdgecnnError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
TEST_FRACTION = 0.2
_IGNORED = {".ds_store", "thumbs.db", "desktop.ini"}
_NOTES = {".md", ".txt", ".yaml", ".json"}  # provenance/readme files beside a flat folder's images


def _to_uint8(img) -> np.ndarray:
    """A PIL image -> uint8 HxW (gray) or HxWx3 (RGB) array."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(img, dtype=np.uint16)
        return (a >> 8).astype(np.uint8)
    if mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode == "I" and a.max() > 255 else (255.0 if mode == "I" else max(a.max(), 1e-12))
        return np.clip(np.rint(a / hi * 255.0), 0, 255).astype(np.uint8)
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode == "LA" or (mode == "P" and "transparency" not in img.info and img.palette and img.palette.mode == "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(path: Path) -> np.ndarray:
    """Decode one image file (EXIF-rotated) to uint8; raises ValueError with the reason if it cannot."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_uint8(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(str(exc).split("\n")[0] or type(exc).__name__) from None


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(root: Path, class_names: list[str]):
    files, labels, non_images = [], [], []
    for label, name in enumerate(class_names):
        folder = root / name
        items = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        found = 0
        for p in items:
            if p.name.lower() in _IGNORED or p.name.startswith("."):
                continue
            if p.suffix.lower() in IMAGE_SUFFIXES:
                files.append(p)
                labels.append(label)
                found += 1
            else:
                non_images.append(p)
        if found == 0:
            raise EdgecnnError(f"{folder}: class folder has no images")
    return files, labels, non_images


def _describe(paths: list[Path], reasons: dict[Path, str] | None = None) -> str:
    shown = ", ".join(f"{p}" + (f" ({reasons[p]})" if reasons and p in reasons else "") for p in paths[:3])
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return shown + more


def is_flat(root: Path) -> bool:
    """A folder of images with no (non-hidden) sub-folders: unlabeled."""
    return root.is_dir() and not _class_dirs(root)


def _decode(root: Path, files: list[Path], non_images: list[Path], skip_bad: bool):
    """(images stacked when all share a size, indices of `files` decoded, skipped paths) or one error line."""
    if non_images and not skip_bad:
        raise EdgecnnError(f"{root}: {len(non_images)} non-image file(s): {_describe(non_images)} "
                           "(remove them or pass --skip-bad)")
    images, keep, bad = [], [], {}
    for i, p in enumerate(files):
        try:
            images.append(read_image(p))
            keep.append(i)
        except ValueError as exc:
            bad[p] = str(exc)
    if bad and not skip_bad:
        raise EdgecnnError(f"{root}: {len(bad)} unreadable image(s): {_describe(list(bad), bad)} "
                           "(fix or remove them, or pass --skip-bad)")
    if not images:
        raise EdgecnnError(f"{root}: no readable images")
    if len({im.shape for im in images}) == 1:  # one size: resized as a batch, several times faster
        images = np.stack(images)
    return images, keep, tuple(str(p) for p in list(non_images) + list(bad))


def annotated_images(root: Path, sub: str, suffix: str, what: str) -> list[Path]:
    """The images of `root/images` in name order, after one line for a file `root/sub/*suffix` (a `what`: YOLO's
    label files, segmentation masks) whose image is missing and one for a folder without images."""
    files = sorted(p for p in (root / "images").iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES)
    stems = {p.stem for p in files}
    orphans = sorted(p for p in (root / sub).glob(f"*{suffix}") if p.stem not in stems)
    if orphans:
        raise EdgecnnError(f"{orphans[0]}: {what} without an image {orphans[0].stem}.* in {root / 'images'}")
    if not files:
        raise EdgecnnError(f"{root / 'images'}: no images")
    return files


def load_flat_folder(root: Path, skip_bad: bool = False) -> Dataset:
    """Every image directly in `root` (no class sub-folders), unlabeled: for calibration and bench inputs."""
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.lower() not in _IGNORED and p.suffix.lower() not in _NOTES)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise EdgecnnError(f"{root}: empty image folder (expected images, or one sub-folder per class)")
    x, keep, skipped = _decode(root, images, [p for p in files if p not in images], skip_bad)
    return Dataset(x, np.full(len(keep), -1, dtype=np.int64), (), root.name, skipped, labeled=False)


def load_folder(root: str | Path, split: str = "train", skip_bad: bool = False) -> Dataset:
    """Load `root/<class>/*` (or `root/<split>/<class>/*`) into a Dataset of raw uint8 images."""
    root = Path(root)
    if not root.exists():
        raise EdgecnnError(f"{root}: data path does not exist")
    if not root.is_dir():
        raise EdgecnnError(f"{root}: not a directory of class folders")
    if is_flat(root):
        return load_flat_folder(root, skip_bad)
    split_dirs = {p.name: p for p in _class_dirs(root) if p.name in ("train", "test", "val")}
    if "train" in split_dirs and ("test" in split_dirs or "val" in split_dirs):
        want = {"train": "train", "test": "test" if "test" in split_dirs else "val", "val": "val"}.get(split, split)
        if split == "all":
            a, b = load_folder(split_dirs["train"], "all", skip_bad), load_folder(root, "test", skip_bad)
            return a.concat(b, root.name)
        return load_folder(split_dirs.get(want, split_dirs["train"]), "all", skip_bad)
    class_names = [p.name for p in _class_dirs(root)]
    files, labels, non_images = _scan(root, class_names)
    images, keep, skipped = _decode(root, files, non_images, skip_bad)
    ds = Dataset(images, np.asarray(labels, dtype=np.int64)[keep], tuple(class_names), root.name, skipped)
    if split == "all":
        return ds
    train, test = split_indices(ds.labels, TEST_FRACTION, seed=0)
    return ds.subset(train if split == "train" else test)

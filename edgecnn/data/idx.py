"""Fashion-MNIST (and MNIST-format) IDX files: the real 60k/10k set, offline.

Where it is looked for, in order: a directory given by the user; `$EDGECNN_FASHION_MNIST`; Debian's
`dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist/`); Keras' cache (`~/.keras/datasets/
fashion-mnist`). With internet, `download_fashion_mnist()` uses Keras' own downloader into that cache.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from edgecnn.data.dataset import Dataset
from edgecnn.errors import EdgecnnError

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET = ("install it with `apt-get install dataset-fashion-mnist` (Debian), or point $EDGECNN_FASHION_MNIST "
              "(or --data fashion-mnist:DIR) at a folder of its IDX files")


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def is_idx_dir(folder: Path) -> bool:
    return folder.is_dir() and _find(folder, FILES["train"][0]) is not None


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array; a clear error for truncated or foreign files."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise EdgecnnError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise EdgecnnError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise EdgecnnError(f"{path}: truncated IDX file ({len(data)} bytes, header says {dims})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def candidate_dirs(explicit: str | Path | None = None) -> list[Path]:
    dirs = [Path(explicit)] if explicit else []
    if os.environ.get("EDGECNN_FASHION_MNIST"):
        dirs.append(Path(os.environ["EDGECNN_FASHION_MNIST"]))
    return dirs + [DEBIAN_DIR, KERAS_CACHE]


def load_idx_dir(folder: Path, split: str, name: str, class_names: tuple[str, ...]) -> Dataset:
    if split == "all":
        return load_idx_dir(folder, "train", name, class_names).concat(load_idx_dir(folder, "test", name, class_names))
    img_stem, lbl_stem = FILES[split]
    img_path, lbl_path = _find(folder, img_stem), _find(folder, lbl_stem)
    if img_path is None or lbl_path is None:
        raise EdgecnnError(f"{folder}: missing {img_stem}[.gz] or {lbl_stem}[.gz]")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise EdgecnnError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    return Dataset(images, labels.astype(np.int64), class_names, name)


def load_fashion_mnist(split: str = "train", folder: str | Path | None = None) -> Dataset:
    for d in candidate_dirs(folder):
        if is_idx_dir(d):
            return load_idx_dir(d, split, "fashion-mnist", FASHION_CLASSES)
    if folder:
        raise EdgecnnError(f"{folder}: no Fashion-MNIST IDX files there ({FILES['train'][0]}[.gz], ...)")
    raise EdgecnnError(f"fashion-mnist: data set not found; {HOW_TO_GET}")


def download_fashion_mnist() -> Path:
    """Fetch Fashion-MNIST with Keras' downloader (needs internet) into Keras' cache; returns the folder."""
    from keras.utils import get_file

    base = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
    for stems in FILES.values():
        for stem in stems:
            try:
                get_file(stem + ".gz", origin=base + stem + ".gz", cache_subdir="datasets/fashion-mnist")
            except Exception as exc:  # network errors come in many types
                raise EdgecnnError(f"fashion-mnist: download failed ({exc}); {HOW_TO_GET}") from None
    return KERAS_CACHE

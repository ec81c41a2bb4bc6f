"""Resolve a data source string to a Dataset: the one place that knows the names users type.

| SRC                         | what it loads                                                    |
|-----------------------------|------------------------------------------------------------------|
| `digits`                    | scikit-learn's bundled 8x8 digits (offline, always there)        |
| `fashion-mnist`             | the real Fashion-MNIST (Debian package, $EDGECNN_FASHION_MNIST)   |
| `fashion-mnist:DIR` or DIR  | a folder of Fashion-MNIST/MNIST IDX files                        |
| DIR                         | an image folder `DIR/<class>/*.png|jpg|...`                      |
| FILE.npz                    | arrays `x` (uint8 images N,H,W[,C]) and `y` (labels)             |
| `calibration:NAME`          | a set under the repository's `calibration/` folder               |
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from edgecnn.data.dataset import Dataset
from edgecnn.errors import EdgecnnError

SPLITS = ("train", "test", "all")
NAMED = ("digits", "fashion-mnist")


def _load_npz(path: Path, split: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z:
                raise EdgecnnError(f"{path}: .npz has no array 'x' (found: {', '.join(z.files) or 'none'})")
            x = z["x"]
            y = z["y"].astype(np.int64) if "y" in z else np.zeros(len(x), dtype=np.int64)
            names = tuple(str(s) for s in z["class_names"]) if "class_names" in z else ()
    except (OSError, ValueError) as exc:
        raise EdgecnnError(f"{path}: not a readable .npz file ({exc})") from None
    if x.dtype != np.uint8:
        raise EdgecnnError(f"{path}: 'x' must hold raw uint8 images, got {x.dtype}")
    if len(x) != len(y):
        raise EdgecnnError(f"{path}: 'x' has {len(x)} images but 'y' has {len(y)} labels")
    names = names or tuple(str(i) for i in range(int(y.max()) + 1 if len(y) else 0))
    return Dataset(x, y, names, path.stem)


def load_split(src: str, split: str = "train", skip_bad: bool = False) -> Dataset:
    """Load split `train`, `test` or `all` of the source `src` (see the module table)."""
    if split not in SPLITS:
        raise EdgecnnError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    from edgecnn.data import idx
    from edgecnn.data.digits import load_digits
    from edgecnn.data.folder import load_folder

    if src == "digits":
        return load_digits(split)
    if src == "fashion-mnist":
        return idx.load_fashion_mnist(split)
    if src.startswith("fashion-mnist:"):
        return idx.load_fashion_mnist(split, src.split(":", 1)[1])
    if src.startswith("calibration:"):
        from edgecnn.data.calibration import calibration_dir

        return load_folder(calibration_dir(src.split(":", 1)[1]), "all", skip_bad)
    path = Path(src)
    if path.suffix == ".npz" and path.is_file():
        return _load_npz(path, split)
    if idx.is_idx_dir(path):
        return idx.load_idx_dir(path, split, path.name, idx.FASHION_CLASSES)
    if path.exists():
        return load_folder(path, split, skip_bad)
    close = difflib.get_close_matches(src, NAMED, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known names: {', '.join(NAMED)})"
    raise EdgecnnError(f"{src}: data path does not exist{hint}")

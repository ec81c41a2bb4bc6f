"""Calibration data for post-training quantization, fed exactly like training data (through the model's spec).

| --calibration SRC        | samples drawn from                                                        |
|--------------------------|---------------------------------------------------------------------------|
| `photos` (a set name)    | `calibration/photos/`: real public-domain photos shipped with the project   |
| `recipe:NAME`            | `calibration/recipes/NAME.yaml`: {data, split, samples, seed}                |
| a dataset name / path    | its *train* split (never the test split that accuracy is measured on)      |
| an image folder          | every image below it (class sub-folders optional)                          |

Checks: a missing or empty set, fewer images than asked for, unreadable files, and images whose channel count
does not match the model (an RGB set for a grayscale model) are errors naming the set and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgecnn.data.dataset import Dataset
from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError

REPO_CALIBRATION = Path(__file__).resolve().parents[2] / "calibration"


def calibration_root() -> Path:
    return Path(os.environ.get("EDGECNN_CALIBRATION_DIR", REPO_CALIBRATION))


def calibration_dir(name: str) -> Path:
    d = calibration_root() / name
    if not d.is_dir():
        sets = sorted(p.name for p in calibration_root().iterdir() if p.is_dir() and p.name != "recipes") \
            if calibration_root().is_dir() else []
        raise EdgecnnError(f"calibration set {name!r} not found in {calibration_root()} "
                           f"(sets: {', '.join(sets) or 'none'})")
    return d


def _load_flat_folder(root: Path) -> Dataset:
    from edgecnn.data.folder import IMAGE_SUFFIXES, read_image

    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    images, bad, other = [], [], []
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            if p.suffix.lower() not in (".md", ".txt", ".yaml", ".json"):  # provenance notes are expected
                other.append(p)
            continue
        try:
            images.append(read_image(p))
        except ValueError as exc:
            bad.append(f"{p} ({exc})")
    if bad:
        raise EdgecnnError(f"{root}: {len(bad)} unreadable calibration image(s): {', '.join(bad[:3])}")
    if other:
        raise EdgecnnError(f"{root}: {len(other)} non-image file(s) in the calibration set: "
                           f"{', '.join(map(str, other[:3]))}")
    if not images:
        raise EdgecnnError(f"{root}: calibration set is empty (no images)")
    if len({im.shape for im in images}) == 1:  # one size: resized as a batch, several times faster
        images = np.stack(images)
    return Dataset(images, np.zeros(len(images), dtype=np.int64), (), root.name)


def _recipe(name: str) -> tuple[str, str, int | None, int]:
    import yaml

    path = calibration_root() / "recipes" / f"{name}.yaml"
    if not path.is_file():
        raise EdgecnnError(f"calibration recipe {name!r}: {path} does not exist")
    d = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(d) - {"data", "split", "samples", "seed", "description"})
    if unknown:
        raise EdgecnnError(f"{path}: unknown key(s) {', '.join(unknown)}")
    return d["data"], d.get("split", "train"), d.get("samples"), int(d.get("seed", 0))


def load_calibration_set(src: str) -> tuple[Dataset, int | None, int | None]:
    """(raw dataset, samples the recipe asks for or None, seed or None)."""
    from edgecnn.data.sources import load_split

    if src.startswith("recipe:"):
        data, split, n, seed = _recipe(src.split(":", 1)[1])
        return load_split(data, split), n, seed
    if (calibration_root() / src).is_dir() and "/" not in src:
        return _load_flat_folder(calibration_dir(src)), None, None
    if src.startswith("calibration:"):
        return _load_flat_folder(calibration_dir(src.split(":", 1)[1])), None, None
    path = Path(src)
    if path.is_dir() and not any(p.is_dir() for p in path.iterdir()):
        return _load_flat_folder(path), None, None
    return load_split(src, "train"), None, None


def calibration_samples(src: str, spec: PreprocessSpec, n: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """`n` preprocessed samples (float32, the model's input) and a description of what was used."""
    ds, recipe_n, recipe_seed = load_calibration_set(src)
    n = recipe_n or n
    seed = recipe_seed if recipe_seed is not None else seed
    if len(ds) < n:
        raise EdgecnnError(f"calibration set {src!r} has {len(ds)} images, fewer than the {n} asked for "
                           f"(lower --num-calibration)")
    ds = ds.take(n, seed=seed)
    if ds.channels not in (spec.channels, 4, 2) and not (ds.channels == 3 and spec.channels == 3):
        raise EdgecnnError(f"calibration set {src!r} has {ds.channels}-channel images but the model takes "
                           f"{spec.channels} channel(s)")
    x = spec.apply(ds.images)
    return x, {"source": src, "samples": int(len(x)), "seed": seed, "preprocessing": spec.to_dict()}

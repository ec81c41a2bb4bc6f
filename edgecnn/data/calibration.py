"""Calibration data for post-training quantization: samples drawn from any data source, fed through the model's spec.

| name                   | what                                                                                  |
|------------------------|---------------------------------------------------------------------------------------|
| `calibration_root`     | the folder of calibration sets and recipes (`calibration/`, or $EDGECNN_CALIBRATION_DIR) |
| `calibration_dir`      | the set `NAME` (a flat folder of images, e.g. `photos`), or one line naming the sets    |
| `CalibrationRecipe`    | `calibration/recipes/NAME.yaml`: {data, split, samples, seed, description}             |
| `read_recipe`          | a recipe file read through that schema (`<file>: field 'samples' must be int, ...`)     |
| `calibration_samples`  | N preprocessed samples and a description (with notes) for the convert report           |

The source string is resolved by `edgecnn.data.sources` (the one resolver); here samples are only drawn from its
train split (never the test split accuracy is measured on). Like the stock converter, which takes whatever the
representative dataset yields, a small set is used whole and an image's colour mode is converted to the model's
(as Keras' loaders do with `color_mode`); each adjustment is a note in the description, never a refusal.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError
from edgecnn.schema import Strict, load_yaml, validate

REPO_CALIBRATION = Path(__file__).resolve().parents[2] / "calibration"
USUAL = "100-500 is the usual advice"


def calibration_root() -> Path:
    return Path(os.environ.get("EDGECNN_CALIBRATION_DIR", REPO_CALIBRATION))


def calibration_sets() -> list[str]:
    """Names of the calibration sets (every folder under the root but `recipes`)."""
    root = calibration_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "recipes") if root.is_dir() else []


def calibration_dir(name: str) -> Path:
    d = calibration_root() / name
    if not name or "/" in name or not d.is_dir():
        raise EdgecnnError(f"calibration set {name!r} not found in {calibration_root()} "
                           f"(sets: {', '.join(calibration_sets()) or 'none'})")
    return d


class CalibrationRecipe(Strict):
    """`samples` images drawn with `seed` from split `split` of the data source `data`."""

    data: str
    split: Literal["train", "test", "all"] = "train"
    samples: int = Field(ge=1)
    seed: int = Field(0, ge=0)
    description: str = ""


def read_recipe(name: str) -> tuple[Path, CalibrationRecipe]:
    path = calibration_root() / "recipes" / f"{name}.yaml"
    if not path.is_file():
        raise EdgecnnError(f"calibration recipe {name!r}: {path} does not exist")
    recipe = validate(CalibrationRecipe, load_yaml(path), path)
    if recipe.data.startswith("recipe:"):
        raise EdgecnnError(f"{path}: field 'data' must be a data set, not another recipe, got {recipe.data!r}")
    return path, recipe


def _channel_note(src: str, have: int, want: int) -> str | None:
    """What `PreprocessSpec.apply` (data.transform.convert_channels) does to this set's colour mode, in words."""
    have = {4: 3, 2: 1}.get(have, have)  # alpha is dropped
    if have == want:
        return None
    if have == 3:
        return (f"calibration set {src!r} has colour (RGB) images: converted to the model's 1 channel with the "
                "ITU-R 601 luma weights (as PIL's 'L')")
    return f"calibration set {src!r} has grayscale images: repeated to the model's {want} channels"


def calibration_samples(src: str, spec: PreprocessSpec, n: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Up to `n` preprocessed samples (float32, the model's input) and a description of what was used.

    A recipe sets its own sample count and seed. `notes` in the description say what was adjusted (fewer images
    than asked for, colour mode converted); library code prints nothing, the convert report shows them.
    """
    from edgecnn.data.sources import resolve

    source = resolve(src)
    ds = source.load("train")
    if source.recipe is not None:
        n, seed = source.recipe.samples, source.recipe.seed
    notes = []
    if len(ds) < n:
        notes.append(f"calibration set {src!r} has {len(ds)} images, fewer than the {n} asked for: using all "
                     f"{len(ds)} ({USUAL})")
    ds = ds.take(n, seed=seed)
    note = _channel_note(src, ds.channels, spec.channels)
    notes += [note] if note else []
    x = spec.apply(ds.images)
    return x, {"source": src, "samples": int(len(x)), "seed": seed, "preprocessing": spec.to_dict(), "notes": notes}

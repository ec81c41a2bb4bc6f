"""Resolve a data-source string to a Dataset: the one place that knows the names users type (`--data`,
`--calibration`, `--eval-data`, recipes' `data:`).

| SRC                        | kind          | what it loads                                                        |
|----------------------------|---------------|----------------------------------------------------------------------|
| `digits`                   | digits        | scikit-learn's bundled 8x8 digits (offline, always there)            |
| `fashion-mnist[:DIR]`      | fashion-mnist | the real Fashion-MNIST (DIR, $EDGECNN_FASHION_MNIST, Debian package) |
| DIR of IDX files           | idx           | Fashion-MNIST/MNIST-format IDX files                                 |
| FILE.npz                   | npz           | uint8 images `x` (N,H,W[,C]), labels `y` (optional), `class_names`   |
| DIR with class sub-folders | folder        | `DIR/<class>/*` (or `DIR/{train,test}/<class>/*`), labeled           |
| DIR of images only         | flat          | every image in it, unlabeled                                         |
| `calibration:NAME`, `NAME` | flat          | a set under the calibration root (`calibration/photos`)              |
| `recipe:NAME`              | recipe        | `calibration/recipes/NAME.yaml`: N seeded samples from a split       |
| `scenes:digits`            | scenes        | detection: digits on the shipped photos, exact boxes, masks (scenes.py) |
| `scenes:fashion-mnist[:DIR]` | scenes      | detection: Fashion-MNIST items on the photos, where installed        |
| DIR with annotations.json  | coco          | detection: COCO-format folder, `DIR/images/` (detection.py)          |
| DIR with images/ + labels/ | yolo          | detection: YOLO-txt folder, `classes.txt` or `data.yaml` names       |
| DIR with images/ + masks/  | masks         | segmentation: PNG masks of class indices or colours (masks.py)       |

A path on disk wins over a calibration set of the same name. Unlabeled sources (a flat folder, an .npz without `y`)
load wherever labels are not needed (calibration, bench inputs); `load_split(..., needs_labels=COMMAND)` turns them
into one line for commands that measure or learn from labels. A recipe fixes its own split. A detection source
returns a Dataset whose `boxes` are set (`Dataset.task == "detection"`), a segmentation source one whose `masks` are
(`scenes:` sets carry both).
"""

from __future__ import annotations

import difflib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgecnn.data.dataset import Dataset
from edgecnn.errors import EdgecnnError

if TYPE_CHECKING:
    from edgecnn.data.calibration import CalibrationRecipe

SPLITS = ("train", "test", "all")
NAMED = ("digits", "fashion-mnist")


def read_npz(path: Path, names: tuple[str, ...] = ("x", "y", "class_names")) -> dict[str, np.ndarray]:
    """The arrays `names` that the .npz at `path` holds ('x' is required), or one line saying why it cannot be read.

    np.load raises many types for a damaged file (BadZipFile, EOFError, zlib.error, a ValueError about pickled
    data for a file that is not an archive at all); every one becomes the same line. Shared with bench's
    pre-processed inputs for foreign models, so there is one .npz reader.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"PK":
                raise EdgecnnError(f"{path}: not an .npz file (no zip archive; save it with numpy.savez)")
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise EdgecnnError(f"{path}: .npz has no array 'x' (found: {', '.join(z.files) or 'none'})")
            return {k: z[k] for k in names if k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgecnnError(f"{path}: not a readable .npz file ({why})") from None


def _load_npz(path: Path) -> Dataset:
    arrays = read_npz(path)
    x = arrays["x"]
    if x.dtype != np.uint8:
        raise EdgecnnError(f"{path}: 'x' must hold raw uint8 images, got {x.dtype}")
    if "y" not in arrays:
        return Dataset(x, np.full(len(x), -1, dtype=np.int64), (), path.stem, labeled=False)
    y = arrays["y"].reshape(-1).astype(np.int64)
    if len(x) != len(y):
        raise EdgecnnError(f"{path}: 'x' has {len(x)} images but 'y' has {len(y)} labels")
    names = tuple(str(s) for s in arrays.get("class_names", ()))
    names = names or tuple(str(i) for i in range(int(y.max()) + 1 if len(y) else 0))
    return Dataset(x, y, names, path.stem)


@dataclass(frozen=True)
class Source:
    """What a source string names (one row of the module table); `load(split)` reads it."""

    text: str
    kind: str
    path: Path | None = None
    recipe: CalibrationRecipe | None = None  # kind "recipe" only

    def load(self, split: str = "train", skip_bad: bool = False) -> Dataset:
        from edgecnn.data import idx
        from edgecnn.data.folder import load_flat_folder, load_folder

        if self.kind == "digits":
            from edgecnn.data.digits import load_digits

            return load_digits(split)
        if self.kind == "scenes":
            from edgecnn.data.scenes import load_scenes

            return load_scenes(self.text.split(":", 1)[1], split)
        if self.kind in ("coco", "yolo"):
            from edgecnn.data.detection import load_coco, load_yolo

            return (load_coco if self.kind == "coco" else load_yolo)(self.path, split)
        if self.kind == "masks":
            from edgecnn.data.masks import load_masks

            return load_masks(self.path, split)
        if self.kind == "fashion-mnist":
            return idx.load_fashion_mnist(split, self.path)
        if self.kind == "idx":
            return idx.load_idx_dir(self.path, split, self.path.name, idx.FASHION_CLASSES)
        if self.kind == "npz":
            return _load_npz(self.path)
        if self.kind == "flat":
            return load_flat_folder(self.path, skip_bad)
        if self.kind == "folder":
            return load_folder(self.path, split, skip_bad)
        r = self.recipe  # kind "recipe": the recipe's own split, drawn with its seed
        return load_split(r.data, r.split, skip_bad).take(r.samples, seed=r.seed)

    def unlabeled_error(self, command: str) -> EdgecnnError:
        if self.kind == "npz":
            return EdgecnnError(f"{self.text}: an .npz without labels; {command} needs labels (an array 'y')")
        return EdgecnnError(f"{self.text}: a flat folder of unlabeled images; {command} needs labels "
                            "(one sub-folder per class)")


def resolve(src: str) -> Source:
    """The Source that `src` names (see the module table), or one line saying it names nothing."""
    from edgecnn.data import idx
    from edgecnn.data.calibration import calibration_dir, calibration_sets, read_recipe
    from edgecnn.data.detection import is_coco_dir, is_yolo_dir
    from edgecnn.data.folder import is_flat
    from edgecnn.data.masks import is_mask_dir

    if src in NAMED:
        return Source(src, src)
    if src.startswith("fashion-mnist:"):
        return Source(src, "fashion-mnist", Path(src.split(":", 1)[1]))
    if src.startswith("calibration:"):
        return Source(src, "flat", calibration_dir(src.split(":", 1)[1]))
    if src.startswith("scenes:"):
        objects = src.split(":", 1)[1]
        if objects.split(":", 1)[0] not in NAMED:
            raise EdgecnnError(f"{src}: scenes are made of {' or '.join(NAMED)} objects (scenes:digits)")
        return Source(src, "scenes")
    if src.startswith("recipe:"):
        return Source(src, "recipe", None, read_recipe(src.split(":", 1)[1])[1])
    path = Path(src)
    if path.suffix == ".npz" and path.is_file():
        return Source(src, "npz", path)
    if idx.is_idx_dir(path):
        return Source(src, "idx", path)
    if path.is_dir() and is_coco_dir(path):
        return Source(src, "coco", path)
    if path.is_dir() and is_yolo_dir(path):
        return Source(src, "yolo", path)
    if path.is_dir() and is_mask_dir(path):
        return Source(src, "masks", path)
    if path.is_dir():
        return Source(src, "flat" if is_flat(path) else "folder", path)
    if path.exists():
        raise EdgecnnError(f"{src}: not a data source (a directory of images, an .npz, or a data set name)")
    sets = calibration_sets()
    if src in sets:
        return Source(src, "flat", calibration_dir(src))
    close = difflib.get_close_matches(src, NAMED + tuple(sets), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known names: {', '.join(NAMED + tuple(sets))})"
    raise EdgecnnError(f"{src}: data path does not exist{hint}")


def load_split(src: str, split: str = "train", skip_bad: bool = False, needs_labels: str | None = None) -> Dataset:
    """Load split `train`, `test` or `all` of the source `src` (see the module table).

    `needs_labels` names the command that needs them ("train", "eval"...): an unlabeled source is then an error.
    """
    if split not in SPLITS:
        raise EdgecnnError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    source = resolve(src)
    ds = source.load(split, skip_bad)
    if needs_labels and not ds.labeled:
        raise source.unlabeled_error(needs_labels)
    return ds

"""Small mask folders written in a test's tmp_path (`edgecnn/data/masks.py`'s layout), good or broken one way:
shared by the segmentation data tests and the bad-input catalogue."""

from __future__ import annotations

import numpy as np
from PIL import Image

from edgecnn.data.masks import IGNORE_COLOUR, voc_colormap

CLASSES = ("background", "cat", "dog", "bird")
BROKEN = ("size", "missing", "orphan", "colour", "index", "unreadable", "jpeg", "mode", "empty", "palette",
          "all-ignore")  # the ways `break_mask_dir` breaks a folder


def mask(h=12, w=16, cls=1, at=(2, 3)) -> np.ndarray:
    """A (h, w) mask: background, a 4x5 patch of class `cls` at `at`, three ignore (255) pixels of outline."""
    m = np.zeros((h, w), np.uint8)
    m[at[0]:at[0] + 4, at[1]:at[1] + 5] = cls
    m[0, :3] = 255
    return m


def save_mask(m: np.ndarray, path, kind="L", colours=None) -> None:
    """`m` as a PNG of mode `kind`: L or I;16 (indices), P (indices, VOC palette) or RGB (each class its colour: VOC's map
    or `colours`; 255 the VOC outline colour)."""
    if kind == "L":
        Image.fromarray(m, "L").save(path)
    elif kind == "I;16":
        Image.fromarray(m.astype(np.uint16)).save(path)
    elif kind == "P":
        p = Image.fromarray(m, "P")
        p.putpalette(voc_colormap().reshape(-1).tolist())
        p.save(path)
    else:
        table = voc_colormap() if colours is None else np.asarray(
            list(colours) + [IGNORE_COLOUR] * (256 - len(colours)), np.uint8)
        rgb = table[m]
        rgb[m == 255] = IGNORE_COLOUR
        Image.fromarray(rgb, "RGB").save(path)


def mask_dir(root, n=6, kind="L", classes=CLASSES, sizes=None, colours=None) -> list[np.ndarray]:
    """A mask folder of `n` random images im0..: image i holds class i % 3 + 1 and outline; the masks written."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    rng = np.random.default_rng(len(str(root)))
    masks = []
    for i in range(n):
        h, w = sizes[i] if sizes else (12, 16)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        m = mask(h, w, i % 3 + 1, at=(2 + i % 3, 3))
        save_mask(m, root / "masks" / f"im{i}.png", kind, colours)
        masks.append(m)
    return masks


def break_mask_dir(root, case: str) -> None:
    """Break a `mask_dir` folder's image im2 (or the folder) the way `case` (one of BROKEN) names."""
    if case == "size":
        save_mask(mask(10, 16), root / "masks" / "im2.png")
    elif case == "missing":
        (root / "masks" / "im2.png").unlink()
        Image.fromarray(mask()).save(root / "masks" / "im2.jpg")
    elif case == "orphan":
        save_mask(mask(), root / "masks" / "stray.png")
    elif case == "colour":
        rgb = np.asarray(Image.open(root / "masks" / "im2.png").convert("RGB")).copy()
        rgb[5, 7] = (1, 2, 3)
        Image.fromarray(rgb).save(root / "masks" / "im2.png")
    elif case == "index":
        save_mask(mask(cls=4), root / "masks" / "im2.png")
    elif case == "unreadable":
        (root / "masks" / "im2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    elif case == "jpeg":
        Image.fromarray(mask()).save(root / "masks" / "im2.png", format="JPEG")
    elif case == "mode":
        Image.fromarray(np.zeros((12, 16, 2), np.uint8), "LA").save(root / "masks" / "im2.png")
    elif case == "empty":
        for p in (root / "images").iterdir():
            p.unlink()
        for p in (root / "masks").iterdir():
            p.unlink()
    elif case == "palette":
        (root / "palette.txt").write_text("0 0 0\n300 0 0\n")
    elif case == "all-ignore":
        (root / "classes.txt").unlink()
        for p in (root / "masks").iterdir():
            save_mask(np.full((12, 16), 255, np.uint8), p)

"""Segmentation data users bring: a folder of images and PNG masks, read into a `Dataset` with `masks`.

| file                            | what it holds                                                                  |
|---------------------------------|--------------------------------------------------------------------------------|
| `DIR/images/<stem>.<ext>`       | the images, any format an image folder takes (.jpg, .png, ...), EXIF-upright   |
| `DIR/masks/<stem>.png`          | image <stem>'s mask: a PNG of the image's size, a class per pixel              |
| `DIR/classes.txt` (optional)    | the class names, one a line: line k names class k (background first)           |
| `DIR/palette.txt` (optional)    | RGB masks' colours, `R G B` a line (0..255, spaces or commas): line k = class k |
| `DIR/{train,test}/images|masks` | those folders are the splits; classes.txt and palette.txt stay in DIR          |

| mask PNG mode             | class of a pixel                                                                    |
|---------------------------|-------------------------------------------------------------------------------------|
| L (8-bit grey), 1         | its value                                                                           |
| I;16, I (16-bit grey)     | its value (0..255 only)                                                             |
| P (palette)               | its palette index, as in VOC's SegmentationClass PNGs (the colours are for viewing) |
| RGB, RGBA (alpha dropped) | its colour's line in palette.txt; without one, its index in VOC's 256-colour map    |

255 is ignore (not scored, not a class): the value or index 255, or in an RGB mask the colour (224, 224, 192) (VOC's
entry 255, its object outlines) unless palette.txt gives that colour to a class. Class names come from `classes.txt`
(looked for in DIR, then its parent: `--data DIR/test` finds the set's file), else they are "0".."K-1" with K - 1
the largest class index in any mask of the set (both split folders); in classes.txt and palette.txt, blank lines are
skipped (line k is the k-th line that is not blank). Without split folders a fixed 20% of the images (seed 0,
stratified by `labels`) is the test split. An image's label (`Dataset.labels`, what `take`, `subset` and
`split_indices` use) is the most frequent class in its mask other than 0 (the background, by VOC's convention) and
255, or -1 when it holds no other.

Bad input stops the load with one line naming the file: an image without its mask, a mask without its image, a mask
of another size than its image, a mask that is not a readable PNG (or in a mode that holds no classes), an RGB colour
outside the palette, a class index not named in classes.txt, a malformed classes.txt or palette.txt line, a folder
without images. Nothing is written, so nothing can be half-written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.dataset import Dataset, split_indices
from edgecnn.errors import EdgecnnError

TEST_FRACTION = 0.2
IGNORE = 255
SPLIT_DIRS = ("train", "test")


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (n, 3) uint8: entry i spreads the bits of i over R, G, B from the high bit down."""
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for bit in range(7, -1, -1):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << bit
            c >>= 3
        cmap[i] = rgb
    return cmap


IGNORE_COLOUR = tuple(int(v) for v in voc_colormap()[IGNORE])  # (224, 224, 192)


def _has_layout(path: Path) -> bool:
    return (path / "images").is_dir() and (path / "masks").is_dir()


def is_mask_dir(path: Path) -> bool:
    """`path/images` + `path/masks`, or both split folders holding them."""
    return _has_layout(path) or all(_has_layout(path / s) for s in SPLIT_DIRS)


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a small text file, or one line saying why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecnnError(f"{path}: cannot read ({exc})") from None
    return [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]


def _set_file(root: Path, name: str) -> Path | None:
    """`name` in the set's folder or its parent (a split folder given alone), or None."""
    return next((base / name for base in (root, root.parent) if (base / name).is_file()), None)


def _classes(root: Path) -> tuple[Path, tuple[str, ...]] | None:
    path = _set_file(root, "classes.txt")
    if path is None:
        return None
    names = tuple(text for _, text in _lines(path))
    if not names:
        raise EdgecnnError(f"{path}: no class names (one a line: line k names class k)")
    if len(names) > IGNORE:
        raise EdgecnnError(f"{path}: {len(names)} classes; masks hold at most {IGNORE} (0..254, {IGNORE} = ignore)")
    return path, names


class Palette:
    """Colour -> class of RGB masks: palette.txt's lines, else VOC's 256-colour map; the ignore colour -> 255."""

    def __init__(self, root: Path):
        self.path = _set_file(root, "palette.txt")
        if self.path is None:
            colours, self.where = voc_colormap(), "the VOC colour map"
        else:
            colours, self.where = self._read(self.path), str(self.path)
        codes = {int(r) << 16 | int(g) << 8 | int(b): k for k, (r, g, b) in enumerate(colours)}
        codes.setdefault(_code(IGNORE_COLOUR), IGNORE)
        self.codes = np.asarray(sorted(codes), np.int64)
        self.classes = np.asarray([codes[c] for c in self.codes], np.uint8)

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        colours: dict[tuple, int] = {}
        for lineno, text in _lines(path):
            try:
                rgb = tuple(int(v) for v in text.replace(",", " ").split())
            except ValueError:
                rgb = ()
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise EdgecnnError(f"{path}:{lineno}: expected 'R G B' (three numbers 0..255), got {text[:60]!r}")
            if rgb in colours:
                raise EdgecnnError(f"{path}:{lineno}: colour {rgb} is already class {colours[rgb]}")
            colours[rgb] = len(colours)
        if not colours:
            raise EdgecnnError(f"{path}: no colours ('R G B' a line: line k is the colour of class k)")
        if len(colours) > IGNORE:
            raise EdgecnnError(f"{path}: {len(colours)} colours; masks hold at most {IGNORE} classes")
        return np.asarray(list(colours), np.int64).reshape(-1, 3)

    def classes_of(self, rgb: np.ndarray, mask: Path) -> np.ndarray:
        """The (H, W) class indices of an (H, W, 3) mask; one line naming a colour outside the palette."""
        codes = rgb[..., 0].astype(np.int64) << 16 | rgb[..., 1].astype(np.int64) << 8 | rgb[..., 2]
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        bad = self.codes[at] != codes
        if bad.any():
            y, x = (int(v[0]) for v in np.nonzero(bad))
            colours = len(np.unique(codes[bad]))
            raise EdgecnnError(f"{mask}: colour {tuple(int(v) for v in rgb[y, x])} at pixel (x={x}, y={y}) is not in "
                               f"{self.where} ({colours} colour(s) outside it)")
        return self.classes[at]


def _code(rgb) -> int:
    return int(rgb[0]) << 16 | int(rgb[1]) << 8 | int(rgb[2])


def read_mask(path: Path, palette: Palette) -> np.ndarray:
    """The uint8 (H, W) class indices of one mask PNG (see the module table), or one line saying why not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            fmt, mode = img.format, img.mode
            a = np.asarray(img.convert("RGB") if mode == "RGBA" else img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        why = str(exc).split("\n")[0] or type(exc).__name__
        raise EdgecnnError(f"{path}: not a readable PNG mask ({why})") from None
    if fmt != "PNG":
        raise EdgecnnError(f"{path}: a {fmt} file; masks must be PNG (lossless class indices)")
    if mode in ("RGB", "RGBA"):
        return palette.classes_of(a, path)
    if mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise EdgecnnError(f"{path}: PNG mode {mode}; a mask holds class indices (mode L or P) or palette colours "
                           "(RGB)")
    if a.max(initial=0) > IGNORE:
        y, x = (int(v[0]) for v in np.nonzero(a > IGNORE))
        raise EdgecnnError(f"{path}: value {int(a[y, x])} at pixel (x={x}, y={y}); class indices are 0..254 "
                           f"({IGNORE} = ignore)")
    return a.astype(np.uint8)


def _pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) files of one folder in name order; one line for a missing mask, an orphan mask, no images."""
    from edgecnn.data.folder import annotated_images

    pairs = []
    for p in annotated_images(root, "masks", ".png", "mask"):
        mask = root / "masks" / f"{p.stem}.png"
        if not mask.is_file():
            other = sorted(q.name for q in (root / "masks").glob(f"{p.stem}.*"))
            hint = f" (found {other[0]}: masks are PNG files)" if other else ""
            raise EdgecnnError(f"{p}: no mask {mask}{hint}")
        pairs.append((p, mask))
    return pairs


def mask_labels(masks) -> np.ndarray:
    """Each mask's most frequent class other than 0 (background) and 255 (ignore); -1 when it holds no other."""
    out = np.full(len(masks), -1, np.int64)
    for i, m in enumerate(masks):
        counts = np.bincount(np.asarray(m).reshape(-1), minlength=IGNORE + 1)
        counts[[0, IGNORE]] = 0
        if counts.any():
            out[i] = int(counts.argmax())
    return out


def _names(root: Path, listed: tuple[Path, tuple[str, ...]] | None, masks: list[tuple[Path, np.ndarray]]):
    """The class names: classes.txt's (each mask's indices checked against them), else "0".."K-1" from the masks."""
    top = -1
    for path, m in masks:
        seen = m[m != IGNORE]
        k = int(seen.max()) if seen.size else -1
        if listed is not None and k >= len(listed[1]):
            y, x = (int(v[0]) for v in np.nonzero(m == k))
            raise EdgecnnError(f"{path}: class index {k} at pixel (x={x}, y={y}), but {listed[0]} names "
                               f"{len(listed[1])} classes (0..{len(listed[1]) - 1}; {IGNORE} = ignore)")
        top = max(top, k)
    if listed is not None:
        return listed[1]
    if top < 0:
        raise EdgecnnError(f"{root}: every mask pixel is {IGNORE} (ignore): no classes to learn or score")
    return tuple(str(i) for i in range(top + 1))


def load_masks(root: str | Path, split: str = "train") -> Dataset:
    """A mask folder (see the module table) as a Dataset with masks."""
    from edgecnn.data.detection import _read_image

    root = Path(root)
    by_split = not _has_layout(root) and all(_has_layout(root / s) for s in SPLIT_DIRS)
    parts = {s: root / s for s in SPLIT_DIRS} if by_split else {"all": root}
    wanted = [s for s in parts if split in (s, "all") or s == "all"]  # split folders: only those asked for
    listed = _classes(root)
    scan = parts if listed is None else {s: parts[s] for s in wanted}  # names from every mask: read them all
    palette = Palette(root)
    pairs = {s: _pairs(d) for s, d in scan.items()}
    masks = {s: [read_mask(m, palette) for _, m in pairs[s]] for s in scan}
    names = _names(root, listed, [(m, a) for s in scan for (_, m), a in zip(pairs[s], masks[s])])
    images, kept = [], []
    for s in wanted:
        for (path, mask_path), m in zip(pairs[s], masks[s]):
            img = _read_image(path, str(parts[s]))
            if img.shape[:2] != m.shape:
                raise EdgecnnError(f"{mask_path}: mask is {m.shape[1]}x{m.shape[0]} pixels, its image {path.name} "
                                   f"is {img.shape[1]}x{img.shape[0]}")
            images.append(img)
            kept.append(m)
    if len({im.shape for im in images}) == 1:
        images, kept = np.stack(images), np.stack(kept)
    ds = Dataset(images, mask_labels(kept), names, root.name, masks=kept, mask_names=names)
    if by_split or split == "all":
        return ds
    train, test = split_indices(ds.labels, TEST_FRACTION, seed=0)
    return ds.subset(train if split == "train" else test)

"""Segmentation data: the exact masks of `scenes:` (images and boxes unchanged by them) and the mask-folder loader
(index, palette and RGB PNGs, ignore, classes.txt, split folders), with one line for each kind of bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import require
from edgecnn.data import load_split
from edgecnn.data.dataset import Dataset
from edgecnn.data.sources import resolve
from edgecnn.errors import EdgecnnError
from helpers import assert_one_line_error, run_cli_in_process
from mask_folders import BROKEN, break_mask_dir, mask_dir, save_mask

# sha256 of the test split's images, boxes and labels, computed with the code before scenes had masks
BEFORE_MASKS = {
    "digits": "a52810f8c6b4adc91a3fa510e0cbef9e6031b4d4a18d9d127b9849524f966e73",
    "fashion-mnist": "01d9384b279e40f87762a53b0b651f2cb267f1f371501d3ba5cf98a24dba42fa",
}


def _digest(ds) -> str:
    h = hashlib.sha256(np.ascontiguousarray(ds.images).tobytes())
    for b in ds.boxes:
        h.update(np.ascontiguousarray(b, np.float32).tobytes())
    h.update(ds.labels.astype(np.int64).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scenes_test():
    return load_split("scenes:digits", "test")


@pytest.mark.parametrize("objects", list(BEFORE_MASKS))
def test_scenes_images_boxes_and_labels_are_the_ones_made_before_masks(objects, scenes_test):
    if objects == "fashion-mnist":
        from edgecnn.data.idx import candidate_dirs, is_idx_dir

        require(any(is_idx_dir(d) for d in candidate_dirs()), "Fashion-MNIST not installed")
    ds = scenes_test if objects == "digits" else load_split(f"scenes:{objects}", "test")
    assert _digest(ds) == BEFORE_MASKS[objects]
    assert ds.masks is not None and ds.masks.shape == ds.images.shape[:3] and ds.masks.dtype == np.uint8


def test_scenes_masks_are_the_pasted_pixels_of_each_box(scenes_test):
    ds = scenes_test
    assert ds.mask_names == ("background",) + tuple(str(i) for i in range(10))
    assert set(np.unique(ds.masks)) == set(range(11))  # background and every object class, over the test split
    exact = hidden = 0
    for mask, boxes in zip(ds.masks, ds.boxes):
        allowed = np.zeros((11,) + mask.shape, bool)  # where each mask value may be: inside a box of its class
        allowed[0] = True
        for x0, y0, x1, y1, c in boxes.astype(int):
            allowed[c + 1, y0:y1, x0:x1] = True
        assert np.take_along_axis(allowed, mask[None].astype(np.int64), 0).all()
        for j, (x0, y0, x1, y1, c) in enumerate(boxes.astype(int)):
            ys, xs = np.nonzero(mask[y0:y1, x0:x1] == c + 1)
            hidden += not len(ys)
            later = boxes[j + 1:].astype(int)
            if any(a0 < x1 and b0 < y1 and a1 > x0 and b1 > y0 for a0, b0, a1, b1, _ in later):
                continue  # a later object may cover part of this one (or all: it hides it in the image too)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 0, x1 - x0, y1 - y0)  # tight bounds
            exact += 1
    objects = sum(len(b) for b in ds.boxes)
    assert exact > 0.8 * objects and hidden <= 0.005 * objects, (exact, hidden, objects)


def test_scenes_all_split_and_subsets_carry_masks(monkeypatch):
    from edgecnn.data import scenes

    monkeypatch.setattr(scenes, "SCENES", {"train": 12, "test": 6})
    tr, te, both = (scenes.load_scenes("digits", s) for s in ("train", "test", "all"))
    assert both.masks.shape == (18, scenes.SIZE, scenes.SIZE) and both.mask_names == tr.mask_names
    assert np.array_equal(both.masks, np.concatenate([tr.masks, te.masks])) and both.masks[12:].any()
    part = both.take(5, seed=3)
    picked = np.sort(np.random.default_rng(3).choice(18, 5, replace=False))
    assert np.array_equal(part.masks, both.masks[picked]) and part.mask_names == both.mask_names


def test_subset_of_a_list_of_masks_keeps_them_with_their_images():
    imgs = [np.full((4 + i, 5, 3), i, np.uint8) for i in range(4)]
    masks = [np.full((4 + i, 5), i, np.uint8) for i in range(4)]
    ds = Dataset(imgs, np.arange(4), ("a", "b", "c", "d"), "t", masks=masks, mask_names=("a", "b", "c", "d"))
    sub = ds.subset([3, 1])
    assert [int(m[0, 0]) for m in sub.masks] == [3, 1] and [m.shape for m in sub.masks] == [(7, 5), (5, 5)]
    joined = sub.concat(ds.subset([0]))
    assert len(joined.masks) == 3 and joined.masks[2].shape == (4, 5) and joined.mask_names == ds.mask_names


# --- the mask folder -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["L", "P", "RGB", "I;16"])
def test_mask_folder_reads_class_indices_from_each_png_mode(tmp_path, kind):
    written = mask_dir(tmp_path / "set", kind=kind)
    assert resolve(str(tmp_path / "set")).kind == "masks"
    ds = load_split(str(tmp_path / "set"), "all")
    assert ds.mask_names == ds.class_names == ("background", "cat", "dog", "bird")
    assert ds.masks.shape == (6, 12, 16) == ds.images.shape[:3]
    assert np.array_equal(ds.masks, np.stack(written)) and (ds.masks == 255).any() and ds.masks.max() == 255
    assert list(ds.labels) == [1, 2, 3, 1, 2, 3]  # each mask's most frequent class other than background
    tr, te = load_split(str(tmp_path / "set"), "train"), load_split(str(tmp_path / "set"), "test")
    assert len(tr) + len(te) == 6 and len(te) >= 1 and set(tr.labels) == set(te.labels) == {1, 2, 3}
    assert not {im.tobytes() for im in tr.images} & {im.tobytes() for im in te.images}
    mask_of = {im.tobytes(): m for im, m in zip(ds.images, written)}
    assert all(np.array_equal(m, mask_of[im.tobytes()]) for part in (tr, te) for im, m in zip(part.images, part.masks))


def test_mask_folder_rgb_with_its_own_palette_and_names_from_the_largest_index(tmp_path):
    root = tmp_path / "set"
    colours = [(10, 10, 10), (200, 0, 0), (0, 200, 0), (0, 0, 200)]
    written = mask_dir(root, kind="RGB", classes=(), colours=colours)
    (root / "palette.txt").write_text("10 10 10\n200, 0, 0\n0 200 0\n0 0 200\n")  # line k: class k
    ds = load_split(str(root), "all")
    assert ds.mask_names == ("0", "1", "2", "3") and np.array_equal(ds.masks, np.stack(written))


def test_mask_folder_of_mixed_sizes_keeps_lists(tmp_path):
    sizes = [(12, 16), (20, 10), (12, 16), (9, 9)]
    written = mask_dir(tmp_path / "set", n=4, sizes=sizes)
    ds = load_split(str(tmp_path / "set"), "all")
    assert isinstance(ds.masks, list) and [m.shape for m in ds.masks] == sizes
    assert all(np.array_equal(a, b) for a, b in zip(ds.masks, written))
    assert [np.asarray(i).shape[:2] for i in ds.images] == sizes


def test_mask_folder_split_folders_are_the_splits_with_one_set_of_names(tmp_path):
    root = tmp_path / "set"
    mask_dir(root / "train", n=4, classes=())
    test_masks = mask_dir(root / "test", n=2, classes=())
    big = test_masks[1].copy()
    big[8:10, 10:14] = 6  # the largest index of the set is in the test split
    save_mask(big, root / "test" / "masks" / "im1.png")
    assert resolve(str(root)).kind == "masks"
    tr, te, both = (load_split(str(root), s) for s in ("train", "test", "all"))
    assert len(tr) == 4 and len(te) == 2 and len(both) == 6
    assert tr.mask_names == te.mask_names == tuple(str(i) for i in range(7))
    assert np.array_equal(te.masks[1], big) and np.array_equal(both.masks[4:], te.masks)
    (root / "classes.txt").write_text("\n".join(f"c{i}" for i in range(7)) + "\n")
    assert load_split(str(root / "test"), "all").mask_names[6] == "c6"  # a split folder finds the set's file


BAD = [  # (case, PNG kind of the folder's masks, texts the one line must hold)
    ("size", "L", ["im2.png", "mask is 16x10 pixels, its image im2.png is 16x12"]),
    ("missing", "L", ["im2.png", "no mask", "found im2.jpg: masks are PNG files"]),
    ("orphan", "L", ["stray.png", "mask without an image"]),
    ("colour", "RGB", ["im2.png", "colour (1, 2, 3) at pixel (x=7, y=5) is not in the VOC colour map"]),
    ("index", "L", ["im2.png", "class index 4", "classes.txt names 4 classes (0..3; 255 = ignore)"]),
    ("unreadable", "L", ["im2.png", "not a readable PNG mask"]),
    ("jpeg", "L", ["im2.png", "a JPEG file; masks must be PNG"]),
    ("mode", "L", ["im2.png", "PNG mode LA"]),
    ("empty", "L", ["images", "no images"]),
    ("palette", "RGB", ["palette.txt:2:", "expected 'R G B'"]),
    ("all-ignore", "L", ["every mask pixel is 255"]),
]


@pytest.mark.parametrize("case, kind, needles", BAD, ids=[c[0] for c in BAD])
def test_mask_folder_bad_input_is_one_line_naming_the_file(tmp_path, case, kind, needles):
    assert [c[0] for c in BAD] == list(BROKEN)  # every way of breaking a folder is checked here
    root = tmp_path / "set"
    mask_dir(root, kind=kind)
    break_mask_dir(root, case)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(EdgecnnError) as err:
        load_split(str(root), "all")
    line = str(err.value)
    assert "\n" not in line and all(n in line for n in needles), line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("case, needles", [("size", ["im2.png", "mask is 16x10"]), ("index", ["class index 4"])])
def test_mask_folder_bad_input_is_one_cli_line(tmp_path, case, needles):
    root = tmp_path / "set"
    mask_dir(root)
    break_mask_dir(root, case)
    proc = run_cli_in_process("train", "lenet5", "--data", root, "-o", tmp_path / "m.keras")
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "m.keras").exists()

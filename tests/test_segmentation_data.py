"""Segmentation data: the exact masks of `scenes:` (images and boxes unchanged by them)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import require
from edgecnn.data import load_split
from edgecnn.data.dataset import Dataset

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

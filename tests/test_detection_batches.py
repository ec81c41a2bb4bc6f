"""The detector's training batches (`edgecnn.train.detection.batches`): every image once per epoch, targets that
belong to the image as it is shown (mirrored with its boxes under `flip`), reshuffled each epoch, repeatable."""

from __future__ import annotations

import numpy as np

from edgecnn.train.detection import batches, flip_boxes
from edgecnn.train.targets import encode

N, SIDE, GRID = 10, 32, (4, 4)


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((N, SIDE, SIDE, 3)).astype(np.float32)
    x[:, :, 0] += np.arange(N, dtype=np.float32)[:, None, None] * 10  # left column: the image's id
    boxes = [np.array([[2 + i, 4, 12 + i, 20, i % 3]], np.float32) for i in range(N)]  # off-centre: flip moves it
    return x, boxes


def _enc(bs):
    return encode(bs, GRID, SIDE / GRID[0], 3)


def _epochs(flip, seed=0, n=2):
    x, boxes = _data()
    ds = batches(x, boxes, _enc, batch_size=4, seed=seed, flip=flip)
    return x, boxes, [[(np.asarray(a), tuple(np.asarray(t) for t in b)) for a, b in ds] for _ in range(n)]


def _which(x, img):
    """(index in x, mirrored?) of a batch image."""
    for i in range(len(x)):
        if np.array_equal(img, x[i]):
            return i, False
        if np.array_equal(img, x[i][:, ::-1]):
            return i, True
    raise AssertionError("a batch image is neither an input image nor its mirror")


def test_plain_batches_show_each_image_once_with_its_own_targets():
    x, boxes, epochs = _epochs(flip=False)
    orders = []
    for epoch in epochs:
        seen = []
        for imgs, targets in epoch:
            assert len(targets) == 3 and imgs.shape[1:] == (SIDE, SIDE, 3)
            for k, img in enumerate(imgs):
                i, mirrored = _which(x, img)
                assert not mirrored
                for got, want in zip(targets, _enc([boxes[i]])):
                    np.testing.assert_array_equal(got[k], want[0])
                seen.append(i)
        assert sorted(seen) == list(range(N))
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled each epoch


def test_flip_mirrors_image_and_boxes_together():
    x, boxes, epochs = _epochs(flip=True, n=3)
    mirrored_count = 0
    for epoch in epochs:
        for imgs, targets in epoch:
            for k, img in enumerate(imgs):
                i, mirrored = _which(x, img)
                shown = flip_boxes(boxes[i], SIDE) if mirrored else boxes[i]
                for got, want in zip(targets, _enc([shown])):
                    np.testing.assert_array_equal(got[k], want[0])
                mirrored_count += mirrored
    assert 0 < mirrored_count < 3 * N  # both kinds drawn over 30 images


def test_same_seed_same_batches_other_seed_other_order():
    a = _epochs(flip=True, seed=3)[2]
    b = _epochs(flip=True, seed=3)[2]
    c = _epochs(flip=True, seed=4)[2]
    flat = lambda ep: np.concatenate([imgs for e in ep for imgs, _ in e])  # noqa: E731
    np.testing.assert_array_equal(flat(a), flat(b))
    assert not np.array_equal(flat(a), flat(c))

"""Segmentation's task: mIoU on hand-made masks (checked against keras.metrics.MeanIoU), the shipped numpy
post-processing, the board runner's confusion matrix and its scoring on the host."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.tasks.segmentation import TASK
from edgecnn.tasks.segmentation.metrics import kl_sums, pixel_agreement, score_maps, scores
from edgecnn.tasks.segmentation.postprocess import (IGNORE, confusion, confusion_of, decode, pack_masks,
                                                    resize_nearest, unpack_masks)


def _truth():
    a = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 1
    a[2:, 2:] = 2
    b = np.zeros((4, 4), np.uint8)
    b[1:3, 1:3] = 2
    b[0, :] = IGNORE
    return [a, b]


def test_perfect_prediction_scores_one():
    truth = _truth()
    preds = [np.where(m == IGNORE, 0, m).astype(np.uint8) for m in truth]
    r = score_maps(preds, truth, ("bg", "one", "two"), [])
    assert r["miou"] == 1.0 and r["pixel_accuracy"] == 1.0 and r["mean_accuracy"] == 1.0
    assert r["pixels"] == 32 - 4 and r["classes_scored"] == 3  # the 4 ignore pixels count for nothing


def test_one_class_swapped_and_an_absent_class():
    truth = _truth()
    preds = [np.where(m == 1, 2, np.where(m == IGNORE, 0, m)).astype(np.uint8) for m in truth]  # 1 -> 2
    r = scores(confusion_of(preds, truth, 4), ("bg", "one", "two", "three"))
    per = {c["name"]: c["iou"] for c in r["per_class"]}
    assert per["one"] == 0.0  # 4 true pixels, none found
    assert per["three"] is None  # in neither truth nor prediction: not averaged
    # class two: 4 (a) + 4 (b) true, 4 more predicted in a: IoU 8/12
    assert per["two"] == pytest.approx(8 / 12) and per["bg"] == 1.0
    assert r["miou"] == pytest.approx((1.0 + 0.0 + 8 / 12) / 3) and r["classes_scored"] == 3


def test_miou_equals_keras_meaniou_on_random_masks():
    import keras

    rng = np.random.default_rng(0)
    truth = [rng.integers(0, 5, (9, 7)).astype(np.uint8) for _ in range(6)]
    for m in truth:
        m[rng.random(m.shape) < 0.1] = IGNORE
    preds = [np.where(rng.random(m.shape) < 0.7, np.where(m == IGNORE, 0, m), rng.integers(0, 5, m.shape))
             .astype(np.uint8) for m in truth]
    ours = score_maps(preds, truth, tuple("abcde"), [])
    k = keras.metrics.MeanIoU(num_classes=5, ignore_class=IGNORE)
    for p, t in zip(preds, truth):
        k.update_state(t.astype(np.int32), p.astype(np.int32))
    assert ours["pixels"] > 0 and ours["classes_scored"] == 5
    assert ours["miou"] == pytest.approx(float(k.result()), abs=1e-6)


def test_decode_takes_the_argmax_and_maps_are_resized_to_each_mask():
    logits = np.zeros((2, 4, 4, 3), np.float32)
    logits[0, :2, :, 1] = 5.0
    logits[1, :, :, 2] = 1.0
    maps = decode([logits], None, None)
    assert maps.dtype == np.uint8 and maps.shape == (2, 4, 4)
    assert (maps[0, :2] == 1).all() and (maps[0, 2:] == 0).all() and (maps[1] == 2).all()
    up = resize_nearest(maps[0], 8, 6)
    assert up.shape == (8, 6) and (up[:4] == 1).all() and (up[4:] == 0).all()
    # a class map scored against masks twice its size: each mask is scored in its own pixels
    masks = [np.kron(maps[0], np.ones((2, 2), np.uint8)), np.full((3, 5), 2, np.uint8)]
    cm = confusion_of(list(maps), masks, 3)
    assert cm.sum() == 64 + 15 and np.trace(cm) == cm.sum()


def test_a_mask_class_above_the_models_is_one_line():
    with pytest.raises(ValueError, match="class 7, the model has 3"):
        confusion(np.zeros((2, 2)), np.full((2, 2), 7), 3)
    with pytest.raises(EdgecnnError, match="class 7, the model has 3 classes"):
        score_maps([np.zeros((2, 2), np.uint8)], [np.full((2, 2), 7, np.uint8)], (), ["a", "b", "c"])


def test_masks_pack_exactly_for_the_runner():
    masks = _truth() + [np.arange(15, dtype=np.uint8).reshape(3, 5)]
    packed = pack_masks(masks)
    back = unpack_masks(packed["mask_flat"], packed["mask_shapes"])
    assert len(back) == 3 and all(np.array_equal(a, b) for a, b in zip(masks, back))
    with pytest.raises(ValueError, match="mask_flat holds"):
        unpack_masks(packed["mask_flat"][:-1], packed["mask_shapes"])


def test_label_free_agreement_and_kl():
    f = np.random.default_rng(1).normal(size=(3, 4, 4, 5)).astype(np.float32)
    same_kl, pixels = kl_sums(f, f)
    assert np.allclose(same_kl, 0, atol=1e-9) and (pixels == 16).all()
    q = f.copy()
    q[0, 0, 0] = q[0, 0, 0][::-1]
    kl, _ = kl_sums(f, q)
    assert kl[0] > 0 and np.allclose(kl[1:], 0, atol=1e-9)
    fm, qm = decode([f], None, None), decode([q], None, None)
    assert pixel_agreement(fm, fm) == 1.0 and 1 - 1 / 48 <= pixel_agreement(fm, qm) <= 1.0


def test_device_confusion_is_scored_as_eval_scores_maps(tmp_path):
    """What the runner returns (`device_result` on the samples' packed masks) scores to eval's numbers."""
    from edgecnn.tasks.segmentation import postprocess

    truth = _truth()
    preds = [np.where(m == IGNORE, 0, m).astype(np.uint8) for m in truth]
    preds[1][2, 2] = 1
    samples = tmp_path / "samples.npz"
    np.savez(samples, x=np.zeros((2, 4, 4, 3), np.float32), **pack_masks(truth))
    key, doc = postprocess.device_result(np, preds, str(samples), [[1, 4, 4, 3]])
    assert key == "confusion" and np.asarray(doc["matrix"]).sum() == 28
    bench = {"status": "ok", "confusion": doc}
    TASK.score_device(bench, {"names": ("bg", "one", "two")}, "scenes")
    eval_r = TASK.score(preds, truth, ("bg", "one", "two"), {"labels": ["bg", "one", "two"]})
    assert bench["accuracy"]["miou"] == eval_r["miou"] < 1.0
    assert "confusion" not in bench


def test_class_ids_of_a_graphs_arg_max_are_taken_as_they_are(tmp_path):
    """A foreign graph that ends in ARG_MAX outputs (N, H, W) ids (widened to float by the dequantize): decode keeps
    them, refuses a 3-D map that is not ids, the device's matrix has as many classes as ids and masks name, and
    compare pairs ids (H, W) only with scores of the same (H, W)."""
    from edgecnn.tasks.segmentation import postprocess

    truth = _truth()
    ids = np.stack([np.where(m == IGNORE, 0, m) for m in truth]).astype(np.float32)
    maps = decode([ids], None, None)
    assert maps.dtype == np.uint8 and np.array_equal(maps, ids) and len(np.unique(maps)) == 3
    for bad in (ids + 0.5, ids - 1):
        with pytest.raises(ValueError, match="not class ids"):
            decode([bad], None, None)
    samples = tmp_path / "samples.npz"
    np.savez(samples, x=np.zeros((2, 4, 4, 3), np.float32), **pack_masks(truth))
    _, doc = postprocess.device_result(np, list(maps), str(samples), [[2, 4, 4]])
    assert np.asarray(doc["matrix"]).shape == (3, 3) and np.asarray(doc["matrix"]).sum() == 28
    assert TASK.same_outputs([[4, 4]], [[4, 4, 21]]) and TASK.same_outputs([[4, 4, 3]], [[4, 4]])
    assert not TASK.same_outputs([[4, 4, 11]], [[4, 4, 21]]) and not TASK.same_outputs([[4, 4]], [[8, 8, 3]])


@pytest.mark.parametrize("flip", [False, True])
def test_training_batches_move_each_mask_with_its_image_and_cover_the_rows_once_per_epoch(flip):
    """`train.segmentation.batches`: the rows given, each once per epoch (the set repeats: fit takes `steps`), each
    image with its own mask, mirrored together when `flip` (some mirrored, some not, over two epochs)."""
    from edgecnn.train.segmentation import batches, steps

    n, h, w = 10, 4, 6
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32)
    x[..., 0] = np.arange(n)[:, None, None]  # channel 0 names the row
    masks = rng.integers(0, 11, (n, h, w)).astype(np.uint8)
    rows = np.array([1, 2, 4, 5, 7, 8, 9])
    it = iter(batches(x, masks, 3, seed=0, flip=flip, rows=rows))
    assert steps(rows, 3) == 3
    mirrored = plain_seen = 0
    orders = []
    for _epoch in range(2):
        seen = []
        for _ in range(steps(rows, 3)):
            img, m = (a.numpy() for a in next(it))
            assert m.dtype == np.int32 and img.shape[1:] == (h, w, 3) and m.shape == img.shape[:3]
            for i, mask in zip(img, m):
                r = int(i[0, 0, 0])
                seen.append(r)
                plain = np.array_equal(i, x[r]) and np.array_equal(mask, masks[r])
                flipped = np.array_equal(i, x[r][:, ::-1]) and np.array_equal(mask, masks[r][:, ::-1])
                assert plain or (flip and flipped), r
                mirrored += flipped and not plain
                plain_seen += plain and not flipped
        assert sorted(seen) == rows.tolist()
        orders.append(seen)
    assert (mirrored > 0) == flip and plain_seen > 0
    assert orders[0] != orders[1]  # reshuffled each epoch

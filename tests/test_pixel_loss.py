"""`train/pixel_loss.py`: the segmentation trainer's cross-entropy + Dice loss and the ignore label."""

import numpy as np
import pytest
import tensorflow as tf

from edgecnn.tasks.segmentation.postprocess import IGNORE


def _batch(seed=0, n=2, size=16, classes=5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, (n, size, size)).astype(np.int32)
    y[:, :2] = IGNORE
    return y, rng.normal(size=(n, size, size, classes)).astype(np.float32) * 3


def _value_and_grad(fn, y, logits):
    v = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = fn(y, v)
    return float(value), tape.gradient(value, v).numpy()


def test_cross_entropy_equals_keras_with_the_ignore_label_value_and_gradient():
    import keras

    from edgecnn.train.pixel_loss import pixel_loss

    y, logits = _batch()
    ours, g_ours = _value_and_grad(pixel_loss(0.0), y, logits)
    theirs, g_theirs = _value_and_grad(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE), y, logits)
    assert ours > 0.5 and np.abs(g_theirs).sum() > 0  # random logits: a real loss and gradient, not both zero
    assert ours == pytest.approx(theirs, rel=1e-5)
    np.testing.assert_allclose(g_ours, g_theirs, atol=1e-7)
    same, _ = _value_and_grad(pixel_loss(0.0), y[..., None], logits)  # (N, H, W, 1) truth: the same
    assert same == pytest.approx(ours, rel=1e-6)


def test_ignore_pixels_count_in_neither_term():
    from edgecnn.train.pixel_loss import pixel_loss

    y, logits = _batch(1)
    fn = pixel_loss()
    before, grad = _value_and_grad(fn, y, logits)
    changed = logits.copy()
    changed[:, :2] = np.random.default_rng(5).normal(size=changed[:, :2].shape) * 10
    after, _ = _value_and_grad(fn, y, changed)
    assert before > 0.5 and after == pytest.approx(before, rel=1e-6)
    assert not grad[:, :2].any() and grad[:, 2:].any()


def test_dice_is_zero_when_right_counts_only_present_classes_and_weighs_a_small_class_as_a_big_one():
    from edgecnn.train.pixel_loss import DICE_WEIGHT, pixel_loss

    y = np.zeros((1, 16, 16), np.int32)
    y[0, 4:6, 4:6] = 1  # 4 pixels of class 1 among 252 of background; classes 2..4 absent
    perfect = tf.one_hot(y, 5).numpy() * 40.0
    assert _value_and_grad(pixel_loss(), y, perfect)[0] < 1e-3  # absent classes add nothing
    missed = tf.one_hot(np.zeros_like(y), 5).numpy() * 40.0  # all background: the small object missed
    ce, _ = _value_and_grad(pixel_loss(0.0), y, missed)
    both, _ = _value_and_grad(pixel_loss(), y, missed)
    # Dice over the two present classes: background ~0.008, the missed class 1 - 1/5 = 0.8 -> mean ~0.40
    assert (both - ce) / DICE_WEIGHT == pytest.approx(0.404, abs=0.01)
    assert ce == pytest.approx(4 / 256 * 40, rel=1e-3)  # cross-entropy: 4 pixels wrong by 40 nats, over 256


def test_dice_moves_the_gradient_and_is_the_trainers_loss():
    """Dice's gradient is its own (not stopped, not a hard arg-max): on the missed object it pushes the object's
    pixels towards class 1 beyond what cross-entropy alone does; `train.segmentation.loss()` is this loss."""
    from edgecnn.train import segmentation
    from edgecnn.train.pixel_loss import pixel_loss

    y = np.zeros((1, 16, 16), np.int32)
    y[0, 4:6, 4:6] = 1
    missed = tf.one_hot(np.zeros_like(y), 5).numpy() * 4.0
    ce, g_ce = _value_and_grad(pixel_loss(0.0), y, missed)
    both, g_both = _value_and_grad(pixel_loss(), y, missed)
    assert np.abs(g_ce).sum() > 0
    extra = g_both - g_ce
    assert extra[0, 4:6, 4:6, 1].max() < -1e-4  # descending the gradient raises class 1 where it is true
    assert not np.allclose(g_both, g_ce)
    trainer, _ = _value_and_grad(segmentation.loss(), y, missed)
    assert trainer == pytest.approx(both, rel=1e-6) and trainer > ce

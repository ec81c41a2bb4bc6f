"""The segmentation trainer's loss: pixel-wise cross-entropy on the logits plus `DICE_WEIGHT` x a soft Dice loss,
both skipping the ignore label (255).

Cross-entropy is written as logsumexp(logits) - logit of the true class (a one-hot product, no gather), which is
`SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)` to float rounding, gradient included. Keras'
loss calls `tf.nn.sparse_softmax_cross_entropy_with_logits`, which under op determinism (on for every `edgecnn
train`) takes a slower path: forward and backward on one batch of seg-quick's logits (32 x 128 x 128 x 11) took
37.2 ms against 12.8 ms written this way, 29.2 ms with the Dice term; a whole training step of seg-quick's model
119.1 / 110.6 / 128.8 ms (`benchmarks/pixel_loss.py`, a 2-core AMD EPYC): the rewrite saves 8.5 ms a step, the
Dice term costs 18.2 ms, a step 8% dearer than with Keras' cross-entropy alone.

The Dice term (Milletari et al. 2016; CE + Dice as in nnU-Net and mmseg's configs) is 1 - 2|P.G| / (|P| + |G|) per
class over the batch (P: softmax probabilities, G: one-hot truth, smoothed by 1), averaged over the classes present
in the batch's truth. Cross-entropy is a sum over pixels, so background (92% of scenes:digits' pixels) rules it and
a thin digit stroke is cheap to miss; Dice weighs every class alike, whatever its size, as mIoU does. On seg-quick's
model (LR-ASPP-Small, minimalistic, alpha 0.5, output stride 8, refined; batch 32, lr 0.01, seed 0, test split, a
2-core AMD EPYC; one run each, about +-1 point; the 8-epoch cross-entropy row is `edgecnn run seg-quick` at 2174352,
the others an experiment's training of the same model, the 9-epoch row equal to this commit's `benchmarks/recipe.py
seg-quick`):

| loss, epochs                      | mIoU   | fg/bg IoU | wrong digit |
|-----------------------------------|--------|-----------|-------------|
| cross-entropy, 8                  | 0.6699 | 0.777     | 0.112       |
| cross-entropy + 0.5 x Dice, 8     | 0.6904 | 0.775     | 0.090       |
| cross-entropy + 1.0 x Dice, 8     | 0.6838 | 0.755     | 0.083       |
| cross-entropy + 0.5 x Dice, 9     | 0.7059 | 0.786     | 0.084       |

(fg/bg IoU: digit pixels found as any digit; wrong digit: the share of those given another digit.) Dice took the
wrong digit less often; at weight 1.0 it also found fewer digit pixels, hence 0.5. With the ninth epoch seg-quick
reaches the 0.70 of issue #21 within its 6 minutes (seed 1: 0.7030).
"""

from __future__ import annotations

from edgecnn.tasks.segmentation.postprocess import IGNORE

DICE_WEIGHT = 0.5


def pixel_loss(dice_weight: float = DICE_WEIGHT, ignore: int = IGNORE):
    """loss(y_true (N, H, W) class indices, logits (N, H, W, C)) -> scalar: the mean cross-entropy over the pixels
    not labelled `ignore`, plus `dice_weight` x the soft Dice loss (0: cross-entropy alone)."""
    import tensorflow as tf

    def loss(y_true, logits):
        y = tf.cast(y_true, tf.int32)
        if y.shape.rank == logits.shape.rank:  # (N, H, W, 1) truth
            y = tf.squeeze(y, -1)
        valid = tf.cast(tf.not_equal(y, ignore), logits.dtype)
        truth = tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)  # the ignore label: all zeros
        lse = tf.reduce_logsumexp(logits, -1)
        nll = lse - tf.reduce_sum(truth * logits, -1)
        total = tf.reduce_sum(nll * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)
        if not dice_weight:
            return total
        prob = tf.exp(logits - lse[..., None]) * valid[..., None]
        axes = tf.range(tf.rank(logits) - 1)
        inter = tf.reduce_sum(prob * truth, axes)
        sizes = tf.reduce_sum(truth, axes)
        dice = 1.0 - (2.0 * inter + 1.0) / (tf.reduce_sum(prob, axes) + sizes + 1.0)
        present = tf.cast(sizes > 0, logits.dtype)
        return total + dice_weight * tf.reduce_sum(dice * present) / tf.maximum(tf.reduce_sum(present), 1.0)

    return loss

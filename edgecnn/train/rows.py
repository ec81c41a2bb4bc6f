"""Shuffled batches of row numbers for the trainers that gather their images per batch (detection, segmentation).

Shuffling numbers instead of the images keeps the arrays in one place (a gather per batch), and `flip` draws one
coin per row with stateless randomness seeded per epoch, so a run repeats exactly from its seed.
"""

from __future__ import annotations

import numpy as np


def shuffled_rows(n: int, batch_size: int, seed: int, flip: bool):
    """tf.data batches of the numbers 0..n-1, reshuffled each epoch from `seed`; with `flip`, (numbers, coins): a
    bool per number, True with probability 1/2, drawn anew each epoch."""
    import tensorflow as tf

    order = tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.int64))
    order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if not flip:
        return order
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((order, draws)).map(
        lambda i, draw: (i, tf.random.stateless_uniform(tf.shape(i), seed=tf.stack([draw, draw // 2])) < 0.5))

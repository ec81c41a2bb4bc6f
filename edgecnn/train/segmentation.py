"""The segmentation half of `edgecnn train` (`Segmentation.trainer`): a set with masks (`Dataset.masks`: `scenes:`,
a mask folder) and a segmenter (`task: segmentation` in the zoo, or a saved one to fine-tune).

`trainer.train` does what every task's run does and calls these hooks: `adopt` a saved model (its logits checked
against the set's classes), `fit` it with a pixel-wise cross-entropy + soft Dice loss on the logits that skips the
ignore label (255; `pixel_loss.py`), and `measure` the test split's mIoU (the float model, scored as `edgecnn eval`
scores it). The masks are brought to the model's input size once, before training, with the nearest-neighbour
resize the scoring uses (`postprocess.resize_nearest`); `--augment flip` mirrors an image and its mask together,
drawn from the run's seed each epoch, so a run is repeatable.
"""

from __future__ import annotations

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.tasks.segmentation.postprocess import resize_nearest
from edgecnn.train.rows import shuffled_rows

AUGMENTATIONS = ("flip",)


def input_masks(ds, spec) -> np.ndarray:
    """(N, H, W) uint8 masks of `ds` at the model input's size (`spec`), nearest-neighbour."""
    return np.stack([resize_nearest(np.asarray(m), spec.height, spec.width) for m in ds.masks]).astype(np.uint8)


def batches(x: np.ndarray, masks: np.ndarray, batch_size: int, seed: int, flip: bool, rows=None):
    """Shuffled batches (images, masks) of the rows `rows` of `x` (all by default), reshuffled each epoch from
    `seed`; `flip` mirrors each image and its mask with probability 1/2 (drawn from `seed` anew each epoch).

    The data set repeats: fit it with `steps_per_epoch` (`steps(rows, batch_size)`), so that Keras keeps one
    training iterator for the whole run (the validation arrays still get one per epoch; no validation pass
    stalled in the runs below). Without the repeat Keras makes an iterator per epoch, and destroying the last one
    could stall an epoch for 15-18 s before its first step (the stack: tf.data's `~IteratorResource::State`
    waiting on its thread pool; epochs of 23 s, 5,400 scenes, batch 32, a 2-core CPU): in 5 experiment runs of 7
    epochs without the repeat, 2 to 5 of the 6 epochs after the first stalled; in 9 runs with it, none did. The
    rows are shuffled as numbers (`rows.shuffled_rows`, as in the detection trainer), and each batch gathers them.
    """
    import tensorflow as tf

    rows = np.arange(len(x)) if rows is None else np.asarray(rows, np.int64)
    images, labels, to_row = tf.constant(x), tf.constant(np.asarray(masks, np.uint8)), tf.constant(rows)
    order = shuffled_rows(len(rows), batch_size, seed, flip)

    def gather(i):
        r = tf.gather(to_row, i)
        return tf.gather(images, r), tf.cast(tf.gather(labels, r), tf.int32)

    if not flip:
        return order.map(gather).repeat().prefetch(2)

    def pick(i, coin):
        img, m = gather(i)
        return (tf.where(coin[:, None, None, None], tf.reverse(img, axis=[2]), img),
                tf.where(coin[:, None, None], tf.reverse(m, axis=[2]), m))

    return order.map(pick).repeat().prefetch(2)


def steps(rows, batch_size: int) -> int:
    """Batches per epoch over `rows` (the last one may be short)."""
    return -(-len(rows) // batch_size)


def check_segmenter(model, num_classes: int, data: str, where: str) -> None:
    """One line when `model`'s output is not logits (H, W, `num_classes`)."""
    outs = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    first = tuple(outs[0][1:])
    if len(outs) != 1 or len(first) != 3 or first[-1] != num_classes:
        raise EdgecnnError(f"{where}: {data} is a segmentation set of {num_classes} classes, but the model's outputs "
                           f"{[tuple(o[1:]) for o in outs]} are not one (H, W, {num_classes}) map of logits")


def adopt(task, model, spec, cfg, train_ds):
    """(model, spec, None): the spec a saved segmenter is fine-tuned with: its own, with the task and the set's class names."""
    names = task.class_names(train_ds)
    check_segmenter(model, len(names), cfg.data, cfg.model)
    return model, spec.replace(task=task.name, labels=names), None


def loss():
    from edgecnn.train.pixel_loss import pixel_loss

    return pixel_loss()


def fit(model, spec, cfg, x, train_ds, tr, va, lr, callbacks):
    """Compile with the pixel-wise loss and fit on the rows `tr` of `x` (validation on `va`); the Keras history."""
    import keras

    unknown = sorted(set(cfg.augment) - set(AUGMENTATIONS))
    if unknown:
        raise EdgecnnError(f"--augment {','.join(unknown)}: a segmenter takes {', '.join(AUGMENTATIONS)} "
                           "(mask-aware)")
    masks = input_masks(train_ds, spec)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss())
    train = batches(x, masks, cfg.batch_size, cfg.seed, "flip" in cfg.augment, rows=tr)
    val = (x[va], masks[va].astype(np.int32)) if len(va) else None
    return model.fit(train, validation_data=val, epochs=cfg.epochs, steps_per_epoch=steps(tr, cfg.batch_size),
                     verbose=0, callbacks=callbacks, shuffle=False)


def measure(model, spec, hist, train_ds, test_ds, tr, va) -> dict:
    """The last epoch's validation loss and the test split's mIoU and pixel accuracy (the float Keras model)."""
    from edgecnn.tasks.segmentation.metrics import score_maps
    from edgecnn.tasks.segmentation.postprocess import decode

    logits = model.predict(spec.apply(test_ds.images), batch_size=64, verbose=0)
    r = score_maps(decode([logits], None, None), list(test_ds.masks), test_ds.mask_names, list(spec.labels))
    return {"val_loss": float(hist.history["val_loss"][-1]) if len(va) else None, "test_miou": r["miou"],
            "test_pixel_accuracy": r["pixel_accuracy"]}

"""The detection half of `edgecnn train` (`Detection.trainer`): a detection source (`Dataset.boxes` set) and a
detector (`task: detection` in the zoo, or a saved detector to fine-tune).

`trainer.train` does everything every task's run does (checks, seeds, deterministic ops, the model and its
preprocessing spec, batch-norm momentum, learning-rate schedule, the progress bar, the atomic save) and calls this
module's hooks: `adopt` a saved model (its outputs checked against its head kind), `fit` it (boxes are scaled to the
model input with the image, the spec's plain resize; the targets and losses come from the head kind in the spec,
`TARGETS`: CenterNet's `targets`, SSD's `ssd_targets`; `--augment flip` mirrors images and their boxes together,
drawn from the run's seed, `batches`, so a run is repeatable) and `measure` the test split's loss. The saved spec
records the task, its head and the class names; the mAP is `edgecnn eval`'s.
"""

from __future__ import annotations

import numpy as np

from edgecnn.data.detection import input_boxes
from edgecnn.errors import EdgecnnError
from edgecnn.tasks.detection import DEFAULT_HEAD
from edgecnn.train.rows import shuffled_rows

AUGMENTATIONS = ("flip",)


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Boxes (K, 5) of an image mirrored left-right: x0' = W - x1, x1' = W - x0."""
    b = np.array(boxes, np.float32).reshape(-1, 5)
    b[:, [0, 2]] = width - b[:, [2, 0]]
    return b


def batches(x: np.ndarray, boxes: list, encode, batch_size: int, seed: int, flip: bool, rows=None):
    """A tf.data pipeline of shuffled batches (images, the head's targets), reshuffled each epoch from `seed`.

    The targets are encoded once, before training (once more for the mirrored boxes when `flip`), and each batch
    is a gather of rows. A Python data source calling `encode` per batch (a Keras PyDataset, before) spent much
    of the CPU time in the kernel and made each step slower: detect-quick's epochs took 54 s with it and 34 s
    with this (`edgecnn run detect-quick`, 6,000 scenes, batch 32, this 2-core CPU). `flip` mirrors each image
    with probability 1/2 together with its boxes (it takes the targets of the mirrored boxes), drawn from `seed`
    anew each epoch. `rows`: the images of `x` (and `boxes`) to train on, all by default (`x` is not copied per
    subset; only these rows' targets are encoded).
    """
    import tensorflow as tf

    rows = np.arange(len(x)) if rows is None else np.asarray(rows, np.int64)
    images = tf.constant(x)
    boxes = [boxes[i] for i in rows]
    plain = tuple(tf.constant(np.asarray(a)) for a in encode(boxes))
    order = shuffled_rows(len(rows), batch_size, seed, flip)
    to_image = tf.constant(rows)
    if not flip:
        return order.map(lambda i: (tf.gather(images, tf.gather(to_image, i)),
                                    tuple(tf.gather(t, i) for t in plain))).prefetch(2)
    mirrored = tuple(tf.constant(np.asarray(a)) for a in encode([flip_boxes(b, x.shape[2]) for b in boxes]))

    def pick(i, coin):
        img = tf.gather(images, tf.gather(to_image, i))
        img = tf.where(coin[:, None, None, None], tf.reverse(img, axis=[2]), img)
        targets = []
        for p, m in zip(plain, mirrored):
            c = tf.reshape(coin, [-1] + [1] * (len(p.shape) - 1))
            targets.append(tf.where(c, tf.gather(m, i), tf.gather(p, i)))
        return img, tuple(targets)

    return order.map(pick).prefetch(2)


def check_detector(model, spec, data: str, num_classes: int, where: str) -> None:
    """One line when `model`'s outputs are not those of its head kind (spec.head; none: CenterNet) for
    `num_classes` classes."""
    from edgecnn.tasks.detection.postprocess import output_problem

    head = spec.head or DEFAULT_HEAD
    outs = [tuple(o.shape[1:]) for o in model.outputs]
    expected = output_problem(outs, head, (spec.height, spec.width), num_classes)
    if expected:
        raise EdgecnnError(f"{where}: {data} is a detection set of {num_classes} classes, but the model's outputs "
                           f"{outs} are not a detector's for it (expected {expected})")


def _centernet_targets(model, spec, num_classes):
    from edgecnn.train.targets import encode, losses

    grid = tuple(int(d) for d in model.outputs[0].shape[1:3])
    return (lambda boxes: encode(boxes, grid, spec.height / grid[0], num_classes)), losses()


def _ssd_targets(model, spec, num_classes):
    from edgecnn.train.ssd_targets import encoder, losses

    return encoder(spec.head, (spec.height, spec.width), num_classes), losses()


# head kind -> (model, spec, num_classes) -> (per-image boxes -> targets, (Keras losses, loss weights))
TARGETS = {"centernet": _centernet_targets, "ssd": _ssd_targets}


def head_targets(model, spec, num_classes: int):
    """The target encoder and losses of the detector's head kind (`spec.head["kind"]`, none: CenterNet)."""
    kind = (spec.head or DEFAULT_HEAD).get("kind", DEFAULT_HEAD["kind"])
    if kind not in TARGETS:
        raise EdgecnnError(f"cannot train a {kind!r} detection head; known: {', '.join(sorted(TARGETS))}")
    return TARGETS[kind](model, spec, num_classes)


def adopt(task, model, spec, cfg, train_ds):
    """(model, spec, None): the spec a saved model is fine-tuned with as a detector of this set's classes (one line when its outputs are
    not its head kind's): its own, with the task, the set's class names and its head (none: CenterNet)."""
    check_detector(model, spec, cfg.data, len(train_ds.class_names), cfg.model)
    return model, spec.replace(task=task.name, labels=train_ds.class_names, head=spec.head or dict(DEFAULT_HEAD)), \
        None


def fit(model, spec, cfg, x, train_ds, tr, va, lr, callbacks):
    """Compile with the head kind's losses and fit on the rows `tr` of `x` (validation on `va`); the Keras history."""
    import keras

    unknown = sorted(set(cfg.augment) - set(AUGMENTATIONS))
    if unknown:
        raise EdgecnnError(f"--augment {','.join(unknown)}: a detector takes {', '.join(AUGMENTATIONS)} "
                           "(box-aware)")
    encode, (loss, weights) = head_targets(model, spec, len(train_ds.class_names))
    boxes = input_boxes(train_ds, spec)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, loss_weights=weights)
    train = batches(x, boxes, encode, cfg.batch_size, cfg.seed, "flip" in cfg.augment, rows=tr)
    val = None
    if len(va):
        val = (x[va], encode([boxes[i] for i in va]))
    return model.fit(train, validation_data=val, epochs=cfg.epochs, verbose=0, callbacks=callbacks,
                     shuffle=False)


def measure(model, spec, hist, train_ds, test_ds, tr, va) -> dict:
    """The objects trained on, the last epoch's validation loss and the test split's loss."""
    return {"train_objects": int(sum(len(train_ds.boxes[i]) for i in tr)),
            "val_loss": float(hist.history["val_loss"][-1]) if len(va) else None,
            "test_loss": test_loss(model, spec, test_ds)}


def test_loss(model, spec, test_ds) -> float:
    """The detector's total loss on `test_ds` (the number `val_loss` is, on the test split); a model not compiled
    (the float model beside its --qat simulation) with the head kind's losses."""
    encode, (loss, weights) = head_targets(model, spec, len(test_ds.class_names))
    if not getattr(model, "compiled", False):
        model.compile(loss=loss, loss_weights=weights)
    y = encode(input_boxes(test_ds, spec))
    out = model.evaluate(spec.apply(test_ds.images), y, batch_size=256, verbose=0, return_dict=True)
    return float(out["loss"])

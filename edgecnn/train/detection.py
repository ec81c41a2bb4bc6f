"""The detection half of `edgecnn train`: a detection source (`Dataset.boxes` set) and a detector (`task:
detection` in the zoo, or a saved detector to fine-tune).

`trainer.train` does everything a classifier's run does (checks, seeds, deterministic ops, the model and its
preprocessing spec, batch-norm momentum, learning-rate schedule, the progress bar, the atomic save) and hands the
fit itself to `fit_detector`: boxes are scaled to the model input with the image (the spec's plain resize), the
targets and losses come from the head kind in the spec (`TARGETS`: CenterNet's `targets`, SSD's `ssd_targets`),
and `--augment flip` mirrors images and their boxes together, drawn per batch from the run's seed (`Batches`), so
a run is repeatable. The saved spec records `task: detection` and the
class names; the test split's losses are reported, its mAP is `edgecnn eval`'s.
"""

from __future__ import annotations

import numpy as np

from edgecnn.data.detection import input_boxes
from edgecnn.errors import EdgecnnError

AUGMENTATIONS = ("flip",)


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Boxes (K, 5) of an image mirrored left-right: x0' = W - x1, x1' = W - x0."""
    b = np.array(boxes, np.float32).reshape(-1, 5)
    b[:, [0, 2]] = width - b[:, [2, 0]]
    return b


def _batches_class():
    import keras

    class Batches(keras.utils.PyDataset):
        """Shuffled batches of (images, the head's targets); `flip` mirrors half of them with their boxes."""

        def __init__(self, x, boxes, encode, batch_size, seed, flip):
            super().__init__()
            self.x, self.boxes, self.encode = x, boxes, encode
            self.batch_size, self.seed, self.flip, self.epoch = batch_size, seed, flip, 0
            self.order = np.random.default_rng([seed, 0]).permutation(len(x))

        def __len__(self):
            return int(np.ceil(len(self.x) / self.batch_size))

        def __getitem__(self, i):
            idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
            xb, bb = self.x[idx], [self.boxes[j] for j in idx]
            if self.flip:
                mirror = np.random.default_rng([self.seed, self.epoch, i]).random(len(idx)) < 0.5
                xb = np.where(mirror[:, None, None, None], xb[:, :, ::-1], xb)
                bb = [flip_boxes(b, xb.shape[2]) if m else b for b, m in zip(bb, mirror)]
            return xb, self.encode(bb)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    return Batches


def check_detector(model, spec, data: str, num_classes: int, where: str) -> None:
    """One line when `model`'s outputs are not those of its head kind (spec.head; none: CenterNet) for
    `num_classes` classes."""
    from edgecnn.board.postprocess import output_problem

    head = spec.head or {"kind": "centernet"}
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
    kind = (spec.head or {}).get("kind", "centernet")
    if kind not in TARGETS:
        raise EdgecnnError(f"cannot train a {kind!r} detection head; known: {', '.join(sorted(TARGETS))}")
    return TARGETS[kind](model, spec, num_classes)


def fit_detector(model, spec, cfg, x, train_ds, tr, va, lr, callbacks):
    """Compile with the head kind's losses and fit on the rows `tr` of `x` (validation on `va`); the Keras history."""
    import keras

    unknown = sorted(set(cfg.augment) - set(AUGMENTATIONS))
    if unknown:
        raise EdgecnnError(f"--augment {','.join(unknown)}: a detector takes {', '.join(AUGMENTATIONS)} "
                           "(box-aware)")
    encode, (loss, weights) = head_targets(model, spec, len(train_ds.class_names))
    boxes = input_boxes(train_ds, spec)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, loss_weights=weights)
    train = _batches_class()(x[tr], [boxes[i] for i in tr], encode, cfg.batch_size, cfg.seed,
                             "flip" in cfg.augment)
    val = None
    if len(va):
        val = (x[va], encode([boxes[i] for i in va]))
    return model.fit(train, validation_data=val, epochs=cfg.epochs, verbose=0, callbacks=callbacks,
                     shuffle=False)


def test_loss(model, spec, test_ds) -> float:
    """The detector's total loss on `test_ds` (the number `val_loss` is, on the test split)."""
    encode, _ = head_targets(model, spec, len(test_ds.class_names))
    y = encode(input_boxes(test_ds, spec))
    out = model.evaluate(spec.apply(test_ds.images), y, batch_size=256, verbose=0, return_dict=True)
    return float(out["loss"])

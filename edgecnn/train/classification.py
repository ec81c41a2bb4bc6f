"""The classification half of `edgecnn train` (`Classification.trainer`): class labels, one softmax output.

`trainer.train` does everything every task's run does and calls these three (the hooks of
`edgecnn.train.trainer`): `adopt` a saved model to fine-tune, `fit` it with sparse categorical cross-entropy
(`--augment flip,shift` through seeded Keras layers), `measure` its test top-1.
"""

from __future__ import annotations

import numpy as np

from edgecnn.errors import EdgecnnError

AUGMENTATIONS = ("flip", "shift")


def augmented(x: np.ndarray, y: np.ndarray, cfg):
    """A shuffled, batched tf.data pipeline with seeded random flips/shifts (training data only)."""
    import keras
    import tensorflow as tf

    unknown = sorted(set(cfg.augment) - set(AUGMENTATIONS))
    if unknown:
        raise EdgecnnError(f"--augment {','.join(unknown)}: use {', '.join(AUGMENTATIONS)}")
    layers = []
    if "flip" in cfg.augment:
        layers.append(keras.layers.RandomFlip("horizontal", seed=cfg.seed))
    if "shift" in cfg.augment:
        layers.append(keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=cfg.seed + 1))
    aug = keras.Sequential(layers)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
    return ds.batch(cfg.batch_size).map(lambda a, b: (aug(a, training=True), b)).prefetch(2)


def adopt(task, model, spec, cfg, train_ds):
    """(model, spec, transfer) a saved model is fine-tuned as: itself when it classifies this set's classes, else its
    backbone under a new head of them (`transfer.py`; also with `--cut-at`), its spec's scaling kept."""
    from edgecnn.data.dataset import check_task
    from edgecnn.train import transfer

    check_task(spec.task, train_ds, cfg.model, cfg.data)  # a model of another task (its spec says so)
    names = tuple(train_ds.class_names)
    outputs = [tuple(s) for s in model.output_shape] if isinstance(model.output_shape, list) else \
        [tuple(model.output_shape)]
    same = (len(outputs) == 1 and outputs[0][-1] == len(names) and (not spec.labels or tuple(spec.labels) == names))
    if same and not cfg.cut_at:
        return model, spec, None
    cut = transfer.find_cut(model, cfg.cut_at, cfg.model)
    old = f"{outputs[0][-1]} classes" if len(outputs) == 1 else f"{len(outputs)} outputs"
    return (transfer.with_new_head(model, cut, len(names)), spec.replace(labels=names, task=task.name),
            {"from": cfg.model, "cut_at": cut.name, "head": f"replaced: {old} -> {len(names)} classes"})


def fit(model, spec, cfg, x, train_ds, tr, va, lr, callbacks):
    """Compile with cross-entropy and fit on the rows `tr` of `x` (validation on `va`); the Keras history."""
    import keras

    y = train_ds.labels
    val = (x[va], y[va]) if len(va) else None
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_data = augmented(x[tr], y[tr], cfg) if cfg.augment else x[tr]
    return model.fit(train_data, None if cfg.augment else y[tr], validation_data=val, epochs=cfg.epochs,
                     batch_size=None if cfg.augment else cfg.batch_size, shuffle=not cfg.augment, verbose=0,
                     callbacks=callbacks)


def measure(model, spec, hist, train_ds, test_ds, tr, va) -> dict:
    """The validation accuracy of the last epoch and the test split's top-1."""
    probs = model.predict(spec.apply(test_ds.images), batch_size=256, verbose=0)
    return {"val_accuracy": float(hist.history["val_accuracy"][-1]) if len(va) else None,
            "test_top1": float(np.mean(np.argmax(probs, axis=1) == test_ds.labels))}

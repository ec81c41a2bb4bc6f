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
    """The spec a saved model is fine-tuned with: its own, once it is a classifier of this set's classes."""
    from edgecnn.data.dataset import check_task

    check_task(spec.task, train_ds, cfg.model, cfg.data)  # a model of another task (its spec says so)
    if isinstance(model.output_shape, list):
        raise EdgecnnError(f"{cfg.model}: model has {len(model.output_shape)} outputs, but a {task.name} model of "
                           f"{cfg.data} has one (its {len(train_ds.class_names)} class scores)")
    if model.output_shape[-1] != len(train_ds.class_names):
        raise EdgecnnError(f"{cfg.model}: model has {model.output_shape[-1]} outputs but {cfg.data} has "
                           f"{len(train_ds.class_names)} classes")
    return spec


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

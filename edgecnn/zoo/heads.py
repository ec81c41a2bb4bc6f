"""Shared glue for builders that wrap `keras.applications`: weights choice and classifier head.

- `weights=None`: the application's own top with `classes=num_classes` (random init; works offline).
- `weights="imagenet"`: downloads (needs internet); with `num_classes != 1000` the ImageNet backbone gets a new
  global-pool + dropout + dense head.
- `weights="path/to/file.weights.h5"` (or `.h5`): build as with None, then load that file.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.errors import EdgecnnError


def finish(app, input_shape, num_classes, weights, name: str, **kwargs):
    import keras

    if weights == "imagenet" and num_classes != 1000:
        base = app(input_shape=input_shape, include_top=False, weights="imagenet", **kwargs)
        x = keras.layers.GlobalAveragePooling2D()(base.output)
        x = keras.layers.Dropout(0.2)(x)
        out = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
        return keras.Model(base.input, out, name=name)
    check_weights(weights)
    model = app(input_shape=input_shape, include_top=True, weights="imagenet" if weights == "imagenet" else None,
                classes=num_classes, **kwargs)
    model.name = name
    return load_weights(model, weights)


def check_weights(weights) -> None:
    """One line, before anything is built, when `weights` names a file that does not exist."""
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise EdgecnnError(f"{weights}: weights file does not exist")


def load_weights(model, weights):
    """`model` with the .weights.h5 file `weights` loaded (None / "imagenet": as built); a bad file is one line."""
    if weights not in (None, "imagenet"):
        try:
            model.load_weights(str(weights))
        except (ValueError, OSError) as exc:
            raise EdgecnnError(f"{weights}: cannot load weights into {model.name}: {str(exc).splitlines()[0]}") \
                from None
    return model

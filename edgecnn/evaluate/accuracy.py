"""Accuracy of any model (Keras or .tflite of any IO dtype) on a data source's test split.

Inputs are preprocessed with the model's own saved spec (the `.keras` zip entry or the `.tflite` appended zip),
so a model is evaluated exactly as it was trained and calibrated; a foreign model without one is fed as the user's
--scale/--offset or --mean/--std say (`spec_for`, the same construction as convert's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.spec import InputScaling, PreprocessSpec, spec_for
from edgecnn.errors import EdgecnnError


def input_shape(model_path: str | Path, kind: str) -> tuple:
    """The model's input shape without the batch: (H, W, C) for an image model."""
    if kind == "tflite":
        from edgecnn.tflite.interpreter import make_interpreter

        return tuple(make_interpreter(model_path).get_input_details()[0]["shape"][1:])
    from edgecnn.modelfile import load_model

    return tuple(load_model(model_path)[0].input_shape[1:])


def model_spec(model_path: str | Path, scaling: InputScaling | None = None) -> PreprocessSpec:
    """The spec saved with the model, with `scaling` (--scale/--offset, --mean/--std) applied when given; a model
    without a saved spec needs them (one line naming the flags otherwise)."""
    from edgecnn.tflite.metadata import read_spec
    from edgecnn.modelfile import model_kind, read_keras_spec

    kind = model_kind(model_path)
    saved = read_spec(model_path) if kind == "tflite" else read_keras_spec(model_path) if kind == "keras" else None
    if saved is not None and not (scaling and scaling.given):
        return saved
    return spec_for(input_shape(model_path, kind), saved, scaling, str(model_path))


def eval_data(src: str, spec: PreprocessSpec, limit: int | None = None, needs_labels: str | None = "eval"):
    """(x, dataset): `src`'s test split preprocessed with `spec`, and the raw Dataset (labels, `labeled`).

    `needs_labels` names who needs the labels (an unlabeled source is then one line); None accepts any source.
    """
    from edgecnn.data import load_split

    ds = load_split(src, "test", needs_labels=needs_labels)
    if limit:
        ds = ds.take(limit)
    if spec.labels and ds.class_names and len(ds.class_names) != len(spec.labels):
        raise EdgecnnError(f"{src}: has {len(ds.class_names)} classes but the model was trained on "
                           f"{len(spec.labels)}")
    return spec.apply(ds.images), ds


def eval_arrays(src: str, spec: PreprocessSpec, limit: int | None = None, command: str = "eval"):
    """(x, y, class_names) of `src`'s test split, preprocessed with `spec`; `command` names who needs the labels."""
    x, ds = eval_data(src, spec, limit, command)
    return x, ds.labels, ds.class_names


def topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties (common in int8 outputs) go to the
    # lowest class index, as argmax does, so top-1 here equals argmax accuracy everywhere else
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def evaluate(model_path: str | Path, src: str, limit: int | None = None, scaling: InputScaling | None = None) -> dict:
    """Top-1/top-5 of the model on `src`'s test split (labels needed); `scaling` for a model without a spec."""
    from edgecnn.evaluate.predict import predict

    spec = model_spec(model_path, scaling)
    x, y, _ = eval_arrays(src, spec, limit)
    scores = predict(model_path, x)
    return {"model": str(model_path), "data": src, "n": int(len(y)), "top1": topk(scores, y, 1),
            "top5": topk(scores, y, 5)}

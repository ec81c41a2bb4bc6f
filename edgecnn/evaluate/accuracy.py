"""Accuracy of any model (Keras or .tflite of any IO dtype) on a data source's test split.

Inputs are preprocessed with the model's own saved spec (the `.keras` zip entry or the `.tflite` appended zip),
so a model is evaluated exactly as it was trained and calibrated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.spec import PreprocessSpec
from edgecnn.errors import EdgecnnError


def model_spec(model_path: str | Path) -> PreprocessSpec:
    from edgecnn.tflite.metadata import read_spec
    from edgecnn.modelfile import model_kind, read_keras_spec

    kind = model_kind(model_path)
    spec = read_spec(model_path) if kind == "tflite" else read_keras_spec(model_path) if kind == "keras" else None
    if spec is None:
        raise EdgecnnError(f"{model_path}: no preprocessing spec saved with the model; evaluate it on an .npz "
                           "of preprocessed inputs, or train/convert it with edgecnn")
    return spec


def eval_arrays(src: str, spec: PreprocessSpec, limit: int | None = None, command: str = "eval"):
    """(x, y, class_names) of `src`'s test split, preprocessed with `spec`; `command` names who needs the labels."""
    from edgecnn.data import load_split

    ds = load_split(src, "test", needs_labels=command)
    if limit:
        ds = ds.take(limit)
    if spec.labels and ds.class_names and len(ds.class_names) != len(spec.labels):
        raise EdgecnnError(f"{src}: has {len(ds.class_names)} classes but the model was trained on "
                           f"{len(spec.labels)}")
    return spec.apply(ds.images), ds.labels, ds.class_names


def topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties (common in int8 outputs) go to the
    # lowest class index, as argmax does, so top-1 here equals argmax accuracy everywhere else
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def evaluate(model_path: str | Path, src: str, limit: int | None = None) -> dict:
    from edgecnn.evaluate.predict import predict

    spec = model_spec(model_path)
    x, y, _ = eval_arrays(src, spec, limit)
    scores = predict(model_path, x)
    return {"model": str(model_path), "data": src, "n": int(len(y)), "top1": topk(scores, y, 1),
            "top5": topk(scores, y, 5)}

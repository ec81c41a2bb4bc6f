"""Run a model on preprocessed inputs and return float scores, whatever the model's IO dtype.

.tflite inputs are quantized with the model's own scale/zero-point (`q = clip(round(x/scale) + zp)`) and outputs
dequantized (`(q - zp) * scale`). The interpreter is resized to a batch when the graph allows it (much faster
than one sample at a time); graphs with a fixed batch in a RESHAPE fall back to one sample per call. A batch is
padded with copies of its last sample, so a slice of the data run with the whole run's `batch` gives the same
outputs as the whole run (what a sharded evaluation relies on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.tflite.interpreter import allocate, make_interpreter
from edgecnn.tflite.quant import dequantize, quantize

BATCH = 64


def predict_tflite(model: str | Path | bytes, x: np.ndarray, threads: int = 2, batch: int | None = None) -> np.ndarray:
    """Float scores (N, outputs) of the first output; `batch` defaults to min(BATCH, N)."""
    return predict_tflite_outputs(model, x, threads, batch)[0].reshape(len(x), -1)


def predict_tflite_outputs(model: str | Path | bytes, x: np.ndarray, threads: int = 2,
                           batch: int | None = None) -> list[np.ndarray]:
    """Every output as float (N, *shape), in the graph's output order (a detector's heatmap, size, offset)."""
    interp = make_interpreter(model, threads)
    inp = interp.get_input_details()[0]
    shape = list(inp["shape"])
    if list(x.shape[1:]) != shape[1:]:
        raise EdgecnnError(f"data shape {list(x.shape[1:])} does not fit the model input {shape[1:]}")
    batch = min(BATCH, len(x)) if batch is None else batch
    try:
        interp.resize_tensor_input(inp["index"], [batch, *shape[1:]])
        allocate(interp)
        if batch > 1 and any(int(d["shape"][0]) != batch for d in interp.get_output_details()):
            # a graph that reshapes to a fixed batch of 1 (BlazeFace's [1, -1, 16]) folds the batch into another
            # axis: run it one image at a time instead
            raise ValueError("outputs do not keep the batch axis")
        return _run_batches(interp, inp, x, batch)
    except (RuntimeError, ValueError):
        interp = make_interpreter(model, threads)
        allocate(interp)
        return _run_batches(interp, interp.get_input_details()[0], x, 1)


def _run_batches(interp, inp, x, batch) -> list[np.ndarray]:
    details = interp.get_output_details()
    outs = [[] for _ in details]
    for i in range(0, len(x), batch):
        chunk = x[i: i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        interp.set_tensor(inp["index"], quantize(chunk, inp))
        interp.invoke()
        for out, d in zip(outs, details):
            out.append(dequantize(interp.get_tensor(d["index"]), d)[:n])
    return [np.concatenate(o) for o in outs]


KERAS_BATCH = 256


def predict_keras(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=KERAS_BATCH, verbose=0)).reshape(len(x), -1)


def _keras_model(model_path: str | Path, x: np.ndarray):
    from edgecnn.modelfile import load_model

    model, _ = load_model(model_path)
    if list(model.input_shape[1:]) != list(x.shape[1:]):
        raise EdgecnnError(f"{model_path}: data shape {list(x.shape[1:])} does not fit the model input "
                           f"{list(model.input_shape[1:])}")
    return model


def predict(model_path: str | Path, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Float scores of a .tflite (LiteRT, `batch` as in `predict_tflite`) or Keras model (batches of 256)."""
    from edgecnn.modelfile import model_kind

    if model_kind(model_path) == "tflite":
        return predict_tflite(model_path, x, batch=batch)
    return predict_keras(_keras_model(model_path, x), x)


def predict_outputs(model_path: str | Path, x: np.ndarray, batch: int | None = None) -> list[np.ndarray]:
    """Every output of a .tflite or Keras model as float (N, *shape), in the model's output order (`batch`:
    LiteRT's, as `predict_tflite_outputs`; Keras always runs KERAS_BATCH)."""
    from edgecnn.modelfile import model_kind

    if model_kind(model_path) == "tflite":
        return predict_tflite_outputs(model_path, x, batch=batch)
    outs = _keras_model(model_path, x).predict(x, batch_size=KERAS_BATCH, verbose=0)
    return [np.asarray(o, np.float32) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]

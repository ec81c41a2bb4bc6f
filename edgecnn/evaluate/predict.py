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
    """Float scores (N, outputs); `batch` defaults to min(BATCH, N)."""
    interp = make_interpreter(model, threads)
    inp = interp.get_input_details()[0]
    shape = list(inp["shape"])
    if list(x.shape[1:]) != shape[1:]:
        raise EdgecnnError(f"data shape {list(x.shape[1:])} does not fit the model input {shape[1:]}")
    out_idx = interp.get_output_details()[0]["index"]
    batch = min(BATCH, len(x)) if batch is None else batch
    try:
        interp.resize_tensor_input(inp["index"], [batch, *shape[1:]])
        allocate(interp)
        return _run_batches(interp, inp, out_idx, x, batch)
    except (RuntimeError, ValueError):
        interp = make_interpreter(model, threads)
        allocate(interp)
        return _run_batches(interp, interp.get_input_details()[0], out_idx, x, 1)


def _run_batches(interp, inp, out_idx, x, batch):
    outs = []
    out_detail = [d for d in interp.get_output_details() if d["index"] == out_idx][0]
    for i in range(0, len(x), batch):
        chunk = x[i: i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        interp.set_tensor(inp["index"], quantize(chunk, inp))
        interp.invoke()
        outs.append(dequantize(interp.get_tensor(out_idx), out_detail)[:n])
    return np.concatenate(outs).reshape(len(x), -1)


KERAS_BATCH = 256


def predict_keras(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=KERAS_BATCH, verbose=0)).reshape(len(x), -1)


def predict(model_path: str | Path, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Float scores of a .tflite (LiteRT, `batch` as in `predict_tflite`) or Keras model (batches of 256)."""
    from edgecnn.modelfile import load_model, model_kind

    if model_kind(model_path) == "tflite":
        return predict_tflite(model_path, x, batch=batch)
    model, _ = load_model(model_path)
    if list(model.input_shape[1:]) != list(x.shape[1:]):
        raise EdgecnnError(f"{model_path}: data shape {list(x.shape[1:])} does not fit the model input "
                           f"{list(model.input_shape[1:])}")
    return predict_keras(model, x)

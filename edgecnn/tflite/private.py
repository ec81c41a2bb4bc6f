"""Every private TensorFlow Lite API edgecnn relies on, pinned in one module.

Why private: the public converter calibrates and quantizes in one opaque call. edgecnn needs the two halves
apart — calibrate once, then quantize many times with different layers kept in float (accuracy-guided fallback),
and substitute a faster calibrator — and the only entry points for that are:

- `tensorflow.lite.python.optimize.calibrator.add_intermediate_tensors` / `Calibrator` (stock calibration);
- `tensorflow.lite.python.convert.mlir_quantize` (the MLIR quantize pass the converter itself runs after
  calibrating; `denylisted_nodes`/`denylisted_ops` keep layers in float);
- `Calibrator.calibrate_and_quantize(..., activations_type=int16)` (16x8, which the MLIR pass does not do).

`tests/test_tflite_private.py` checks these signatures and fails loudly when a TensorFlow upgrade changes them.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

MLIR_QUANTIZE_PARAMS = ("input_data_str", "disable_per_channel", "fully_quantize", "inference_type",
                        "input_data_type", "output_data_type", "enable_numeric_verify", "enable_whole_model_verify",
                        "denylisted_ops", "denylisted_nodes")


def _dtype(name: str):
    import tensorflow as tf

    return {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32, "int16": tf.int16}[name]


def _gen(samples: np.ndarray) -> Callable[[], Iterable[list[np.ndarray]]]:
    def gen():
        for i in range(len(samples)):
            yield [samples[i: i + 1]]

    return gen


def stock_calibrate(float_model: bytes, samples: np.ndarray) -> bytes:
    """TF's own calibrator: runs every sample through the float model and records min/max per tensor."""
    from tensorflow.lite.python.optimize import calibrator

    model = calibrator.add_intermediate_tensors(float_model)
    return calibrator.Calibrator(model).calibrate(_gen(samples))


def add_intermediate_tensors(float_model: bytes) -> bytes:
    from tensorflow.lite.python.optimize import calibrator

    return calibrator.add_intermediate_tensors(float_model)


def mlir_quantize(calibrated: bytes, per_tensor: bool, io: str, denylisted_nodes=(), denylisted_ops=()) -> bytes:
    """Quantize a calibrated model to int8 (weights per channel unless `per_tensor`); float ops stay float."""
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(calibrated, disable_per_channel=per_tensor, input_data_type=_dtype(io),
                                 output_data_type=_dtype(io), denylisted_nodes=list(denylisted_nodes) or None,
                                 denylisted_ops=list(denylisted_ops) or None)


def quantize_16x8(float_model: bytes, samples: np.ndarray, io: str, allow_float: bool) -> bytes:
    """16-bit activations, 8-bit weights (the stock route: calibrate and quantize in one call)."""
    import tensorflow as tf
    from tensorflow.lite.python.optimize import calibrator

    model = calibrator.add_intermediate_tensors(float_model)
    cal = calibrator.Calibrator(model)
    return cal.calibrate_and_quantize(_gen(samples), _dtype(io), _dtype(io), allow_float,
                                      activations_type=tf.int16, bias_type=tf.int64)

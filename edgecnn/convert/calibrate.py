"""Calibration: record each activation tensor's range over the calibration samples.

Two calibrators give the quantize pass the same thing (min/max per tensor in the flatbuffer):
- `stock`: TF's calibrator (one sample per call, reference kernels, no XNNPACK).
- `fast` (default): see `fast_calibrator.py`.
"""

from __future__ import annotations

import numpy as np


def calibrate(float_model: bytes, samples: np.ndarray, method: str = "fast") -> bytes:
    from edgecnn.tflite import private as tflite_private

    if method == "stock":
        return tflite_private.stock_calibrate(float_model, samples)
    from edgecnn.convert.fast_calibrator import fast_calibrate

    return fast_calibrate(float_model, samples)

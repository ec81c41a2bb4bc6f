"""Calibration: record each activation tensor's range over the calibration samples.

Two calibrators give the quantize pass the same thing (min/max per tensor in the flatbuffer):
- `stock`: TF's calibrator (one sample per call, reference kernels, no XNNPACK).
- `fast` (default): see `fast_calibrator.py`.
"""

from __future__ import annotations

import numpy as np


def calibrate(float_model: bytes, samples: np.ndarray, method: str = "fast", ranges: str = "minmax") -> bytes:
    """Ranges per activation tensor: `method` is the calibrator (fast or stock), `ranges` how a range is chosen
    (`edgecnn.convert.ranges.METHODS`; the stock calibrator records min/max only)."""
    from edgecnn.tflite import private as tflite_private

    if method == "stock":
        if ranges != "minmax":
            from edgecnn.errors import EdgecnnError

            raise EdgecnnError(f"--calibration-method {ranges} needs the fast calibrator (--calibrator fast)")
        return tflite_private.stock_calibrate(float_model, samples)
    from edgecnn.convert.fast_calibrator import fast_calibrate

    return fast_calibrate(float_model, samples, ranges)

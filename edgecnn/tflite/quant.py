"""Quantize model inputs and dequantize outputs with a tensor's own parameters, for any interpreter's details.

`q = clip(round(x / scale) + zero_point)` into the tensor's integer type, `x = (q - zero_point) * scale`; float
tensors pass through (cast). The details dict may come from LiteRT (`get_input_details()`, with a
`quantization` (scale, zero_point) pair) or from TFLite Micro (only `quantization_parameters`): both are read.
The board runner keeps its own copy of these few lines because it must run with no edgecnn installed.
"""

from __future__ import annotations

import numpy as np

from edgecnn.errors import EdgecnnError


def scale_zero_point(detail: dict) -> tuple[float, int]:
    """The per-tensor (scale, zero_point) of a tensor's details; (0.0, 0) when it is not quantized."""
    q = detail.get("quantization_parameters")
    if q is not None and len(q.get("scales", [])):
        return float(q["scales"][0]), int(q["zero_points"][0])
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale or 0.0), int(zp or 0)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float model input -> the tensor's dtype (integer tensors use their scale and zero point)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return x.astype(dtype)
    scale, zp = scale_zero_point(detail)
    if not scale:
        raise EdgecnnError(f"input {detail.get('name', '?')} is {dtype.name} without quantization parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor's values as float32 (integer tensors through their scale and zero point)."""
    scale, zp = scale_zero_point(detail)
    if np.issubdtype(y.dtype, np.integer) and scale:
        return (y.astype(np.float32) - zp) * scale
    return y.astype(np.float32)

"""Multiply-accumulates (MACs) and parameters of one forward pass, read off the built Keras graph.

Counted as the papers count them: convolutions, depthwise convolutions and dense layers (one MAC per weight use);
pooling (global means included), activations, batch-norm, additions, element-wise multiplies, concatenations and
resizes (bilinear interpolation) are not MACs and are left out.
"""

from __future__ import annotations

import math


def _shape(t):
    return tuple(int(d) if d is not None else 1 for d in t.shape)


def layer_macs(layer) -> int:
    """MACs of one Keras layer (0 for layers that do no multiply-accumulate)."""
    from keras import layers

    if isinstance(layer, (layers.DepthwiseConv2D,)):
        _, h, w, c = _shape(layer.output)
        kh, kw = layer.kernel_size
        return h * w * c * kh * kw
    if isinstance(layer, layers.SeparableConv2D):
        _, h, w, c_out = _shape(layer.output)
        c_in = _shape(layer.input)[-1]
        kh, kw = layer.kernel_size
        dm = layer.depth_multiplier
        return h * w * c_in * dm * kh * kw + h * w * c_in * dm * c_out
    if isinstance(layer, layers.Conv2D):
        _, h, w, c_out = _shape(layer.output)
        c_in = _shape(layer.input)[-1]
        kh, kw = layer.kernel_size
        return h * w * c_out * kh * kw * (c_in // layer.groups)
    if isinstance(layer, layers.Dense):
        in_shape = _shape(layer.input)
        return math.prod(in_shape[1:-1]) * in_shape[-1] * layer.units
    return 0


def count_macs(model) -> int:
    """Total MACs of `model` (nested models included)."""
    import keras

    total = 0
    for layer in model.layers:
        total += count_macs(layer) if isinstance(layer, keras.Model) else layer_macs(layer)
    return total


def summarize(model) -> dict:
    return {"params": int(model.count_params()), "macs": int(count_macs(model))}

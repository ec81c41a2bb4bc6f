"""int8 AVERAGE_POOL_2D -> MEAN (global pooling) or DEPTHWISE_CONV_2D (windowed pooling), which XNNPACK takes.

Why: LiteRT 2.3's XNNPACK delegate leaves int8 AVERAGE_POOL_2D to the reference kernels: the README's main job,
LeNet-5 int8, had 3 partitions and ran 5.5x slower than float32 because of two of them. int8 MEAN and int8
depthwise convolution are delegated.

What:
- a pool whose window covers the whole input (global pooling, output 1x1) becomes MEAN over axes 1, 2 with
  keep_dims, same input and output quantization: the same arithmetic (a sum divided by H*W, requantized);
- a windowed pool with no padding (VALID, or SAME where the windows fit exactly) becomes a depthwise convolution
  with the same window and strides, every weight 1/(kh*kw) (exactly representable: 127 steps of 1/(127*kh*kw)),
  zero bias and the pool's fused activation.
A SAME pool that pads is left alone: TFLite's pool divides by the number of valid pixels at the borders, a
convolution by the full window. How close: the sum is the same, the rounding of the division differs by at most
one output step; `check.py` measures the whole model against float (tolerance +0.25 mean output steps).
Targets: cpu (XNNPACK). The Edge TPU runs AVERAGE_POOL_2D itself, and so does TFLM.
"""

from __future__ import annotations

import numpy as np

from edgecnn.convert.rewrite.graph import Graph, depthwise_constant, usable_int8

REPLACES = "AVERAGE_POOL_2D"
TOLERANCE_STEPS = 0.25  # mean output steps further from float than the plain int8 model


def _pads(size: int, k: int, stride: int, out: int) -> int:
    return max((out - 1) * stride + k - size, 0)


def apply(g: Graph) -> int:
    n = 0
    for op in g.ops("AVERAGE_POOL_2D"):
        x, y = int(op.inputs[0]), int(op.outputs[0])
        if not usable_int8(g, x) or not usable_int8(g, y):
            continue
        o = op.builtinOptions
        _, h, w, c = g.shape(x)
        _, oh, ow, _ = g.shape(y)
        kh, kw, sh, sw = int(o.filterHeight), int(o.filterWidth), int(o.strideH), int(o.strideW)
        name = g.tensor(y).name.decode()
        if (kh, kw) == (h, w) and (oh, ow) == (1, 1) and int(o.fusedActivationFunction or 0) == 0:
            axes = g.add_tensor(f"{name}/mean_axes", [2], "int32", data=np.int32([1, 2]))
            g.replace(op, [g.make_op("MEAN", 2, [x, axes], [y], "ReducerOptions", keepDims=True)])
            n += 1
            continue
        same = int(o.padding) == 0  # Padding.SAME
        if same and (_pads(h, kh, sh, oh) or _pads(w, kw, sw, ow)):
            continue
        wt, b = depthwise_constant(g, x, f"{name}/avg", 1.0 / (kh * kw), 0.0, kh, kw)
        g.replace(op, [g.make_op("DEPTHWISE_CONV_2D", 3, [x, wt, b], [y], "DepthwiseConv2DOptions", padding=1,
                                 strideW=sw, strideH=sh, depthMultiplier=1,
                                 fusedActivationFunction=int(o.fusedActivationFunction or 0),
                                 dilationWFactor=1, dilationHFactor=1)])
        n += 1
    return n

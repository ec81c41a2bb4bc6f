"""int8 HARD_SWISH -> DEPTHWISE_CONV_2D (1x1) + MUL: the two ops XNNPACK and the Edge TPU both run in int8.

Why: hard-swish, `x * relu6(x + 3) / 6`, is MobileNetV3's activation. LiteRT 2.3's XNNPACK delegate does not take
int8 HARD_SWISH (each one splits the graph: V3-Small int8 has 20 partitions and runs 2.9x slower than float32),
and HARD_SWISH is on no Edge TPU compiler's op list, so the compiler cuts V3 at its first activation. Writing the
decomposition in Keras does not help: the TFLite converter fuses `x * relu6(x + 3) / 6` back into HARD_SWISH.

What: for each int8 HARD_SWISH with input x and output y,
    g = DEPTHWISE_CONV_2D(x, w = 1/6, bias = 1/2)   g's int8 range is exactly [0, 1] (scale 1/255, zero point -128),
                                                    so saturation does the clamp: g = clip(x/6 + 1/2, 0, 1)
    y = MUL(x, g)                                   = x * relu6(x + 3) / 6, y keeps its quantization
How close: not bit-exact — g is rounded to 1/255 (an error of at most |x|/510 before y's own rounding) where the
reference kernel computes the gate in higher precision: at MobileNetV3-Small's first activation (trained on
Fashion-MNIST) 0.63 output steps from the exact function against the reference kernel's 0.50. `check.py` measures
the whole model against float; the tolerance is +0.25 mean output steps. Measured on that model's 10,000 test
images: top-1 0.8826 rewritten vs 0.8822 plain (benchmarks/rewrite_accuracy.py).
Targets: cpu (XNNPACK), edgetpu. TFLM runs HARD_SWISH natively and keeps it.
"""

from __future__ import annotations

import numpy as np

from edgecnn.convert.rewrite.graph import Graph, Quant, depthwise_constant, usable_int8

REPLACES = "HARD_SWISH"
TOLERANCE_STEPS = 0.25  # mean output steps further from float than the plain int8 model


def apply(g: Graph) -> int:
    """Rewrite every int8 4-D HARD_SWISH of `g`; returns how many."""
    n = 0
    for op in g.ops("HARD_SWISH"):
        x, y = int(op.inputs[0]), int(op.outputs[0])
        if not usable_int8(g, x):
            continue
        name = f"{g.tensor(y).name.decode()}/hard_swish_gate"
        w, b = depthwise_constant(g, x, name, 1.0 / 6.0, 0.5)
        gate = g.add_tensor(name, g.shape(x), "int8", Quant(np.float32([1 / 255]), np.int64([-128])))
        dw = g.make_op("DEPTHWISE_CONV_2D", 3, [x, w, b], [gate], "DepthwiseConv2DOptions", padding=1, strideW=1,
                       strideH=1, depthMultiplier=1, fusedActivationFunction=0, dilationWFactor=1,
                       dilationHFactor=1)
        mul = g.make_op("MUL", 2, [x, gate], [y], "MulOptions", fusedActivationFunction=0)
        g.replace(op, [dw, mul])
        n += 1
    return n

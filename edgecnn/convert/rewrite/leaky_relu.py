"""int8 LEAKY_RELU -> PRELU with a constant slope, for the Edge TPU.

Why: LEAKY_RELU (YOLO-style detectors, GAN generators) is on no Edge TPU compiler's op list, so the compiler cuts
the graph at the first one and runs the rest on the CPU (google-coral/edgetpu#272). PRELU is on the list (runtime
13+, with a 1-D slope).
What: y = LEAKY_RELU(x, alpha) becomes y = PRELU(x, a) with a constant a of shape (C,), every value alpha, int8
with scale |alpha|/127 (alpha itself is then exact). Same function; the int8 kernels round the same products, so the
outputs agree to one step (`check.py` measures the whole model against float: tolerance +0.25 mean steps).
Targets: edgetpu. XNNPACK takes int8 LEAKY_RELU itself; TFLM has both.
"""

from __future__ import annotations

import numpy as np

from edgecnn.convert.rewrite.graph import Graph, Quant, usable_int8

REPLACES = "LEAKY_RELU"
TOLERANCE_STEPS = 0.25  # mean output steps further from float than the plain int8 model


def apply(g: Graph) -> int:
    n = 0
    for op in g.ops("LEAKY_RELU"):
        x, y = int(op.inputs[0]), int(op.outputs[0])
        if not usable_int8(g, x, rank=None) or not usable_int8(g, y, rank=None):
            continue
        alpha = float(op.builtinOptions.alpha)
        c = g.shape(x)[-1]
        scale = max(abs(alpha), 1e-8) / 127.0
        a = g.add_tensor(f"{g.tensor(y).name.decode()}/prelu_alpha", [c], "int8",
                         Quant(np.float32([scale]), np.int64([0])),
                         np.full(c, int(round(alpha / scale)), np.int8))
        g.replace(op, [g.make_op("PRELU", 1, [x, a], [y])])
        n += 1
    return n

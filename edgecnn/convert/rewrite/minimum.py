"""int8 MINIMUM(x, c) whose constant c lies at or above x's int8 range everywhere -> nothing (x is y).

Why: `--equalize` keeps ReLU6's clip exact in float by a per-channel MINIMUM after each rescaled layer
(`convert/equalize.py`), and XNNPACK does not take int8 MINIMUM: on ImageNet MobileNet V1 its 26 MINIMUMs split
the graph into 27 partitions. equalize bounds its scales so that every clip lies at or above the tensor's range,
so in int8 the clip is already done by saturation at the top of the range and the MINIMUM changes no value.
What: a MINIMUM with one int8 constant input, whose every value (dequantized) is >= the largest value x can hold
(dequantized int8 127, less half a step), and whose output has x's scale and zero point, is removed: x's producer
writes the output tensor directly. Exact: the outputs are bit-identical (checked like every pass, tolerance 0).
Targets: all; it only removes work.
"""

from __future__ import annotations

import numpy as np

from edgecnn.convert.rewrite.graph import Graph, usable_int8
from edgecnn.tflite import reader

REPLACES = "MINIMUM"
TARGETS = ("cpu", "edgetpu", "tflm")
TOLERANCE_STEPS = 0.0


def _constant_values(g: Graph, i: int) -> np.ndarray | None:
    t = g.tensor(i)
    q = g.quant(i)
    if g.dtype(i) != "int8" or q is None or not reader.is_constant(g.model, t):
        return None
    data = np.frombuffer(bytes(bytearray(g.model.buffers[t.buffer].data)), np.int8).astype(np.float64)
    return (data - q.zero_point.astype(np.float64).reshape(-1)[0]) * float(q.scale[0]) if len(q.scale) == 1 else None


def apply(g: Graph) -> int:
    producers = {int(o): op for op in g.sg.operators for o in op.outputs}
    readers: dict[int, int] = {}
    for op in g.sg.operators:
        for i in op.inputs:
            readers[int(i)] = readers.get(int(i), 0) + 1
    graph_io = {int(i) for i in g.sg.outputs} | {int(i) for i in g.sg.inputs}
    n = 0
    for op in g.ops("MINIMUM"):
        ins = [int(i) for i in op.inputs]
        consts = [i for i in ins if _constant_values(g, i) is not None]
        if len(consts) != 1:
            continue
        x = next(i for i in ins if i != consts[0])
        y = int(op.outputs[0])
        if (x not in producers or readers.get(x) != 1 or x in graph_io or not usable_int8(g, x, rank=None)
                or not usable_int8(g, y, rank=None)):
            continue
        (sx, zx), (sy, zy) = g.quant(x).per_tensor, g.quant(y).per_tensor
        if (sx, zx) != (sy, zy) or float(_constant_values(g, consts[0]).min()) < (127 - zx - 0.5) * sx:
            continue
        src = producers[x]
        src.outputs = np.asarray([y if int(o) == x else int(o) for o in src.outputs], np.int32)
        g.replace(op, [])
        n += 1
    return n

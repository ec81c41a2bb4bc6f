"""int8 MINIMUM(x, c) by a constant -> nothing (x's producer writes the output), where int8 saturation does the clip.

Why: `--equalize` keeps ReLU6's clip exact in float by a per-channel MINIMUM after each rescaled layer
(`convert/equalize.py`), and XNNPACK does not take int8 MINIMUM: on ImageNet MobileNet V1 its 26 MINIMUMs split
the graph into 27 partitions.
What: a MINIMUM with one int8 constant input, whose output has x's scale and zero point, is removed when
- every value of c (dequantized) is >= the largest value x can hold (int8 127, less half a step): exact, the
  MINIMUM changes no value; any MINIMUM of any model qualifies;
- or c is a clip that equalize added (`equalize.is_clip`): its channels that reached their clip on the calibration
  samples have it at or above x's range (exact, as above); the others are clipped at the top of x's range instead
  of at their own clip, which differs only where an input drives such a channel further than any calibration
  sample did (the bound and the measurements are in equalize.py's docstring).
Checked like every pass on the calibration samples (tolerance 0.25 mean steps further from float); the report row's
`exact` counts the removals of the first kind. Targets: all; it only removes work.
"""

from __future__ import annotations

import numpy as np

from edgecnn.convert.equalize import is_clip
from edgecnn.convert.rewrite.graph import Graph, usable_int8
from edgecnn.tflite import reader

REPLACES = "MINIMUM"
TOLERANCE_STEPS = 0.25  # as the other passes: exact removals move nothing; the others move int8 rounding (0.004
# mean steps on MobileNet V1), which a tolerance of 0 turned into a refusal and 27 partitions


def _constant_values(g: Graph, i: int) -> np.ndarray | None:
    """The dequantized values of an int8 per-tensor constant, or None for anything else."""
    q = g.quant(i)
    data = reader.constant_array(g.model, g.tensor(i)) if g.dtype(i) == "int8" and q is not None else None
    if data is None or len(q.scale) != 1:
        return None
    return (data.astype(np.float64) - float(q.zero_point.reshape(-1)[0])) * float(q.scale[0])


def apply(g: Graph) -> int:
    producers = g.producers()
    readers = reader.consumers(g.sg)
    graph_io = {int(i) for i in g.sg.outputs} | {int(i) for i in g.sg.inputs}
    n = 0
    for op in g.ops("MINIMUM"):
        ins = [int(i) for i in op.inputs]
        values = {i: v for i in ins if (v := _constant_values(g, i)) is not None}
        if len(values) != 1:
            continue
        (const, clip), = values.items()
        x = next(i for i in ins if i != const)
        y = int(op.outputs[0])
        if (x not in producers or len(readers.get(x, [])) != 1 or x in graph_io or not usable_int8(g, x, rank=None)
                or not usable_int8(g, y, rank=None)):
            continue
        (sx, zx), (sy, zy) = g.quant(x).per_tensor, g.quant(y).per_tensor
        exact = float(clip.min()) >= (127 - zx - 0.5) * sx
        if (sx, zx) != (sy, zy) or not (exact or is_clip(reader.tensor_name(g.tensor(const)))):
            continue
        g.notes["exact"] = g.notes.get("exact", 0) + int(exact)
        g.bypass(op, producers[x], x)
        n += 1
    return n

"""DEQUANTIZEs that feed a float tail op -> moved to just before it, so the int8 body comes first in graph order.

Why: the Edge TPU compiler maps ops in graph order and stops at the first one it cannot map; everything after it
runs on the CPU. An SSD converted with its TFLite_Detection_PostProcess kept in float (`--postprocess graph`, the
standard recipe) gets a DEQUANTIZE of its box encodings where the converter happens to put it, often in the
middle of the score branch: measured on a two-level SSD, the preflight mapped 9 of 16 ops, the score branch's
convolutions landed after the DEQUANTIZE and went to the CPU. Coral's own SSDs have their DEQUANTIZEs last.
What: each DEQUANTIZE whose output is read only by float ops (ops with no int8 input or output) is moved to just
before its first reader. Only the order changes, no value (checked like every pass on the calibration samples:
tolerance 0 steps). Target: edgetpu.
"""

from __future__ import annotations

from edgecnn.convert.rewrite.graph import Graph
from edgecnn.tflite import reader

REPLACES = "DEQUANTIZE"
TOLERANCE_STEPS = 0.0  # a reorder moves no value
NOTHING = "no DEQUANTIZE before a float tail out of place"


def apply(g: Graph) -> int:
    n = 0
    for dq in g.ops("DEQUANTIZE"):
        readers = reader.consumers(g.sg).get(int(dq.outputs[0]), [])
        if not readers or any(g.dtype(int(t)) in ("int8", "uint8", "int16")
                              for op in readers for t in [*op.inputs, *op.outputs] if t >= 0):
            continue
        ops = g.sg.operators
        first = min(ops.index(op) for op in readers)
        here = ops.index(dq)
        assert first > here, "a DEQUANTIZE after its reader: the graph is not in topological order"
        if first == here + 1:
            continue
        ops.pop(here)
        ops.insert(first - 1, dq)
        n += 1
    return n

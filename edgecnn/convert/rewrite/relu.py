"""A standalone int8 RELU -> fused into the op that produces its input.

Why: XNNPACK takes int8 ReLUs only fused into a conv, depthwise conv, dense layer or element-wise op; a standalone
int8 RELU falls back to the builtin kernel and splits the graph (LiteRT 2.3's xnnpack_delegate.cc). TFLite's own
quantizer fuses an ADD and the RELU after it, but ai-edge-quantizer, which builds the mixed models of `--precision`
plans, keeps the float graph's ops as they are: on MediaPipe's BlazeFace, whose float .tflite has its 16 residual
ADDs followed by standalone RELUs, every plan's int8 RELUs stayed outside XNNPACK (10 of them, in 11 partitions, with
the blocks from `depthwise_conv2d_9` on in float).
What: a RELU whose int8 input is written by a CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, SUB or MUL
with no fused activation, and read by nothing else (not a graph output), is removed: the producer gets the
activation fused and writes the RELU's output tensor, with its scale and zero point. The int8 kernels requantize
straight to that scale and clamp at its zero: one rounding instead of two, the values the float graph's fused op
gives. RELU6 is not taken: ai-edge-quantizer leaves a standalone RELU6 in float (measured: the float graph's RELU6
after an ADD stayed a float op), so no int8 one reaches the pass. Checked like every pass on the calibration samples
(tolerance 0.25 mean output steps). Targets: the CPU (XNNPACK); the Edge TPU and TFLite Micro run standalone int8
ReLUs.
Measured (benchmarks/precision_plans.py --runs 200 at 4d7a1e4 and 57d823a, BlazeFace): int16 from
`depthwise_conv2d_9` to the heads 11 -> 2 XNNPACK partitions, p50 7.9x -> 6.4x plain int8's, box agreement with
float 0.964 -> 1.000; guided mode (--max-accuracy-drop 5) now finds 26 int16 ops instead of 49, box agreement 0.964,
p50 2.7x int8's (was 9.2x), one partition.
"""

from __future__ import annotations

from edgecnn.convert.rewrite.graph import Graph, usable_int8
from edgecnn.tflite import reader

REPLACES = "RELU"
TOLERANCE_STEPS = 0.25  # as the other passes: one requantization fewer moves int8 rounding, never further from float
RELU = 1  # tflite ActivationFunctionType
NOTHING = "no standalone int8 RELU that its producer (a conv, dense or element-wise op, read by it alone) can take"
FUSING = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL")  # requantize to any output scale


def apply(g: Graph) -> int:
    producers, readers, outputs = g.producers(), reader.consumers(g.sg), {int(i) for i in g.sg.outputs}
    n = 0
    for op in g.ops("RELU"):
        x, y = int(op.inputs[0]), int(op.outputs[0])
        src = producers.get(x)
        if (src is None or g.op_name(src) not in FUSING or len(readers.get(x, [])) != 1 or x in outputs
                or not usable_int8(g, x, rank=None) or not usable_int8(g, y, rank=None)):
            continue
        opts = src.builtinOptions
        if opts is None or int(getattr(opts, "fusedActivationFunction", 0) or 0) != 0:
            continue
        opts.fusedActivationFunction = RELU
        g.bypass(op, src, x)
        n += 1
    return n

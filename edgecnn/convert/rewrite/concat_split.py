"""int8 CONCATENATION of more than 5 inputs -> a chain of CONCATENATIONs of at most 5 each.

Why: LiteRT's XNNPACK delegate builds concatenations from XNNPACK's `xnn_define_concatenate2` .. `5`; one of 6 or
more inputs stays on LiteRT's own kernel and splits the graph. The TF Object Detection API's SSD heads concatenate
6 feature levels twice (box encodings, class scores): measured on the SSDLite MobileNetV2 pedestrian detector
(benchmarks/models_users_have.py), int8 ran in 2 XNNPACK partitions with both concatenations outside.
What: CONCATENATION(x1 .. xn), n > 5 -> t1 = CONCATENATION(x1 .. x5), t2 = CONCATENATION(t1, x6 .. x9), ... the last
one writing the original output (with its fused activation). Every intermediate tensor gets the output's scale and
zero point: int8 concatenation requantizes each input to the output's parameters, and an input already at them
passes unchanged, so the chain computes the same values (exact; checked like every pass on the calibration samples,
tolerance 0 steps). Targets: cpu.
"""

from __future__ import annotations

from edgecnn.convert.rewrite.graph import Graph, usable_int8

REPLACES = "CONCATENATION"
TOLERANCE_STEPS = 0.0  # the same values, in more ops
MAX_INPUTS = 5  # xnn_define_concatenate5 is XNNPACK's widest
NOTHING = f"no int8 CONCATENATION of more than {MAX_INPUTS} inputs"


def apply(g: Graph) -> int:
    n = 0
    for op in g.ops("CONCATENATION"):
        ins, out = [int(i) for i in op.inputs], int(op.outputs[0])
        if len(ins) <= MAX_INPUTS or not usable_int8(g, out, rank=None) or \
                not all(usable_int8(g, i, rank=None) for i in ins):
            continue
        rank = len(g.shape(out))
        axis = int(op.builtinOptions.axis)
        version = int(g.model.operatorCodes[op.opcodeIndex].version or 1)
        chain, current, rest = [], ins[:MAX_INPUTS], ins[MAX_INPUTS:]
        while rest:
            shape = g.shape(out)
            shape[axis % rank] = sum(g.shape(i)[axis % rank] for i in current)
            t = g.add_tensor(f"{g.tensor(out).name.decode() if isinstance(g.tensor(out).name, bytes) else g.tensor(out).name}"
                             f"/part{len(chain)}", shape, "int8", quant=g.quant(out))
            chain.append(g.make_op("CONCATENATION", version, current, [t], "ConcatenationOptions", axis=axis,
                                   fusedActivationFunction=0))
            current, rest = [t] + rest[:MAX_INPUTS - 1], rest[MAX_INPUTS - 1:]
        chain.append(g.make_op("CONCATENATION", version, current, [out], "ConcatenationOptions", axis=axis,
                               fusedActivationFunction=int(op.builtinOptions.fusedActivationFunction)))
        g.replace(op, chain)
        n += 1
    return n

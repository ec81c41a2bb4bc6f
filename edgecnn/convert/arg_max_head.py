"""A foreign segmenter's trailing ARG_MAX, cut off when its float `.tflite` is read: the converted model outputs its
class scores, and the arg-max is numpy's, as for edgecnn's own segmenters.

Why: ARG_MAX has no XNNPACK kernel (the delegate leaves it to LiteRT's reference kernel on the CPU) and is not on the
Edge TPU's op list (the compiler stops there and pycoral takes the arg-max on the host), and DeepLab exports end in
one (TF's `SemanticPredictions`: (1, H, W) int64 class ids). In int8 the arg-max over the dequantized logits is the
arg-max over the int8 ones (one scale per tensor, positive), so nothing is lost by taking it outside the graph: the
segmentation task's post-processing (`edgecnn/tasks/segmentation/postprocess.py`, shipped beside the board runner)
takes it on the host and on the board, and times it apart from invoke.

What: when the graph's one output is made by an ARG_MAX over the last axis of a float (1, H, W, C) tensor, C >= 2,
that nothing else reads, the op is removed and its input becomes the graph's output (in the signature too; its ids
tensor, axis constant and opcode stay in the file, unused: a few bytes). The
float file itself is left as it is: `eval`, `compare` and `bench` read its class map (`postprocess.decode` takes a
map as it is), so float and int8 compare pixel for pixel; the per-pixel KL needs scores on both sides and is left
out for such a pair.
"""

from __future__ import annotations

import numpy as np

OP = "ARG_MAX"


def _axis(model, op) -> int | None:
    """The constant axis of an ARG_MAX (its second input), or None when it is not a constant scalar."""
    from edgecnn.tflite.reader import constant_array

    sub = model.subgraphs[0]
    if op.inputs is None or len(op.inputs) < 2 or op.inputs[1] < 0:
        return None
    values = constant_array(model, sub.tensors[int(op.inputs[1])])
    return None if values is None or values.size != 1 else int(values.reshape(-1)[0])


def cut(model) -> int:
    """Remove `model`'s trailing ARG_MAX over the classes in place (module docstring); 1 if cut, else 0."""
    from edgecnn.tflite.reader import op_name, tensor_dtype

    sub = model.subgraphs[0]
    outputs = [] if sub.outputs is None else [int(t) for t in sub.outputs]
    ops = list(sub.operators or [])
    if len(outputs) != 1:
        return 0
    made = [op for op in ops if outputs[0] in {int(t) for t in op.outputs}]
    if len(made) != 1 or op_name(model, made[0]) != OP:
        return 0
    op = made[0]
    scores = int(op.inputs[0])
    shape = [int(d) for d in (sub.tensors[scores].shape if sub.tensors[scores].shape is not None else [])]
    if (len(shape) != 4 or shape[3] < 2 or tensor_dtype(sub.tensors[scores]) != "float32"
            or _axis(model, op) not in (3, -1)):
        return 0
    if any(outputs[0] in {int(t) for t in (other.inputs if other.inputs is not None else []) if t >= 0}
           for other in ops if other is not op):
        return 0
    sub.operators = [o for o in ops if o is not op]
    sub.outputs = np.asarray([scores], dtype=np.int32)
    for sig in model.signatureDefs or []:
        for out in sig.outputs or []:
            if int(out.tensorIndex) == outputs[0]:
                out.tensorIndex = scores
    return 1

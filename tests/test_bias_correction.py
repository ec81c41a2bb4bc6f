"""Empirical bias correction (`--bias-correction`, edgecnn/convert/bias_correction.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.convert.bias_correction import correct
from edgecnn.convert.converter import Prepared
from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError
from edgecnn.tflite import reader
from test_rewrite import _save


def _channel_means(model: bytes, x: np.ndarray, tensors: list[int], dequantize: bool) -> dict[int, np.ndarray]:
    """Mean per channel (last axis) of each tensor in `tensors` over `x` (reference kernels, every tensor kept)."""
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
            sums[t] = sums.get(t, 0) + v.reshape(-1, v.shape[-1]).mean(0) / len(x)
    return sums


def _spread_net(activation: str | None = None, signed: bool = False):
    """Conv whose 8 output channels' weights span 4 orders of magnitude, as batch-norm folding leaves them:
    per-tensor int8 rounds the narrow channels to (almost) nothing, a systematic error. `signed` weights make the
    conv's outputs about half negative, so a fused ReLU zeroes half of them."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(8, 3, padding="same", activation=activation)
    x = conv(inp)
    w, b = conv.get_weights()
    w = w if signed else np.abs(w)
    conv.set_weights([(w * np.logspace(-2, 2, 8)[None, None, None, :]).astype("float32"), b])
    x = keras.layers.Activation("relu")(keras.layers.Conv2D(8, 1)(x))
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))


def _first_layer_error(prep, quant: bytes) -> float:
    """Mean |per-channel mean error| of the first convolution's output, int8 vs float, on the samples."""
    m = reader.parse(quant)
    op = next(o for o in m.subgraphs[0].operators if reader.op_name(m, o) == "CONV_2D")
    name = reader.tensor_name(m.subgraphs[0].tensors[int(op.outputs[0])])
    f = reader.parse(prep.f32)
    ft = next(i for i, t in enumerate(f.subgraphs[0].tensors) if reader.tensor_name(t) == name)
    x = prep.samples[:16]
    q = _channel_means(quant, x, [int(op.outputs[0])], dequantize=True)[int(op.outputs[0])]
    return float(np.mean(np.abs(q - _channel_means(prep.f32, x, [ft], dequantize=False)[ft])))


@pytest.mark.parametrize("per_tensor", [True, False])
def test_the_first_layers_mean_error_shrinks(tmp_path, per_tensor):
    """The first layer sees the same input in both models, so its correction is measured cleanly (a linear layer:
    no activation clips the shift); what remains is what the output's own int8 step cannot show."""
    src = _save(_spread_net(), tmp_path / "m.keras")
    plain = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=16, per_tensor=per_tensor,
                                            rewrite=False))
    plain.calibrate()
    before = _first_layer_error(plain, plain.quantized())
    fixed = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=16, per_tensor=per_tensor,
                                            rewrite=False, bias_correction=True))
    fixed.calibrate()
    q = fixed.quantized()
    after = _first_layer_error(fixed, q)
    if per_tensor:  # the narrow channels' lost output is back on average, as far as the output's own int8 step allows
        assert after < 0.8 * before, (before, after)
    else:  # per-channel weights leave little to correct: it must not get worse
        assert after <= before * 1.05 + 1e-6, (before, after)
    report = fixed.corrections[hash(q)]
    assert report["layers"] >= 2 and report["samples"] == 16


def test_a_shift_under_a_fused_relu_is_corrected_in_full(tmp_path):
    """The bias sits before the fused ReLU, the error is read after it: a shift on a channel that is active half the
    time shows at half its size in the output's mean, and folding that mean into the bias fixed half of it."""
    src = _save(_spread_net("relu", signed=True), tmp_path / "m.keras")
    errors = []
    for fix in (False, True):
        prep = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=16, per_tensor=True,
                                               rewrite=False, bias_correction=fix))
        prep.calibrate()
        errors.append(_first_layer_error(prep, prep.quantized()))
    before, after = errors
    assert before > 0 and after < 0.3 * before, (before, after)


def test_a_bias_shared_by_two_layers_is_corrected_for_each(tmp_path):
    """Two convolutions whose int32 biases are one buffer (a converter deduplicates equal constants): correcting one
    must not move the other's. The result equals the correction of the same model with the buffers apart."""
    import copy

    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(x)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    prep = Prepared(_save(model, tmp_path / "m.keras"),
                    ConversionRequest("int8", calibration="photos", num_calibration=8, rewrite=False))
    prep.calibrate()
    quant = prep.quantized()
    m = reader.parse(quant)
    sg = m.subgraphs[0]
    convs = [op for op in sg.operators if reader.op_name(m, op) == "CONV_2D"]
    b1, b2 = (sg.tensors[int(op.inputs[2])] for op in convs)
    zeros = np.zeros(4, np.int32)
    for t in (b1, b2):  # both zero biases (no bias in Keras) ...
        assert np.array_equal(np.frombuffer(bytes(bytearray(m.buffers[t.buffer].data)), np.int32), zeros)
    apart = reader.serialize(m) if b1.buffer != b2.buffer else None
    b2.buffer = b1.buffer  # ... then one buffer behind both
    shared = reader.serialize(m)
    if apart is None:  # the converter had shared them: give the second its own for the reference
        m2 = reader.parse(shared)
        buf = copy.deepcopy(m2.buffers[m2.subgraphs[0].tensors[int(convs[1].inputs[2])].buffer])
        m2.buffers.append(buf)
        m2.subgraphs[0].tensors[int(convs[1].inputs[2])].buffer = len(m2.buffers) - 1
        apart = reader.serialize(m2)

    def biases(data: bytes) -> list[np.ndarray]:
        mm = reader.parse(data)
        ops = [op for op in mm.subgraphs[0].operators if reader.op_name(mm, op) == "CONV_2D"]
        return [np.frombuffer(bytes(bytearray(mm.buffers[mm.subgraphs[0].tensors[int(op.inputs[2])].buffer].data)),
                              np.int32) for op in ops]

    want, (got, report) = biases(correct(prep.f32, apart, prep.samples)[0]), correct(prep.f32, shared, prep.samples)
    assert any(np.any(w != 0) for w in want)  # there was something to correct
    assert all(np.array_equal(w, g) for w, g in zip(want, biases(got))), (want, biases(got))
    assert report["shared_biases_split"] == 1


def test_bias_correction_is_for_int8_only():
    with pytest.raises(EdgecnnError, match="--bias-correction needs --quant int8"):
        ConversionRequest("float16", bias_correction=True)


def _residual_net():
    """Five layers with a bias (conv, depthwise, 1x1 conv, 1x1 conv, dense) and a residual add that reads the first
    layer's output two layers later."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    b = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(a)
    c = keras.layers.Conv2D(8, 1)(b)
    d = keras.layers.Add()([a, c])  # `a` is read again two layers later
    e = keras.layers.Conv2D(4, 1, activation="relu")(d)
    return keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(e)))


def test_layers_are_measured_segment_by_segment_with_the_whole_model_s_values(tmp_path):
    """The int8 model runs one layer's segment at a time (`_Int8Segments`: the ops after the layer before, that one
    again, up to the layer), from the tensors earlier segments kept: every layer's output must be the whole model's,
    value for value, on a net with a residual add (a tensor kept across segments), and only what later ops read is
    kept."""
    from edgecnn.convert.bias_correction import _Int8Segments
    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.quant import quantize

    src = _save(_residual_net(), tmp_path / "m.keras")
    prep = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=4, rewrite=False))
    prep.calibrate()
    q = prep.quantized()
    m = reader.parse(q)
    ops = m.subgraphs[0].operators
    layers = [k for k, o in enumerate(ops) if reader.op_name(m, o) in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                                          "FULLY_CONNECTED")]
    assert len(layers) == 5 and reader.op_name(m, ops[layers[2] + 1]) == "ADD"
    x = prep.samples
    whole = make_interpreter(q, preserve_all=True)
    allocate(whole)
    want = {}
    for i in range(len(x)):
        whole.set_tensor(whole.get_input_details()[0]["index"], quantize(x[i:i + 1], whole.get_input_details()[0]))
        whole.invoke()
        for k in layers:
            want.setdefault(k, []).append(whole.get_tensor(int(ops[k].outputs[0])).copy())
    segments, first = _Int8Segments(m, x), 0
    for k in layers:
        got = segments.run(first, k, int(ops[k].outputs[0]))
        w, g = np.concatenate(want[k]), np.concatenate(got)
        assert w.size and np.ptp(w.astype(np.int32)) > 0 and np.array_equal(w, g), k
        first = k
    assert set(segments.kept) <= {int(t) for o in ops[layers[-1]:] for t in o.inputs}  # only what later ops read
    assert reader.serialize(m) == reader.serialize(reader.parse(q))  # the model object is left as it was


def test_the_segments_correct_every_layer_as_whole_model_runs_would(tmp_path, monkeypatch):
    """Every bias `correct` writes is the one it writes when each layer is measured on the whole int8 model with the
    layers before it corrected (the definition), on a per-tensor net where every layer needs a correction: the
    segments re-run the layer before with its corrected bias and carry the residual branch across."""
    from edgecnn.convert import bias_correction
    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.quant import quantize

    class WholeModel:
        def __init__(self, model, x):
            self.model, self.x = model, x

        def run(self, first, last, out):
            it = make_interpreter(reader.serialize(self.model), preserve_all=True)
            allocate(it)
            got = []
            for i in range(len(self.x)):
                it.set_tensor(it.get_input_details()[0]["index"], quantize(self.x[i:i + 1], it.get_input_details()[0]))
                it.invoke()
                got.append(it.get_tensor(out).copy())
            return got

    src = _save(_residual_net(), tmp_path / "m.keras")
    prep = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=8, per_tensor=True,
                                           rewrite=False))
    prep.calibrate()
    q = prep.quantized()

    def biases(data):
        m = reader.parse(data)
        sg = m.subgraphs[0]
        return [reader.constant_array(m, sg.tensors[int(o.inputs[2])]) for o in sg.operators
                if reader.op_name(m, o) in bias_correction.OPS]

    got, _ = correct(prep.f32, q, prep.samples)
    monkeypatch.setattr(bias_correction, "_Int8Segments", WholeModel)
    want, _ = correct(prep.f32, q, prep.samples)
    before, want, got = biases(q), biases(want), biases(got)
    assert len(want) == 5 and sum(np.any(w != b) for w, b in zip(want, before)) >= 4  # corrections down the chain
    assert all(np.array_equal(w, g) for w, g in zip(want, got)), (want, got)

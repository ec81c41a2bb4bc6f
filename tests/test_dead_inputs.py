"""Dead inputs (edgecnn/convert/dead_inputs.py; qat.zero_dead_inputs for `train --qat --per-tensor`): the weights
that read a channel which is 0 on every calibration sample are zeroed before per-tensor int8."""

from __future__ import annotations

import json

import numpy as np

from edgecnn.convert.converter import Prepared
from edgecnn.convert.dead_inputs import zero_dead_inputs
from edgecnn.convert.request import ConversionRequest
from edgecnn.metrics import snr_db
from helpers import run_cli_in_process
from test_equalize import _f32, _run
from test_rewrite import _save

DEAD = [0, 2, 5]  # the channels of the first conv that never fire


def _net_with_dead_channels():
    """conv (8 channels, ReLU6; channels DEAD have a bias of -100: 0 on every input in [0, 1]) -> depthwise (no bias;
    the kernels behind the dead channels 300x the others', as batch norm folded on a constant leaves them) -> ReLU ->
    conv 1x1 -> pooling mean -> dense. The dead channels stay 0 through the depthwise, so the 1x1 conv reads them
    too."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    c1 = layers.Conv2D(8, 3, padding="same", activation="relu6")
    dw = layers.DepthwiseConv2D(3, padding="same", use_bias=False, activation="relu")
    c2 = layers.Conv2D(8, 1, activation="relu")
    out = layers.Dense(10)(layers.GlobalAveragePooling2D()(c2(dw(c1(inp)))))
    model = keras.Model(inp, out)
    w, b = c1.get_weights()
    b[:] = 0.1
    b[DEAD] = -100.0
    c1.set_weights([w, b])
    (k,) = dw.get_weights()
    k[..., DEAD, 0] *= 300.0
    dw.set_weights([k])
    w, b = c2.get_weights()  # a live weight sets the 1x1 conv's step
    w[:, :, DEAD, :] *= 0.1
    c2.set_weights([w, b])
    return model


def _samples(n=16, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (n, 16, 16, 3)).astype(np.float32)


def test_the_weights_reading_dead_channels_are_zeroed_and_the_float_model_computes_the_same():
    from edgecnn.tflite import reader

    f32 = _f32(_net_with_dead_channels())
    x = _samples()
    out, report = zero_dead_inputs(f32, x)
    # the depthwise layer, where the dead channels' kernels set the step; the 1x1 conv reads them too (they stay 0
    # through the depthwise), but a live weight sets its step: int8 multiplies them by 0 there, it keeps its bytes
    assert report["zeroed_channels"] == len(DEAD) and len(report["layers"]) == 1, report
    model, before = reader.parse(out), reader.parse(f32)

    def weights(m):
        return {reader.op_name(m, op): reader.constant_array(m, m.subgraphs[0].tensors[int(op.inputs[1])])
                for op in m.subgraphs[0].operators if reader.op_name(m, op) in ("DEPTHWISE_CONV_2D", "CONV_2D")}
    assert "CONV_2D" in weights(model) and np.array_equal(weights(model)["CONV_2D"], weights(before)["CONV_2D"])
    dw = weights(model)["DEPTHWISE_CONV_2D"]  # (1, 3, 3, 8)
    live = [c for c in range(8) if c not in DEAD]
    assert np.all(dw[..., DEAD] == 0) and np.all(np.abs(dw[..., live]).max(axis=(0, 1, 2)) > 0)
    assert np.abs(dw[..., live]).max() < 10.0  # what remains is the live channels' scale, not the dead ones' 300x
    a, b = _run(f32, x), _run(out, x)
    assert np.ptp(a) > 0 and np.max(np.abs(a - b)) <= 1e-6 * np.max(np.abs(a)), np.max(np.abs(a - b))
    # on other inputs where the channels stay dead, too: the rule does not depend on these samples' values
    y = _samples(8, seed=9)
    assert np.max(np.abs(_run(f32, y) - _run(out, y))) <= 1e-6 * np.max(np.abs(_run(f32, y)))


def test_a_channel_that_is_small_but_not_zero_is_left_alone():
    """The rule asks for exactly 0: a unit whose value is 1e-6 of the others' still reaches the output."""
    import keras
    from keras import layers

    inp = keras.Input((4,))
    d1, d2 = layers.Dense(3, activation="relu"), layers.Dense(2)
    model = keras.Model(inp, d2(d1(inp)))
    d1.set_weights([np.float32([[1, 1e-6, 1]] * 4), np.float32([-10.0, 0.0, 0.0])])  # unit 0 dead, unit 1 tiny
    d2.set_weights([np.float32([[50, 50], [1, 1], [1, 1]]), np.zeros(2, np.float32)])
    x = np.random.default_rng(0).uniform(0.5, 1, (8, 4)).astype(np.float32)
    out, report = zero_dead_inputs(_f32(model), x)
    assert report["zeroed_channels"] == 1 and len(report["layers"]) == 1, report
    from edgecnn.tflite import reader

    m = reader.parse(out)
    fc = [op for op in m.subgraphs[0].operators if reader.op_name(m, op) == "FULLY_CONNECTED"][1]
    w = reader.constant_array(m, m.subgraphs[0].tensors[int(fc.inputs[1])])  # (O, I): input channel = last axis
    assert np.all(w[:, 0] == 0) and np.all(w[:, 1:] == 1)


def test_a_depthwise_multiplier_zeroes_each_dead_input_s_block_of_outputs():
    from edgecnn.convert.dead_inputs import _reading

    w = np.ones((1, 3, 3, 6))  # 3 inputs x multiplier 2: input i feeds outputs 2i, 2i + 1
    mask = _reading(w, "DEPTHWISE_CONV_2D", np.array([False, True, False]))
    assert mask[0, 0, 0].tolist() == [False, False, True, True, False, False] and mask.all(axis=(0, 1, 2)).sum() == 2


def test_a_weight_two_ops_read_is_left_alone():
    """One Dense called on two branches: its weights read a dead channel on one and a live one on the other. Zeroing
    them for the first op would change the second's output."""
    import keras
    from keras import layers

    inp = keras.Input((4,))
    dead, live, shared = layers.Dense(3, activation="relu"), layers.Dense(3, activation="relu"), layers.Dense(2)
    model = keras.Model(inp, layers.Add()([shared(dead(inp)), shared(live(inp))]))
    dead.set_weights([np.ones((4, 3), np.float32), np.float32([-10.0, 0.0, 0.0])])  # unit 0 dead
    live.set_weights([np.ones((4, 3), np.float32), np.zeros(3, np.float32)])  # every unit live
    shared.set_weights([np.float32([[50, 50], [1, 1], [1, 1]]), np.zeros(2, np.float32)])
    f32 = _f32(model)
    x = np.random.default_rng(0).uniform(0.5, 1, (8, 4)).astype(np.float32)
    out, report = zero_dead_inputs(f32, x)
    a = _run(f32, x)
    assert np.ptp(a) > 0 and np.array_equal(a, _run(out, x)), report


def test_a_layer_whose_every_input_is_dead_on_the_samples_is_left_alone():
    """Blank calibration images make every input channel of the first conv 0: that says nothing of the layer, and
    zeroing all its weights would leave per-tensor int8 no step at all."""
    f32 = _f32(_net_with_dead_channels())
    out, report = zero_dead_inputs(f32, np.zeros((4, 16, 16, 3), np.float32))
    from edgecnn.tflite import reader

    m = reader.parse(out)
    first = m.subgraphs[0].operators[0]
    assert reader.op_name(m, first) == "CONV_2D"
    w = reader.constant_array(m, m.subgraphs[0].tensors[int(first.inputs[1])])
    assert np.abs(w).max() > 0, report  # the first conv's weights, all of which read a channel dead on the samples


def _int8_snr(src, monkeypatch=None) -> tuple[float, Prepared]:
    prep = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=16, per_tensor=True))
    original = prep.f32
    prep.calibrate()
    q = prep.quantized()
    from edgecnn.convert.rewrite.check import real_values, run_outputs

    x = prep.samples
    qo, qp = run_outputs(q, x)
    return snr_db(_run(original, x), real_values(qo[0], qp[0]).reshape(len(x), -1)), prep


def test_per_tensor_int8_gets_the_live_channels_step_back(tmp_path, monkeypatch):
    """With the dead channels' 300x kernels setting the depthwise layer's one weight step, per-tensor int8 loses the
    live channels; with those weights zeroed it keeps them."""
    import edgecnn.convert.dead_inputs as dead_inputs

    src = _save(_net_with_dead_channels(), tmp_path / "m.keras")
    with_pass, prep = _int8_snr(src)
    assert prep.dead_inputs["zeroed_channels"] >= len(DEAD), prep.dead_inputs
    monkeypatch.setattr(dead_inputs, "zero_dead_inputs",
                        lambda data, samples, skip: (data, {"zeroed_channels": 0, "layers": {}}))
    without, _ = _int8_snr(src)
    assert with_pass > without + 10.0, (without, with_pass)


def test_a_layer_kept_in_float_keeps_its_weights(tmp_path):
    src = _save(_net_with_dead_channels(), tmp_path / "m.keras")
    req = dict(calibration="photos", num_calibration=8, per_tensor=True)
    plain = Prepared(src, ConversionRequest("int8", **req))
    plain.calibrate()
    (layer,) = plain.dead_inputs["layers"]
    kept = Prepared(src, ConversionRequest("int8", keep_float=(layer,), **req))
    assert layer in kept.kept_nodes
    kept.calibrate()
    assert kept.dead_inputs == {"zeroed_channels": 0, "layers": {}} and kept.f32 == kept.original_f32


def test_per_channel_int8_leaves_the_weights_alone_and_the_report_says_what_was_zeroed(tmp_path):
    src = _save(_net_with_dead_channels(), tmp_path / "m.keras")
    reports = {}
    for flag in ("--per-tensor", None):
        r = run_cli_in_process("convert", src, "-o", tmp_path / f"{flag}.tflite", "--quant", "int8", "--calibration",
                               "photos", "--num-calibration", "8", *([flag] if flag else []))
        assert r.returncode == 0, r.stderr
        reports[flag] = r.stdout
        r = run_cli_in_process("convert", src, "-o", tmp_path / f"{flag}.tflite", "--quant", "int8", "--calibration",
                               "photos", "--num-calibration", "8", "--json", *([flag] if flag else []))
        reports[f"{flag} json"] = json.loads(r.stdout)["dead_inputs"]
    assert reports["--per-tensor json"]["zeroed_channels"] == len(DEAD)
    assert "dead inputs: the weights reading 3 channel(s)" in " ".join(reports["--per-tensor"].split())
    assert reports["None json"] is None and "dead inputs" not in reports[None]


def test_qat_zeroes_the_same_weights_in_the_keras_model():
    from edgecnn.train import qat

    model = _net_with_dead_channels()
    x = _samples()
    want = model.predict(x, verbose=0)
    zeroed = qat.zero_dead_inputs(model, x)
    dw, c2 = [l for l in model.layers if type(l).__name__ in ("DepthwiseConv2D", "Conv2D")][1:]
    assert zeroed == {dw.name: len(DEAD), c2.name: len(DEAD)}, zeroed
    k = dw.get_weights()[0]  # (3, 3, in, multiplier)
    assert np.all(k[:, :, DEAD, :] == 0) and np.abs(k).max() < 10.0
    got = model.predict(x, verbose=0)
    assert np.ptp(want) > 0 and np.max(np.abs(want - got)) <= 1e-6 * np.max(np.abs(want))

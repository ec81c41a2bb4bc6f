"""int8 rewrite passes (edgecnn/convert/rewrite/): each on a small graph — what it replaces, that outputs stay
within its tolerance, that the result runs whole on XNNPACK / maps on the Edge TPU, and that a pass outside its
tolerance is skipped with a note."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from edgecnn.convert.converter import convert_model
from edgecnn.convert.edgetpu import preflight
from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError
from edgecnn.tflite.reader import TfliteInfo, read_tflite
from helpers import run_cli_in_process


def _save(model, path):
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec

    shape = tuple(int(d) for d in model.input_shape[1:])
    save_model(model, path, default_spec("lenet5", shape, [str(i) for i in range(10)], ""))  # [0, 1] input range
    return path


def _net(kind: str, shape=(16, 16, 3)):
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape)
    x = layers.Conv2D(8, 3, padding="same")(inp)
    if kind == "hard_swish":
        x = layers.Activation("hard_swish")(x)
        x = layers.DepthwiseConv2D(3, padding="same")(x)
        x = layers.Activation("hard_swish")(x)
        x = layers.GlobalAveragePooling2D()(x)
    elif kind == "avg_pool":
        x = layers.Activation("relu")(x)
        x = layers.AveragePooling2D(2)(x)  # windowed, VALID: 16 -> 8
        x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = layers.AveragePooling2D(3, strides=2, padding="same")(x)  # SAME and padded: 8 -> 4, kept
        x = layers.AveragePooling2D(4)(x)  # the whole 4x4: global
        x = layers.Flatten()(x)
    elif kind == "leaky_relu":
        x = layers.LeakyReLU(negative_slope=0.1)(x)
        x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("rewrite")
    return {k: _save(_net(k), d / f"{k}.keras") for k in ("hard_swish", "avg_pool", "leaky_relu")}


def _convert(src, out, **kw):
    r = convert_model(src, out, ConversionRequest("int8", calibration="photos", num_calibration=16, **kw))
    return r, Counter(op.op for op in TfliteInfo(read_tflite(out)).ops)


def test_hard_swish_runs_whole_on_xnnpack_and_maps_on_the_edgetpu(models, tmp_path):
    from edgecnn.bench.delegation import measure

    plain, ops0 = _convert(models["hard_swish"], tmp_path / "plain.tflite", rewrite=False)
    r, ops = _convert(models["hard_swish"], tmp_path / "rw.tflite")
    assert plain["rewrites"] is None and ops0["HARD_SWISH"] == 2
    assert ops["HARD_SWISH"] == 0 and ops["MUL"] == ops0["MUL"] + 2
    assert ops["DEPTHWISE_CONV_2D"] == ops0["DEPTHWISE_CONV_2D"] + 2
    row = next(x for x in r["rewrites"] if x["pass"] == "hard_swish")
    assert row["applied"] and row["count"] == 2 and row["samples"] == 16
    assert row["error_steps_after"] <= row["error_steps_before"] + row["tolerance_steps"]
    assert row["agreement_vs_float_after"] >= row["agreement_vs_float_before"] - 1 / 16 and "max_diff_steps" in row
    before, after = measure(tmp_path / "plain.tflite"), measure(tmp_path / "rw.tflite")
    assert before["partitions"] > 1 and {o["op"] for o in before["ops_outside"]} >= {"HARD_SWISH"}
    hs = next(o for o in before["ops_outside"] if o["op"] == "HARD_SWISH")
    assert hs["rewrite"] == "hard_swish" and "XNNPACK" in hs["reason"]
    assert after["partitions"] == 1 and [o["op"] for o in after["ops_outside"]] in ([], ["SOFTMAX"])
    assert not preflight(tmp_path / "plain.tflite")["maps_fully"]
    assert preflight(tmp_path / "rw.tflite")["maps_fully"]


def test_avg_pool_becomes_mean_or_depthwise_and_padded_same_is_kept(models, tmp_path):
    _, ops0 = _convert(models["avg_pool"], tmp_path / "plain.tflite", rewrite=False)
    r, ops = _convert(models["avg_pool"], tmp_path / "rw.tflite")
    assert ops0["AVERAGE_POOL_2D"] == 3
    assert ops["AVERAGE_POOL_2D"] == 1  # the padded SAME pool: a convolution would divide differently at borders
    assert ops["MEAN"] == ops0.get("MEAN", 0) + 1 and ops["DEPTHWISE_CONV_2D"] == ops0.get("DEPTHWISE_CONV_2D", 0) + 1
    row = next(x for x in r["rewrites"] if x["pass"] == "avg_pool")
    assert row["applied"] and row["count"] == 2 and row["error_steps_after"] <= row["error_steps_before"] + 0.25


def test_leaky_relu_becomes_prelu_for_the_edgetpu_only(models, tmp_path):
    _, cpu_ops = _convert(models["leaky_relu"], tmp_path / "cpu.tflite")
    r, tpu_ops = _convert(models["leaky_relu"], tmp_path / "tpu.tflite", target="edgetpu")
    assert cpu_ops["LEAKY_RELU"] == 1  # XNNPACK takes int8 LEAKY_RELU: nothing to do for the CPU
    assert tpu_ops["LEAKY_RELU"] == 0 and tpu_ops["PRELU"] == 1
    assert not preflight(tmp_path / "cpu.tflite")["maps_fully"] and preflight(tmp_path / "tpu.tflite")["maps_fully"]
    row = next(x for x in r["rewrites"] if x["pass"] == "leaky_relu")
    assert row["applied"] and row["error_steps_after"] <= row["error_steps_before"] + 0.25


def test_a_rewrite_outside_its_tolerance_is_skipped_with_a_note(models, tmp_path, monkeypatch):
    from edgecnn.convert.rewrite import hard_swish

    monkeypatch.setattr(hard_swish, "TOLERANCE_STEPS", -1.0)  # must be a full step closer to float: never
    r, ops = _convert(models["hard_swish"], tmp_path / "q.tflite")
    row = next(x for x in r["rewrites"] if x["pass"] == "hard_swish")
    assert not row["applied"] and row["note"].startswith("not applied: error vs float")
    assert ops["HARD_SWISH"] == 2  # the plain graph was written


def test_tflm_target_rewrites_only_what_removes_work(models, tmp_path):
    """TFLite Micro runs HARD_SWISH & co. natively: only the exact `minimum` pass (which removes ops) runs."""
    r, ops = _convert(models["hard_swish"], tmp_path / "m.tflite", target="tflm")
    assert [x["pass"] for x in r["rewrites"]] == ["minimum"] and not r["rewrites"][0]["applied"]
    assert ops["HARD_SWISH"] == 2
    with pytest.raises(EdgecnnError, match="--target 'gpu'"):
        ConversionRequest("int8", target="gpu")


def test_cli_target_and_no_rewrite(models, tmp_path):
    out = tmp_path / "m.tflite"
    r = run_cli_in_process("convert", models["hard_swish"], "-o", out, "--quant", "int8", "--calibration", "photos",
                           "--num-calibration", "8", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["request"]["target"] == "cpu" and rep["delegate"]["partitions"] == 1
    assert [x["pass"] for x in rep["rewrites"] if x["applied"]] == ["hard_swish"]
    r = run_cli_in_process("convert", models["hard_swish"], "-o", out, "--quant", "int8", "--calibration", "photos",
                           "--num-calibration", "8", "--no-rewrite")
    assert r.returncode == 0 and "HARD_SWISHx2" in r.stdout.replace(" ", "") and "outside: HARD_SWISHx2" in r.stdout
    bad = run_cli_in_process("convert", models["hard_swish"], "-o", out, "--quant", "int8", "--target", "npu")
    assert bad.returncode == 2 and "Invalid value for '--target'" in bad.stderr


def test_bench_says_why_int8_is_split(models, tmp_path):
    out = tmp_path / "plain.tflite"
    _convert(models["hard_swish"], out, rewrite=False)
    r = run_cli_in_process("bench", out, "--runs", "3", "--warmup", "1", "--db", tmp_path / "db.sqlite", "--json")
    assert r.returncode == 0, r.stderr
    outside = {o["op"]: o for o in json.loads(r.stdout)["delegation"]["ops_outside"]}
    assert outside["HARD_SWISH"]["count"] == 2 and outside["HARD_SWISH"]["rewrite"] == "hard_swish"
    assert "not taken by XNNPACK" in outside["HARD_SWISH"]["reason"]
    r = run_cli_in_process("bench", out, "--runs", "3", "--warmup", "1", "--db", tmp_path / "db.sqlite")
    assert r.returncode == 0 and "HARD_SWISH×2" in r.stdout and "not taken by" in r.stdout


def test_lenet_is_the_primers_max_pool_net_and_avg_is_an_option():
    from edgecnn.zoo import build

    layers = {type(layer).__name__ for layer in build("lenet5", (32, 32, 1), 10).layers}
    assert "MaxPooling2D" in layers and "AveragePooling2D" not in layers
    layers = {type(layer).__name__ for layer in build("lenet5", (32, 32, 1), 10, pooling="avg").layers}
    assert "AveragePooling2D" in layers


def test_a_near_zero_input_range_keeps_the_gate_exact(models, tmp_path):
    """A near-zero activation range (a dead channel of an untrained net) would overflow the gate's int32 bias at
    the exact weight scale: the bias stays exact (gate 1/2) and the weight takes the coarse scale."""
    import numpy as np

    from edgecnn.convert.rewrite import hard_swish
    from edgecnn.convert.rewrite.graph import Graph
    from edgecnn.tflite.reader import parse

    _convert(models["hard_swish"], tmp_path / "plain.tflite", rewrite=False)
    g = Graph(parse(read_tflite(tmp_path / "plain.tflite")))
    first = g.ops("HARD_SWISH")[0]
    g.tensor(int(first.inputs[0])).quantization.scale = [1e-12]
    assert hard_swish.apply(g) == 2 and not g.ops("HARD_SWISH")
    dw = next(op for op in g.ops("DEPTHWISE_CONV_2D") if int(op.inputs[0]) == int(first.inputs[0]))
    w, b = g.tensor(int(dw.inputs[1])), g.tensor(int(dw.inputs[2]))
    bias = np.frombuffer(bytes(g.model.buffers[b.buffer].data), np.int32) * np.asarray(b.quantization.scale)
    assert np.allclose(bias, 0.5, rtol=1e-6)
    weight = np.frombuffer(bytes(g.model.buffers[w.buffer].data), np.int8) * np.asarray(w.quantization.scale)
    assert np.all(np.abs(weight * 128 * 1e-12) < 1e-5 / 255)  # x * weight: far below one gate step (1/255)


def test_the_check_counts_int8_steps_when_the_output_is_float(models, tmp_path):
    """With `--io float32` the output is a DEQUANTIZE of the int8 softmax: the check must count the steps of that int8
    tensor, not take 1.0 for the step of a float tensor (which read 0.25 steps as 0.25 in softmax units, ~64 steps)."""
    r8, _ = _convert(models["hard_swish"], tmp_path / "i8.tflite")
    rf, _ = _convert(models["hard_swish"], tmp_path / "f32.tflite", io="float32")
    row8, rowf = (next(x for x in r["rewrites"] if x["pass"] == "hard_swish") for r in (r8, rf))
    assert row8["applied"] and rowf["applied"] and row8["error_steps_before"] > 0
    for key in ("error_steps_before", "error_steps_after", "max_diff_steps"):
        assert rowf[key] == pytest.approx(row8[key], rel=1e-3, abs=1e-6), key
    from edgecnn.convert.rewrite.check import output_steps

    (step8,), (stepf,) = output_steps(read_tflite(tmp_path / "i8.tflite")), output_steps(read_tflite(tmp_path / "f32.tflite"))
    assert step8 == stepf == pytest.approx(1 / 256)


def test_a_refusal_on_the_first_samples_is_rejudged_on_all_of_them(tmp_path, monkeypatch):
    """The check screens on the first MAX_SAMPLES calibration samples; a refusal there stands only if all the samples
    confirm it (a QAT MobileNetV3-Small lost its hard_swish rewrite to a 32-sample refusal that 200 overturned). The
    samples are ordered so that the screen sees those the rewrite does worst on, and the tolerance is set between the
    screen's excess error and the whole set's: the screen refuses, all the samples accept. The model ends on its
    hard-swish feature map (2,048 outputs a sample: a softmax head hides the gate's rounding on an untrained net)."""
    import keras
    import numpy as np
    from keras import layers

    from edgecnn.convert.rewrite import check, hard_swish
    from edgecnn.convert.rewrite.graph import Graph
    from edgecnn.tflite.reader import parse

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = layers.Activation("hard_swish")(layers.Conv2D(8, 3, padding="same")(inp))
    src = _save(keras.Model(inp, layers.Activation("hard_swish")(layers.DepthwiseConv2D(3, padding="same")(x))),
                tmp_path / "map.keras")
    _convert(src, tmp_path / "plain.tflite", rewrite=False)
    convert_model(src, tmp_path / "f32.tflite", ConversionRequest("float32"))
    before, reference = read_tflite(tmp_path / "plain.tflite"), read_tflite(tmp_path / "f32.tflite")
    g = Graph(parse(before))
    assert hard_swish.apply(g) == 2
    after = g.serialize()
    x = np.random.default_rng(0).uniform(0, 1, (64, 16, 16, 3)).astype(np.float32)
    (step,) = check.output_steps(before)
    f = check.run_outputs(reference, x)[0][0].reshape(64, -1)
    err = [np.abs(check.real_values(r[0][0], r[1][0]).reshape(64, -1) - f).mean(axis=1) / step
           for r in (check.run_outputs(before, x), check.run_outputs(after, x))]
    order = np.argsort(err[0] - err[1])  # the samples where the rewrite adds the most error first
    x, excess = x[order], (err[1] - err[0])[order]
    monkeypatch.setattr(check, "MAX_SAMPLES", 8)
    screen, whole = excess[:8].mean(), excess.mean()
    assert screen > whole + 1e-3, (screen, whole)
    tolerance = (screen + whole) / 2

    def agree(a, b):  # a feature map has no class to agree on: the decision is the error's
        return None

    assert not check.acceptable(check.compare(before, after, x, reference, agree), tolerance)  # the screen alone
    row = check.decide(before, after, x, tolerance, reference, agree)
    assert row["accepted"] and row["samples"] == 64
    assert not row["screen"]["accepted"] and row["screen"]["samples"] == 8
    assert row["error_steps_after"] - row["error_steps_before"] == pytest.approx(whole, rel=1e-6)
    refused = check.decide(before, after, x, -1.0, reference, agree)  # never acceptable: confirmed on all 64
    assert not refused["accepted"] and refused["samples"] == 64 and refused["screen"]["samples"] == 8
    accepted = check.decide(before, after, x[::-1].copy(), tolerance, reference, agree)  # the screen accepts: done
    assert accepted["accepted"] and accepted["samples"] == 8 and "screen" not in accepted

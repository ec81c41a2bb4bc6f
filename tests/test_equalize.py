"""Cross-layer equalization (`--equalize`, edgecnn/convert/equalize.py) and the pass that drops its clips from int8
(edgecnn/convert/rewrite/minimum.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecnn.convert.converter import Prepared
from edgecnn.convert.equalize import equalize
from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError
from edgecnn.metrics import snr_db
from helpers import run_cli_in_process
from test_rewrite import _save


def _unbalanced_net(dead_channel: bool = True):
    """conv -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 -> conv 1x1 -> BN -> ReLU -> head, whose channels' weight
    ranges span orders of magnitude after batch-norm folding (as in pretrained MobileNets); with `dead_channel`,
    channel 0 of the first conv has zero weights (its output is a constant) and a huge depthwise filter behind it."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    c1 = layers.Conv2D(16, 3, padding="same", use_bias=False)
    bn1, dw, bn2 = layers.BatchNormalization(), layers.DepthwiseConv2D(3, padding="same", use_bias=False), \
        layers.BatchNormalization()
    c2, bn3 = layers.Conv2D(16, 1, use_bias=False), layers.BatchNormalization()
    x = layers.ReLU(6.0)(bn1(c1(inp)))
    x = layers.ReLU(6.0)(bn2(dw(x)))
    x = layers.ReLU()(bn3(c2(x)))
    out = layers.Dense(10)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for bn in (bn1, bn2, bn3):  # gamma / sqrt(var) spread over 3 orders of magnitude: the folded weights are too
        g, b, m, v = bn.get_weights()
        bn.set_weights([np.logspace(-1.5, 1.5, 16)[rng.permutation(16)].astype("float32"),
                        rng.uniform(0, 1, 16).astype("float32"), m, v])
    if dead_channel:
        w = c1.get_weights()[0]
        w[..., 0] = 0.0
        c1.set_weights([w])
        d = dw.get_weights()[0]
        d[..., 0, 0] *= 300.0
        dw.set_weights([d])
    return model


def _f32(model) -> bytes:
    from edgecnn.convert.frontend import float_tflite

    return float_tflite(model, False, signature=False)


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    from edgecnn.convert.rewrite.check import run_outputs

    return run_outputs(model, x)[0][0].reshape(len(x), -1)


def test_the_equalized_float_model_computes_the_same():
    """Exact on any input, not only the samples it was equalized on: inputs 4x larger than the samples drive the
    ReLU6 layers into their clip, which the per-channel MINIMUM keeps where it was."""
    f32 = _f32(_unbalanced_net())
    rng = np.random.default_rng(1)
    samples = rng.uniform(0, 1, (16, 16, 16, 3)).astype(np.float32)
    eq, report = equalize(f32, samples)
    assert report["pairs"] == 2 and report["equalized"] == 2 and report["relu6_clips_added"] >= 1
    assert report["channel_range_ratio_after"] < report["channel_range_ratio_before"] / 3, report
    x = rng.uniform(-4, 4, (32, 16, 16, 3)).astype(np.float32)
    a, b = _run(f32, x), _run(eq, x)
    assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(a)), np.max(np.abs(a - b))


def test_a_linear_pair_keeps_its_signed_range():
    """conv 1x1 (no activation) -> conv 1x1: channel 0 spans [0, 10], channel 1 [-1, 0] with 100x the weight behind
    it. The sqrt rule would scale channel 1 up 10x, to [-10, 0]: within the tensor's max |value| (10), but the
    tensor's int8 range [-1, 10] would grow to [-10, 10]. Both ends must hold."""
    import keras
    from keras import layers

    from edgecnn.convert.equalize import pairs
    from edgecnn.convert.rewrite.check import run_outputs
    from edgecnn.tflite.reader import expose, parse

    inp = keras.Input((4, 4, 1))
    c1, c2 = layers.Conv2D(2, 1), layers.Conv2D(1, 1)
    model = keras.Model(inp, c2(c1(inp)))
    c1.set_weights([np.float32([10.0, -1.0]).reshape(1, 1, 1, 2), np.zeros(2, np.float32)])
    c2.set_weights([np.float32([1.0, 100.0]).reshape(1, 1, 2, 1), np.zeros(1, np.float32)])
    f32 = _f32(model)
    samples = np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 1)).astype(np.float32)
    (op1, *_), = pairs(parse(f32))
    t = int(op1.outputs[0])
    eq, report = equalize(f32, samples)
    assert report["equalized"] == 1
    v0, v1 = (run_outputs(expose(parse(m), [t]), samples)[0][0] for m in (f32, eq))
    assert v0.min() < -0.9 and v0.max() > 9.0  # the original tensor: [-1, 10]
    assert v1.min() >= v0.min() * (1 + 1e-5) and v1.max() <= v0.max() * (1 + 1e-5), (v1.min(), v1.max())
    assert np.max(np.abs(_run(f32, samples) - _run(eq, samples))) <= 1e-4 * np.max(np.abs(_run(f32, samples)))


def test_no_equalizable_pair_is_a_note_not_an_error(tmp_path):
    import keras
    from keras import layers

    inp = keras.Input((16, 16, 3))
    x = layers.MaxPooling2D()(layers.Conv2D(4, 3, activation="relu")(inp))  # a pool between: no pair
    model = keras.Model(inp, layers.Dense(10)(layers.Flatten()(layers.Conv2D(4, 3, activation="relu")(x))))
    f32 = _f32(model)
    same, report = equalize(f32, np.zeros((2, 16, 16, 3), np.float32))
    assert same == f32 and report["pairs"] == 0 and "no equalizable pair" in report["note"]
    src = _save(model, tmp_path / "m.keras")
    r = run_cli_in_process("convert", src, "-o", tmp_path / "q.tflite", "--quant", "int8", "--calibration", "photos",
                           "--num-calibration", "4", "--equalize", "--json")
    assert r.returncode == 0, r.stderr
    assert "no equalizable pair" in json.loads(r.stdout)["equalization"]["note"]


def _snr_vs_float(src, per_tensor: bool, equalize_it: bool) -> tuple[float, Prepared, bytes]:
    prep = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=32, per_tensor=per_tensor,
                                           equalize=equalize_it))
    original = prep.f32
    prep.calibrate()
    q = prep.quantized()
    from edgecnn.convert.rewrite.check import real_values, run_outputs

    x = prep.samples
    (qo, qp) = run_outputs(q, x)
    return snr_db(_run(original, x), real_values(qo[0], qp[0]).reshape(len(x), -1)), prep, q


def test_per_tensor_int8_gets_closer_to_float_and_stays_whole(tmp_path):
    """Per-tensor weights lose the narrow channels of this net; equalized, they keep them. The clips that keep
    float exact are dropped from the int8 model by the `minimum` pass, exactly (XNNPACK does not take int8
    MINIMUM), so the int8 graph has the same ops as without --equalize."""
    from edgecnn.tflite.reader import TfliteInfo

    src = _save(_unbalanced_net(), tmp_path / "m.keras")
    plain, _, q_plain = _snr_vs_float(src, per_tensor=True, equalize_it=False)
    equalized, prep, q = _snr_vs_float(src, per_tensor=True, equalize_it=True)
    assert equalized > plain + 6.0, (plain, equalized)
    assert prep.equalization["relu6_clips_added"] >= 1
    row = next(r for r in prep.rewrites[hash(q)] if r["pass"] == "minimum")
    assert row["applied"] and row["count"] == prep.equalization["relu6_clips_added"] and row["max_diff_steps"] == 0
    assert TfliteInfo(q).op_histogram() == TfliteInfo(q_plain).op_histogram()
    # the tensors equalization rescaled are renamed, so compare's per-layer table does not misread them
    from edgecnn.evaluate.layer_error import layer_errors

    f32 = _f32(_unbalanced_net())
    names = [r["tensor"] for r in layer_errors(f32, q, prep.samples[:4])]
    assert names and not any(";equalized" in n for n in names)
    assert any(";equalized" in r["tensor"] for r in layer_errors(prep.f32, q, prep.samples[:4]))


def test_equalize_is_for_int8_only():
    with pytest.raises(EdgecnnError, match="--equalize needs --quant int8"):
        ConversionRequest("float16", equalize=True)

"""Activation ranges from histograms (`--calibration-method percentile|mse`, edgecnn/convert/ranges.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.convert import ranges


def _hist(values_per_sample):
    h = ranges.Histograms(1)
    for v in values_per_sample:
        h.add_all([np.asarray(v, np.float32)])
    return h


def test_histogram_range_doubles_and_keeps_counts():
    rng = np.random.default_rng(0)
    samples = [rng.normal(0, 1, 1000), rng.normal(0, 1, 1000) * 8]  # the second sample is 8x wider
    h = _hist(samples)
    assert h.r[0] >= np.abs(samples[1]).max() and h.h[0].sum() == 2000
    x, n = h.values(0)
    assert np.all(np.diff(x) > 0) and n.sum() == 2000
    # the histogram's mean is the data's, to a bin width
    assert abs(float((x * n).sum() / n.sum()) - float(np.concatenate(samples).mean())) < 2 * h.r[0] / ranges.BINS


def test_several_tensors_in_one_call_keep_their_own_ranges():
    h = ranges.Histograms(3)
    h.add_all([np.float32([1.0, -1.0]), np.zeros(5, np.float32), np.float32([100.0] * 10000)])
    assert h.r[0] == 1.0 and h.r[1] == 0.0 and h.r[2] == 100.0
    assert h.h[0].sum() == 2 and h.h[1].sum() == 5 and h.h[2].sum() == ranges.PER_SAMPLE


def test_one_outlier_no_longer_sets_the_range():
    rng = np.random.default_rng(1)
    v = rng.uniform(0, 1, 20000)  # ReLU-like activations, and one outlier (0.005% of the values, < 0.01%)
    h = _hist([v[i::8] for i in range(8)] + [np.float32([50.0])])
    lo, hi = 0.0, 50.0
    assert ranges.clipped("minmax", h, 0, lo, hi) == (0.0, 50.0)
    p_lo, p_hi = ranges.clipped("percentile", h, 0, lo, hi)
    assert p_lo == 0.0 and 0.9 < p_hi < 1.2
    m_lo, m_hi = ranges.clipped("mse", h, 0, lo, hi)  # one value 50x away: clipping it costs more than it saves
    assert m_lo == 0.0 and 15.0 <= m_hi <= 50.0


def test_clipped_ranges_stay_inside_min_max_and_keep_zero():
    rng = np.random.default_rng(2)
    h = _hist([rng.uniform(0.5, 2.0, 500)])  # all positive: 0 must still be representable
    for method in ("percentile", "mse"):
        lo, hi = ranges.clipped(method, h, 0, 0.5, 2.0)
        assert lo == 0.0 and 0 < hi <= 2.0


def test_convert_with_each_method(tmp_path):
    """Every method converts; minmax is the default and stays the stock converter's; the report says which."""
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.errors import EdgecnnError
    from test_rewrite import _net, _save  # the small hard-swish net the rewrite tests use

    src = _save(_net("hard_swish"), tmp_path / "m.keras")
    for method in ranges.METHODS:
        r = convert_model(src, tmp_path / f"{method}.tflite",
                          ConversionRequest("int8", calibration="photos", num_calibration=16,
                                            calibration_method=method))
        assert r["calibration"]["method"] == method and r["request"]["calibration_method"] == method
    with pytest.raises(EdgecnnError, match="needs the fast calibrator"):
        convert_model(src, tmp_path / "s.tflite", ConversionRequest("int8", calibration="photos", num_calibration=4,
                                                                    calibration_method="mse", calibrator="stock"))
    with pytest.raises(EdgecnnError, match="--calibration-method 'kl'"):
        ConversionRequest("int8", calibration_method="kl")


def test_best_tries_every_method_on_held_out_samples_and_says_so(tmp_path):
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.errors import EdgecnnError
    from test_rewrite import _net, _save

    src = _save(_net("hard_swish"), tmp_path / "m.keras")
    r = convert_model(src, tmp_path / "best.tflite",
                      ConversionRequest("int8", calibration="photos", num_calibration=20, calibration_method="best"))
    b = r["calibration"]["best"]
    assert set(b["scores"]) == set(ranges.METHODS) and b["held_out_samples"] == 4
    assert b["chosen"] == r["calibration"]["method"]
    assert b["scores"][b["chosen"]]["snr_db"] == max(s["snr_db"] for s in b["scores"].values())
    with pytest.raises(EdgecnnError, match="at least 5 calibration samples"):
        convert_model(src, tmp_path / "few.tflite",
                      ConversionRequest("int8", calibration="photos", num_calibration=3, calibration_method="best"))


def test_one_pass_gives_every_method_and_minmax_is_unchanged(tmp_path):
    """calibrated_variants' minmax model is byte-identical to the plain min/max calibration (the stock-matching
    default must not move when histograms are collected alongside)."""
    from edgecnn.convert.fast_calibrator import calibrated_variants, fast_calibrate
    from tflite_models import float32_model

    data = float32_model()
    x = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)).astype(np.float32)
    v = calibrated_variants(data, x, ranges.METHODS)
    assert v["minmax"] == fast_calibrate(data, x) and set(v) == set(ranges.METHODS)


def _channels_apart(n=4):
    """n samples of a (1, 32, 32, 64) ReLU activation: channels 0, 16, 32, 48 span 0..1, the other 60 span 0..10
    (the channels a flat stride of 256 would see are the narrow ones)."""
    rng = np.random.default_rng(3)
    top = np.full(64, 10.0)
    top[::16] = 1.0
    return [(rng.uniform(0, 1, (1, 32, 32, 64)) * top).astype(np.float32) for _ in range(n)]


def test_subsample_sees_every_channel_equally():
    v = np.broadcast_to(np.arange(64, dtype=np.float32), (1, 32, 32, 64))
    for shape in [(1, 32, 32, 64), (1, 7, 7, 1024), (1, 96, 96, 16), (1, 112, 112, 64)]:
        t = np.broadcast_to(np.arange(shape[-1], dtype=np.float32), shape)
        counts = np.bincount(ranges.subsample(t).astype(np.int64), minlength=shape[-1])
        assert counts.min() == counts.max() > 0, shape  # every channel, each as often
        assert ranges.subsample(t).size <= max(ranges.PER_SAMPLE, shape[-1])
    assert ranges.subsample(v).size == ranges.PER_SAMPLE


def test_histogram_ranges_cover_every_channel_of_an_nhwc_activation():
    """The bug this guards against: a flat stride over NHWC saw 4 of 64 channels, and percentile gave [0, 1.0] and
    mse [0, 3.0] for a tensor 94% of whose channels reach 10."""
    samples = _channels_apart()
    h = ranges.Histograms(1)
    for s in samples:
        h.add_all([s])
    lo, hi = 0.0, float(max(s.max() for s in samples))
    allv = np.concatenate([s.reshape(-1) for s in samples])
    p_lo, p_hi = ranges.clipped("percentile", h, 0, lo, hi)
    assert p_lo == 0.0 and abs(p_hi - np.percentile(allv, ranges.PERCENTILE)) < 0.05
    m_lo, m_hi = ranges.clipped("mse", h, 0, lo, hi)
    assert m_lo == 0.0 and m_hi > 8.0  # clipping the wide channels at 3 would cost far more than it saves


def test_a_constant_activation_is_widened_only_when_it_is_near_zero():
    """The dead-activation widening (fast_calibrator.DEAD_WIDTH) is for tensors whose int8 range would be ~0 wide: a
    constant 0.3 keeps [0, 0.3] (it got [0.3, 1.3] -> [0, 1.3] when the test was on width alone), a constant 0
    still gets DEAD_RANGE."""
    import keras
    from keras import layers

    from edgecnn.convert.fast_calibrator import DEAD_RANGE, fast_calibrate
    from edgecnn.convert.frontend import float_tflite
    from edgecnn.tflite.reader import op_name, parse

    inp = keras.Input((4, 4, 1))
    const, dead = layers.Conv2D(1, 1), layers.Conv2D(1, 1)
    model = keras.Model(inp, layers.Concatenate()([inp, const(inp), dead(inp)]))
    const.set_weights([np.zeros((1, 1, 1, 1), np.float32), np.float32([0.3])])
    dead.set_weights([np.zeros((1, 1, 1, 1), np.float32), np.float32([0.0])])
    x = np.random.default_rng(0).uniform(0, 1, (4, 4, 4, 1)).astype(np.float32)
    m = parse(fast_calibrate(float_tflite(model, False, signature=False), x))
    sub = m.subgraphs[0]
    ranges_of = {int(op.outputs[0]): (op_name(m, op), round(float(q.min[0]), 6), round(float(q.max[0]), 6))
                 for op in sub.operators for q in [sub.tensors[int(op.outputs[0])].quantization]}
    # the converter computes the 0.3 constant as an ADD of its bias, the zero one as a CONV_2D
    assert ("CONV_2D", 0.0, DEAD_RANGE) in ranges_of.values(), ranges_of
    assert sorted(r[1:] for r in ranges_of.values() if r[0] != "CONCATENATION") == [(0.0, DEAD_RANGE), (0.3, 0.3)]

"""`convert --quality auto` (edgecnn/convert/auto.py): the options chosen on held-out calibration samples, each kept
only if it brings the model closer to float, the model written being those options rebuilt on every sample, and its
refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecnn.convert.converter import Prepared
from edgecnn.convert.request import ConversionRequest
from helpers import assert_one_line_error, run_cli_in_process
from test_equalize import _unbalanced_net
from test_rewrite import _save

N = 20  # calibration samples: 10 to calibrate, 10 held out


@pytest.fixture(scope="module")
def unbalanced(tmp_path_factory):
    """A net whose channels' weight ranges span orders of magnitude: per-tensor int8 loses its narrow channels and
    CLE gives them back (test_equalize: > 6 dB), so the equalize step has something to find."""
    return _save(_unbalanced_net(), tmp_path_factory.mktemp("auto") / "m.keras")


def _auto(src, per_tensor: bool) -> tuple[Prepared, bytes, bytes]:
    prep = Prepared(src, ConversionRequest("int8", calibration="photos", num_calibration=N, per_tensor=per_tensor,
                                           quality="auto"))
    original = prep.f32
    return prep, original, prep.build()


def test_per_tensor_keeps_what_helps_and_writes_what_the_plain_conversion_with_those_flags_writes(unbalanced):
    prep, original, data = _auto(unbalanced, per_tensor=True)
    q = prep.calib_desc["quality"]
    assert [s["step"] for s in q["steps"]] == ["ranges", "bias_correction", "equalize", "rebuild"]
    assert (q["fit_samples"], q["held_out_samples"]) == (10, 10) and prep.calib_desc["samples"] == N
    assert q["steps"][-1]["samples"] == N
    tried = q["steps"][0]["tried"]
    assert set(tried) == {"minmax", "percentile", "mse"}
    assert all(np.isfinite(s["snr_db"]) for s in tried.values())
    assert q["chosen"]["calibration_method"] == q["steps"][0]["kept"] == prep.calib_desc["method"]
    # a range method other than min/max, and each step, kept only if it beat what was kept before beyond the noise
    from edgecnn.convert.auto import NOISE_DB

    kept = q["steps"][0]["kept"]
    assert kept == "minmax" or tried[kept]["snr_db"] > tried["minmax"]["snr_db"] + NOISE_DB
    best = tried[kept]["snr_db"]
    for step in q["steps"][1:3]:
        assert step["kept"] == (step["score"]["snr_db"] > best + NOISE_DB), step
        best = step["score"]["snr_db"] if step["kept"] else best
    assert q["score"]["snr_db"] == best  # the held-out score of the options kept
    # this net's narrow channels: bias correction is kept, then CLE is judged on top of it (bias-corrected again) and
    # kept only for beating the corrected model (per-tensor)
    eq = q["steps"][2]
    assert q["steps"][1]["kept"] and eq["bias_correction"] is True and "+ equalize on the bias-corrected model" in q["why"]
    assert eq["pairs"] >= 1 and eq["kept"] and q["chosen"]["equalize"] and prep.equalization["pairs"] == eq["pairs"]
    # written: the options chosen on every sample, byte for byte what the plain conversion with those flags writes
    c = q["chosen"]
    plain = Prepared(unbalanced, ConversionRequest("int8", calibration="photos", num_calibration=N, per_tensor=True,
                                                   calibration_method=c["calibration_method"],
                                                   equalize=c["equalize"], bias_correction=c["bias_correction"]))
    assert data == plain.build() and plain.original_f32 == original
    report = prep.finish(data, unbalanced.parent / "auto_pt.tflite")
    assert (report["bias_correction"] is not None) == q["chosen"]["bias_correction"]
    assert report["equalization"]["pairs"] == eq["pairs"]


@pytest.mark.parametrize("n, split", [(4, (2, 2)), (5, (3, 2)), (70, (38, 32))], ids=["fewest", "odd", "at-most-32"])
def test_every_second_sample_is_held_out(unbalanced, n, split):
    prep = Prepared(unbalanced, ConversionRequest("int8", calibration="photos", num_calibration=n, quality="auto"))
    prep.build()
    q = prep.calib_desc["quality"]
    assert (q["fit_samples"], q["held_out_samples"]) == split and q["steps"][-1]["samples"] == n
    assert all(np.isfinite(s["snr_db"]) for s in q["steps"][0]["tried"].values())


def test_held_out_is_every_second_sample_up_to_the_cap():
    from edgecnn.convert.auto import MAX_HELD_OUT, held_out

    assert (held_out(64) == (np.arange(64) % 2 == 1)).all()  # the split benchmarks/auto_holdout.py replays
    big = held_out(200)  # past the cap: MAX_HELD_OUT odd samples, spread from the first to the last
    idx = np.flatnonzero(big)
    assert big.sum() == MAX_HELD_OUT and (idx % 2 == 1).all() and idx[0] == 1 and idx[-1] == 199


def test_a_range_method_is_kept_only_beyond_the_margin():
    from edgecnn.convert.auto import range_kept, snr_better

    tried = {"minmax": {"snr_db": 10.0}, "percentile": {"snr_db": 10.9}, "mse": {"snr_db": 11.5}}
    assert range_kept(tried, snr_better(1.0)) == "mse"
    assert range_kept(tried, snr_better(1.5)) == "minmax"  # no gain beyond the margin: the stock converter's
    tried["percentile"]["snr_db"] = 12.0
    assert range_kept(tried, snr_better(0.5)) == "percentile"  # the best of those beyond it
    assert not snr_better(1.0)({"snr_db": 11.0}, {"snr_db": 10.0})  # exactly the margin is not beyond it
    assert snr_better(1.0)({"snr_db": 11.01}, {"snr_db": 10.0})


def test_per_channel_skips_equalization_and_says_why(unbalanced):
    prep, _, _ = _auto(unbalanced, per_tensor=False)
    q = prep.calib_desc["quality"]
    eq = q["steps"][2]
    assert eq["step"] == "equalize" and not eq["kept"] and "per-channel" in eq["why"]
    assert prep.equalization is None and not q["chosen"]["equalize"]
    # timings_s is the written model's: no bias correction chosen, none timed (the trial's is in its step)
    assert not q["chosen"]["bias_correction"] and "bias_correction_s" not in prep.timings
    assert q["steps"][1]["step"] == "bias_correction" and q["steps"][1]["seconds"] > 0
    assert "no equalize: per-channel weights" in q["why"]


def test_cli_json_and_text_say_what_was_chosen(unbalanced, tmp_path):
    out = tmp_path / "a.tflite"
    r = run_cli_in_process("convert", unbalanced, "-o", out, "--quant", "int8", "--per-tensor", "--calibration",
                           "photos", "--num-calibration", N, "--quality", "auto", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["request"]["quality"] == "auto" and out.exists()
    q = doc["calibration"]["quality"]
    assert q["chosen"]["calibration_method"] == doc["calibration"]["method"] and q["why"].endswith(f"on the held-out samples; written calibrated on all {N} samples")
    r = run_cli_in_process("convert", unbalanced, "-o", tmp_path / "b.tflite", "--quant", "int8", "--calibration",
                           "photos", "--num-calibration", N, "--quality", "auto")
    assert r.returncode == 0, r.stderr
    assert "quality auto (options tried on 10 samples, scored on 10 held out)" in r.stdout


@pytest.mark.parametrize("extra, message", [
    (["--bias-correction"], "--quality auto chooses --bias-correction itself"),
    (["--equalize", "--calibration-method", "mse"], "--quality auto chooses --calibration-method, --equalize itself"),
    (["--calibrator", "stock"], "--quality auto needs the fast calibrator"),
    (["--max-accuracy-drop", "1", "--eval-data", "digits"], "--quality auto and --max-accuracy-drop"),
    (["--num-calibration", "3"], "--quality auto needs at least 4 calibration samples"),
], ids=["bias-correction", "two-options", "stock", "guided", "few-samples"])
def test_refusals_are_one_line(unbalanced, tmp_path, extra, message):
    out = tmp_path / "x.tflite"
    r = run_cli_in_process("convert", unbalanced, "-o", out, "--quant", "int8", "--calibration", "photos",
                           "--quality", "auto", *extra)
    assert_one_line_error(r, message)
    assert not out.exists()


def test_auto_is_for_int8_only(unbalanced, tmp_path):
    r = run_cli_in_process("convert", unbalanced, "-o", tmp_path / "x.tflite", "--quant", "float16",
                           "--quality", "auto")
    assert_one_line_error(r, "--quality auto needs --quant int8, not float16")

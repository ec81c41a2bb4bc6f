"""End to end on a small detector: train on a scenes:digits subset -> integer-only int8 -> COCO mAP of both.

Asserts structure only (what a 1-epoch run reaches depends on the machine's arithmetic, not on edgecnn): the int8
model is integer-only with int8 IO, keeps the three separate outputs, carries the detection spec, and both models
get mAP numbers in [0, 1] from boxes found on the same images, and compare's mAPs equal eval's. The training is the
suite's shared detector (deploy_models.DETECTOR: made by the first test that needs it, its summary kept); the
commands run in this process (`run_cli_in_process`: no TensorFlow start-up per command).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import deploy_models
from helpers import assert_detector_eval, run_cli_in_process

pytestmark = pytest.mark.slow


def test_train_int8_eval_detector(tmp_path):
    from edgecnn.tflite.interpreter import make_interpreter
    from edgecnn.tflite.metadata import read_spec

    keras_path, summary = deploy_models.trained(tmp_path, **deploy_models.DETECTOR)
    int8_path = tmp_path / "det_int8.tflite"
    assert summary["task"] == "detection" and summary["preprocessing"]["task"] == "detection"
    assert summary["preprocessing"]["labels"] == [str(i) for i in range(10)]
    assert np.isfinite(summary["loss_last_epoch"]) and np.isfinite(summary["test_loss"])

    proc = run_cli_in_process("convert", keras_path, "-o", int8_path, "--quant", "int8", "--calibration",
                              "scenes:digits", "--num-calibration", "32", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    interp = make_interpreter(int8_path)
    ins, outs = interp.get_input_details(), interp.get_output_details()
    assert [d["dtype"] for d in ins + outs] == [np.int8] * 4  # integer-only IO, three separate outputs
    assert [list(d["shape"][1:]) for d in outs] == [[8, 8, 10], [8, 8, 2], [8, 8, 2]]
    assert read_spec(int8_path).task == "detection"
    report = json.loads(proc.stdout)
    assert report["ops_in_float"] == []

    float_eval, int8_eval = assert_detector_eval(keras_path, int8_path, limit=48, run=run_cli_in_process)

    proc = run_cli_in_process("compare", keras_path, int8_path, "--data", "scenes:digits", "--limit", "48",
                              "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["task"] == "detection" and r["labeled"] and r["n"] == 48
    # one scoring path: compare's mAPs are eval's, number for number (same boxes, clipping and pixel frame)
    assert (r["float_map"], r["float_map50"]) == (float_eval["map"], float_eval["map50"])
    assert (r["quant_map"], r["quant_map50"]) == (int8_eval["map"], int8_eval["map50"])
    assert set(r["output_snr_db"]) == {"heatmap", "size", "offset"}
    assert abs(r["drop50_points"] - 100 * (r["float_map50"] - r["quant_map50"])) < 1e-9
    assert r["worst_layers"] and r["layers_compared"] > 10
    proc = run_cli_in_process("compare", keras_path, int8_path, "--data", "scenes:digits", "--limit", "8")
    assert proc.returncode == 0 and "box agreement" in proc.stdout and "mAP@.5" in proc.stdout, proc.stderr[-2000:]

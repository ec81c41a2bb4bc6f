"""`edgecnn eval` and `edgecnn compare`: accuracy for every IO dtype, drop, agreement, per-layer error."""

import json

import numpy as np
import pytest

from helpers import assert_one_line_error, run_cli_in_process
from edgecnn.convert.converter import convert_model
from edgecnn.convert.request import ConversionRequest
from edgecnn.evaluate.accuracy import evaluate
from edgecnn.tflite.quant import dequantize, quantize
from edgecnn.train.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    k = d / "lenet5.keras"
    train(TrainConfig("lenet5", "digits", epochs=6, input_size=32), k, progress=False)
    out = {"keras": k}
    for name, req in {"f32": ConversionRequest("float32"), "int8": ConversionRequest("int8", calibration="digits"),
                      "uint8": ConversionRequest("int8", io="uint8", calibration="digits"),
                      "pt": ConversionRequest("int8", per_tensor=True, calibration="digits")}.items():
        convert_model(k, d / f"{name}.tflite", req)
        out[name] = d / f"{name}.tflite"
    return out


def test_quantize_dequantize_round_trip():
    d = {"dtype": np.int8, "quantization": (0.5, -3), "name": "x"}
    x = np.array([-100.0, -1.0, 0.0, 1.25, 60.0, 100.0], dtype=np.float32)
    q = quantize(x, d)
    assert q.dtype == np.int8 and q.tolist() == [-128, -5, -3, -1, 117, 127]  # clipped, rounded half to even
    np.testing.assert_allclose(dequantize(q, d)[1:5], [-1.0, 0.0, 1.0, 60.0])


def test_eval_every_io_dtype_agrees(models):
    res = {name: evaluate(p, "digits") for name, p in models.items()}
    ref = res["keras"]["top1"]
    assert res["keras"]["n"] == 359 and ref > 0.85
    assert res["f32"]["top1"] == pytest.approx(ref, abs=1e-9)
    for name in ("int8", "uint8", "pt"):
        assert abs(res[name]["top1"] - ref) < 0.02, (name, res[name], ref)
        assert res[name]["top5"] >= res[name]["top1"]


def test_compare_reports_drop_agreement_and_layers(models):
    p = run_cli_in_process("compare", models["keras"], models["int8"], "--data", "digits", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["n"] == 359 and 0.95 <= r["agreement"] <= 1.0
    assert r["drop_points"] == pytest.approx(100 * (r["float_top1"] - r["quant_top1"]))
    assert len(r["per_class"]) == 10 and sum(c["n"] for c in r["per_class"]) == 359
    layers = r["worst_layers"]
    assert r["layers_compared"] >= 6 and layers[0]["rmse_over_scale"] >= layers[-1]["rmse_over_scale"]
    assert {"CONV_2D", "FULLY_CONNECTED"} <= {w["op"] for w in layers}
    # well-quantized layers sit near pure rounding noise (1/sqrt(12) ~ 0.29 of a step)
    assert 0.1 < np.median([w["rmse_over_scale"] for w in layers]) < 1.5


def test_per_tensor_error_is_higher_on_conv(models):
    from edgecnn.evaluate.compare import compare

    pc = {w["tensor"]: w for w in compare(models["keras"], models["int8"], "digits", top_layers=100)["worst_layers"]}
    pt = {w["tensor"]: w for w in compare(models["keras"], models["pt"], "digits", top_layers=100)["worst_layers"]}
    common = [t for t in pc if t in pt and pc[t]["op"] == "CONV_2D"]
    assert common
    assert sum(pt[t]["relative_rmse"] for t in common) >= sum(pc[t]["relative_rmse"] for t in common) * 0.9


def test_eval_cli_and_bad_inputs(models, tmp_path):
    p = run_cli_in_process("eval", models["keras"], models["int8"], "--data", "digits", "--json")
    assert p.returncode == 0, p.stderr
    assert [r["n"] for r in json.loads(p.stdout)] == [359, 359]
    assert_one_line_error(run_cli_in_process("eval", tmp_path / "none.tflite", "--data", "digits"), "does not exist")
    assert_one_line_error(run_cli_in_process("eval", models["int8"], "--data", "fashion-mnistt"), "did you mean")
    rnd = tmp_path / "r.tflite"
    rnd.write_bytes(b"\x00" * 4 + b"TFL3" + np.random.default_rng(0).bytes(200))
    assert_one_line_error(run_cli_in_process("eval", rnd, "--data", "digits"), "r.tflite")
    assert_one_line_error(run_cli_in_process("compare", models["keras"], models["keras"], "--data", "digits"),
                          "must be a .tflite")


def test_top1_ties_resolve_like_argmax():
    """int8 outputs tie often; top-1 must count a tie exactly as argmax does (compare/per-class use argmax)."""
    from edgecnn.tasks.classification import topk

    scores = np.zeros((50, 10), dtype=np.float32)
    scores[:, 3] = scores[:, 7] = 0.5  # every row ties between class 3 and class 7
    labels = np.full(50, 3)
    assert topk(scores, labels, 1) == 1.0 == float(np.mean(scores.argmax(1) == labels))
    assert topk(scores, np.full(50, 7), 2) == 1.0

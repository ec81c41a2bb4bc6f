"""Label-free `edgecnn compare` (agreement, output SNR, KL on a flat folder of photos) and the --scale/--offset,
--mean/--std flags that let `eval` and `compare` feed a foreign model without a preprocessing spec."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgecnn.data.spec import InputScaling, PreprocessSpec, spec_for
from edgecnn.errors import EdgecnnError
from edgecnn.metrics import SNR_CAP_DB, snr_db
from edgecnn.tasks.classification import kl_divergence, output_agreement
from helpers import assert_one_line_error, run_cli_in_process

AGREEMENT_KEYS = {"labeled", "top1_agreement", "top5_agreement", "agreement", "snr_db", "kl_divergence", "kl_on",
                  "worst_layers", "layers_compared", "n"}
ACCURACY_KEYS = {"float_top1", "quant_top1", "float_top5", "quant_top5", "drop_points", "ratio", "per_class"}


@pytest.fixture(autouse=True)
def repo_calibration(monkeypatch):
    """`photos` is the shipped calibration/photos set, whatever the environment points at."""
    monkeypatch.delenv("EDGECNN_CALIBRATION_DIR", raising=False)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A tiny Keras CNN saved with an edgecnn spec, its float32 .tflite and its int8 .tflite (photos calibration)."""
    import keras
    from keras import layers

    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.modelfile import save_model

    d = tmp_path_factory.mktemp("compare")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(6, activation="softmax")(x))
    save_model(model, d / "m.keras", PreprocessSpec(16, 16, 3, labels=tuple("abcdef")))
    for mode in ("float32", "int8"):
        convert_model(d / "m.keras", d / f"{mode}.tflite",
                      ConversionRequest(mode, calibration="photos" if mode == "int8" else None, num_calibration=16))
    return {"keras": d / "m.keras", "f32": d / "float32.tflite", "int8": d / "int8.tflite"}


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A float32 .tflite and its int8 version made by TensorFlow alone: no spec, inputs in [0, 1], 8x8x1."""
    from tflite_models import float32_model, quantized_model, write

    d = tmp_path_factory.mktemp("foreign")
    return write(d, "f.tflite", float32_model()), write(d, "q.tflite", quantized_model("int8"))


def test_metrics_on_known_outputs():
    f = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    same = output_agreement(f, f)
    assert same["top1_agreement"] == 1.0 and same["snr_db"] == SNR_CAP_DB and same["kl_divergence"] == 0.0
    assert same["kl_on"] == "probabilities"
    q = np.array([[0.5, 0.4, 0.1], [0.6, 0.1, 0.3]], np.float32)  # second sample flips its top-1
    r = output_agreement(f, q)
    assert r["top1_agreement"] == 0.5 and r["top5_agreement"] == 1.0
    noise = np.sum((f - q).astype(np.float64) ** 2)
    assert r["snr_db"] == pytest.approx(10 * math.log10(np.sum(f.astype(np.float64) ** 2) / noise))
    expect = np.mean(np.sum(f * np.log(f / q), axis=1))  # no zeros: the epsilon clip changes nothing here
    assert r["kl_divergence"] == pytest.approx(expect, rel=1e-4)
    logits = np.log(f) + 3.0  # softmax(logits) == f: logits are softmaxed, so the KL is the same
    assert kl_divergence(logits, np.log(q))[0] == pytest.approx(expect, rel=1e-4)
    assert kl_divergence(logits, np.log(q))[1] == "softmax"
    assert snr_db(np.zeros((1, 3)), np.ones((1, 3))) == -SNR_CAP_DB


def test_compare_on_unlabeled_photos(own):
    from edgecnn.evaluate.compare import compare

    r = compare(own["keras"], own["int8"], "calibration:photos", limit=24, top_layers=3)
    assert AGREEMENT_KEYS <= set(r) and not ACCURACY_KEYS & set(r)
    assert r["labeled"] is False and r["n"] == 24 and r["data"] == "calibration:photos"
    assert 0.0 <= r["top1_agreement"] <= r["top5_agreement"] <= 1.0 and r["agreement"] == r["top1_agreement"]
    assert math.isfinite(r["snr_db"]) and 0.0 < r["snr_db"] < SNR_CAP_DB
    assert r["kl_divergence"] >= 0.0 and r["kl_on"] == "probabilities"  # softmax head
    assert r["layers_compared"] >= 3 and len(r["worst_layers"]) == 3


def test_compare_a_model_with_itself(own):
    p = run_cli_in_process("compare", own["f32"], own["f32"], "--data", "photos", "--limit", 8, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)  # strict JSON: no Infinity
    assert r["top1_agreement"] == 1.0 and r["snr_db"] == SNR_CAP_DB and r["kl_divergence"] == pytest.approx(0.0)
    assert r["layers_compared"] == 0  # nothing quantized


def test_compare_human_output(own):
    p = run_cli_in_process("compare", own["keras"], own["int8"], "--data", "photos", "--limit", 8, "--layers", 2)
    assert p.returncode == 0, p.stderr
    head = p.stdout.splitlines()[0]
    assert head.startswith("8 unlabeled images: top-1 agreement ") and " dB " in head and "KL(float||quant)" in head
    assert "float top-1" not in p.stdout and "per-class" not in p.stdout and "worst layers" in p.stdout


def test_foreign_models_take_the_scaling_flags(foreign):
    f, q = foreign
    p = run_cli_in_process("compare", f, q, "--data", "calibration:photos", "--limit", 16, "--mean", 0, "--std", 255,
                           "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["n"] == 16 and r["labeled"] is False and r["snr_db"] > 0 and r["kl_divergence"] >= 0
    p = run_cli_in_process("eval", f, q, "--data", "digits", "--limit", 20, "--scale", 1 / 255, "--json")
    assert p.returncode == 0, p.stderr
    assert [row["n"] for row in json.loads(p.stdout)] == [20, 20]
    for cmd in (("compare", f, q, "--data", "photos"), ("eval", q, "--data", "digits")):
        assert_one_line_error(run_cli_in_process(*cmd), f"{cmd[1]}: no saved preprocessing spec", "--scale/--offset",
                              "--mean/--std")
    assert_one_line_error(run_cli_in_process("eval", q, "--data", "digits", "--scale", 1, "--std", 2), "pass one pair")


def test_eval_on_a_flat_folder_needs_labels(own):
    assert_one_line_error(run_cli_in_process("eval", own["int8"], "--data", "calibration:photos"),
                          "calibration:photos: a flat folder of unlabeled images; eval needs labels")


def test_spec_for_flags_and_saved_specs():
    saved = PreprocessSpec(8, 8, 1, labels=("a", "b"))
    assert spec_for((8, 8, 1), saved, None, "m") is saved
    s = spec_for((8, 8, 1), saved, InputScaling(mean=127.5, std=127.5), "m")
    assert (s.scale, s.offset, s.labels) == (pytest.approx(1 / 127.5), -1.0, ("a", "b"))
    s = spec_for(np.array([32, 24, 3], np.int32), None, InputScaling(scale=1.0), "m")
    assert (s.input_shape, s.scale, s.offset) == ((32, 24, 3), 1.0, 0.0)
    assert spec_for((8, 8, 3), None, None, "m", required=False).scale == pytest.approx(1 / 255)
    with pytest.raises(EdgecnnError, match=r"^m: no saved preprocessing spec; .*--scale/--offset.*--mean/--std"):
        spec_for((8, 8, 3), None, None, "m")
    with pytest.raises(EdgecnnError, match=r"m: input shape \[-1, -1, 3\] is not a fixed-size image"):
        spec_for((None, None, 3), None, InputScaling(scale=1.0), "m")
    with pytest.raises(EdgecnnError, match="--std 0"):
        spec_for((8, 8, 3), None, InputScaling(std=0.0), "m")

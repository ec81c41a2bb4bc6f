"""`edgecnn convert` with a float `.tflite` as the model: int8 keeps the task output, spec from the flags or from the
file, float16 as TF writes it, float16-weight sources widened, and one line for what cannot be converted."""

import json

import numpy as np
import pytest

import tflite_models
from helpers import assert_one_line_error, run_cli_in_process
from edgecnn.convert.converter import convert_model
from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError
from edgecnn.tflite.metadata import read_spec

tflite_zoo = pytest.fixture(scope="session")(tflite_models.zoo_fixture)
PREP = dict(scale=1 / 127.5, offset=-1.0)  # --mean 127.5 --std 127.5


def _photos(h=32, w=32):
    from edgecnn.data.sources import load_split
    from edgecnn.data.spec import PreprocessSpec

    return PreprocessSpec(h, w, 3, **PREP).apply(load_split("photos", "all").images)


def _photo_classifier():
    """A small conv net with a whitened random read-out: on the photos its 4 classes are all predicted, with wide
    margins (an untrained net's outputs are near ties, where any rounding flips the top-1)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))  # no batch size: the .tflite has a dynamic batch, which convert fixes to 1
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    feat = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(feat))
    f = keras.Model(inp, feat).predict(_photos(), verbose=0)
    k = np.random.default_rng(0).normal(size=(16, 4)).astype("float32") / (f.std(0)[:, None] + 1e-6)
    model.layers[-1].set_weights([k, -(f @ k).mean(0)])
    return model


@pytest.fixture(scope="session")
def float_tflite(tmp_path_factory):
    """The classifier as a float .tflite written by TF's own converter: no edgecnn spec inside."""
    tf = tflite_models._tf()
    path = tmp_path_factory.mktemp("tfl") / "float.tflite"
    path.write_bytes(tflite_models._convert(tf.lite.TFLiteConverter.from_keras_model(_photo_classifier())))
    return path


def _agreement(a, b):
    from edgecnn.evaluate.predict import predict_tflite

    x = _photos()
    fa, fb = predict_tflite(a, x), predict_tflite(b, x)
    return float(np.mean(fa.argmax(1) == fb.argmax(1))), fa


def test_float_tflite_to_int8_keeps_top1(float_tflite, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    src = Interpreter(model_path=str(float_tflite)).get_input_details()[0]
    assert list(src["shape_signature"]) == [-1, 32, 32, 3] and read_spec(float_tflite) is None
    out = tmp_path / "q.tflite"
    p = run_cli_in_process("convert", float_tflite, "-o", out, "--quant", "int8", "--calibration", "photos", "--mean",
                           "127.5", "--std", "127.5", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["inputs"][0]["dtype"] == "int8" and r["inputs"][0]["shape"] == [1, 32, 32, 3]
    assert r["ops_in_float"] == [] and r["source_notes"] == ["dynamic batch fixed to 1"]
    spec = read_spec(out)
    assert (spec.height, spec.width, spec.channels) == (32, 32, 3)
    assert spec.scale == pytest.approx(PREP["scale"]) and spec.offset == pytest.approx(PREP["offset"])
    agree, f = _agreement(float_tflite, out)
    top = np.sort(f, 1)
    assert len(set(f.argmax(1))) == 4 and np.median(top[:, -1] - top[:, -2]) > 0.3  # a test that can fail
    assert agree >= 0.9, agree


def test_no_spec_and_no_flags_names_the_flags(float_tflite, tmp_path):
    assert_one_line_error(run_cli_in_process("convert", float_tflite, "-o", tmp_path / "q.tflite", "--quant", "int8",
                                             "--calibration", "photos"),
                          "float.tflite: no saved preprocessing spec", "--scale/--offset", "--mean/--std")
    assert not (tmp_path / "q.tflite").exists()


def test_tflite_with_an_edgecnn_spec_needs_no_flags(tmp_path):
    from edgecnn.data.spec import PreprocessSpec
    from edgecnn.modelfile import save_model

    spec = PreprocessSpec(32, 32, 3, **PREP, labels=("a", "b", "c", "d"))
    keras_path = save_model(_photo_classifier(), tmp_path / "m.keras", spec)
    f32 = tmp_path / "f32.tflite"
    convert_model(keras_path, f32, ConversionRequest("float32"))
    r = convert_model(f32, tmp_path / "q.tflite", ConversionRequest("int8", calibration="photos"))
    assert read_spec(tmp_path / "q.tflite") == spec and r["preprocessing"] == spec.to_dict()
    assert r["inputs"][0]["dtype"] == "int8" and r["source_notes"] == []
    assert _agreement(f32, tmp_path / "q.tflite")[0] >= 0.9


@pytest.mark.parametrize("name,held", [("int8", "int8 activations, int8 weights"),
                                       ("uint8", "int8/uint8 activations, int8 weights")])
def test_already_quantized_is_one_line(tflite_zoo, tmp_path, name, held):
    assert_one_line_error(run_cli_in_process("convert", tflite_zoo[name], "-o", tmp_path / "q.tflite", "--quant",
                                             "int8", "--calibration", "photos", "--scale", "0.0039"),
                          f"{name}.tflite: is already quantized ({held})", "float source")


@pytest.mark.parametrize("name,needle", [("multi_io", "has 2 inputs"), ("control_flow", "subgraphs (control flow)"),
                                         ("custom_op", "custom op(s) EdgecnnMissingOp")])
def test_what_convert_cannot_take(tflite_zoo, tmp_path, name, needle):
    with pytest.raises(EdgecnnError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        convert_model(tflite_zoo[name], tmp_path / "q.tflite", ConversionRequest("float32"))


def test_fixed_batch_above_one_is_refused(tmp_path):
    import keras

    tf = tflite_models._tf()
    inp = keras.Input((8, 8, 1), batch_size=2)
    model = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    data = tflite_models._convert(tf.lite.TFLiteConverter.from_keras_model(model))
    path = tflite_models.write(tmp_path, "b2.tflite", data)
    with pytest.raises(EdgecnnError, match="input batch is 2"):
        convert_model(path, tmp_path / "q.tflite", ConversionRequest("float32"))


def test_float16_from_tflite_is_what_tf_writes(tflite_zoo, tmp_path):
    """Same structure (DEQUANTIZE ops, float16 weights) and the same outputs as TF's float16 converter."""
    from edgecnn.evaluate.predict import predict_tflite
    from edgecnn.tflite.reader import TfliteInfo

    out = tmp_path / "f16.tflite"
    r = convert_model(tflite_zoo["float32"], out, ConversionRequest("float16"))
    tf16 = TfliteInfo(tflite_zoo["float16"].read_bytes())
    assert r["op_histogram"] == tf16.op_histogram() and r["weight_dtypes"] == tf16.weight_dtypes()
    assert r["weight_dtypes"]["float16"] == 4
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(predict_tflite(out, x), predict_tflite(tflite_zoo["float16"], x))


def test_float16_weight_source_is_widened_exactly(tflite_zoo, tmp_path):
    """A float16-weight .tflite (how MediaPipe ships models) is read as the float32 model it stands for."""
    from edgecnn.evaluate.predict import predict_tflite

    out = tmp_path / "f32.tflite"
    r = convert_model(tflite_zoo["float16"], out, ConversionRequest("float32"))
    assert r["source_notes"] == ["4 float16 weight tensor(s) widened to float32 (exact)"]
    assert "DEQUANTIZE" not in r["op_histogram"] and r["weight_dtypes"] == {"float32": 4, "int32": 1}
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(predict_tflite(out, x), predict_tflite(tflite_zoo["float16"], x))
    q = convert_model(tflite_zoo["float16"], tmp_path / "q.tflite", ConversionRequest("int8", calibration="photos",
                                                                                      scale=1 / 255))
    assert q["inputs"][0]["dtype"] == "int8" and q["ops_in_float"] == []


def test_int16x8_from_tflite(float_tflite, tmp_path):
    out = tmp_path / "q16.tflite"
    r = convert_model(float_tflite, out, ConversionRequest("int16x8", calibration="photos", mean=127.5, std=127.5))
    assert r["inputs"][0]["dtype"] == "int16" and _agreement(float_tflite, out)[0] >= 0.95


def test_dynamic_from_tflite_is_one_line(float_tflite, tmp_path):
    assert_one_line_error(run_cli_in_process("convert", float_tflite, "-o", tmp_path / "d.tflite", "--quant",
                                             "dynamic", "--mean", "127.5", "--std", "127.5"),
                          "--quant dynamic from a .tflite is not supported yet")


def test_guided_and_edgetpu_take_a_float_tflite(float_tflite, tmp_path, monkeypatch):
    """The other convert paths go through the same `Prepared`: the guided mode and the Edge TPU target."""
    import os
    import sys

    from edgecnn.convert.request import ConversionRequest
    from edgecnn.guided import guided_convert

    req = ConversionRequest("int8", calibration="photos", mean=127.5, std=127.5)
    r = guided_convert(float_tflite, tmp_path / "g.tflite", req, 100.0, "digits")
    assert r["guided"]["kept_in_float"] == [] and read_spec(tmp_path / "g.tflite") is not None
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + ":/usr/bin:/bin")  # no edgetpu_compiler here
    p = run_cli_in_process("convert", float_tflite, "-o", tmp_path / "tpu.tflite", "--quant", "int8", "--calibration",
                           "photos", "--mean", "127.5", "--std", "127.5", "--target", "edgetpu", "--json")
    assert p.returncode == 0, p.stderr
    tpu = json.loads(p.stdout)["edgetpu"]
    assert tpu["preflight"]["maps_fully"] and tpu["compiler"]["compiled"] is False


def test_a_corrupt_tflite_is_one_line(tmp_path):
    """Garbage behind a TFL3 header parses as a model without a graph: one line, nothing written."""
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0\0\0\0TFL3" + b"garbage" * 4)
    assert_one_line_error(run_cli_in_process("convert", bad, "-o", tmp_path / "q.tflite", "--quant", "int8",
                                             "--calibration", "photos", "--mean", "0", "--std", "1"),
                          "bad.tflite: the model has no subgraph")
    assert not (tmp_path / "q.tflite").exists()

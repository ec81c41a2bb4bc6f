"""Guided mode with int16 before float (`--max-accuracy-drop` where the target runs int16): the worst tensors go to
int16 end to end until the drop is within the limit, the plan found is written beside the model and makes the same
model again with `--precision`; without labels the drop is in agreement with float.

The model is test_precision's `_wide`: one depthwise output channel FACTOR x the others, so int8's scale for that
tensor is too coarse for the rest, and int16 on it (producer and reader) gives them back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import require
from edgecnn.convert.request import ConversionRequest
from edgecnn.guided import guided_convert
from helpers import run_cli_in_process
from test_precision import _wide

FACTOR = 80.0  # int8 keeps 0.70 top-1 agreement with float on the 64 photos, int16 on the wide tensor 0.98
LIMIT = 5.0  # points of top-1 agreement with float on the 64 photos


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    from edgecnn.convert.mixed import available

    require(available(), "ai-edge-quantizer is not installed (pip install 'edgecnn[precision]')")
    return _wide(tmp_path_factory.mktemp("guided16") / "wide.keras", FACTOR)


def _req(**kw) -> ConversionRequest:
    return ConversionRequest("int8", io="float32", calibration="photos", num_calibration=32, **kw)


def test_int16_reaches_the_limit_before_any_float_and_writes_its_plan(wide, tmp_path):
    from edgecnn.convert.precision import load_plan

    out = tmp_path / "g.tflite"
    r = guided_convert(wide, out, _req(), LIMIT, "photos", eval_limit=64)
    g = r["guided"]
    assert not g["labeled"] and g["metric"] == "classification agreement with float" and g["float_value"] == 1.0
    assert g["steps"][0]["drop_points"] > LIMIT  # plain int8 misses the limit on this model: there was a search
    i16 = g["int16"]
    assert i16["tried"] and i16["reached"] and i16["steps"] and not g["kept_in_float"] and g["floor"] is None
    assert g["final_drop_points"] <= LIMIT and g["final_value"] == i16["value"]
    # the plan file, beside the model, is the plan the written model holds: int16 where it says, int8 elsewhere
    plan = load_plan(i16["plan_file"])
    assert i16["plan_file"] == str(out.with_suffix(".precision.yaml")) and len(plan.rules) == i16["int16_ops"]
    counts = r["precision"]["counts"]
    assert counts.get("int16", 0) >= 1 and "float" not in counts
    assert {x["output"] for x in r["precision"]["ops"] if x["precision"] == "int16"} == {
        x["output"] for x in r["precision"]["ops"] if x["planned"] == "int16"}
    # the written model is the one measured; the plan file makes it again
    from edgecnn import guided
    from edgecnn.convert.converter import Prepared

    prep = Prepared(wide, _req())
    ev = guided.EvalSet(wide, prep.spec, "photos", 64)
    assert guided._metric(prep.f32, ev) == 1.0
    assert guided._metric(out.read_bytes(), ev) == pytest.approx(g["final_value"])
    again = tmp_path / "again.tflite"
    c = run_cli_in_process("convert", wide, "-o", again, "--quant", "int8", "--io", "float32", "--calibration",
                           "photos", "--num-calibration", "32", "--precision", i16["plan_file"], "--json")
    assert c.returncode == 0, c.stderr
    assert json.loads(c.stdout)["precision"]["counts"] == counts


def test_a_target_without_int16_goes_to_float_and_says_why(wide, tmp_path):
    from edgecnn import guided
    from edgecnn.convert.converter import Prepared

    prep = Prepared(wide, _req(target="edgetpu"))
    got = guided._int16_search(prep, ["x"], None, 1.0, 0.0, print, 8)
    assert got == {"tried": False, "why": "--target edgetpu runs int8 only"}


def test_unlabeled_cli_run_reports_int16(wide, tmp_path):
    out = tmp_path / "c.tflite"
    r = run_cli_in_process("convert", wide, "-o", out, "--quant", "int8", "--io", "float32", "--calibration",
                           "photos", "--num-calibration", "32", "--max-accuracy-drop", str(LIMIT), "--eval-data",
                           "photos", "--json")
    assert r.returncode == 0, r.stderr
    g = json.loads(r.stdout)["guided"]
    assert g["int16"]["reached"] and out.with_suffix(".precision.yaml").exists() and out.exists()
    assert np.isfinite(g["final_drop_points"]) and g["final_drop_points"] <= LIMIT


def test_covering_takes_producer_and_readers_and_keeps_names_literal():
    """`precision.covering`: the ranked tensor's producer and every reader int16, ops without an int16 kernel on the
    target left int8, names matched literally (a capitals name is no op type, a dot no wildcard)."""
    from types import SimpleNamespace as Op

    from edgecnn.convert.precision import covering

    ops = [Op(op="CONV_2D", inputs=[0], outputs=[1], output_names=["Y"]),
           Op(op="HARD_SWISH", inputs=[1], outputs=[2], output_names=["act.0"]),
           Op(op="ADD", inputs=[1, 2], outputs=[3], output_names=["sum"]),
           Op(op="MEAN", inputs=[3], outputs=[4], output_names=["mean"])]
    plan = covering(Op(ops=ops), ["Y"], "cpu")
    assert [r.match for r in plan.rules] == ["(?:Y)", "(?:sum)"]  # HARD_SWISH has no int16 kernel in LiteRT
    assert all(r.precision == "int16" and not r.is_op_type for r in plan.rules)
    assert plan.rules[0].matches("CONV_2D", "Y") and not plan.rules[0].matches("CONV_2D", "YY")
    assert covering(Op(ops=ops), ["act.0"], "cpu").rules[0].match == "(?:sum)"
    assert covering(Op(ops=ops[1:2]), ["act.0"], "tflm") is None  # nothing left to put in int16
    # through reshapes and concatenations to the op that computes with the tensor (BlazeFace's score heads)
    heads = ops + [Op(op="RESHAPE", inputs=[4], outputs=[5], output_names=["r"]),
                   Op(op="CONCATENATION", inputs=[5, 9], outputs=[6], output_names=["cat"]),
                   Op(op="LOGISTIC", inputs=[6], outputs=[7], output_names=["p"])]
    assert [r.match for r in covering(Op(ops=heads), ["mean"], "cpu").rules] == [
        "(?:mean)", "(?:r)", "(?:cat)", "(?:p)"]
    # an activation int8 fuses into the op before it: that op is the layer (BlazeFace's ADD then RELU)
    fused = [Op(op="ADD", inputs=[0, 9], outputs=[1], output_names=["add"]),
             Op(op="RELU", inputs=[1], outputs=[2], output_names=["act"]),
             Op(op="CONV_2D", inputs=[2], outputs=[3], output_names=["conv"])]
    assert [r.match for r in covering(Op(ops=fused), ["act"], "cpu").rules] == ["(?:add)", "(?:act)", "(?:conv)"]


def test_int16_is_not_tried_where_a_mixed_model_cannot_be_made(wide):
    from edgecnn import guided
    from edgecnn.convert.converter import Prepared

    prep = Prepared(wide, ConversionRequest("int8", io="uint8", calibration="photos", num_calibration=8))
    got = guided._int16_search(prep, ["x"], None, 1.0, 0.0, print, 8)
    assert got == {"tried": False, "why": "--io uint8: a mixed model has int8 or float32 inputs/outputs"}


def test_an_integer_only_target_never_falls_back_to_float(wide, tmp_path):
    """On TFLite Micro (integer-only) guided mode has int16 only: it reaches the limit with it, or refuses in one
    line; no layer is ever kept in float."""
    from edgecnn.guided import UnreachableDrop

    out = tmp_path / "m.tflite"
    try:
        r = guided_convert(wide, out, _req(target="tflm"), 0.0, "photos", eval_limit=64)
    except UnreachableDrop as exc:
        assert "--target tflm, which is integer-only" in str(exc) and "no layer may stay in float" in str(exc)
        assert not out.exists()
    else:
        assert r["guided"]["int16"]["reached"] and not r["guided"]["kept_in_float"]
        assert "float" not in r["precision"]["counts"]

"""Accuracy-guided int8 (`--max-accuracy-drop`): keeps layers in float until the drop is within the limit."""

import pytest

from edgecnn.guided import UnreachableDrop, guided_convert
from edgecnn.convert.request import ConversionRequest
from edgecnn.errors import EdgecnnError
from edgecnn.evaluate.accuracy import evaluate
from edgecnn.train.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def v3_digits(tmp_path_factory):
    """MobileNetV3-Small (hard-swish, squeeze-excite) trained on digits: the family int8 hurts most."""
    out = tmp_path_factory.mktemp("guided") / "v3.keras"
    r = train(TrainConfig("mobilenet_v3_small", "digits", epochs=5, input_size=32, knobs={"alpha": 0.35}), out,
              progress=False)
    assert r["test_top1"] > 0.5, r  # trained for real, batch-norm statistics settled
    return out


@pytest.mark.slow
def test_guided_reaches_the_limit(v3_digits, tmp_path):
    """Holds for any trained model: guided mode reaches the limit, or refuses before searching with the floor it
    cannot go below; a limit at that floor is then reachable by construction (every ranked layer in float)."""
    out = tmp_path / "g.tflite"
    req = ConversionRequest("int8", calibration="digits")
    try:
        r = guided_convert(v3_digits, out, req, 0.0, "digits")
        limit = 0.0
    except UnreachableDrop as exc:  # what int8 IO and the unranked ops lose on this machine's trained model
        assert exc.floor_points > 0.0 and "--io float32" in str(exc) and not out.exists()
        limit = exc.floor_points
        r = guided_convert(v3_digits, out, req, limit, "digits")
        floor = r["guided"]["floor"]  # None when full int8 already meets the limit: no search, no floor
        assert floor is None or floor["drop_points"] <= limit
    g = r["guided"]
    assert g["final_drop_points"] <= limit + 1e-9
    first = g["steps"][0]
    if first["drop_points"] > limit:  # full int8 lost more than the limit: layers went to int16 or back to float
        i16 = g["int16"] or {}
        assert i16.get("reached") or (g["kept_in_float"] and len(g["steps"]) >= 2)
        if not i16.get("reached"):
            assert g["cost"]["size_bytes_guided"] > g["cost"]["size_bytes_full_int8"]
        else:  # the written model holds the plan found, beside it
            assert r["precision"]["counts"].get("int16") and (tmp_path / "g.precision.yaml").exists()
    # the written file is the one measured
    assert g["task"] == "classification" and g["metric"] == "top-1"
    assert evaluate(out, "digits")["top1"] == pytest.approx(g["final_value"])
    assert g["cost"]["p50_ms_guided"] is not None and g["cost"]["p50_ms_full_int8"] is not None


@pytest.mark.slow
def test_guided_says_why_not(v3_digits, tmp_path, monkeypatch):
    import edgecnn.evaluate.layer_error as le

    monkeypatch.setattr(le, "layer_errors", lambda *a, **k: [])  # nothing left to keep in float
    from edgecnn import guided

    calls = []

    def fake_metric(model, ev):  # the float model is measured first at 1.0, every int8 variant at 0.5
        calls.append(1)
        return 1.0 if len(calls) == 1 else 0.5

    monkeypatch.setattr(guided, "_metric", fake_metric)
    with pytest.raises(UnreachableDrop, match="cannot reach a top-1 drop of 0.0 pts: with every ranked layer") as exc:
        guided_convert(v3_digits, tmp_path / "g.tflite", ConversionRequest("int8", calibration="digits"), 0.0,
                       "digits")
    assert exc.value.floor_points == pytest.approx(50.0)  # said before any search step
    assert "--io float32 loses 50.00 pts" in str(exc.value)
    assert "--qat --epochs 2" in str(exc.value)  # the way on that post-training int8 has not
    assert len(calls) == 4  # float, full int8, every layer in float, the same with float IO: no search
    assert not (tmp_path / "g.tflite").exists()


def test_the_qat_hint_keeps_the_weight_granularity():
    """A per-tensor conversion that cannot reach its limit is told to train per tensor, and longer (QAT_EPOCHS)."""
    from types import SimpleNamespace

    from edgecnn import tasks
    from edgecnn.guided import QAT_EPOCHS, _qat_hint

    def hint(per_tensor: bool) -> str:
        prep = SimpleNamespace(model=object(), qat=None, model_path="m.keras", task=(tasks.get("classification"),),
                               req=ConversionRequest("int8", calibration="digits", per_tensor=per_tensor))
        return _qat_hint(prep, SimpleNamespace(labeled=True))

    assert "--qat --epochs 2 --lr 1e-4" in hint(False) and "--per-tensor" not in hint(False)
    assert f"--qat --per-tensor --epochs {QAT_EPOCHS['per-tensor']} --lr 1e-4" in hint(True)
    assert hint(True).endswith("then convert qat.keras with --per-tensor")


def test_guided_rejects_non_int8(tmp_path):
    with pytest.raises(EdgecnnError, match="works with --quant int8"):
        guided_convert("x.keras", tmp_path / "g.tflite", ConversionRequest("float16"), 0.3, "digits")


@pytest.mark.slow
def test_guided_judges_a_detector_by_its_map(tmp_path):
    """On a detector the guided mode measures the mAP@.5 drop (not the argmax of the heatmap): it reaches a limit
    or refuses up front with the floor, and the written model's mAP is the one it reports."""
    import deploy_models

    keras = deploy_models.detector(tmp_path)[0]
    out = tmp_path / "det.tflite"
    req = ConversionRequest("int8", calibration="scenes:digits", num_calibration=32)
    try:
        r = guided_convert(keras, out, req, 0.5, "scenes:digits", eval_limit=200)
    except UnreachableDrop as exc:
        assert "mAP@.5 drop of 0.5 pts" in str(exc) and exc.floor_points > 0.5 and not out.exists()
        r = guided_convert(keras, out, req, exc.floor_points, "scenes:digits", eval_limit=200)
    g = r["guided"]
    assert g["task"] == "detection" and g["metric"] == "mAP@.5" and g["eval_n"] == 200
    assert g["final_drop_points"] <= g["max_drop_points"] + 1e-9
    ev = evaluate(out, "scenes:digits", limit=200)
    assert ev["objects"] > 0 and ev["detections"] > 0 and ev["value"] == pytest.approx(g["final_value"])

"""The mixed-range lint (`edgecnn.tflite.detect.mixed_range_outputs`): an output that concatenates boxes (pixels)
and sigmoid scores in one tensor is one warning line from `convert` (and `bench`) for a foreign float .tflite;
boxes and scores kept as separate outputs, and MediaPipe's BlazeFace (which concatenates regressors of several
levels: same kind, same range), are not flagged."""

from __future__ import annotations

import pytest

import detector_models
from helpers import run_cli


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("yolo")
    return {"concat": detector_models.yolo_like(d / "yolo_concat.tflite", concatenated=True),
            "separate": detector_models.yolo_like(d / "yolo_separate.tflite", concatenated=False)}


def _warnings(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("edgecnn: warning:")]


def test_concatenated_boxes_and_scores_are_flagged(heads):
    from edgecnn.tflite.detect import mixed_range_outputs

    (line,) = mixed_range_outputs(heads["concat"], "yolo_concat.tflite")
    assert line.startswith("yolo_concat.tflite: output ") and "logistic 0..1" in line and "unbounded" in line
    assert "separate outputs" in line and "#1695" in line


def test_separate_outputs_and_blazeface_are_not(heads):
    from edgecnn.tflite.detect import mixed_range_outputs

    assert mixed_range_outputs(heads["separate"]) == []
    try:
        face = detector_models.blazeface()
    except Exception:  # noqa: BLE001 - the wheel is tested in test_detector_bench; here it is an extra case
        return
    assert mixed_range_outputs(face) == []


def test_int8_parts_with_different_scales_are_flagged(heads, tmp_path):
    """A quantized model: the parts' scales themselves say it (0..32 px and 0..1 under one int8 concat)."""
    import numpy as np

    from edgecnn.tflite import reader
    from edgecnn.tflite.detect import mixed_range_outputs

    model = reader.read_model(heads["concat"])
    sub = model.subgraphs[0]
    producers = {int(t): op for op in sub.operators for t in op.outputs}
    concat = next(op for op in sub.operators if reader.op_name(model, op) == "CONCATENATION")
    s = reader.schema()
    for t, scale in zip(concat.inputs, (32 / 255, 1 / 255)):  # make the two parts int8 with their own ranges
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint = np.array([scale], np.float32), np.array([-128], np.int64)
        sub.tensors[t].quantization, sub.tensors[t].type = q, s.TensorType.INT8
        producers.pop(int(t), None)
    sub.operators = [op for op in sub.operators if reader.op_name(model, op) == "CONCATENATION"]
    sub.inputs = np.array(concat.inputs, np.int32)  # the parts now come from nowhere: only the scales speak
    (line,) = mixed_range_outputs(reader.serialize(model))
    assert "int8 range" in line and "32" in line


def test_convert_warns_once_for_a_foreign_float_tflite(heads, tmp_path):
    r = run_cli("convert", heads["concat"], "-o", tmp_path / "out.tflite", "--quant", "float16")
    (line,) = _warnings(r.stderr)
    assert str(heads["concat"]) in line and "concatenates parts of very different ranges" in line
    r = run_cli("convert", heads["separate"], "-o", tmp_path / "out2.tflite", "--quant", "float16")
    assert _warnings(r.stderr) == []


def test_bench_warns_too(heads, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_DB", str(tmp_path / "r.sqlite"))
    r = run_cli("bench", heads["concat"], "--runs", "3", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    assert len(_warnings(r.stderr)) == 1

"""A float SSD .tflite ending in TFLite_Detection_PostProcess (what the TF Object Detection API and Model Maker
export) converts to int8 both ways (edgecnn/convert/detection_postprocess.py): the op kept in float after the int8
body (`--postprocess graph`, the standard recipe), or cut off with its anchors stored for edgecnn's numpy decoder
(`--postprocess numpy`); each converted model compares against float and benches like a zoo detector.

The SSD is made here (tests/detector_models.py): two feature levels, 72 anchors, 3 classes + background, the op
fused by the converter from an `experimental_implements` function, exactly as the TF OD API's TF2 export does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import detector_models
from helpers import run_cli_in_process

SCALING = ("--mean", "127.5", "--std", "127.5")
CALIB = ("--quant", "int8", "--calibration", "photos", "--num-calibration", "16", *SCALING)


@pytest.fixture(scope="module")
def ssd(tmp_path_factory) -> Path:
    return detector_models.ssd(tmp_path_factory.mktemp("ssd") / "ssd_tiny.tflite")


def _run(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def test_the_numpy_decoder_reads_the_ops_inputs_as_the_op_does(ssd):
    from edgecnn.convert import detection_postprocess as dp
    from edgecnn.tasks.detection.postprocess import tflite_ssd
    from edgecnn.tflite.reader import read_model

    model = read_model(ssd)
    assert dp.options(dp.find(model))["num_classes"] == 3
    cut, head = dp.cut(model)
    assert head["kind"] == "tflite_ssd" and len(head["anchors"]) == 72 and head["scales"] == [10.0, 10.0, 5.0, 5.0]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    raw = _run(cut, x)
    assert sorted(r.shape for r in raw) == [(1, 72, 4), (1, 72, 4)]  # encodings; 3 classes + background
    from edgecnn.tflite.detect import recognise_head

    full = dict(zip(recognise_head(ssd)["roles"], _run(ssd.read_bytes(), x)))  # the op's outputs by role
    op_boxes, op_classes, op_scores = full["boxes"][0], full["classes"][0], full["scores"][0]
    count = int(full["count"][0])
    assert count > 0
    # every box the op kept is one of the numpy decoder's candidates: same class, score, corners
    (boxes, scores, classes), = tflite_ssd(raw, {**head, "nms": "regular"}, (64, 64), score_threshold=0.0,
                                           iou=1.01, max_detections=10_000)
    assert len(boxes) == 72 * 3
    for k in range(count):
        ymin, xmin, ymax, xmax = op_boxes[k] * 64
        hit = (classes == int(op_classes[k])) & (np.abs(scores - op_scores[k]) < 1e-6) & \
            np.all(np.abs(boxes - [xmin, ymin, xmax, ymax]) < 1e-3, axis=1)
        assert hit.any(), f"op box {k} {op_boxes[k]} class {op_classes[k]} score {op_scores[k]} not decoded"
    # and with the op's own settings (fast NMS, its threshold and maximum) the decoder keeps what the op keeps
    (boxes, scores, classes), = tflite_ssd(raw, head, (64, 64))
    assert len(boxes) == count
    np.testing.assert_allclose(scores, op_scores[:count], atol=1e-6)
    np.testing.assert_array_equal(classes, op_classes[:count].astype(np.int64))
    np.testing.assert_allclose(boxes, op_boxes[:count][:, [1, 0, 3, 2]] * 64, atol=1e-3)


def test_graph_mode_keeps_the_op_in_float_after_an_int8_body(ssd, tmp_path):
    out = tmp_path / "graph.tflite"
    r = run_cli_in_process("convert", ssd, "-o", out, *CALIB, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["ops_in_float"] == ["CUSTOM:TFLite_Detection_PostProcess(PartitionedCall:0)"] or \
        [o.split("(")[0] for o in rep["ops_in_float"]] == ["CUSTOM:TFLite_Detection_PostProcess"]
    assert any("kept in float" in n for n in rep["source_notes"])
    assert rep["op_histogram"]["CONV_2D"] > 0 and len(rep["outputs"]) == 4
    assert rep["weight_dtypes"].get("int8")
    c = run_cli_in_process("compare", ssd, out, "--data", "photos", "--limit", "32", *SCALING, "--json")
    assert c.returncode == 0, c.stderr[-2000:]
    cmp = json.loads(c.stdout)
    assert cmp["head"] == "tflite_detection_postprocess" and cmp["float_boxes"] > 0 and cmp["quant_boxes"] > 0
    assert 0 < cmp["agreement"] <= 1

    # the Edge TPU: the DEQUANTIZEs move last (float_tail), so only the float tail is left to the CPU
    tpu = tmp_path / "tpu.tflite"
    r = run_cli_in_process("convert", ssd, "-o", tpu, *CALIB, "--target", "edgetpu", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    row = next(x for x in rep["rewrites"] if x["pass"] == "float_tail")
    assert row["count"] >= 1 and row["applied"] and row["max_diff_steps"] == 0
    pre = rep["edgetpu"]["preflight"]
    cpu = [o["op"] for o in pre["ops"] if o["where"] == "cpu"]
    assert sorted(cpu) == ["CUSTOM:TFLite_Detection_PostProcess", "DEQUANTIZE", "DEQUANTIZE"] or \
        sorted(c.split(":")[-1] for c in cpu) == ["DEQUANTIZE", "DEQUANTIZE", "TFLite_Detection_PostProcess"], cpu


def test_numpy_mode_is_integer_only_and_decodes_with_the_stored_anchors(ssd, tmp_path):
    from edgecnn.tflite import metadata

    q, f = tmp_path / "cut_int8.tflite", tmp_path / "cut_f32.tflite"
    r = run_cli_in_process("convert", ssd, "-o", q, *CALIB, "--postprocess", "numpy", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["ops_in_float"] == [] and not any(k.startswith("CUSTOM") for k in rep["op_histogram"])
    assert rep["delegate"]["partitions"] == 1
    spec = metadata.read_spec(q.read_bytes())
    assert spec.task == "detection" and spec.head["kind"] == "tflite_ssd" and len(spec.head["anchors"]) == 72
    r = run_cli_in_process("convert", ssd, "-o", f, "--postprocess", "numpy", *SCALING)
    assert r.returncode == 0, r.stderr[-2000:]
    c = run_cli_in_process("compare", f, q, "--data", "photos", "--limit", "32", "--json")
    assert c.returncode == 0, c.stderr[-2000:]
    cmp = json.loads(c.stdout)
    assert cmp["head"] == "tflite_ssd" and cmp["float_boxes"] > 0 and cmp["quant_boxes"] > 0
    b = run_cli_in_process("bench", q, "--runs", "5", "--warmup", "1", "--json")
    assert b.returncode == 0, b.stderr[-2000:]
    pp = json.loads(b.stdout)["postprocess"]
    assert pp["head"] == "tflite_ssd" and pp["detections"] > 0, pp


def test_a_tflite_friendly_detection_savedmodel_converts_with_its_op_fused(tmp_path):
    """The TF2 OD API's `export_tflite_graph_tf2.py` (and Model Maker) write a SavedModel whose post-processing is a
    function marked as implementing TFLite_Detection_PostProcess: `convert` hands it to TF's converter, which fuses
    the op (a Keras wrapper would inline the empty function: all-zero outputs), then converts as a float SSD."""
    from edgecnn.convert import detection_postprocess as dp
    from edgecnn.tflite.reader import read_model

    saved = tmp_path / "saved_model"
    ref = detector_models.ssd(tmp_path / "ref.tflite", saved_model=saved)
    f32 = tmp_path / "from_saved.tflite"
    r = run_cli_in_process("convert", saved, "-o", f32, *SCALING, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert any("detection SavedModel" in n for n in json.loads(r.stdout)["source_notes"])
    assert dp.find(read_model(f32)) is not None
    x = np.random.default_rng(2).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    got, want = _run(f32.read_bytes(), x), _run(ref.read_bytes(), x)
    assert len(got) == 4 and sum(int(np.asarray(o).size) for o in got) > 4 and np.ptp(got[0]) > 0
    for u, v in zip(got, want):
        np.testing.assert_allclose(u, v, atol=1e-6)
    q = tmp_path / "saved_int8.tflite"
    r = run_cli_in_process("convert", saved, "-o", q, *CALIB, "--postprocess", "numpy", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["ops_in_float"] == [] and not any(k.startswith("CUSTOM") for k in rep["op_histogram"])

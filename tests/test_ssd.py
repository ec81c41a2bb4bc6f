"""SSDLite: anchors from the head description, encode -> decode round trip, anchor matching, the zoo listing, and
end to end (train 1 epoch -> integer-only int8 -> COCO mAP of both). Structure only, nothing about what it learns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecnn.tasks.detection.postprocess import anchors, decode, decode_boxes, decode_ssd
from edgecnn.train.ssd_targets import encode, encode_boxes, match, to_corners
from helpers import assert_detector_eval, run_cli_in_process

HEAD = {"kind": "ssd", "scores": "sigmoid", "variances": [0.1, 0.1, 0.2, 0.2],
        "anchors": {"strides": [8, 16], "sizes": [[16, 24], [32, 48]], "aspect_ratios": [1.0, 0.5, 2.0],
                    "offset": 0.5}}


def test_anchor_count_and_positions():
    a = anchors(HEAD["anchors"], (64, 32))
    assert a.shape == ((8 * 4 + 4 * 2) * 6, 4)
    # level 8, cell (row 0, col 0): sizes x ratios, ratio fastest, side sqrt(w*h) kept
    np.testing.assert_allclose(a[:6, :2], [[4, 4]] * 6)
    np.testing.assert_allclose(a[:3, 2:], [[16, 16], [16 * 0.5 ** 0.5, 16 / 0.5 ** 0.5], [16 * 2 ** 0.5, 16 / 2 ** 0.5]],
                               rtol=1e-6)
    np.testing.assert_allclose(a[6, :2], [12, 4])  # next column
    np.testing.assert_allclose(a[4 * 6, :2], [4, 12])  # next row (4 columns of 8 px in 32 px)
    np.testing.assert_allclose(a[32 * 6], [8, 8, 32, 32])  # first stride-16 anchor
    assert np.all(np.prod(a[:, 2:], axis=1) > 0)


def test_blazeface_anchors_fit_the_generator():
    a = anchors({"strides": [8, 16], "sizes": [[128] * 2, [128] * 6], "aspect_ratios": [1.0]}, (128, 128))
    assert len(a) == 896 and np.all(a[:, 2:] == 128)  # MediaPipe's 896 anchors, fixed size 1.0 = the input side
    np.testing.assert_allclose(a[[0, 1, 2, 512]], [[4, 4, 128, 128], [4, 4, 128, 128], [12, 4, 128, 128],
                                                   [8, 8, 128, 128]])


def test_encode_decode_round_trip():
    prior = anchors(HEAD["anchors"], (128, 128))
    gt = np.array([[10, 20, 40, 44, 1], [70, 64, 90, 120, 0], [100, 100, 117, 118, 2]], np.float32)
    box_t, score_t = encode([gt], prior, HEAD["variances"], 3)
    assert box_t.shape == (1, len(prior), 5) and score_t.shape == (1, len(prior), 3)
    pos = box_t[0, :, 4] == 1
    assert pos.sum() >= 3 and np.all(score_t[0, pos].sum(axis=1) == 1) and score_t[0, ~pos].sum() == 0
    back = decode_boxes(box_t[0, pos, :4], prior[pos], HEAD["variances"])
    # every positive decodes to exactly one of the boxes, that of its class
    for b, c in zip(back, score_t[0, pos].argmax(axis=1)):
        np.testing.assert_allclose(b, gt[gt[:, 4] == c, :4][0], atol=1e-3)
    boxes, scores, classes = decode([box_t[:, :, :4], score_t], HEAD, (128, 128))[0]
    order = np.argsort(classes)
    np.testing.assert_allclose(boxes[order], gt[[1, 0, 2], :4], atol=1e-3)
    assert list(classes[order]) == [0, 1, 2] and np.all(scores == 1.0)


def test_encode_boxes_inverts_decode_boxes():
    prior = np.array([[20, 20, 16, 16], [50, 40, 32, 20]], np.float32)
    boxes = np.array([[12, 10, 30, 33], [30, 35, 80, 50]], np.float32)
    d = encode_boxes(boxes, prior, HEAD["variances"])
    np.testing.assert_allclose(decode_boxes(d, prior, HEAD["variances"]), boxes, atol=1e-4)


def test_match_gives_a_small_box_its_best_anchor():
    prior = anchors(HEAD["anchors"], (128, 128))
    corners = to_corners(prior)
    small = np.array([[34, 34, 46, 46]], np.float32)  # 12 px on a cell corner: no anchor reaches IoU 0.5
    from edgecnn.data.scenes import iou_matrix

    iou = iou_matrix(corners, small)[:, 0]
    assert iou.max() < 0.5
    m = match(corners, small)
    assert list(np.flatnonzero(m == 0)) == [int(iou.argmax())] and (m >= 0).sum() == 1
    big = np.array([[0, 0, 32, 32], [64, 64, 96, 96]], np.float32)  # exactly a 32 px anchor each, plus neighbours
    m = match(corners, big)
    assert set(m[m >= 0]) == {0, 1} and np.all(iou_matrix(corners[m == 1], big[1:]) >= 0.5)


def test_decode_ssd_thresholds_and_softmax_background():
    prior = np.array([[10, 10, 8, 8], [30, 30, 8, 8]], np.float32)
    scores = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]], np.float32)  # column 0: background
    boxes, s, c = decode_ssd(np.zeros((2, 4)), scores, prior, [0.1, 0.1, 0.2, 0.2], background=True,
                             score_threshold=0.3)
    np.testing.assert_allclose(boxes, [[26, 26, 34, 34]])
    assert list(c) == [0] and s[0] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="anchors"):
        decode_ssd(np.zeros((3, 4)), scores, prior, [0.1, 0.1, 0.2, 0.2])


def test_models_lists_ssdlite_as_a_detector():
    proc = run_cli_in_process("models", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["ssdlite_mobilenet_v2"]["task"] == "detection"


def test_builder_head_matches_outputs_and_rejects_bad_strides():
    from edgecnn.errors import EdgecnnError
    from edgecnn.zoo import build, get_entry

    # 3 classes: the (n, 4) boxes and the (n, 3) scores cannot be told apart by a wrong order of outputs otherwise;
    # strides as the CLI's `-O strides=8,16,32` gives them (a string) and as a recipe's list
    for shape, strides in [((96, 80, 3), "8,16,32"), ((100, 72, 1), [8, 16, 32])]:  # grids 12x10, 6x5, 3x3; 13x9,
        model = build("ssdlite_mobilenet_v2", shape, 3, alpha=0.35, strides=strides)  # 7x5, 4x3
        head = get_entry("ssdlite_mobilenet_v2").head(model)
        assert head["anchors"]["strides"] == [8, 16, 32]
        n = len(anchors(head["anchors"], shape[:2]))
        assert n > 0 and [tuple(o.shape[1:]) for o in model.outputs] == [(n, 4), (n, 3)]
    with pytest.raises(EdgecnnError, match="strides"):
        build("ssdlite_mobilenet_v2", (64, 64, 3), 3, strides=[16, 8])


SCORE_SHIFT = 6.0  # logits: a 1-epoch SSD's scores sit near its 0.01 prior, under the decoder's 0.05 threshold


def _raise_scores(keras_path, shift: float) -> None:
    """Add `shift` to the class-score biases of a trained SSD, in place: one epoch leaves every score under the
    decoder's threshold (0 boxes, mAP 0 = 0), so without it the int8 conversion of the scores and eval's decoding
    would be checked on nothing; with it boxes are found whatever the short training reached."""
    from edgecnn.modelfile import load_model, save_model

    model, spec = load_model(keras_path)
    for layer in model.layers:
        if layer.name.startswith("cls") and layer.name.endswith("_pw"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, bias + shift])
    save_model(model, keras_path, spec)


@pytest.mark.slow
def test_train_int8_eval_ssd(tmp_path):
    from edgecnn.tflite.interpreter import make_interpreter
    from edgecnn.tflite.metadata import read_spec
    from edgecnn.train.trainer import TrainConfig, train

    keras_path, int8_path = tmp_path / "ssd.keras", tmp_path / "ssd_int8.tflite"
    summary = train(TrainConfig("ssdlite_mobilenet_v2", "scenes:digits", epochs=1, batch_size=32, input_size=64,
                                max_train_samples=160, knobs={"alpha": 0.35, "smallest_anchor": 8,
                                                              "largest_anchor": 24},
                                augment=("flip",)), keras_path, progress=False)
    head = summary["preprocessing"]["head"]
    assert summary["task"] == "detection" and head["kind"] == "ssd"
    assert np.isfinite(summary["loss_last_epoch"]) and np.isfinite(summary["test_loss"])
    n = len(anchors(head["anchors"], (64, 64)))
    _raise_scores(keras_path, SCORE_SHIFT)

    proc = run_cli_in_process("convert", keras_path, "-o", int8_path, "--quant", "int8", "--calibration",
                              "scenes:digits", "--num-calibration", "32", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    interp = make_interpreter(int8_path)
    ins, outs = interp.get_input_details(), interp.get_output_details()
    assert [d["dtype"] for d in ins + outs] == [np.int8] * 3  # integer-only IO, boxes and scores apart
    assert [list(d["shape"][1:]) for d in outs] == [[n, 4], [n, 10]]
    assert outs[0]["quantization"][0] != outs[1]["quantization"][0]  # each its own scale
    assert read_spec(int8_path).head == head
    assert json.loads(proc.stdout)["ops_in_float"] == []

    assert_detector_eval(keras_path, int8_path, run=run_cli_in_process)

"""Box decoding, NMS, the training targets (decode inverts encode) and COCO mAP on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.tasks.detection.metrics import coco_map
from edgecnn.tasks.detection.postprocess import decode_centernet as decode, nms, peaks
from edgecnn.train.detection import flip_boxes
from edgecnn.train.targets import encode


def test_peaks_keep_local_maxima_only():
    h = np.zeros((5, 5, 2), np.float32)
    h[1, 1, 0], h[1, 2, 0], h[3, 3, 0], h[3, 3, 1] = 0.9, 0.5, 0.7, 0.2
    p = peaks(h)
    assert p[1, 1, 0] and not p[1, 2, 0] and p[3, 3, 0] and p[3, 3, 1]


def test_nms_is_class_wise_and_keeps_the_best():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.3], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert list(nms(boxes, scores, classes, iou=0.5)) == [1, 2, 3]  # box 0 loses to box 1; box 2 is another class
    assert list(nms(boxes, scores, classes, iou=0.95)) == [1, 2, 0, 3]
    assert list(nms(boxes, scores, classes, iou=0.5, max_detections=2)) == [1, 2]


def test_decode_inverts_encode():
    boxes = [np.array([[10, 20, 40, 44, 1], [70, 64, 90, 120, 0]], np.float32)]
    heat, size, offset = encode(boxes, (16, 16), 8.0, 3)
    assert heat.shape == (1, 16, 16, 3) and heat.max() == 1.0 and size[..., 2].sum() == 2
    got, scores, classes = decode(heat[0], size[0, ..., :2], offset[0, ..., :2], 8.0)
    order = np.argsort(classes)
    np.testing.assert_allclose(got[order], boxes[0][::-1, :4], atol=1e-4)
    assert list(classes[order]) == [0, 1] and np.all(scores == 1.0)


def test_decode_drops_low_scores_and_merges_a_plateau():
    heat = np.zeros((8, 8, 1), np.float32)
    heat[2, 2:4, 0] = 0.8  # an int8 plateau: two equal neighbours, one object
    heat[6, 6, 0] = 0.01
    size = np.full((8, 8, 2), 4.0, np.float32)  # 16 px boxes one cell (4 px) apart: IoU 0.6
    offset = np.full((8, 8, 2), 0.5, np.float32)
    boxes, scores, classes = decode(heat, size, offset, 4.0, score_threshold=0.05)
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.8)
    np.testing.assert_allclose(boxes[0], [2, 2, 18, 18])  # the first of the tie (lower index) is kept


@pytest.mark.parametrize("cells", [[(5, 6), (5, 7)], [(5, 6), (5, 7), (5, 8)], [(5, 6), (5, 7), (6, 7)]],
                         ids=["2 cells", "3 cells", "3 cells, an L"])
def test_an_int8_plateau_gives_one_box(cells):
    """The top cells of an object 2-3 cells wide differ by less than one int8 step (1/256, a sigmoid output's
    scale): in int8 they are equal, each a 3x3 maximum, and their boxes (one cell apart) overlap by less than the
    NMS threshold; one box must come out, from a cell of the plateau."""
    from edgecnn.tasks.detection.postprocess import NMS_IOU, iou_matrix
    from edgecnn.tflite.quant import dequantize, quantize

    width = len({x for _, x in cells})
    heat = np.full((16, 16, 3), 0.02, np.float32)
    for dy in (-1, 0, 1):  # a shoulder around the plateau, well below it
        for y, x in cells:
            heat[y + dy, x - 1:x + 2, 1] = 0.5
    for k, (y, x) in enumerate(cells):
        heat[y, x, 1] = 0.8 - 0.0004 * k  # distinct in float: one peak
    detail = {"dtype": np.int8, "quantization": (1 / 256, -128)}
    int8 = dequantize(quantize(heat, detail), detail)
    assert len({float(int8[y, x, 1]) for y, x in cells}) == 1  # int8 made them one plateau
    assert (peaks(int8) & (int8 > 0.5))[..., 1].sum() == len(cells)  # every cell of it a 3x3 maximum
    size = np.full((16, 16, 2), float(width), np.float32)
    offset = np.full((16, 16, 2), 0.5, np.float32)
    tied = np.array([[x - width / 2 + 0.5, y - width / 2 + 0.5, x + width / 2 + 0.5, y + width / 2 + 0.5]
                     for y, x in cells], np.float32) * 8
    assert iou_matrix(tied[:1], tied[1:]).max() <= NMS_IOU  # NMS alone would keep two or three boxes
    for maps in (heat, int8):
        boxes, scores, classes = decode(maps, size, offset, 8.0, score_threshold=0.1)
        assert len(boxes) == 1 and list(classes) == [1], boxes
        assert any(np.allclose(boxes[0], t) for t in tied)


def test_flip_boxes_mirrors_x():
    np.testing.assert_allclose(flip_boxes(np.array([[10, 5, 30, 25, 2]]), 128), [[98, 5, 118, 25, 2]])


def _gt():
    return [np.array([[0, 0, 10, 10, 0], [20, 20, 40, 40, 1]], np.float32),
            np.array([[5, 5, 25, 15, 0]], np.float32)]


def _dets(gt, shift=0.0):
    return [(g[:, :4] + np.array([shift, 0, shift, 0], np.float32), np.full(len(g), 0.9, np.float32),
             g[:, 4].astype(int)) for g in gt]


SIZES = [(64, 64), (64, 64)]


def test_map_is_one_for_perfect_boxes():
    r = coco_map(_gt(), _dets(_gt()), SIZES, ["a", "b", "c"])
    assert r["map"] == pytest.approx(1.0) and r["map50"] == pytest.approx(1.0)
    assert [c["ap"] for c in r["per_class"]] == [pytest.approx(1.0), pytest.approx(1.0), None]


def test_map_of_a_known_shift():
    # one 10x10 box found 2 px to the right: IoU = 8*10 / (12*10) = 0.667, a match at IoU 0.50, 0.55, 0.60, 0.65
    # and a miss at the 6 higher thresholds: AP@.5 = 1, AP@[.5:.95] = 4/10
    gt = [np.array([[0, 0, 10, 10, 0]], np.float32)]
    r = coco_map(gt, _dets(gt, shift=2.0), [(64, 64)], ["a"])
    assert r["map50"] == pytest.approx(1.0) and r["map"] == pytest.approx(0.4)


def test_map_false_positive_ranked_first_halves_precision():
    # a confident wrong box then the right one: precision 1/2 at recall 1 -> COCO's interpolated AP 0.5
    gt = [np.array([[0, 0, 10, 10, 0]], np.float32)]
    dets = [(np.array([[40, 40, 50, 50], [0, 0, 10, 10]], np.float32), np.array([0.9, 0.5]), np.array([0, 0]))]
    r = coco_map(gt, dets, [(64, 64)], ["a"])
    assert r["map50"] == pytest.approx(0.5, abs=0.01)


def test_map_without_detections_is_zero():
    r = coco_map(_gt(), [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))] * 2, SIZES, ["a", "b"])
    assert r["map"] == 0.0 and r["map50"] == 0.0 and r["detections"] == 0


def test_map_refuses_lists_of_different_lengths():
    """A short detection list used to be zipped away: the images it missed dropped out of the mAP unnoticed."""
    from edgecnn.errors import EdgecnnError
    from edgecnn.tasks.detection.metrics import score_boxes

    with pytest.raises(EdgecnnError, match="1 detections, 2 sizes"):
        coco_map(_gt(), _dets(_gt())[:1], SIZES, ["a", "b"])
    with pytest.raises(EdgecnnError, match="2 images, 2 detections, 1 sizes"):
        coco_map(_gt(), _dets(_gt()), SIZES[:1], ["a", "b"])
    with pytest.raises(EdgecnnError, match="1 detections, 2 sizes"):
        score_boxes(_gt(), _dets(_gt())[:1], SIZES, (64, 64), ["a", "b"])


def test_score_boxes_scales_and_clips_to_each_image():
    """Model-input boxes (32x32) scaled to 64x48 raw images and clipped there: a box sticking out of its image
    scores as the clipped box, as in eval, compare and bench alike."""
    from edgecnn.tasks.detection.metrics import score_boxes

    truth = [np.array([[0, 0, 20, 30, 0]], np.float32)]
    dets = [(np.array([[-5, -5, 10, 20]], np.float32), np.array([0.9], np.float32), np.array([0]))]
    r = score_boxes(truth, dets, [(48, 64)], (32, 32), ["a"])
    assert r["detections"] == 1 and r["map"] == pytest.approx(1.0)


def _rows(*rows):
    """One image's detections from (x0, y0, x1, y1, score, class) rows."""
    a = np.asarray(rows, np.float32).reshape(-1, 6)
    return a[:, :4], a[:, 4], a[:, 5].astype(np.int64)


def test_box_agreement_counts_matches_of_confident_float_boxes():
    from edgecnn.tasks.detection.metrics import box_agreement

    f = [_rows((0, 0, 10, 10, 0.9, 1), (20, 20, 40, 40, 0.8, 2), (50, 50, 60, 60, 0.1, 3))]
    same = box_agreement(f, f)
    assert same["float_boxes"] == 2 and same["matched"] == 1.0 and same["extra"] == 0.0
    assert same["mean_iou"] == 1.0 and same["score_mae"] == 0.0
    # one box moved far (IoU < 0.5), one of the wrong class, one extra confident box
    q = [_rows((0, 0, 10, 10, 0.7, 1), (30, 30, 50, 50, 0.8, 2), (100, 100, 110, 110, 0.6, 4))]
    got = box_agreement(f, q)
    assert got["matched"] == 0.5 and got["extra"] == 2 / 3 and abs(got["score_mae"] - 0.2) < 1e-6
    wrong_class = [_rows((0, 0, 10, 10, 0.9, 5), (20, 20, 40, 40, 0.8, 2))]
    assert box_agreement(f, wrong_class)["matched"] == 0.5
    assert box_agreement([_rows()], [_rows()])["matched"] is None


def test_a_quantized_box_is_matched_once():
    from edgecnn.tasks.detection.metrics import box_agreement

    f = [_rows((0, 0, 10, 10, 0.9, 1), (1, 1, 11, 11, 0.8, 1))]
    q = [_rows((0, 0, 10, 10, 0.9, 1))]
    assert box_agreement(f, q)["matched"] == 0.5

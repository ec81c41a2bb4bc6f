"""Detection data: scenes:digits (deterministic, exact boxes, disjoint splits) and the COCO / YOLO folder loaders,
with one line for each kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgecnn.data import load_split
from edgecnn.data.scenes import SIZE, iou_matrix
from edgecnn.errors import EdgecnnError
from helpers import assert_one_line_error, run_cli_in_process


def test_scenes_digits_are_deterministic_with_exact_boxes_inside_the_image():
    a, b = load_split("scenes:digits", "test"), load_split("scenes:digits", "test")
    assert a.task == "detection" and a.class_names == tuple(str(i) for i in range(10))
    assert np.array_equal(a.images, b.images) and all(np.array_equal(p, q) for p, q in zip(a.boxes, b.boxes))
    assert a.images.shape == (500, SIZE, SIZE, 3) and a.images.dtype == np.uint8
    allb = np.concatenate(a.boxes)
    assert len(allb) > 1000  # enough objects for a stable mAP
    assert (allb[:, :2] >= 0).all() and (allb[:, 2:4] <= SIZE).all() and (allb[:, 2:4] > allb[:, :2]).all()
    assert set(np.unique(allb[:, 4]).astype(int)) == set(range(10))
    for boxes in a.boxes[:50]:  # objects overlap little: a pasted object stays visible
        if len(boxes) > 1:
            iou = iou_matrix(boxes[:, :4], boxes[:, :4])
            assert iou[~np.eye(len(boxes), dtype=bool)].max() <= 0.2 + 1e-6


def test_scenes_box_holds_the_pasted_object():
    from edgecnn.data.scenes import _paste

    rng = np.random.default_rng(1)
    canvas = np.full((SIZE, SIZE, 3), 200.0, np.float32)
    obj = np.zeros((8, 8), np.uint8)
    obj[2:6, 3:5] = 255
    box = _paste(rng, canvas, obj, [])
    changed = np.argwhere(np.abs(canvas - 200).max(axis=2) > 200 * 0.25 - 1)
    x0, y0, x1, y1 = box.astype(int)
    assert changed[:, 1].min() >= x0 - 1 and changed[:, 1].max() <= x1 and changed[:, 0].min() >= y0 - 1
    assert changed[:, 0].max() <= y1 and (x1 - x0) < (y1 - y0)  # a tall object gets a tall box


def test_scenes_train_and_test_differ_and_bad_object_source_is_one_line():
    tr = load_split("scenes:digits", "train")
    assert len(tr) == 6000 and not np.array_equal(tr.images[:500], load_split("scenes:digits", "test").images)
    with pytest.raises(EdgecnnError, match="scenes:photos: scenes are made of"):
        load_split("scenes:photos")


def _img(path, w=64, h=48, value=120):
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _coco(tmp_path, anns=None, images=None, cats=None, write_images=True):
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    images = images if images is not None else [{"id": i, "file_name": f"im{i}.png"} for i in range(1, 6)]
    if write_images:
        for im in images:
            _img(root / "images" / im["file_name"])
    anns = anns if anns is not None else [
        {"id": k, "image_id": k, "category_id": 3 if k % 2 else 7, "bbox": [4, 6, 20, 10]} for k in range(1, 6)]
    doc = {"images": images, "annotations": anns,
           "categories": cats or [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def test_coco_folder_loads_boxes_in_pixels_with_categories_in_id_order(tmp_path):
    root = _coco(tmp_path)
    ds = load_split(str(root), "all")
    assert ds.task == "detection" and ds.class_names == ("cat", "dog") and len(ds) == 5
    np.testing.assert_allclose(ds.boxes[0], [[4, 6, 24, 16, 0]])  # category 3 (cat) is class 0
    np.testing.assert_allclose(ds.boxes[1], [[4, 6, 24, 16, 1]])
    tr, te = load_split(str(root), "train"), load_split(str(root), "test")
    assert len(tr) + len(te) == 5 and len(te) >= 1


@pytest.mark.parametrize("case, needles", [
    ("missing", ["annotations.json", "image 'im5.png' (id 5)", "not found"]),
    ("outside", ["annotations.json", "annotation 2 (image 'im2.png')", "outside the 64x48 image"]),
    ("category", ["annotations.json", "annotation 1", "unknown category_id 9", "categories: 3, 7"]),
    ("empty", ["annotations.json", "no annotations"]),
    ("json", ["annotations.json", "not valid JSON"]),
])
def test_coco_bad_input_is_one_line_naming_the_file(tmp_path, case, needles):
    root = _coco(tmp_path)
    doc = json.loads((root / "annotations.json").read_text())
    if case == "missing":
        (root / "images" / "im5.png").unlink()
    elif case == "outside":
        doc["annotations"][1]["bbox"] = [50, 40, 30, 20]
    elif case == "category":
        doc["annotations"][0]["category_id"] = 9
    elif case == "empty":
        doc["annotations"] = []
    text = "{not json" if case == "json" else json.dumps(doc)
    (root / "annotations.json").write_text(text)
    with pytest.raises(EdgecnnError) as err:
        load_split(str(root), "all")
    for n in needles:
        assert n in str(err.value), str(err.value)


def _yolo(tmp_path, lines=("0 0.5 0.5 0.25 0.5", "1 0.25 0.25 0.1 0.1")):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("ball\nbox\n")
    for i in range(5):
        _img(root / "images" / f"a{i}.jpg", w=100, h=80)
        (root / "labels" / f"a{i}.txt").write_text("\n".join(lines) + "\n")
    _img(root / "images" / "empty.jpg", w=100, h=80)  # no label file: an image without objects
    return root


def test_yolo_folder_loads_normalised_boxes_as_pixels(tmp_path):
    ds = load_split(str(_yolo(tmp_path)), "all")
    assert ds.class_names == ("ball", "box") and len(ds) == 6 and ds.task == "detection"
    np.testing.assert_allclose(ds.boxes[0], [[37.5, 20, 62.5, 60, 0], [20, 16, 30, 24, 1]], atol=1e-4)
    assert len(ds.boxes[5]) == 0


@pytest.mark.parametrize("line, needles", [
    ("0 0.5 0.5 0.2", ["a0.txt:2:", "expected 'class x_center y_center width height'", "'0 0.5 0.5 0.2'"]),
    ("7 0.5 0.5 0.2 0.2", ["a0.txt:2:", "class 0..1"]),
    ("1 0.95 0.5 0.2 0.2", ["a0.txt:2:", "outside the image"]),
    ("x 0.5 0.5 0.2 0.2", ["a0.txt:2:"]),
])
def test_yolo_bad_line_is_one_cli_line_naming_file_and_line(tmp_path, line, needles):
    root = _yolo(tmp_path)
    (root / "labels" / "a0.txt").write_text(f"0 0.5 0.5 0.25 0.5\n{line}\n")
    proc = run_cli_in_process("train", "centernet_mobilenet_v2", "--data", root, "-o", tmp_path / "m.keras")
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "m.keras").exists()


def test_coco_missing_image_is_one_cli_line(tmp_path):
    root = _coco(tmp_path)
    (root / "images" / "im2.png").unlink()
    proc = run_cli_in_process("train", "centernet_mobilenet_v2", "--data", root, "-o", tmp_path / "m.keras")
    assert_one_line_error(proc, "annotations.json", "im2.png", "not found")

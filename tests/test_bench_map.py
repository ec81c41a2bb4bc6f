"""A detector's accuracy in `bench --data`: COCO mAP of the boxes the device produced, never a top-1.

- the runner packs each sample's decoded boxes exactly (`pack_detections` / `unpack_detections`);
- the host scores them with eval's own scaling and `coco_map` (`tasks.detection.device.score`): on a tiny trained int8
  CenterNet, `bench --data scenes:digits` gives the same mAP@.5 and mAP@[.5:.95] as `edgecnn eval` on the same
  .tflite and samples, and the table, store and report call it mAP@.5;
- a foreign detector (the tiny SSD ending in TFLite_Detection_PostProcess from tests/detector_models.py): an .npz
  without `boxes` gets no accuracy and one line saying why; with `boxes` a mAP, also through the SSH path;
- the multi-device table names the metric and shows the post-processing p50 when a row has one.
Nothing here asserts what a training reaches: only that the two paths agree and the numbers are carried through.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import deploy_models
import detector_models
from helpers import assert_one_line_error, run_cli_in_process

RUNS = ["--warmup", "1", "--runs", "3"]


pytestmark = pytest.mark.usefixtures("db_path")  # every test writes to its own database (conftest)


def _rows(db_path) -> list[dict]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]


# --- the packing and the scoring, without a model ---------------------------------------------------------------


def _dets(rng, counts):
    out = []
    for k in counts:
        xy = rng.uniform(0, 50, (k, 2)).astype(np.float32)
        out.append((np.concatenate([xy, xy + rng.uniform(1, 20, (k, 2)).astype(np.float32)], axis=1),
                    rng.uniform(0, 1, k).astype(np.float32), rng.integers(0, 10, k)))
    return out


def test_pack_unpack_is_exact_and_compact():
    from edgecnn.tasks.detection.postprocess import pack_detections, unpack_detections

    dets = _dets(np.random.default_rng(0), [3, 0, 5, 1])
    packed = json.loads(json.dumps(pack_detections(np, dets)))  # through JSON, as from a board
    assert packed["counts"] == [3, 0, 5, 1] and packed["images"] == 4
    back = unpack_detections(np, packed)
    assert len(back) == 4
    for (b, s, c), (b2, s2, c2) in zip(dets, back):
        assert np.array_equal(b, b2) and np.array_equal(s, s2) and np.array_equal(c, c2) and c2.dtype == np.int64
    assert unpack_detections(np, pack_detections(np, [])) == []


@pytest.mark.parametrize("damage, needle", [({"format": "numbers/9"}, "not in format"),
                                            ({"rows": "!!not base64"}, "damaged"),
                                            ({"counts": [3, 0, 5, 2]}, "damaged")])
def test_damaged_detections_are_a_clear_error(damage, needle):
    from edgecnn.tasks.detection.device import score
    from edgecnn.tasks.detection.postprocess import pack_detections, unpack_detections
    from edgecnn.errors import EdgecnnError

    packed = {**pack_detections(np, _dets(np.random.default_rng(0), [3, 0, 5, 1])), **damage}
    with pytest.raises(ValueError, match=needle):
        unpack_detections(np, packed)
    with pytest.raises(EdgecnnError, match="runner's boxes cannot be read"):
        score({"status": "ok", "detections": packed}, None, "scenes:digits")


def test_score_is_evals_scaling_and_coco_map():
    """Device boxes in a 64x64 input against true boxes of 128x96 images: scaled back and clipped as eval does."""
    from edgecnn.tasks.detection.device import Truth, score
    from edgecnn.tasks.detection.postprocess import pack_detections
    from edgecnn.tasks.detection.metrics import coco_map

    truth_boxes = [np.array([[10, 8, 50, 40, 1], [60, 50, 120, 90, 0]], np.float32), np.zeros((0, 5), np.float32),
                   np.array([[0, 0, 30, 30, 2]], np.float32)]
    sizes = [(96, 128)] * 3
    dets = [(np.array([[5, 5.5, 25, 26.5], [30, 33, 61, 61]], np.float32), np.array([0.9, 0.8], np.float32),
             np.array([1, 0])), (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)),
            (np.array([[0, 0, 16, 21]], np.float32), np.array([0.7], np.float32), np.array([2]))]
    doc = {"status": "ok", "accuracy": {"n": 3, "task": "detection", "top1": None},
           "detections": pack_detections(np, dets)}
    score(doc, Truth(truth_boxes, sizes, ("a", "b", "c"), (64, 64)), "mine")
    acc = doc["accuracy"]
    by_hand = [(np.clip(b * np.array([2, 1.5, 2, 1.5], np.float32), 0, [128, 96, 128, 96]), s, c) for b, s, c in dets]
    want = coco_map(truth_boxes, by_hand, sizes, ("a", "b", "c"))
    assert "detections" not in doc and acc["metric"] == "mAP@.5" and acc["top1"] is None
    assert (acc["map50"], acc["map"], acc["images"], acc["objects"]) == (want["map50"], want["map"], 3, 3)
    assert acc["map50"] > 0


def test_no_truth_is_no_map_and_one_line():
    from edgecnn.tasks.detection.device import score
    from edgecnn.tasks.detection.postprocess import pack_detections
    from edgecnn.console import accuracy_row

    doc = {"status": "ok", "detections": pack_detections(np, _dets(np.random.default_rng(1), [2, 2]))}
    score(doc, None, "faces.npz")
    acc = doc["accuracy"]
    assert acc["map50"] is None and acc["top1"] is None and acc["n"] == 2 and "faces.npz has no true boxes" in acc["note"]
    name, value = accuracy_row(acc)
    assert name == "mAP@.5" and "\n" not in value and "no true boxes" in value


def test_runner_quantizes_inputs_as_eval_does():
    """Pixels scaled to [-1, 1] sit on x / scale = k + 0.5 ties, where float64 and float32 round apart: the runner
    must feed a model the very integers `edgecnn eval` feeds it, or a bench's accuracy is not eval's."""
    from edgecnn.board.runner import quantize_for
    from edgecnn.tflite.quant import quantize

    x = (np.arange(256, dtype=np.float32) * np.float32(2 / 255) - np.float32(1.0)).reshape(1, 16, 16, 1)
    for scale, zp in ((2 / 255, 0), (1 / 127.5, -1), (0.0078125, 0), (1 / 255, -128)):
        detail = {"name": "in", "dtype": np.int8, "quantization": (scale, zp)}
        assert np.array_equal(quantize_for(np, x, detail), quantize(x, detail)), (scale, zp)


# --- tables, store, report --------------------------------------------------------------------------------------


def _doc(name, p50, acc=None, post=None, status="ok"):
    return {"status": status, "device": {"name": name, "emulated": False}, "model": {"path": "m.tflite"},
            "timing": {"steady": {"p50_ms": p50, "mean_ms": p50}}, "accuracy": acc, "postprocess": post,
            "runtime": {"name": "ai_edge_litert", "version": "2"}, "machine": {"cpu_model": "cpu", "arch": "x86_64"},
            "error": None if status == "ok" else "board down"}


def _text(table) -> str:
    from rich.console import Console

    c = Console(width=200, record=True)
    c.print(table)
    return c.export_text()


def test_devices_table_shows_the_metric_and_postprocess_p50():
    from edgecnn.console import devices_table

    det = {"n": 5, "task": "detection", "metric": "mAP@.5", "map50": 0.4321, "map": 0.2, "top1": None}
    text = _text(devices_table([_doc("a", 1.0, det, {"head": "centernet", "p50_ms": 0.125}),
                                _doc("b", 2.0, det, {"head": "centernet", "p50_ms": None}),
                                _doc("c", None, None, None, "failed")]))
    assert "mAP@.5" in text and "top-1" not in text and "post-proc p50 ms" in text
    assert "0.4321" in text and "0.125" in text and "board down" in text
    text = _text(devices_table([_doc("a", 1.0, {"n": 3, "top1": 0.5}), _doc("b", 2.0)]))
    assert "top-1" in text and "post-proc" not in text and "0.5000" in text


def test_store_and_report_name_a_detectors_accuracy(tmp_path):
    from edgecnn.report.cells import columns
    from edgecnn.report.load import load_db
    from edgecnn.store.db import open_db

    path = tmp_path / "r.sqlite"
    det = {"n": 5, "task": "detection", "metric": "mAP@.5", "map50": 0.5, "map": 0.25, "top1": None}
    with open_db(path) as db:
        db.record({**_doc("a", 1.0, det), "model": {"path": "runs/det_float32.tflite", "sha256": "f" * 64}})
        db.record({**_doc("a", 1.0, {**det, "map50": 0.4}), "model": {"path": "runs/det_int8.tflite",
                                                                      "sha256": "e" * 64}})
        db.record({**_doc("a", 1.0, {"n": 5, "task": "detection", "map50": None, "note": "no boxes"}),
                   "model": {"path": "runs/other_int8.tflite", "sha256": "d" * 64}})
        db.record({**_doc("a", 1.0, {"n": 3, "top1": 0.75}), "model": {"path": "runs/cls_int8.tflite"}})
    rows = _rows(path)
    assert [(r["accuracy_metric"], r["map50"], r["map"], r["top1"]) for r in rows] == [
        ("mAP@.5", 0.5, 0.25, None), ("mAP@.5", 0.4, 0.25, None), (None, None, None, None), ("top-1", None, None, 0.75)]
    data = load_db(path)
    det_int8 = next(r for r in data.rows if r["model"] == "det" and r["precision"] == "int8")
    assert det_int8["task"] == "detection" and det_int8["value"] == 0.4 and det_int8["metric"] == "mAP@.5"
    assert det_int8["drop_points"] == pytest.approx(10.0)
    assert data.metric == "top-1 / mAP@.5" and data.metric in columns(data)  # mixed: both named


# --- a tiny trained edgecnn detector: bench == eval -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory) -> Path:
    """The suite's 1-epoch CenterNet on 160 scenes, int8 (deploy_models.detector): what it reaches does not matter."""
    return deploy_models.detector(tmp_path_factory.mktemp("tiny_detector"))[1]


@pytest.mark.slow
def test_bench_map_equals_eval_map(tiny_detector, db_path):
    limit = "24"
    r = run_cli_in_process("bench", tiny_detector, "--data", "scenes:digits", "--limit", limit, *RUNS, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    e = run_cli_in_process("eval", tiny_detector, "--data", "scenes:digits", "--limit", limit, "--json")
    assert e.returncode == 0, e.stderr[-2000:]
    (ev,) = json.loads(e.stdout)
    acc = doc["accuracy"]
    assert acc["task"] == "detection" and acc["top1"] is None and "outputs_top1" not in doc
    assert "detections" not in doc  # the packed boxes are scored, then dropped
    assert acc["detections"] > 0 and acc["objects"] > 0  # boxes were found: 0 = 0 would prove nothing
    assert (acc["map50"], acc["map"]) == (ev["map50"], ev["map"])
    assert (acc["images"], acc["objects"], acc["detections"]) == (ev["images"], ev["objects"], ev["detections"])
    assert acc["per_class"] == ev["per_class"]
    (row,) = _rows(db_path)
    assert (row["accuracy_metric"], row["map50"], row["map"], row["top1"]) == ("mAP@.5", ev["map50"], ev["map"], None)
    assert "24 images" in doc["settings"]["data"]

    table = run_cli_in_process("bench", tiny_detector, "--data", "scenes:digits", "--limit", "8", *RUNS)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "mAP@.5" in table.stdout and "top-1" not in table.stdout and "8 images" in table.stdout


@pytest.mark.slow
def test_detector_on_a_source_without_boxes_has_no_map(tiny_detector):
    """Unlabeled photos give a detector real inputs and no truth: timed, no top-1 and no mAP, a note says why. A
    classification set (digits: labels, no boxes) is the wrong task for it: one line (tests/test_bad_input.py)."""
    r = run_cli_in_process("bench", tiny_detector, "--data", "calibration:photos", "--limit", "4", *RUNS, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    acc = doc["accuracy"]
    assert acc["top1"] is None and acc["map50"] is None and "calibration:photos has no true boxes" in acc["note"]
    assert "outputs_top1" not in doc and "4 images without boxes" in doc["settings"]["data"]


# --- a foreign detector: .npz with and without boxes; the SSH path -----------------------------------------------


@pytest.fixture(scope="module")
def ssd(tmp_path_factory) -> Path:
    return detector_models.ssd(tmp_path_factory.mktemp("ssd") / "ssd_tiny.tflite")


def _ssd_npz(path: Path, boxes: np.ndarray | None = None, n: int = 4) -> Path:
    x = np.random.default_rng(0).uniform(-1, 1, (n, 64, 64, 3)).astype(np.float32)
    np.savez(path, x=x, y=np.zeros(n, np.int64), **({} if boxes is None else {"boxes": boxes}))
    return path


BOXES = np.array([[0, 4, 4, 40, 30, 1], [0, 20, 20, 60, 60, 0], [2, 0, 10, 32, 63, 2], [3, 8, 8, 24, 24, 1]],
                 np.float32)


def test_foreign_detector_npz_without_boxes_gets_no_accuracy(ssd, tmp_path, db_path):
    npz = _ssd_npz(tmp_path / "x.npz")
    doc = json.loads(run_cli_in_process("bench", ssd, "--data", npz, *RUNS, "--json").stdout)
    acc = doc["accuracy"]
    assert doc["postprocess"]["head"] == "tflite_detection_postprocess"
    assert acc["top1"] is None and acc["map50"] is None and acc["n"] == 4 and "outputs_top1" not in doc
    assert f"{npz} has no true boxes" in acc["note"]
    r = run_cli_in_process("bench", ssd, "--data", npz, *RUNS)
    assert r.returncode == 0 and "top-1" not in r.stdout, r.stderr
    assert "no mAP" in r.stdout and "[image," in r.stdout and "class]" in r.stdout  # the note, markup not eaten
    assert [row["top1"] for row in _rows(db_path)] == [None, None]


def _host_map(model: Path, npz: Path) -> dict:
    """What the device's boxes must score: this host's LiteRT outputs, decoded with the recognised head, clipped to
    the input as eval clips boxes to their image, `coco_map` against the .npz boxes (model-input pixels)."""
    from edgecnn.tasks.detection.postprocess import decode
    from edgecnn.tasks.detection.metrics import coco_map, to_image_pixels
    from edgecnn.evaluate.predict import predict_outputs
    from edgecnn.tflite.detect import recognise_head

    x = np.load(npz)["x"]
    sizes = [(64, 64)] * len(x)
    dets = to_image_pixels(decode(predict_outputs(model, x), recognise_head(model), (64, 64)), sizes, (64, 64))
    truth = [BOXES[BOXES[:, 0] == i, 1:] for i in range(len(x))]
    return coco_map(truth, dets, sizes, ["0", "1", "2"])


def test_foreign_detector_npz_with_boxes_gets_a_map(ssd, tmp_path):
    npz = _ssd_npz(tmp_path / "x.npz", BOXES)
    doc = json.loads(run_cli_in_process("bench", ssd, "--data", npz, *RUNS, "--json").stdout)
    acc, want = doc["accuracy"], _host_map(ssd, npz)
    assert (acc["images"], acc["objects"]) == (4, 4) and acc["metric"] == "mAP@.5"
    assert (acc["map50"], acc["map"], acc["detections"]) == (want["map50"], want["map"], want["detections"])


@pytest.mark.parametrize("boxes, needle", [(np.zeros((3, 5), np.float32), "shape (M, 6)"),
                                           (np.array([[9, 0, 0, 5, 5, 0]], np.float32), "row 0"),
                                           (np.array([[0, 5, 5, 1, 1, 0]], np.float32), "x1 > x0"),
                                           (np.array([[0, 0, 0, np.nan, 5, 0]], np.float32), "NaN")])
def test_bad_boxes_are_one_line(ssd, tmp_path, boxes, needle):
    npz = _ssd_npz(tmp_path / "bad.npz", boxes)
    line = assert_one_line_error(run_cli_in_process("bench", ssd, "--data", npz, *RUNS), needle)
    assert str(npz) in line


def test_ssh_path_brings_the_boxes_back(ssd, tmp_path, monkeypatch):
    """`bench_model` on an SSH profile (the Edge TPU path runs through it too): the runner's boxes come back on its
    stdout from the board (a stand-in that runs the commands here) and are scored on the host."""
    from test_detector_bench import _HereBoard

    from edgecnn.bench import remote
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.bench.run import bench_model
    from edgecnn.devices.board import BoardInfo

    work = tmp_path / "board"
    monkeypatch.setattr(remote, "SshBoard", _HereBoard)
    monkeypatch.setattr(remote, "ssh_target", lambda profile: SimpleNamespace(name="stand-in", address="127.0.0.1"))
    monkeypatch.setattr(remote, "missing", lambda info, profile: [])
    monkeypatch.setattr(remote, "probe", lambda board, profile: BoardInfo(
        arch="x86_64", work_dir=str(work), python_path=sys.executable, python="3", numpy="2",
        ai_edge_litert="2.3.0"))
    profile = SimpleNamespace(name="stand-in", kind="ssh", emulated=False, python=sys.executable, delegate="xnnpack",
                              target="cpu")
    npz = _ssd_npz(tmp_path / "x.npz", BOXES)
    doc = bench_model(str(ssd), profile, BenchSettings(warmup=1, runs=3), str(npz), 1000)
    assert doc["status"] == "ok", doc.get("error")
    assert doc["transport"] == "ssh" and doc["accuracy"]["map50"] == _host_map(ssd, npz)["map50"]

